"""Experiment 4 under each sensitivity scenario: NSGA-II searched again, not a fixed grid.

A moved assumption changes the objectives (a BER ×10 makes every reduced voltage lossier, a NoC
energy ×1.25 makes every swing saving larger), so the set a search would find can change: the
fixed grid of :mod:`approxtvm.explore.sensitivity` can only say whether *its* points keep their
order. This module re-runs the search itself per scenario with a small budget
(:class:`SearchBudget`; same seed, same genome, same images, so only the moved assumption differs
between runs) and checks the two conclusions experiment 4 draws:

- **the knee**: the knob settings (NoC swing, buffer voltages) of the knee point of the found front
  (within ``knee_max_loss`` of accuracy, as experiment 4 picks it) and its energy saving;
- **the front's ordering**: the baseline front's configurations, re-evaluated under the scenario,
  keep their order by energy and stay mutually non-dominated, and how many of them are still
  non-dominated by everything the scenario's own search found (``survival``).

Every evaluation goes through an :class:`~approxtvm.explore.evaluator.EvalContext` that carries the
scenario (``ber_scale``; the scaled spec written as YAML next to the report), so the journal keeps
scenarios apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.genome import DEFAULT_PROTECTED_MSBS
from approxtvm.explore.nsga import NsgaSettings, Point, Study, hypervolume, pareto_front, run_nsga
from approxtvm.explore.report import knee_point
from approxtvm.explore.sensitivity import Scenario, scale_energy, scenarios
from approxtvm.targets.vacc.hardware import AcceleratorSpec

#: Name prefix of the baseline searched again with another seed (the comparison's noise floor).
RESEED_PREFIX = "baseline, seed "


@dataclass(frozen=True)
class SearchBudget:
    """Per-scenario search budget (the full report: 11 scenarios of at most ``pop_size × generations``
    new configurations plus the baseline front's re-evaluation).

    Attributes
    ----------
    pop_size, generations
        NSGA-II population and generations.
    seed
        Search seed (the same in every scenario).
    limit
        Test images per evaluation.
    reseed
        Also search the baseline with ``seed + 1``: the noise floor of the comparison (a conclusion
        that moves under reseeding alone is not moved by an assumption).
    multipliers
        Multiplier choices of the genome.
    swings_v, sram_v
        Reduced NoC swings and buffer voltages of the genome (nominal is always a choice).
    """

    pop_size: int = 8
    generations: int = 4
    seed: int = 0
    limit: int = 120
    multipliers: tuple[str, ...] = ("exact", "mul8u_2HH", "mul8u_FTA", "mul8u_17KS")
    swings_v: tuple[float, ...] = (0.6, 0.5, 0.45, 0.4, 0.35)
    sram_v: tuple[float, ...] = (0.8, 0.7, 0.65, 0.6, 0.55)
    reseed: bool = True


@dataclass
class ScenarioSearch:
    """What one scenario's search found.

    Attributes
    ----------
    scenario
        Scenario name.
    evaluations
        Distinct configurations the search evaluated.
    hypervolume
        Hypervolume of its front (loss, relative energy).
    front
        ``(label, accuracy loss, relative energy)`` of its front, by energy.
    knee
        Knee label, knobs and objectives.
    order_holds
        The baseline front, re-evaluated here, keeps its energy order and stays non-dominated.
    survival
        Share of the baseline front non-dominated by this scenario's search points.
    """

    scenario: str
    evaluations: int
    hypervolume: float
    front: list[tuple[str, float, float]]
    knee: dict[str, Any]
    order_holds: bool = True
    survival: float = 1.0


@dataclass
class SearchSensitivity:
    """Experiment 4's conclusions per scenario (the baseline first)."""

    budget: SearchBudget
    knee_max_loss: float
    searches: dict[str, ScenarioSearch] = field(default_factory=dict)

    def holds(self) -> dict[str, dict[str, bool]]:
        """Conclusion → scenario → whether it matches the baseline's."""
        base = self.searches["baseline"]
        return {
            "search knee knobs": {s: r.knee["knobs"] == base.knee["knobs"] for s, r in self.searches.items()},
            "front ordering": {s: r.order_holds for s, r in self.searches.items()},
        }

    def to_markdown(self) -> str:
        """One row per scenario."""
        b = self.budget
        lines = [
            f"Experiment 4 re-searched per scenario: NSGA-II {b.pop_size} × {b.generations} generations, seed "
            f"{b.seed}, {b.limit} images, the same genome in every scenario. Knee = knee point of the found "
            f"front within {self.knee_max_loss:.0%} accuracy loss; knobs = NoC swing and buffer voltages. Front "
            "ordering holds when the baseline front, re-evaluated under the scenario, keeps its energy order and "
            "stays non-dominated; survival = share of it not dominated by the scenario's own search. The "
            f"'{RESEED_PREFIX}…' row is the baseline searched with another seed: what moves there moves by "
            "search noise alone.",
            "",
            "| scenario | evaluations | hypervolume | knee knobs | knee saving | knee loss | front order | survival |",
            "|---|---|---|---|---|---|---|---|",
        ]
        holds = self.holds()
        for s, r in self.searches.items():
            k = r.knee
            same = "" if holds["search knee knobs"][s] else " (moved)"
            lines.append(
                f"| {s} | {r.evaluations} | {r.hypervolume:.4f} | {k['knobs']}{same} | {1 - k['energy_rel']:.1%} | "
                f"{100 * k['accuracy_loss']:.2f} pp | {'holds' if r.order_holds else 'changed'} | {r.survival:.0%} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "budget": dataclasses.asdict(self.budget),
            "knee_max_loss": self.knee_max_loss,
            "holds": self.holds(),
            "searches": {s: dataclasses.asdict(r) for s, r in self.searches.items()},
        }


def knobs(p: Point) -> str:
    """The voltage knobs of a configuration (what the study's question is about)."""
    c = p.config
    swing = "nominal" if c.noc_swing_v is None else f"{c.noc_swing_v:g} V"
    srams = dict(c.sram_v)
    return (
        f"swing {swing}, input {srams.get('input_buffer', 'nominal')}, weight {srams.get('weight_buffer', 'nominal')}"
    )


def _knee(front: Sequence[Point], max_loss: float) -> Point:
    near = [p for p in front if p.accuracy_loss <= max_loss + 1e-12 and p.energy_rel < 1.0]
    return knee_point(near) if near else knee_point(front)


def _dominates(q: Point, p: Point) -> bool:
    return (
        q.accuracy_loss <= p.accuracy_loss
        and q.energy_rel <= p.energy_rel
        and (q.accuracy_loss < p.accuracy_loss or q.energy_rel < p.energy_rel)
    )


def front_order_holds(baseline: Sequence[Point], again: Sequence[Point]) -> bool:
    """The baseline front (by energy) re-evaluated: same energy order, and still mutually non-dominated."""
    same_order = [p.config for p in sorted(again, key=lambda p: (p.energy_rel, p.accuracy_loss))] == [
        p.config for p in baseline
    ]
    return same_order and not any(_dominates(q, p) for p in again for q in again)


def scenario_context(base: EvalContext, sc: Scenario, spec: AcceleratorSpec, spec_dir: Path) -> EvalContext:
    """The evaluation context of a scenario (its scaled spec written to ``spec_dir``)."""
    ctx = dataclasses.replace(base, ber_scale=sc.ber_scale)
    if sc.energy_group:
        spec_dir.mkdir(parents=True, exist_ok=True)
        path = spec_dir / f"{spec.name}_{sc.energy_group}_x{sc.energy_scale:g}.yaml"
        path.write_text(yaml.safe_dump(scale_energy(spec, sc.energy_group, sc.energy_scale).to_dict(), sort_keys=False))
        ctx = dataclasses.replace(ctx, accelerator=str(path))
    return ctx


def search_sensitivity(
    base: EvalContext,
    journal: Any,
    executor: Any,
    spec_dir: Path,
    *,
    budget: SearchBudget = SearchBudget(),
    knee_max_loss: float = 0.02,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchSensitivity:
    """Re-run experiment 4's search under every scenario (``only``: a subset; the baseline always runs).

    Parameters
    ----------
    base
        The baseline evaluation context (model, data, batch size, accelerator).
    journal, executor
        Where evaluations are memoised and run.
    spec_dir
        Folder for the scaled specs of the energy scenarios.
    """
    base = dataclasses.replace(base, limit=budget.limit, ber_scale=1.0)
    spec = AcceleratorSpec.load(base.accelerator)
    settings = NsgaSettings(pop_size=budget.pop_size, generations=budget.generations, seed=budget.seed)
    out = SearchSensitivity(budget, knee_max_loss)
    baseline_front: list[Point] = []
    runs = [(sc, budget.seed) for sc in scenarios() if only is None or sc.name == "baseline" or sc.name in only]
    if budget.reseed:
        runs.insert(1, (Scenario(f"{RESEED_PREFIX}{budget.seed + 1}"), budget.seed + 1))
    for sc, seed in runs:
        if progress:
            progress(f"search under {sc.name}")
        study = Study(scenario_context(base, sc, spec, spec_dir), journal, executor)
        space = study.space(
            budget.multipliers, (None, *budget.swings_v), (0.9, *budget.sram_v), (0.9, *budget.sram_v),
            DEFAULT_PROTECTED_MSBS,
        )  # fmt: skip
        result = run_nsga(study, space, dataclasses.replace(settings, seed=seed))
        front = pareto_front(result.points)
        knee = _knee(front, knee_max_loss)
        rec = ScenarioSearch(
            sc.name,
            len(result.points),
            hypervolume(front),
            [(p.config.label(), p.accuracy_loss, p.energy_rel) for p in front],
            {
                "label": knee.config.label(),
                "knobs": knobs(knee),
                "accuracy_loss": knee.accuracy_loss,
                "energy_rel": knee.energy_rel,
            },
        )
        if sc.name == "baseline":
            baseline_front = front
        else:
            again = study.points([p.config for p in baseline_front])
            rec.order_holds = front_order_holds(baseline_front, again)
            rec.survival = sum(not any(_dominates(q, p) for q in result.points) for p in again) / len(again)
        out.searches[sc.name] = rec
    return out


def run_search_report(
    model: str,
    out: str | Path,
    *,
    data: str = "digits:test",
    accelerator: str | AcceleratorSpec = "simba_like",
    budget: SearchBudget = SearchBudget(),
    knee_max_loss: float = 0.02,
    journal: Any = None,
    executor: Any = None,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchSensitivity:
    """:func:`search_sensitivity` with its own journal (``out/journal.sqlite``) and in-process
    executor unless given; writes ``search.md`` / ``search.json`` into ``out``."""
    from approxtvm.explore.executors import InlineExecutor
    from approxtvm.explore.journal import Journal

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(accelerator, AcceleratorSpec):  # e.g. a technology applied: workers load it from a file
        path = d / "specs" / "base.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(accelerator.to_dict(), sort_keys=False))
        accelerator = str(path)
    base = EvalContext(model, data, accelerator=accelerator)
    kw = {"budget": budget, "knee_max_loss": knee_max_loss, "only": only, "progress": progress}
    if journal is not None and executor is not None:
        report = search_sensitivity(base, journal, executor, d / "specs", **kw)  # type: ignore[arg-type]
    else:
        with Journal(d / "journal.sqlite") as j:
            ex = executor or InlineExecutor()
            report = search_sensitivity(base, j, ex, d / "specs", **kw)  # type: ignore[arg-type]
    save_search(report, d)
    return report


def save_search(report: SearchSensitivity, out: str | Path) -> Path:
    """Write ``search.md`` and ``search.json`` into ``out``."""
    import json

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "search.md").write_text("# Experiment 4 re-searched per scenario\n\n" + report.to_markdown())
    (d / "search.json").write_text(json.dumps(report.to_dict(), indent=1))
    return d / "search.md"


__all__ = [
    "ScenarioSearch",
    "SearchBudget",
    "SearchSensitivity",
    "front_order_holds",
    "knobs",
    "run_search_report",
    "save_search",
    "scenario_context",
    "search_sensitivity",
]
