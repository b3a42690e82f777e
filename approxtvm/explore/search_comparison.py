"""Is NSGA-II worth it? NSGA-II against a uniform grid and random search at the same budget.

For each seed, NSGA-II runs with that seed; its number of distinct evaluated configurations is
the budget ``n`` of that seed. A uniform grid (:func:`~approxtvm.explore.nsga.uniform_grid`: one
value of every knob for all layers, the uniform-multiplier configurations first) and a random
search (:func:`random_configs`: ``n`` distinct configurations decoded from uniformly random
genomes) then get exactly ``n`` evaluations each. Every method is scored by the hypervolume of
the Pareto set of *all* its evaluated points, in (accuracy loss, energy relative to exact), with
the reference point (1.0, 1.0) = (100 pp loss, exact energy). The comparison reports mean ± sample
standard deviation over the seeds, the paired difference NSGA-II − other and how many seeds
NSGA-II wins; it says "better" only when the mean paired difference is positive and NSGA-II wins
on more than half of the seeds, and "not better" otherwise. Every evaluation goes through the
study's journal, so the grid and random points shared between seeds are evaluated once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError
from approxtvm.explore.genome import Configuration, SearchSpace
from approxtvm.explore.nsga import NsgaSettings, Point, Study, hypervolume, pareto_front, run_nsga, uniform_grid

#: Hypervolume reference point: (accuracy loss as a fraction, energy relative to exact).
REFERENCE_POINT: tuple[float, float] = (1.0, 1.0)
#: The compared search methods, in report order.
METHODS: tuple[str, ...] = ("nsga2", "grid", "random")
_LABELS = {"nsga2": "NSGA-II", "grid": "uniform grid", "random": "random search"}


def random_configs(space: SearchSpace, budget: int, seed: int) -> list[Configuration]:
    """``budget`` distinct configurations from seeded uniformly random genomes (fewer only when
    the space has fewer distinct configurations than 100 × budget draws find)."""
    rng = np.random.default_rng([seed, 0x7A11D0])
    out: dict[Configuration, None] = {}
    upper = space.upper
    draws = 0
    while len(out) < budget and draws < 100 * max(budget, 1):
        out.setdefault(space.decode(rng.integers(0, upper + 1)))
        draws += 1
    return list(out)


def front_hypervolume(points: Sequence[Point], budget: float | None = None) -> float:
    """Hypervolume of the Pareto set of ``points`` (feasible ones under an accuracy budget)."""
    return hypervolume(pareto_front(points, budget), *REFERENCE_POINT)


@dataclass(frozen=True, slots=True)
class SeedResult:
    """One seed of the comparison.

    Attributes
    ----------
    seed
        Seed of NSGA-II, of the grid's sample and of the random search.
    evaluations
        Method → distinct configurations it evaluated (NSGA-II's count is the others' budget; random
        search gets fewer only in a space too small to draw that many).
    hypervolume
        Method (``nsga2``, ``grid``, ``random``) → hypervolume of its Pareto set.
    """

    seed: int
    evaluations: dict[str, int]
    hypervolume: dict[str, float]


@dataclass(frozen=True)
class SearchComparison:
    """NSGA-II vs a uniform grid vs random search over several seeds.

    Attributes
    ----------
    seeds
        One :class:`SeedResult` per seed.
    accuracy_budget
        Accuracy-loss constraint of the runs (``None``: none).
    """

    seeds: tuple[SeedResult, ...]
    accuracy_budget: float | None = None

    def values(self, method: str) -> np.ndarray:
        """Hypervolumes of ``method`` in seed order."""
        return np.array([s.hypervolume[method] for s in self.seeds], dtype=float)

    def mean_sd(self, method: str) -> tuple[float, float]:
        """Mean and sample standard deviation (ddof = 1; 0 for one seed) of ``method``'s hypervolume."""
        v = self.values(method)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def paired(self, other: str) -> tuple[float, float, int]:
        """Mean and sample sd of the per-seed difference NSGA-II − ``other``, and NSGA-II's wins."""
        d = self.values("nsga2") - self.values(other)
        sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
        return float(d.mean()), sd, int(np.sum(d > 0))

    def verdict(self, other: str) -> str:
        """``better`` when NSGA-II's mean paired gain is positive and it wins on most seeds."""
        mean, _, wins = self.paired(other)
        return "better" if mean > 0 and wins > len(self.seeds) / 2 else "not better"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (per seed and summary statistics)."""
        return {
            "reference_point": {"accuracy_loss": REFERENCE_POINT[0], "energy_rel": REFERENCE_POINT[1]},
            "accuracy_budget": self.accuracy_budget,
            "seeds": [{"seed": s.seed, "evaluations": s.evaluations, "hypervolume": s.hypervolume} for s in self.seeds],
            "summary": {m: dict(zip(("mean", "sd"), self.mean_sd(m), strict=True)) for m in METHODS},
            "nsga2_vs": {
                o: dict(zip(("mean_gain", "sd_gain", "wins"), self.paired(o), strict=True))
                | {"verdict": self.verdict(o)}
                for o in ("grid", "random")
            },
        }

    def markdown(self) -> list[str]:
        """Report lines: the table, the reference point and the verdicts."""
        n = len(self.seeds)
        lines = [
            "| search | evaluations per seed | hypervolume mean ± sd | NSGA-II − it (mean ± sd) | NSGA-II wins |",
            "|---|---:|---:|---:|---:|",
        ]
        for m in METHODS:
            mean, sd = self.mean_sd(m)
            gain = "—" if m == "nsga2" else "{:+.5f} ± {:.5f}".format(*self.paired(m)[:2])
            wins = "—" if m == "nsga2" else f"{self.paired(m)[2]}/{n}"
            ev = [s.evaluations[m] for s in self.seeds]
            lines.append(f"| {_LABELS[m]} | {min(ev)}–{max(ev)} | {mean:.5f} ± {sd:.5f} | {gain} | {wins} |")
        lines += [
            "",
            f"{n} seeds ({', '.join(str(s.seed) for s in self.seeds)}); each method gets NSGA-II's number of "
            "distinct evaluations of that seed. Hypervolume of the Pareto set of all evaluated points in "
            "(accuracy loss, energy relative to exact), reference point (accuracy loss 1.0 = 100 pp, energy "
            "1.0 × exact); sd is the sample standard deviation over seeds."
            + (f" Accuracy budget {100 * self.accuracy_budget:g} pp." if self.accuracy_budget is not None else ""),
            f"NSGA-II vs the uniform grid: **{self.verdict('grid')}**; vs random search: "
            f"**{self.verdict('random')}** (better = positive mean gain and a win on more than half of the seeds).",
        ]
        return lines


def compare_searches(
    study: Study, space: SearchSpace, settings: NsgaSettings, seeds: Sequence[int], console: Any = None
) -> SearchComparison:
    """Run NSGA-II, the uniform grid and random search for every seed (see the module docstring).

    Parameters
    ----------
    study
        Context, journal and executor (shared by all runs).
    space
        The search space of all three methods.
    settings
        NSGA-II settings; the seed is replaced by each of ``seeds``.
    seeds
        At least one seed (the report's default is five).
    console
        Optional ``rich`` console for one progress line per seed.
    """
    if not seeds:
        raise ExplorationError(
            "the search comparison needs at least one seed",
            expected="seeds such as (0, 1, 2, 3, 4)",
            found="()",
            fix="pass one or more seeds",
        )
    budget = settings.accuracy_budget
    results = []
    for seed in seeds:
        r = run_nsga(study, space, replace(settings, seed=int(seed)))
        n = len(r.points)
        grid, rand = uniform_grid(space, n, int(seed)), random_configs(space, n, int(seed))
        study.points(grid)
        study.points(rand)
        study.resolve()  # a staged study's deferred configurations, settled before the fronts
        pts = {"nsga2": r.points, "grid": study.points(grid), "random": study.points(rand)}
        hv = {m: front_hypervolume(p, budget) for m, p in pts.items()}
        results.append(SeedResult(int(seed), {m: len({q.key for q in p}) for m, p in pts.items()}, hv))
        if console is not None:
            console.print(
                f"  seed {seed}: {n} evaluations each; hypervolume NSGA-II {hv['nsga2']:.5f}, "
                f"grid {hv['grid']:.5f}, random {hv['random']:.5f}"
            )
    return SearchComparison(tuple(results), budget)


__all__ = [
    "METHODS",
    "REFERENCE_POINT",
    "SearchComparison",
    "SeedResult",
    "compare_searches",
    "front_hypervolume",
    "random_configs",
]
