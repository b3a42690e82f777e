"""Run the five experiments in order through one journal and write the report."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from approxtvm.explore.deadline import BudgetedExecutor, BudgetExhaustedError, Deadline
from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.executors import Executor, ProcessExecutor
from approxtvm.explore.experiments.compression import knee_compression
from approxtvm.explore.experiments.console import say
from approxtvm.explore.experiments.isolation import isolation_sweeps
from approxtvm.explore.experiments.package_links import package_link_sweep
from approxtvm.explore.experiments.pareto import fit_budget, pareto_experiment
from approxtvm.explore.experiments.reach import model_reach
from approxtvm.explore.experiments.results import ExperimentsReport, ExperimentsResult
from approxtvm.explore.experiments.sensitivity_section import sensitivity_section
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.experiments.writer import write_report
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import Study
from approxtvm.explore.staged import StagedStudy, make_study


def faults_modelled() -> bool:
    """Whether the runtime injects NoC/SRAM faults (otherwise those knobs change energy only)."""
    return importlib.util.find_spec("approxtvm.runtime.faults") is not None


def run_experiments(
    out_dir: Path,
    quick: bool = True,
    *,
    settings: ExperimentSettings | None = None,
    executor: Executor | None = None,
    console: Any = None,
) -> ExperimentsReport:
    """Run the five experiments and write the report into ``out_dir``.

    With ``settings.time_budget_s`` the whole run is budgeted (:mod:`approxtvm.explore.deadline`):
    evaluations stop at the first evaluation boundary past the deadline, sections that evaluate
    outside the journal do not start after it, the report shows what finished and names what was
    cut, and the same call with the same ``out_dir`` resumes from the journal.

    Parameters
    ----------
    out_dir
        Output folder: ``report.md``, ``report.html``, ``summary.json``, plots, ``journal.sqlite``.
    quick
        :meth:`ExperimentSettings.quick` (default) or :meth:`ExperimentSettings.full`
        (ignored when ``settings`` is given).
    settings
        Explicit settings.
    executor
        Where evaluations run (default: two local processes, closed at the end).
    console
        A ``rich`` console for progress lines (``None``: silent).
    """
    s = settings or (ExperimentSettings.quick() if quick else ExperimentSettings.full())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = executor is None
    inner: Any = executor or ProcessExecutor(2)
    deadline = None if s.time_budget_s is None else Deadline.start(s.time_budget_s)
    ex: Any = inner if deadline is None else BudgetedExecutor(inner, deadline)
    t0 = time.perf_counter()
    notes: list[str] = []
    cut: list[str] = []
    if not faults_modelled():
        notes.append(
            "The runtime of this build has no NoC/SRAM fault model (approxtvm.runtime.faults): "
            "in experiments 2–4 reduced swings and voltages change energy only, not accuracy. "
            "Re-run the experiments once it lands; the journal keys include the evaluator version."
        )

    def section(name: str, fn: Callable[[], Any], default: Any) -> Any:
        """Run one section unless the budget is gone; a budget stop inside it cuts it (and the rest)."""
        if cut:  # an earlier section ran out: everything after it is cut too
            cut.append(name)
            return default
        try:
            if deadline is not None:
                deadline.check(name)
            return fn()
        except BudgetExhaustedError:
            cut.append(name)
            return default

    pareto = compression = None
    sweeps: list[Any] = []
    reach: tuple[Any, ...] = ()
    link_sweep: tuple[Any, ...] = ()
    try:
        with Journal(out_dir / "journal.sqlite") as journal:
            studies = {
                m: Study(EvalContext(m, s.data, s.limit, s.batch_size, s.calibration), journal, ex) for m in s.models
            }
            heavy = (
                {"resnet50": Study(EvalContext("resnet50", batch_size=1, energy_only=True), journal, ex)}
                if s.resnet50_sweeps
                else {}
            )
            say(console, f"knob reach: compiling {', '.join([*studies, *heavy])} once (exact)")
            reach = section(
                "the knob reach",
                lambda: tuple(model_reach(st.context) for st in (*studies.values(), *heavy.values())),
                (),
            )
            say(console, f"experiments 1–3: knobs in isolation on {', '.join([*studies, *heavy])} ({ex.description})")
            sweeps = section("experiments 1–3", lambda: isolation_sweeps(studies, heavy, s, console), [])
            link_sweep = section("experiment 2b (package links)", lambda: package_link_sweep(s, console), ())
            if deadline is not None and not cut:
                s = fit_budget(s, studies[s.pareto_model], deadline.remaining_s(), notes)
            live = None if cut else console  # no progress line for a section the budget cut
            say(live, f"experiment 4: NSGA-II on {s.pareto_model} ({s.nsga.generations} generations)")
            base = studies[s.pareto_model]  # the sweeps stay unstaged: every point of a curve exact
            search = make_study(base.context, journal, ex, s.staging, base.fingerprint, s.nsga.accuracy_budget)
            pareto = section("experiment 4", lambda: pareto_experiment(search, s, console, deadline), None)
            if pareto is not None and pareto.comparison is None:
                cut.append("the search comparison (NSGA-II vs grid vs random)")
            if pareto is not None and not pareto.reevaluated:
                cut.append("the re-evaluation of the knee and lowest-energy points")
            if isinstance(search, StagedStudy) and search.stats.configurations:
                st = search.stats
                notes.append(
                    f"Experiment 4 used staged evaluation: {st.full_evaluations} of {st.configurations} "
                    f"configurations reached the full set; {100 * st.sample_savings:.0f} % of image "
                    f"evaluations and {100 * st.time_savings:.0f} % of worker time saved."
                )
            say(None if cut else console, "experiment 5: weight compression on the knee point")
            if pareto is not None:
                knee = pareto.knee
                compression = section("experiment 5", lambda: knee_compression(s, knee, notes), None)
            else:
                section("experiment 5", lambda: None, None)
            if s.sensitivity:
                section(
                    "the sensitivity section",
                    lambda: sensitivity_section(s, out_dir, notes, console, journal=journal, executor=ex),
                    None,
                )
            count = journal.count()
    finally:
        if own:
            inner.close()
    if cut:
        assert deadline is not None
        say(console, f"cut by the wall-clock budget: {', '.join(cut)} (run again to resume)")
        notes.insert(
            0,
            f"**Cut by the wall-clock budget** ({deadline.budget_s:.0f} s, {deadline.elapsed_s():.0f} s used): "
            f"{', '.join(cut)}. Every finished evaluation is in the journal ({count}); run the same command "
            "again (same output folder) to resume.",
        )
    result = ExperimentsResult(
        s, sweeps, pareto, compression, notes, time.perf_counter() - t0, count, reach, link_sweep, tuple(cut)
    )
    return write_report(result, out_dir)


__all__ = ["faults_modelled", "run_experiments"]
