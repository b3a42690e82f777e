"""What the experiments produce: one value object per experiment, the whole result, the report files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.fault_sweeps import FaultSweepRow
from approxtvm.explore.knob_reach import KnobReach
from approxtvm.explore.nsga import ExploreResult, Point
from approxtvm.explore.search_comparison import SearchComparison


@dataclass(frozen=True)
class Sweep:
    """One knob in isolation.

    Attributes
    ----------
    knob
        ``multipliers``, ``noc_swing`` or ``sram``.
    labels
        Knob values (x axis).
    series
        Curve name (model, sub-knob) → one point per label.
    """

    knob: str
    labels: tuple[str, ...]
    series: dict[str, list[Point]]


@dataclass(frozen=True)
class ParetoExperiment:
    """Experiment 4.

    Attributes
    ----------
    result
        The NSGA-II run.
    comparison
        NSGA-II vs a uniform grid vs random search at the same budget, over the comparison seeds
        (``None``: cut by the wall-clock budget).
    knee
        Representative (knee) Pareto point.
    selected
        Named points whose energy breakdown the report shows.
    breakdown
        Name → energy per inference per component (pJ).
    reevaluated
        Name → (journal point, re-evaluated point) for the selected points.
    """

    result: ExploreResult
    comparison: SearchComparison | None
    knee: Point
    selected: dict[str, Point]
    breakdown: dict[str, dict[str, float]]
    reevaluated: dict[str, tuple[Point, Point]]


@dataclass(frozen=True)
class ExperimentsResult:
    """Everything the report shows.

    Attributes
    ----------
    settings
        The settings used.
    sweeps
        Experiments 1–3 (one :class:`Sweep` per knob).
    pareto
        Experiment 4 (``None``: cut by the wall-clock budget).
    compression
        Experiment 5 summary (``CompressionSummary.to_dict()``), or ``None`` when skipped.
    notes
        Caveats the report prints (missing fault model, skipped experiment, ...).
    wall_s
        Wall time of the experiments (s).
    evaluations
        Evaluations in the journal at the end.
    reach
        Per model, the share of MACs / weights each knob can change (:mod:`approxtvm.explore.knob_reach`).
    link_sweep
        Experiment 2 on the package spec (on-chip and package swing, separately and together;
        :mod:`.package_links`), empty without one.
    cut
        Sections the wall-clock budget cut (:mod:`approxtvm.explore.deadline`), in run order.
    """

    settings: ExperimentSettings
    sweeps: list[Sweep]
    pareto: ParetoExperiment | None
    compression: dict[str, Any] | None
    notes: list[str]
    wall_s: float
    evaluations: int
    reach: tuple[KnobReach, ...] = ()
    link_sweep: tuple[FaultSweepRow, ...] = ()
    cut: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExperimentsReport:
    """Files written by :func:`write_report`.

    Attributes
    ----------
    markdown, html, summary_json
        The report and its machine-readable summary.
    """

    markdown: Path
    html: Path
    summary_json: Path


__all__ = ["ExperimentsReport", "ExperimentsResult", "ParetoExperiment", "Sweep"]
