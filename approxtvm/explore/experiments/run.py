"""Run the five experiments in order through one journal and write the report."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

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
    ex: Any = executor or ProcessExecutor(2)
    t0 = time.perf_counter()
    notes: list[str] = []
    if not faults_modelled():
        notes.append(
            "The runtime of this build has no NoC/SRAM fault model (approxtvm.runtime.faults): "
            "in experiments 2–4 reduced swings and voltages change energy only, not accuracy. "
            "Re-run the experiments once it lands; the journal keys include the evaluator version."
        )
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
            reach = tuple(model_reach(st.context) for st in (*studies.values(), *heavy.values()))
            say(console, f"experiments 1–3: knobs in isolation on {', '.join([*studies, *heavy])} ({ex.description})")
            sweeps = isolation_sweeps(studies, heavy, s, console)
            link_sweep = package_link_sweep(s, console)
            if s.time_budget_s is not None:
                s = fit_budget(s, studies[s.pareto_model], s.time_budget_s - (time.perf_counter() - t0), notes)
            say(console, f"experiment 4: NSGA-II on {s.pareto_model} ({s.nsga.generations} generations)")
            base = studies[s.pareto_model]  # the sweeps stay unstaged: every point of a curve exact
            search = make_study(base.context, journal, ex, s.staging, base.fingerprint, s.nsga.accuracy_budget)
            pareto = pareto_experiment(search, s, console)
            if isinstance(search, StagedStudy):
                st = search.stats
                notes.append(
                    f"Experiment 4 used staged evaluation: {st.full_evaluations} of {st.configurations} "
                    f"configurations reached the full set; {100 * st.sample_savings:.0f} % of image "
                    f"evaluations and {100 * st.time_savings:.0f} % of worker time saved."
                )
            say(console, "experiment 5: weight compression on the knee point")
            compression = knee_compression(s, pareto.knee, notes)
            if s.sensitivity:
                sensitivity_section(s, out_dir, notes, console, journal=journal, executor=ex)
            count = journal.count()
    finally:
        if own:
            ex.close()
    result = ExperimentsResult(
        s, sweeps, pareto, compression, notes, time.perf_counter() - t0, count, reach, link_sweep
    )
    return write_report(result, out_dir)


__all__ = ["faults_modelled", "run_experiments"]
