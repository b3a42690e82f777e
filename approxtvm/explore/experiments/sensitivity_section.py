"""The ``--full`` sensitivity section: experiments 2–4's conclusions with the assumptions moved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from approxtvm.explore.experiments.console import say
from approxtvm.explore.experiments.settings import ExperimentSettings


def sensitivity_section(
    s: ExperimentSettings,
    out_dir: Path,
    notes: list[str],
    console: Any,
    *,
    journal: Any = None,
    executor: Any = None,
) -> None:
    """Experiments 2-4's conclusions with the fault and energy assumptions moved (``sensitivity/``).

    The knees of experiments 2–3 come from :func:`~approxtvm.explore.sensitivity.sensitivity_report`;
    experiment 4's search is re-run per scenario by
    :func:`~approxtvm.explore.sensitivity_search.search_sensitivity` (budget:
    :class:`~approxtvm.explore.sensitivity_search.SearchBudget`, at most 120 images).
    """
    from approxtvm.explore.sensitivity import save_report, sensitivity_report
    from approxtvm.explore.sensitivity_search import SearchBudget, run_search_report
    from approxtvm.models import load_dataset
    from approxtvm.models.zoo import SHIPPED_MODELS

    if s.pareto_model not in SHIPPED_MODELS:
        notes.append(
            f"Sensitivity report skipped: {s.pareto_model} is not a shipped model (run `approxtvm sensitivity`)."
        )
        return
    say(console, f"sensitivity: experiments 2-4 with BER ±1 decade and energies ±25 % ({s.pareto_model})")
    data = load_dataset(s.data)
    data = data.take(s.limit) if s.limit else data
    report = sensitivity_report(s.pareto_model, data)
    save_report(report, out_dir / "sensitivity")
    budget = SearchBudget(limit=min(s.limit, SearchBudget.limit) if s.limit else SearchBudget.limit)
    say(console, f"sensitivity: experiment 4 re-searched per scenario ({budget.pop_size} × {budget.generations})")
    search = run_search_report(
        s.pareto_model,
        out_dir / "sensitivity",
        data=s.data,
        budget=budget,
        knee_max_loss=s.knee_max_loss,
        journal=journal,
        executor=executor,
    )
    holds = {**report.holds(), **search.holds()}
    moved = sorted({sc for c in holds for sc, ok in holds[c].items() if not ok})
    notes.append(
        "Sensitivity (sensitivity/sensitivity.md, experiment 4 re-searched: sensitivity/search.md): "
        + (
            "every conclusion holds in every scenario."
            if not moved
            else f"conclusions change under {', '.join(moved)}."
        )
    )


__all__ = ["sensitivity_section"]
