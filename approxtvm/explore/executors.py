"""Where evaluations run: in this process, in local worker processes, or on a Dask cluster.

An executor takes a list of :class:`~approxtvm.explore.evaluator.EvalTask` and yields
``(index, record)`` pairs as evaluations finish, in any order. :func:`evaluate_batch` puts the
journal in front of it: journaled keys are not submitted, each new record is committed the moment
it arrives, and the caller gets the records back **in task order** — so what the search does next
never depends on which worker finished first.

A worker lost mid-run loses no result (the records that reached the driver are already
journaled; Dask re-runs the lost worker's tasks elsewhere, the process pool is rebuilt and the
unfinished tasks resubmitted) and duplicates none (tasks are keyed by their journal key and the
journal ignores a key it already holds).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalTask, limit_threads, pin_next_core, run_task
from approxtvm.explore.journal import EvalRecord, Journal

#: How many times a broken local pool is rebuilt before the run gives up.
MAX_POOL_RESTARTS = 3
#: Environment of Dask workers started here: one compute thread each.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "TVM_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Executor(Protocol):
    """Runs evaluation tasks somewhere."""

    @property
    def n_workers(self) -> int:
        """Evaluations that can run at once."""
        ...

    @property
    def description(self) -> str:
        """One line for progress output."""
        ...

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        """Yield ``(index into tasks, record)`` as evaluations finish."""
        ...

    def close(self) -> None:
        """Release workers and clusters this executor started."""
        ...


class _ContextManaged:
    def close(self) -> None:  # pragma: no cover - overridden
        """Release resources."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InlineExecutor(_ContextManaged):
    """Evaluate in this process, one after the other (tests, debugging, ``--workers 0``)."""

    n_workers = 1
    description = "in-process"

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        """Evaluate each task in order."""
        for i, task in enumerate(tasks):
            yield i, run_task(task)


class ProcessExecutor(_ContextManaged):
    """A pool of local worker processes (spawned, one compute thread each).

    Parameters
    ----------
    workers
        Number of processes.
    pin
        Pin worker *i* to core *i* (modulo the cores; Linux only) when there are no more workers
        than cores — on a busy machine this keeps two workers from trading places.
    """

    def __init__(self, workers: int, pin: bool = True) -> None:
        if workers < 1:
            raise ExplorationError(
                "a process pool needs at least one worker",
                expected="workers ≥ 1",
                found=str(workers),
                fix="pass --workers 1 or more (0 = in-process)",
            )
        self._workers = workers
        self._pin = pin and hasattr(os, "sched_setaffinity") and workers <= len(os.sched_getaffinity(0))
        self._pool: ProcessPoolExecutor | None = None

    @property
    def n_workers(self) -> int:
        """Processes in the pool."""
        return self._workers

    @property
    def description(self) -> str:
        """One line for progress output."""
        return f"{self._workers} local process(es)"

    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the pool's live workers, sorted (empty before the first :meth:`run`)."""
        if self._pool is None:
            return ()
        procs = getattr(self._pool, "_processes", None) or {}  # the stdlib pool keeps no public list
        return tuple(sorted(pid for pid, p in procs.items() if p.is_alive()))

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            if self._pin:
                self._pool = ProcessPoolExecutor(
                    self._workers, mp_context=ctx, initializer=pin_next_core, initargs=(ctx.Value("i", 0),)
                )
            else:
                self._pool = ProcessPoolExecutor(self._workers, mp_context=ctx, initializer=limit_threads)
        return self._pool

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        """Submit all tasks; a broken pool (a worker killed) is rebuilt and the rest resubmitted."""
        pending = set(range(len(tasks)))
        restarts = 0
        while pending:
            pool = self._ensure_pool()
            futures: dict[Future[EvalRecord], int] = {pool.submit(run_task, tasks[i]): i for i in sorted(pending)}
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=lambda f: futures[f]):
                        i = futures.pop(fut)
                        rec = fut.result()
                        pending.discard(i)
                        yield i, rec
            except GeneratorExit:  # the consumer stopped early (a budget): start nothing more
                for fut in futures:
                    fut.cancel()
                raise
            except BrokenProcessPool:
                restarts += 1
                self._pool.shutdown(wait=False, cancel_futures=True)  # type: ignore[union-attr]
                self._pool = None
                if restarts > MAX_POOL_RESTARTS:
                    raise ExplorationError(
                        "local worker processes keep dying",
                        expected="workers that finish their evaluations",
                        found=f"the pool broke {restarts} times",
                        fix="check memory (each worker compiles the model) or use fewer workers",
                    ) from None

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(_ContextManaged):
    """Evaluate on a Dask cluster: an existing scheduler, or a ``LocalCluster`` started here.

    Parameters
    ----------
    scheduler
        Scheduler address (``tcp://host:8786``); ``None`` starts a process-based ``LocalCluster``.
    workers
        Workers of the ``LocalCluster`` (ignored with ``scheduler``).
    pin
        Pin LocalCluster worker *i* to core *i* (as :class:`ProcessExecutor`).

    Notes
    -----
    A ``LocalCluster`` can only be started from an importable ``__main__`` (a script file or the
    ``approxtvm`` command, not a script piped to ``python -``).

    **Affinity.** A worker keeps the models it compiled (:func:`~approxtvm.explore.evaluator.compiled_model`),
    so a configuration's later stage (a task with a :class:`~approxtvm.explore.evaluator.StagePrior`)
    is routed to the worker that evaluated its earlier stage (``workers=``, with
    ``allow_other_workers=True`` so a lost worker does not strand it), at most a fair share of a
    batch per worker (``⌈tasks / workers⌉``): the rest go wherever the scheduler puts them, so
    routing never leaves a worker idle while another queues a stage.
    """

    def __init__(self, scheduler: str | None = None, workers: int = 2, pin: bool = True) -> None:
        from distributed import Client, LocalCluster

        self.cluster: Any = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise ExplorationError(
                    f"cannot reach the Dask scheduler at {scheduler}",
                    expected="a running `dask scheduler` reachable from here",
                    found=f"{type(exc).__name__}: {exc}",
                    fix="start it (dask scheduler; dask worker ADDRESS) or check the address",
                ) from None
        else:
            if workers < 1:
                raise ExplorationError(
                    "a LocalCluster needs at least one worker",
                    expected="workers ≥ 1",
                    found=str(workers),
                    fix="pass --workers 1 or more",
                )
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, env=dict(WORKER_ENV)
            )
            self.client = Client(self.cluster)
            if pin and hasattr(os, "sched_setaffinity") and workers <= len(os.sched_getaffinity(0)):
                from approxtvm.explore.dask_plugins import PinWorker

                self.client.register_plugin(PinWorker())
        self._scheduler = scheduler
        self._homes: dict[tuple[Any, str], str] = {}  # (context without subset, config) → worker address

    @property
    def n_workers(self) -> int:
        """Worker threads currently known to the scheduler (at least 1)."""
        info = self.client.scheduler_info(n_workers=-1)
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))

    @property
    def description(self) -> str:
        """One line for progress output."""
        where = self._scheduler or "LocalCluster"
        return f"Dask ({where}, {self.n_workers} worker thread(s))"

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        """Submit every task keyed by its journal key; yield results as they complete."""
        from distributed import as_completed

        homes = self.placements(tasks)
        futures = {}
        for i, t in enumerate(tasks):
            where = homes.get(i)
            fut = self.client.submit(
                run_task_where,
                t,
                key=f"approxtvm-eval-{t.key}",
                pure=False,
                workers=None if where is None else [where],
                allow_other_workers=where is not None,
            )
            futures[fut.key] = (i, fut)
        try:
            for fut in as_completed([f for _, f in futures.values()]):
                i = futures[fut.key][0]
                rec, address = fut.result()
                self._homes[_compile_key(tasks[i])] = address
                yield i, rec
                fut.release()
        finally:
            for _, fut in futures.values():
                fut.release()

    def placements(self, tasks: Sequence[EvalTask]) -> dict[int, str]:
        """Task index → the live worker that compiled its configuration, for later-stage tasks,
        at most ``⌈len(tasks) / workers⌉`` per worker (see the class notes)."""
        live = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        if not live:
            return {}
        cap = -(-len(tasks) // len(live))
        load: dict[str, int] = {}
        out = {}
        for i, t in enumerate(tasks):
            home = self._homes.get(_compile_key(t)) if t.prior is not None else None
            if home is not None and home in live and load.get(home, 0) < cap:
                out[i] = home
                load[home] = load.get(home, 0) + 1
        return out

    def close(self) -> None:
        """Close the client and the LocalCluster started here."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _compile_key(task: EvalTask) -> tuple[Any, str]:
    """What a worker's compiled model depends on: the context without its stage, the configuration."""
    return replace(task.context, subset=0), task.config_json


def run_task_where(task: EvalTask) -> tuple[EvalRecord, str]:
    """:func:`~approxtvm.explore.evaluator.run_task` on a Dask worker, with the worker's address."""
    from distributed import get_worker

    return run_task(task), get_worker().address


def make_executor(workers: int = 1, scheduler: str | None = None, local_cluster: bool = False) -> Any:
    """The executor a command line asks for.

    Parameters
    ----------
    workers
        0 = in this process; N = N local processes (or N LocalCluster workers).
    scheduler
        Dask scheduler address: evaluate on that cluster.
    local_cluster
        Start a Dask ``LocalCluster`` with ``workers`` workers instead of a process pool.
    """
    if scheduler:
        return DaskExecutor(scheduler)
    if local_cluster:
        return DaskExecutor(None, max(1, workers))
    if workers == 0:
        return InlineExecutor()
    return ProcessExecutor(workers)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one :func:`evaluate_batch` call did.

    Attributes
    ----------
    requested
        Tasks asked for (duplicates included).
    cached
        Distinct keys found in the journal.
    evaluated
        Distinct keys evaluated now.
    wall_s
        Wall time of the call (s).
    """

    requested: int
    cached: int
    evaluated: int
    wall_s: float


def evaluate_batch(
    tasks: Sequence[EvalTask],
    journal: Journal,
    executor: Executor,
    on_record: Callable[[EvalRecord], None] | None = None,
) -> tuple[list[EvalRecord], BatchStats]:
    """Evaluate ``tasks`` through the journal; records come back in task order.

    Parameters
    ----------
    tasks
        Tasks (the same key may appear several times; it is evaluated once).
    journal
        Where finished evaluations are committed as they arrive.
    executor
        Where missing evaluations run.
    on_record
        Called with each newly evaluated record (progress output).
    """
    t0 = time.perf_counter()
    keys = [t.key for t in tasks]
    known = journal.get_many(list(dict.fromkeys(keys)))
    todo: dict[str, EvalTask] = {}
    for t, k in zip(tasks, keys, strict=True):
        if k not in known and k not in todo:
            todo[k] = t
    cached = len(set(keys)) - len(todo)
    todo_list = list(todo.values())
    for i, rec in executor.run(todo_list):
        if rec.key != todo_list[i].key:
            raise ExplorationError(
                "a worker returned the record of another task",
                expected=todo_list[i].key,
                found=rec.key,
                fix="use workers running the same approxtvm version as the driver",
            )
        journal.put(rec)
        known[rec.key] = rec
        if on_record is not None:
            on_record(rec)
    return [known[k] for k in keys], BatchStats(len(tasks), cached, len(todo_list), time.perf_counter() - t0)
