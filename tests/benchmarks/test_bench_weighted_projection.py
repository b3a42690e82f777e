"""The weighted projection's transplant and stratified estimator, against direct computation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_weighted_projection.py"
_spec = importlib.util.spec_from_file_location("bench_weighted_projection", _PATH)
assert _spec is not None and _spec.loader is not None
wp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wp)


def test_transplant_keeps_knobs_and_maps_multipliers_by_relative_depth() -> None:
    src = ["a", "b", "c"]
    dst = [f"l{j}" for j in range(7)]
    c = {
        "multipliers": {"a": "mul8u_2HH", "c": "mul8u_17C8"},
        "noc_swing_v": 0.5,
        "noc_protected_msbs": 2,
        "sram_v": {"input_buffer": 0.7},
    }
    t = wp.transplant(c, src, dst)
    # layer j of 7 takes source layer floor(3 j / 7): a a a b b c c
    assert [t.multiplier_for(x) for x in dst] == ["mul8u_2HH"] * 3 + ["exact"] * 2 + ["mul8u_17C8"] * 2
    assert t.noc_swing_v == 0.5 and t.noc_protected_msbs == 2 and dict(t.sram_v) == {"input_buffer": 0.7}


def test_stratified_estimate_equals_the_population_sum_when_every_configuration_is_sampled() -> None:
    rng = np.random.default_rng(1)
    pop = {104: [(rng.uniform(3, 6), rng.uniform(0.2, 2.0)) for _ in range(9)], 1000: [(5.0, 0.3), (6.0, 0.5)]}
    counts = {n: len(r) for n, r in pop.items()}
    total = sum(counts.values())
    est, se = wp.stratified(counts, pop, total)
    direct = wp.GOAL_CONFIGS / total * sum(f + n * p for n, rows in pop.items() for f, p in rows)
    assert est == pytest.approx(direct) and se == pytest.approx(0.0)


def test_stratified_estimate_weights_strata_by_their_share_not_by_their_sample() -> None:
    # 9 cheap configurations dropped at 104 images, 1 dear one at 1,000; one sample of each
    counts, total = {104: 9, 1000: 1}, 10
    est, _ = wp.stratified(counts, {104: [(0.0, 1.0)], 1000: [(0.0, 2.0)]}, total)
    assert est == pytest.approx(wp.GOAL_CONFIGS * (0.9 * 104 + 0.1 * 2000))
