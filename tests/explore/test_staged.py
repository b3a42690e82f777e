"""Staged evaluation on the shipped digits model: same front as an unstaged study, less compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalContext, load_context_data
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings, Study, pareto_front, run_nsga
from approxtvm.explore.staged import StagedStudy, StagingSettings, loss_bounds, paired_loss_gap
from approxtvm.explore.subsets import stratified_order

CTX = EvalContext("digits_cnn", limit=120)
MULTS = ("exact", "trunc:k=4", "drum:k=5", "drum:k=4", "drum:k=3", "trunc:k=5")


def _front(points: list) -> list[tuple[str, float, float]]:
    return [(p.config.to_json(), p.accuracy_loss, p.energy_per_inference_pj) for p in points]


def test_stratified_prefixes_keep_class_shares() -> None:
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    order = stratified_order(y, len(y), seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))
    for n in (10, 20, 40, 100):
        counts = np.bincount(y[order[:n]], minlength=4)
        expected = n * np.array([50, 30, 15, 5]) / 100
        assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9), (n, counts, expected)


def test_loss_bounds_shrink_to_the_point_on_the_full_set() -> None:
    class P:  # the two fields loss_bounds reads
        accuracy_loss = 0.05
        agreement = 0.9

    lo, hi = loss_bounds(P(), 40, 400, 2.33)  # type: ignore[arg-type]
    assert lo < 0.05 < hi
    lo2, hi2 = loss_bounds(P(), 200, 400, 2.33)  # type: ignore[arg-type]
    assert lo < lo2 < 0.05 < hi2 < hi
    assert loss_bounds(P(), 400, 400, 2.33) == (0.05, 0.05)  # type: ignore[arg-type]


def test_stage_contexts_are_nested_stratified_subsets() -> None:
    full = load_context_data(CTX)
    s40 = load_context_data(EvalContext("digits_cnn", limit=120, subset=40))
    s80 = load_context_data(EvalContext("digits_cnn", limit=120, subset=80))
    rows = {r.tobytes() for r in full.x}
    r40, r80 = {r.tobytes() for r in s40.x}, {r.tobytes() for r in s80.x}
    assert len(s40) == 40 and len(s80) == 80 and r40 < r80 <= rows
    assert len(np.unique(s40.y)) == len(np.unique(full.y))  # every class present


@pytest.mark.parametrize(("model", "budget"), [("digits_cnn", None), ("digits_resnet", 0.02)])
def test_staged_front_equals_unstaged_front_on_digits(tmp_path: Path, model: str, budget: float | None) -> None:
    """Both shipped models; with a budget, configurations surely over it are dropped early."""
    ctx = EvalContext(model, limit=120)
    with Journal(tmp_path / "staged.sqlite") as j:
        staged = StagedStudy(ctx, j, InlineExecutor(), StagingSettings(first_samples=30, growth=2), budget)
        assert staged.sizes == [32, 64, 120]  # 30 · 2ⁱ rounded up to whole batches of 8
        space = staged.space(MULTS, (None,), (0.9,), (0.9,), (0,))
        rng = np.random.default_rng(7)
        configs = [space.decode(g) for g in space.uniform_genomes()]
        configs += [space.decode(rng.integers(0, space.upper + 1)) for _ in range(4)]
        configs = list(dict.fromkeys(configs))
        staged.points(configs)
        staged.resolve()  # deferred configurations settled (a search does this at its end)
        staged_pts, staged_front = staged.points(configs), staged.front()
        stats = staged.stats
        assert len({r.context for r in j.records()}) == 3  # each stage journaled in its own context
        # the unstaged study: every configuration on every image (full-set records are shared)
        full_pts = Study(ctx, j, InlineExecutor()).points(configs)
    assert _front(staged_front) == _front(pareto_front(full_pts, budget))
    assert _front(pareto_front(staged_pts, budget)) == _front(pareto_front(full_pts, budget))
    for c, e in staged.estimates().items():  # dropped configurations: a bound that held
        truth = full_pts[configs.index(c)]
        assert e.loss_low <= truth.accuracy_loss <= e.loss_high
    assert stats.configurations == len(configs) and stats.by_stage[32] == len(configs)
    # a later stage runs only the images it adds, so each configuration ran the images of its
    # last stage once (+ the exact model per stage)
    runs = sum(e.samples for e in staged.estimates().values()) + 32 + 64 + 120
    assert stats.samples_run == runs and stats.samples_unstaged == (len(configs) + 1) * 120


@pytest.mark.slow  # two NSGA-II runs (≈ 3 min on 2 busy cores)
def test_staged_nsga_front_is_full_set_and_matches_unstaged(tmp_path: Path) -> None:
    settings = NsgaSettings(pop_size=6, generations=2, seed=0)
    with Journal(tmp_path / "a.sqlite") as j:
        staged = StagedStudy(CTX, j, InlineExecutor(), StagingSettings(first_samples=30, growth=4))
        space = staged.space(MULTS, (None, 0.5), (0.9,), (0.9,), (0,))
        res_s = run_nsga(staged, space, settings)
        full_keys = {r.key for r in j.records(staged.fingerprint)}
    assert {p.key for p in res_s.pareto} <= full_keys  # every front point evaluated on all images
    with Journal(tmp_path / "b.sqlite") as j:
        study = Study(CTX, j, InlineExecutor())
        res_u = run_nsga(study, study.space(MULTS, (None, 0.5), (0.9,), (0.9,), (0,)), settings)
    assert _front(res_s.pareto) == _front(res_u.pareto)


def test_stage_sizes_are_whole_batches() -> None:
    st = StagingSettings(first_samples=100, growth=4)
    assert st.sizes(1000) == [100, 400, 1000]
    assert st.sizes(1000, batch_size=8) == [104, 400, 1000]
    assert st.sizes(1000, batch_size=3) == [102, 402, 1000]
    assert StagingSettings(first_samples=1, growth=2).sizes(20, batch_size=8) == [8, 16, 20]  # 1, 2, 4 → 8
    assert st.sizes(90, batch_size=8) == [90]


def test_staging_rejects_energy_only_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ExplorationError, match="growth"):
        StagingSettings(first_samples=10, growth=1)
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(ExplorationError, match="energy_only"):
        StagedStudy(EvalContext("digits_cnn", energy_only=True), j, InlineExecutor())


def test_paired_gap_matches_its_definition() -> None:
    a = np.array([1, 1, 0, 1, 0, 1, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 1, 0, 0, 1, 0], dtype=bool)
    gap, half = paired_loss_gap(a, b, 80, 2.33)
    assert gap == 3 / 8  # b is wrong on 3 samples a gets right, never the reverse
    p = (3 + 1) / (8 + 2)
    assert half == pytest.approx(2.33 * (p / 8) ** 0.5 * (72 / 79) ** 0.5)
    assert paired_loss_gap(a, a, 80, 2.33)[0] == 0.0
    assert paired_loss_gap(a, b, 8, 2.33)[1] == 0.0  # the whole set: the gap is exact


def _correlated_pair(rng: np.random.Generator, n: int, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Two configurations that err mostly on the same (hard) samples; b loses ``gap`` more."""
    hard = rng.random(n) < 0.25
    a = ~hard
    b = a.copy()
    flip = rng.choice(np.flatnonzero(a), round(gap * n), replace=False)
    b[flip] = False
    return a, b


def test_paired_test_separates_what_two_intervals_cannot() -> None:
    """An 8 pp gap between two configurations with the same 25 % of hard samples, seen on 100 of
    1,000: the paired test resolves it, the unpaired intervals (each ±≈ 10 pp) overlap."""
    rng = np.random.default_rng(0)
    n, m = 1000, 100
    wins_paired = wins_unpaired = 0
    for _ in range(200):
        a, b = _correlated_pair(rng, n, 0.08)
        idx = rng.choice(n, m, replace=False)
        gap, half = paired_loss_gap(a[idx], b[idx], n, 2.33)
        wins_paired += gap > half

        class P:
            def __init__(self, acc: float) -> None:
                self.accuracy_loss = 1.0 - acc
                self.agreement = acc

        _, hi_a = loss_bounds(P(a[idx].mean()), m, n, 2.33)  # type: ignore[arg-type]
        lo_b, _ = loss_bounds(P(b[idx].mean()), m, n, 2.33)  # type: ignore[arg-type]
        wins_unpaired += hi_a < lo_b
    assert wins_paired > 100 and wins_unpaired < wins_paired / 4, (wins_paired, wins_unpaired)


@pytest.mark.parametrize("gap", [0.0, -0.01])
def test_paired_test_rarely_claims_a_gap_that_is_not_there(gap: float) -> None:
    """When b does not lose more than a on the whole set, random 100-sample subsets claim it does
    at most about as often as the one-sided 99 % bound allows (z = 2.33)."""
    rng = np.random.default_rng(1)
    n, m, trials = 1000, 100, 3000
    a, b = _correlated_pair(rng, n, 0.04)
    if gap <= 0:  # make b as good as a, or better, on the whole set
        b = a.copy()
        wrong = np.flatnonzero(a)[: int(0.04 * n)]
        b[wrong] = False
        fix = np.flatnonzero(~a)[: int((0.04 - gap) * n)]
        b[fix] = True
    assert (a.mean() - b.mean()) <= gap + 1e-12
    false = sum(
        (lambda i: (lambda g, h: g > h)(*paired_loss_gap(a[i], b[i], n, 2.33)))(rng.choice(n, m, replace=False))
        for _ in range(trials)
    )
    assert false / trials <= 0.02, false / trials


def front_gap(staged: list, unstaged: list) -> float:
    """Largest loss the staged front gives up: for each unstaged front point, the loss of the
    best staged front point with no more energy, minus its own (inf when there is none)."""
    gaps = []
    for p in unstaged:
        cover = [r.accuracy_loss for r in staged if r.energy_per_inference_pj <= p.energy_per_inference_pj + 1e-9]
        gaps.append(min(cover) - p.accuracy_loss if cover else np.inf)
    return max(gaps, default=0.0)


def test_resolution_front_covers_the_unstaged_front_within_it(tmp_path: Path) -> None:
    """With a 3 pp resolution more configurations are dropped early, and every unstaged front point
    still has a staged front point with no more energy and at most 3 pp more loss. Two batches (as
    two NSGA-II generations): ε-dominators are configurations already evaluated on the full set."""
    ctx = EvalContext("digits_resnet", limit=120)
    with Journal(tmp_path / "staged.sqlite") as j:
        space = Study(ctx, j, InlineExecutor()).space(MULTS, (None, 0.5, 0.4), (0.9,), (0.9,), (0,))
        rng = np.random.default_rng(11)
        configs = [space.decode(g) for g in space.uniform_genomes()]
        configs += [space.decode(rng.integers(0, space.upper + 1)) for _ in range(16)]
        configs = list(dict.fromkeys(configs))
        full_pts = Study(ctx, j, InlineExecutor()).points(configs)
        runs = {}
        for eps in (0.0, 0.03):
            st = StagedStudy(ctx, j, InlineExecutor(), StagingSettings(first_samples=30, growth=2, resolution=eps))
            st.points(configs[:6])
            st.points(configs[6:])
            runs[eps] = (st, st.front())
    truth = pareto_front(full_pts)
    assert _front(runs[0.0][1]) == _front(truth)
    assert front_gap(runs[0.03][1], truth) <= 0.03 + 1e-12
    assert runs[0.03][0].stats.samples_run < runs[0.0][0].stats.samples_run
    assert all(p.key in {q.key for q in full_pts} for p in runs[0.03][1])


def test_resolution_is_validated_and_needs_staging() -> None:
    with pytest.raises(ExplorationError, match="resolution"):
        StagingSettings(resolution=-0.01)
    with pytest.raises(ExplorationError, match="resolution"):
        StagingSettings(resolution=1.5)


def test_deferral_settles_to_the_unstaged_front_and_defers_in_between(tmp_path: Path) -> None:
    """Three batches (as NSGA-II generations): with deferral, survivors that an estimate dominates
    outright wait; after ``resolve`` none is left, the front is the unstaged one, as with the
    eager rule, and every skipped configuration had a bound that held."""
    ctx = EvalContext("digits_resnet", limit=120)
    with Journal(tmp_path / "staged.sqlite") as j:
        space = Study(ctx, j, InlineExecutor()).space(MULTS, (None, 0.5, 0.4), (0.9,), (0.9,), (0,))
        rng = np.random.default_rng(5)
        configs = [space.decode(rng.integers(0, space.upper + 1)) for _ in range(14)]
        configs += [space.decode(g) for g in space.uniform_genomes()]
        configs = list(dict.fromkeys(configs))
        full_pts = Study(ctx, j, InlineExecutor()).points(configs)
        runs, waiting, fronts = {}, {}, {}
        for defer in (False, True):
            st = StagedStudy(ctx, j, InlineExecutor(), StagingSettings(first_samples=30, growth=2, defer=defer))
            for part in (configs[:6], configs[6:12], configs[12:]):
                st.points(part)
                waiting.setdefault(defer, []).append(st.deferred)
            st.resolve()
            assert st.deferred == 0
            runs[defer] = st
            fronts[defer] = st.front()
    truth = pareto_front(full_pts)
    assert waiting[False] == [0, 0, 0] and max(waiting[True]) > 0
    for defer, st in runs.items():
        assert _front(fronts[defer]) == _front(truth)
        for c, e in st.estimates().items():
            assert e.loss_low <= full_pts[configs.index(c)].accuracy_loss <= e.loss_high
    assert runs[True].stats.full_evaluations < runs[False].stats.full_evaluations
    assert runs[True].stats.samples_run < runs[False].stats.samples_run
