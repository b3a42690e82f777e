"""NSGA-II loop on a TVM-free evaluator: determinism, resume, completion order, budget, front maths."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalContext, EvalTask
from approxtvm.explore.genome import Configuration, SearchSpace
from approxtvm.explore.journal import EvalRecord, Journal
from approxtvm.explore.nsga import (
    ExploreResult,
    NsgaSettings,
    Point,
    Study,
    hypervolume,
    initial_population,
    pareto_front,
    run_nsga,
    uniform_grid,
)
from approxtvm.explore.report import knee_point
from approxtvm.explore.search_comparison import SearchComparison, SeedResult, compare_searches, random_configs
from tests.explore.fakes import LAYERS, FakeExecutor, fake_record

CTX = EvalContext("digits_cnn")
LIB = ("exact", "m1", "m2", "m3")


class ForwardExecutor(FakeExecutor):
    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        self.submitted += len(tasks)
        for i, t in enumerate(tasks):
            yield i, fake_record(t)


def _explore(
    journal: Path, executor: FakeExecutor | None = None, settings: NsgaSettings | None = None
) -> tuple[ExploreResult, Study]:
    ex = executor or FakeExecutor()
    with Journal(journal) as j:
        study = Study(CTX, j, ex, fingerprint="fake-context")
        space = study.space(LIB, (None, 0.6, 0.4), (0.9, 0.7, 0.5), (0.9, 0.6), (0, 4))
        return run_nsga(study, space, settings or NsgaSettings(pop_size=10, generations=5, seed=3)), study


def _front(r: ExploreResult) -> list[tuple[str, float, float]]:
    return [(p.key, p.accuracy_loss, p.energy_per_inference_pj) for p in r.pareto]


def test_same_seed_same_front_any_completion_order(tmp_path: Path) -> None:
    a, _ = _explore(tmp_path / "a.sqlite")
    b, _ = _explore(tmp_path / "b.sqlite", ForwardExecutor())
    c, _ = _explore(tmp_path / "c.sqlite", settings=NsgaSettings(pop_size=10, generations=5, seed=4))
    assert _front(a) == _front(b)
    assert [h.hypervolume for h in a.history] == [h.hypervolume for h in b.history]
    assert {p.key for p in a.points} != {p.key for p in c.points}  # the seed matters


def test_resume_from_a_partial_journal(tmp_path: Path) -> None:
    full, study = _explore(tmp_path / "full.sqlite")
    total = study.new_evaluations
    with Journal(tmp_path / "full.sqlite") as j:
        recs = j.records()
    assert len(recs) == total
    with Journal(tmp_path / "part.sqlite") as j:  # as if killed after 17 evaluations
        for r in recs[:17]:
            j.put(r)
    ex = FakeExecutor()
    resumed, study2 = _explore(tmp_path / "part.sqlite", ex)
    assert _front(resumed) == _front(full)
    assert study2.new_evaluations == total - 17 == ex.submitted
    again, study3 = _explore(tmp_path / "part.sqlite")
    assert study3.new_evaluations == 0 and _front(again) == _front(full)


def test_accuracy_budget_is_respected(tmp_path: Path) -> None:
    b, _ = _explore(tmp_path / "b.sqlite", settings=NsgaSettings(10, 4, 3, accuracy_budget=0.05))
    assert b.pareto and all(p.accuracy_loss <= 0.05 for p in b.pareto)
    assert any(p.accuracy_loss > 0.05 for p in b.points)  # the constraint had something to exclude


def _area(points: Sequence[Point]) -> float:
    """Hypervolume by integrating 1 − (best loss among points with energy ≤ x) over x in [0, 1]."""
    pts = [(p.energy_rel, p.accuracy_loss) for p in points if p.energy_rel < 1 and p.accuracy_loss < 1]
    xs = sorted({e for e, _ in pts} | {1.0})
    return sum((x1 - x0) * (1 - min(loss for e, loss in pts if e <= x0)) for x0, x1 in itertools.pairwise(xs))


def test_nsga_vs_grid_vs_random_same_budget_over_five_seeds(tmp_path: Path) -> None:
    settings = NsgaSettings(pop_size=8, generations=3)
    with Journal(tmp_path / "c.sqlite") as j:
        study = Study(CTX, j, FakeExecutor(), fingerprint="fake-context")
        space = study.space(LIB, (None, 0.6, 0.4), (0.9, 0.7, 0.5), (0.9, 0.6), (0, 4))
        cmp = compare_searches(study, space, settings, seeds=range(5))
        assert [s.seed for s in cmp.seeds] == [0, 1, 2, 3, 4]
        for sr in cmp.seeds:
            nsga = run_nsga(study, space, replace(settings, seed=sr.seed))  # from the journal
            n = len(nsga.points)
            grid = study.points(uniform_grid(space, n, sr.seed))
            rand = study.points(random_configs(space, n, sr.seed))
            assert sr.evaluations == {"nsga2": n, "grid": n, "random": n}  # the same budget
            assert len({p.key for p in rand}) == n and any(
                len(set(dict(p.config.multipliers).values())) > 1 for p in rand
            )
            for method, pts in (("nsga2", nsga.points), ("grid", grid), ("random", rand)):
                assert sr.hypervolume[method] == pytest.approx(_area(pts), abs=1e-12), method
    for m in ("nsga2", "grid", "random"):
        v = [s.hypervolume[m] for s in cmp.seeds]
        assert cmp.mean_sd(m) == pytest.approx((float(np.mean(v)), float(np.std(v, ddof=1))))
    gain, _, wins = cmp.paired("random")
    assert gain == pytest.approx(cmp.mean_sd("nsga2")[0] - cmp.mean_sd("random")[0])
    assert cmp.verdict("random") == ("better" if gain > 0 and wins >= 3 else "not better")
    md = "\n".join(cmp.markdown())
    assert "reference point (accuracy loss 1.0 = 100 pp, energy 1.0 × exact)" in md
    assert f"vs the uniform grid: **{cmp.verdict('grid')}**" in md and "5 seeds" in md
    js = cmp.to_dict()
    assert js["nsga2_vs"]["grid"]["verdict"] == cmp.verdict("grid") and len(js["seeds"]) == 5


def test_comparison_can_say_not_better() -> None:
    def seeds(pairs: list[tuple[float, float]]) -> tuple[SeedResult, ...]:
        n = {"nsga2": 10, "grid": 10, "random": 10}
        return tuple(SeedResult(i, n, {"nsga2": a, "grid": b, "random": b}) for i, (a, b) in enumerate(pairs))

    worse = SearchComparison(seeds([(0.5, 0.6), (0.5, 0.4), (0.5, 0.6), (0.5, 0.6), (0.5, 0.6)]))
    assert worse.verdict("grid") == "not better" and worse.paired("grid")[2] == 1
    lucky = SearchComparison(seeds([(0.9, 0.1), (0.4, 0.5), (0.4, 0.5), (0.4, 0.5), (0.4, 0.5)]))
    assert lucky.paired("grid")[0] > 0 and lucky.verdict("grid") == "not better"  # one big win is not enough
    better = SearchComparison(seeds([(0.6, 0.5), (0.6, 0.5), (0.6, 0.5), (0.4, 0.5), (0.6, 0.5)]))
    assert better.verdict("random") == "better"
    with pytest.raises(ExplorationError, match="at least one seed"):
        compare_searches(None, None, NsgaSettings(), seeds=())  # type: ignore[arg-type]


def _pt(loss: float, e: float, name: str = "") -> Point:
    c = Configuration.make({"fc": name or f"{loss}-{e}"})
    return Point(c, c.to_json(), loss, e * 1000, e, None, 1 - loss)


def test_pareto_front_and_hypervolume() -> None:
    pts = [_pt(0.0, 1.0), _pt(0.1, 0.8), _pt(0.2, 0.9), _pt(0.5, 0.5), _pt(0.1, 0.8, "twin")]
    front = pareto_front(pts)
    assert [(p.accuracy_loss, p.energy_rel) for p in front] == [(0.5, 0.5), (0.1, 0.8), (0.1, 0.8), (0.0, 1.0)]
    # area: [0.5,0.8)×(1-0.5) + [0.8,1.0)×(1-0.1) + exact point adds nothing at e = 1
    assert hypervolume(front) == pytest.approx(0.3 * 0.5 + 0.2 * 0.9)
    assert hypervolume(front) == hypervolume(pts)
    assert pareto_front(pts, budget=0.2)[0].accuracy_loss == 0.1
    assert knee_point(front).energy_rel == 0.8


def test_initial_population_and_uniform_grid() -> None:
    space = SearchSpace(LAYERS, LIB, (None, 0.6), (0.9, 0.7), (0.9,), (0, 4))
    pop = initial_population(space, 9, seed=0)
    assert len({tuple(r) for r in pop}) == 9
    assert [space.decode(g) for g in pop[:4]] == [space.decode(g) for g in space.uniform_genomes()]
    small = initial_population(space, 6, seed=0)  # 3 seeds at most: first, middle and last in library order
    seeds = space.uniform_genomes()
    assert [space.decode(g) for g in small[:3]] == [space.decode(seeds[i]) for i in (0, 2, 3)]
    assert len({space.decode(g) for g in small}) == 6
    assert not any(space.decode(g) in {space.decode(u) for u in seeds} for g in small[3:])
    grid = uniform_grid(space, 10, seed=0)
    assert len(grid) == 10 and len(set(grid)) == 10
    assert grid[:4] == [space.decode(g) for g in space.uniform_genomes()]
    for c in grid:  # uniform: one multiplier for all layers
        assert len({c.multiplier_for(lid) for lid in LAYERS}) == 1


def test_uniform_operators_and_small_populations(tmp_path: Path) -> None:
    s = NsgaSettings(pop_size=3, generations=4, seed=1, operators="uniform")
    a, _ = _explore(tmp_path / "a.sqlite", settings=s)
    b, _ = _explore(tmp_path / "b.sqlite", ForwardExecutor(), settings=s)
    assert _front(a) == _front(b)
    assert len(a.history) == 4 and a.history[0].evaluations == 3  # one seed (exact) and two random genomes
    assert len(a.uniform) == len(LIB)  # the uniform baselines are evaluated all the same
    with pytest.raises(ExplorationError, match="operators"):
        NsgaSettings(operators="bogus")


def test_without_labels_the_loss_is_disagreement_with_exact() -> None:
    from dataclasses import replace

    from approxtvm.explore.nsga import Reference

    def rec(c: Configuration) -> EvalRecord:
        return replace(fake_record(EvalTask(CTX, "f", c.to_json())), correct=None)

    ref = Reference(rec(Configuration()))
    p = ref.point(rec(Configuration.make({lid: "m3" for lid in LAYERS})))
    assert p.top1 is None and 0 < p.accuracy_loss == pytest.approx(1 - p.agreement)
    assert ref.point(ref.record).accuracy_loss == 0.0
