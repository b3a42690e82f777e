"""The compiled binomial flip counts (``faults.sample_counts``) against numpy's ``Generator.binomial``:
the same counts from the same stream, the generator's next double where numpy leaves it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.runtime import faults
from approxtvm.runtime.faults import sample_counts, sampling
from approxtvm.runtime.faults.sample_counts import draw_counts, inversion_rows
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import SPEC

pytestmark = pytest.mark.tvm

_P = [1e-4, 1.0001e-4, 3e-5, 1e-3, 0.01, 0.2, 0.5]


def _blocks(seed: int, n: np.ndarray, p: np.ndarray, calls: int, blocks: int, per: int | None = None) -> tuple:
    """Every block's doubles end to end and their bounds, and numpy's counts and next double per block."""
    rows = inversion_rows(n, p)
    per = per if per is not None else rows.doubles(calls)
    doubles = np.empty(blocks * per)
    want, after = [], []
    for b in range(blocks):
        g = np.random.Generator(np.random.Philox(key=seed, counter=b << 128))
        g.random(out=doubles[b * per : (b + 1) * per])
        ref = np.random.Generator(np.random.Philox(key=seed, counter=b << 128))
        want.append(ref.binomial(np.tile(n, calls), np.tile(p, calls)))
        after.append(ref.random())
    bounds = np.stack([np.arange(blocks) * per, np.arange(1, blocks + 1) * per], axis=1)
    return rows, doubles, bounds, np.concatenate(want), after


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32),
    st.lists(st.tuples(st.integers(1, 400_000), st.sampled_from(_P)), min_size=1, max_size=200),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_counts_and_the_next_double_are_numpys(
    seed: int, rows_np: list[tuple[int, float]], calls: int, blocks: int
) -> None:
    n = np.array([a for a, b in rows_np if a * b <= 30] or [1], np.int64)
    p = np.array([b for a, b in rows_np if a * b <= 30] or [0.5], np.float64)
    rows, doubles, bounds, want, after = _blocks(seed, n, p, calls, blocks)
    assert rows.applies
    got = draw_counts(rows, calls, doubles, bounds)
    assert got is not None
    counts, first = got
    np.testing.assert_array_equal(counts, want)
    assert [doubles[f] for f in first.tolist()] == after  # the flips' first uniform: numpy's next double


def test_rows_with_many_flips_reach_the_loops_far_steps() -> None:
    """Rows at ``n · p`` up to 30 (the loop's longest runs) and at ``p = 0.5``, over many seeds."""
    n = np.array([60, 300, 3000, 300_000, 59, 61], np.int64)
    p = np.array([0.5, 0.1, 0.01, 1e-4, 0.5, 0.49], np.float64)
    for seed in range(200):
        rows, doubles, bounds, want, after = _blocks(seed, n, p, calls=3, blocks=2)
        counts, first = draw_counts(rows, 3, doubles, bounds)  # type: ignore[misc]
        np.testing.assert_array_equal(counts, want)
        assert [doubles[f] for f in first.tolist()] == after


def _numpy_loop(u: list[float], rows: sample_counts.InversionRows, bound: np.ndarray) -> tuple[list[int], int]:
    """numpy's inversion loop in Python with the given bounds (restarts included): counts, doubles read."""
    k, out = 0, []
    for r in range(len(rows.n)):
        n, p, q, qn = int(rows.n[r]), float(rows.p[r]), float(rows.q[r]), float(rows.qn[r])
        x, px, uu = 0, qn, u[k]
        k += 1
        while uu > px:
            x += 1
            if x > bound[r]:
                x, px, uu = 0, qn, u[k]
                k += 1
            else:
                uu -= px
                px = ((n - x + 1) * p * px) / (x * q)
        out.append(x)
    return out, k


def test_restarts_draw_a_fresh_double() -> None:
    """Bounds cut low (numpy restarts a row whose count passes its bound): the loop and the doubles
    it reads follow numpy's loop, checked against that loop with the real bounds on numpy's draws."""
    n = np.array([50, 200, 5000, 80], np.int64)
    p = np.array([0.2, 0.05, 0.002, 0.3], np.float64)
    rows = inversion_rows(n, p)
    u = np.random.default_rng(3).random(4096)
    real, _ = _numpy_loop(u.tolist(), rows, rows.bound)
    g = np.random.Generator(np.random.Philox(key=9))
    mine = np.random.Generator(np.random.Philox(key=9))
    assert _numpy_loop(mine.random(64).tolist(), rows, rows.bound)[0] == g.binomial(n, p).tolist()
    low = sample_counts.InversionRows(rows.n, rows.p, rows.q, rows.qn, np.array([8, 7, 9, 20]), True, rows.expected)
    want, used = _numpy_loop(u.tolist(), low, low.bound)
    assert used > len(n) and want != real  # some row restarted
    counts, first = draw_counts(low, 1, u, np.array([[0, len(u)]]))  # type: ignore[misc]
    assert counts.tolist() == want and first.tolist() == [used]


def test_a_block_out_of_doubles_says_so_and_other_branches_keep_numpy() -> None:
    n, p = np.array([3000, 3000], np.int64), np.array([0.01, 0.01])
    rows, doubles, bounds, _, _ = _blocks(1, n, p, calls=2, blocks=2, per=3)  # 4 rows, 3 doubles a block
    assert draw_counts(rows, 2, doubles, bounds) is None
    assert not inversion_rows(np.array([3001]), np.array([0.01])).applies  # n · p > 30: numpy's BTPE
    assert not inversion_rows(np.array([10]), np.array([0.6])).applies  # p > 0.5


def test_the_sampler_gives_the_same_samples_with_the_compiled_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole blocks: the compiled counts against numpy's binomials (the kernel switched off)."""
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    plan = faults.FaultPlan("L", 2, 2e-4, 1, (("weight", 4e-4), ("input", 3e-4)), "both")
    ev = sampling.event_table(plan, g)
    assert ev.inversion.applies
    calls: list[int] = []
    real = sampling._stacked_doubles
    monkeypatch.setattr(sampling, "_stacked_doubles", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = [sampling.sample_blocks_stacked(plan, g, seed=s, blocks=range(s % 3, s % 3 + 2)) for s in range(6)]
    assert len(calls) == 6
    monkeypatch.setattr(sample_counts, "kernel", lambda: None)
    slow = [sampling.sample_blocks_stacked(plan, g, seed=s, blocks=range(s % 3, s % 3 + 2)) for s in range(6)]
    assert len(calls) == 6
    for a, b in zip(fast, slow, strict=True):
        assert a.bounds == b.bounds
        np.testing.assert_array_equal(a.flipped, b.flipped)
        for f in ("residency", "word", "mask"):
            np.testing.assert_array_equal(getattr(a.words, f), getattr(b.words, f))
    assert sum(len(a.words) for a in fast) > 0
