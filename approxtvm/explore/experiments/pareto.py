"""Experiment 4: the combined NSGA-II Pareto set, the search comparison, and the time budget it gets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from approxtvm.explore.budget import plan_generations
from approxtvm.explore.deadline import BudgetExhaustedError, Deadline
from approxtvm.explore.evaluator import clear_worker_cache, make_task, run_task
from approxtvm.explore.experiments.console import say
from approxtvm.explore.experiments.results import ParetoExperiment
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.genome import DEFAULT_PROTECTED_MSBS
from approxtvm.explore.nsga import Study, run_nsga
from approxtvm.explore.search_comparison import compare_searches


def best_uniform_point(uniform: list[Any], knee: Any, reference: Any) -> Any:
    """The cheapest uniform-multiplier point at most as lossy as the knee; if the knee beats them all
    on loss (a configuration can even gain accuracy on a small set), the least lossy one; the exact
    reference when there is no uniform point."""
    within = [p for p in uniform if p.accuracy_loss <= knee.accuracy_loss + 1e-12]
    if within:
        return min(within, key=lambda p: (p.energy_rel, p.accuracy_loss))
    return min(uniform or [reference], key=lambda p: (p.accuracy_loss, p.energy_rel))


def experiment4_space(study: Study, s: ExperimentSettings) -> Any:
    """Experiment 4's search space on ``study``'s model: a per-layer multiplier of the library,
    the NoC swing (nominal or reduced), input and weight buffer voltages (nominal 0.9 V or
    reduced), protected MSBs, and at most ``s.max_distinct_multipliers`` multiplier types."""
    return study.space(
        s.multipliers,
        (None, *s.swings_v),
        (0.9, *s.sram_v),
        (0.9, *s.sram_v),
        tuple(sorted({*DEFAULT_PROTECTED_MSBS, *s.swing_protected_msbs})),
        s.max_distinct_multipliers,
    )


def pareto_experiment(
    study: Study, s: ExperimentSettings, console: Any, deadline: Deadline | None = None
) -> ParetoExperiment:
    """Experiment 4: NSGA-II, the search comparison, the knee and its neighbours re-evaluated.

    With a ``deadline``, a budget stop in the NSGA-II run propagates (:class:`BudgetExhaustedError`);
    one in the search comparison leaves ``comparison`` ``None``, and the re-evaluation (outside
    the journal) is skipped once the budget is gone (``reevaluated`` empty).
    """
    from approxtvm.explore.report import knee_point

    space = experiment4_space(study, s)

    def progress(g: Any) -> None:
        say(
            console,
            f"  NSGA-II generation {g.generation}/{g.generations}: {g.evaluations} configurations, "
            f"hypervolume {g.hypervolume:.5f}, ETA {g.eta_s:.0f} s",
        )

    nsga = replace(s.nsga, seed=s.comparison_seeds[0]) if s.comparison_seeds else s.nsga
    result = run_nsga(study, space, nsga, progress)
    say(console, f"  NSGA-II vs uniform grid vs random search, seeds {list(s.comparison_seeds)}")
    try:
        comparison = compare_searches(study, space, nsga, s.comparison_seeds or (nsga.seed,), console)
    except BudgetExhaustedError:
        comparison = None
    front = result.pareto
    near = [p for p in front if p.accuracy_loss <= s.knee_max_loss + 1e-12 and p.energy_rel < 1.0]
    knee = knee_point(near) if near else knee_point(front)
    best_uniform = best_uniform_point(result.uniform, knee, result.reference)
    selected = {
        "exact": result.reference,
        "best uniform multiplier": best_uniform,
        "knee": knee,
        "lowest energy": min(front, key=lambda p: (p.energy_rel, p.accuracy_loss)),
    }
    breakdown: dict[str, dict[str, float]] = {}
    for name, p in selected.items():
        rec = study.journal.get(p.key)
        assert rec is not None
        breakdown[name] = dict(rec.detail["by_component_pj"])
    clear_worker_cache()
    ref = study.reference
    reevaluated = {
        name: (p, ref.point(run_task(make_task(study.context, study.fingerprint, p.config))))
        for name, p in selected.items()
        if name in ("knee", "lowest energy") and (deadline is None or not deadline.expired())
    }
    return ParetoExperiment(result, comparison, knee, selected, breakdown, reevaluated)


def fit_budget(s: ExperimentSettings, study: Study, remaining_s: float, notes: list[str]) -> ExperimentSettings:
    """Fewer NSGA-II generations when the wall-clock budget left cannot hold them."""
    times = [r.eval_s for r in study.journal.records(study.fingerprint)]
    # the search comparison costs about three NSGA-II runs (NSGA-II, grid, random) per seed
    runs = 3 * max(1, len(s.comparison_seeds))
    gens = plan_generations(
        remaining_s / runs, times, study.executor.n_workers, s.nsga.pop_size, s.nsga.generations, s.nsga.pop_size
    )
    if gens < s.nsga.generations:
        notes.append(
            f"Experiment 4 ran {gens} of {s.nsga.generations} NSGA-II generations to fit the "
            f"{s.time_budget_s:.0f} s budget ({remaining_s:.0f} s were left after experiments 1–3)."
        )
    return replace(s, nsga=replace(s.nsga, generations=gens))


__all__ = ["best_uniform_point", "fit_budget", "pareto_experiment"]
