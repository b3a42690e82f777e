"""Dask LocalCluster: a worker killed mid-run loses no result and duplicates none."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.executors import DaskExecutor, InlineExecutor
from approxtvm.explore.journal import EvalRecord, Journal
from approxtvm.explore.nsga import ExploreResult, NsgaSettings, Study, run_nsga

CTX = EvalContext("digits_cnn", limit=40)
SETTINGS = NsgaSettings(pop_size=6, generations=2, seed=2)


def _run(journal: Path, executor: object, on_record: object = None) -> tuple[ExploreResult, Study, int]:
    with Journal(journal) as j:
        study = Study(CTX, j, executor, on_record=on_record)  # type: ignore[arg-type]
        space = study.space(("exact", "trunc:k=4", "drum:k=5", "drum:k=4"), (None, 0.5), (0.9, 0.7), (0.9,), (0,))
        return run_nsga(study, space, SETTINGS), study, j.count()


def test_lost_worker_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    killed: list[int] = []
    with DaskExecutor(None, workers=2) as ex:
        seen = 0

        def kill_one_worker(rec: EvalRecord) -> None:
            nonlocal seen
            seen += 1
            if seen == 3 and not killed:  # generation 1 in flight on both workers
                pids = ex.client.run(os.getpid)
                pid = pids[sorted(pids)[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        res, study, stored = _run(tmp_path / "dask.sqlite", ex, kill_one_worker)
        workers_after = ex.n_workers
    assert killed and workers_after >= 1
    assert stored == study.new_evaluations == len({p.key for p in (*res.points, *res.uniform)})
    with Journal(tmp_path / "dask.sqlite") as j:
        recs = j.records()
    assert len({r.key for r in recs}) == len(recs) == stored
    assert len({r.worker for r in recs}) >= 2
    ref, _, _ = _run(tmp_path / "inline.sqlite", InlineExecutor())
    # configurations, not keys: the keys include a fingerprint of the code, which may change between runs
    assert [(p.config, p.accuracy_loss, p.energy_per_inference_pj) for p in res.pareto] == [
        (p.config, p.accuracy_loss, p.energy_per_inference_pj) for p in ref.pareto
    ]


def test_local_pool_rebuilds_after_a_lost_worker(tmp_path: Path) -> None:
    from approxtvm.explore.executors import ProcessExecutor

    killed: list[int] = []
    with ProcessExecutor(2) as ex:
        seen = 0

        def kill_one_worker(rec: EvalRecord) -> None:
            nonlocal seen
            seen += 1
            if seen == 3 and not killed:
                pid = ex.worker_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        res, study, stored = _run(tmp_path / "pool.sqlite", ex, kill_one_worker)
    assert killed
    assert stored == study.new_evaluations == len({p.key for p in (*res.points, *res.uniform)})
    with Journal(tmp_path / "pool.sqlite") as j:
        assert len({r.key for r in j.records()}) == stored


def test_later_stages_go_to_the_worker_that_compiled_them() -> None:
    """Stage 2 of each configuration runs where its stage 1 ran (its compiled model is there),
    at most a fair share per worker; tasks without a prior are not routed."""
    from dataclasses import replace

    from approxtvm.explore.evaluator import StagePrior, make_task
    from approxtvm.explore.genome import Configuration

    s1, s2 = replace(CTX, subset=16), replace(CTX, subset=32)
    fp1, fp2 = s1.fingerprint(), s2.fingerprint()
    configs = [Configuration.make({"conv1": m}) for m in ("trunc:k=4", "drum:k=4", "drum:k=5", "trunc:k=5", "drum:k=3")]
    with DaskExecutor(None, workers=2) as ex:
        first = dict(ex.run([make_task(s1, fp1, c) for c in configs]))
        later = [make_task(s2, fp2, c, StagePrior(16, first[i].predictions_i16)) for i, c in enumerate(configs)]
        homes = ex.placements(later)
        assert ex.placements([make_task(s2, fp2, c) for c in configs]) == {}
        pids = ex.client.run(os.getpid)
        second = dict(ex.run(later))
    assert len(homes) >= len(configs) // 2 and max(list(homes.values()).count(a) for a in homes.values()) <= 3
    for i, address in homes.items():
        assert first[i].worker.endswith(f":{pids[address]}") and second[i].worker == first[i].worker
