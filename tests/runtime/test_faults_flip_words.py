"""The sampler's flips → corrupted words by compiled passes (``faults.flip_words``) equal the numpy path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.runtime import faults
from approxtvm.runtime.faults import flip_words, sampling
from approxtvm.targets.vacc.mapping import Loop
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import SPEC, _mapping

pytestmark = pytest.mark.tvm


def _plan(noc: float, w: float, x: float, mode: str) -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, 0, (("weight", w), ("input", x)), mode)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([1e-3, 0.02, 0.2]), st.sampled_from(["write", "read", "both"]), st.integers(0, 2**20))
def test_compiled_words_equal_the_numpy_words(ber: float, mode: str, seed: int) -> None:
    assert flip_words.compiled() is not None  # else every run silently takes the slower numpy path
    # K over 2 PEs, Q stepped above the PE: several fills per tensor, NoC hops, two tensors
    shape = LayerShape.conv2d(1, 4, 2, 3, 4, 3, 3, pads=(1, 1, 1, 1))
    m = _mapping(
        shape,
        dram=[Loop("Q", 2)],
        gb=[Loop("K", 2, True)],
        pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("P", 3), Loop("R", 3), Loop("S", 3)],
    )
    m.validate(SPEC)
    g = faults.tile_geometry(m, SPEC)
    plan = _plan(ber, ber, ber, mode)
    ev = sampling.event_table(plan, g)
    rng = np.random.default_rng(seed)
    calls = 3
    counts = rng.binomial(np.tile(ev.slots, calls), ber)  # flips per (call, row), rows in order
    hit = np.flatnonzero(counts)
    owner = np.repeat(hit, counts[hit])
    pos = rng.integers(0, ev.slots[owner % len(ev.slots)])  # repeats allowed: bits flipped twice cancel
    flipped = np.zeros((calls, len(ev.streams)), np.int64)
    saved_min = sampling._COMPILED_FLIPS
    sampling._COMPILED_FLIPS = 0  # the compiled passes on every size
    try:
        got = sampling._corrupted_words(ev, owner, pos, flipped, calls)
    finally:
        sampling._COMPILED_FLIPS = saved_min
    saved = flip_words.compiled
    try:
        flip_words.compiled = lambda: None  # type: ignore[assignment]
        want = sampling._corrupted_words(ev, owner, pos, flipped, calls)
    finally:
        flip_words.compiled = saved  # type: ignore[assignment]
    assert got.bounds == want.bounds
    for a, b in ((got.call, want.call), (got.is_input, want.is_input), (got.words.residency, want.words.residency),
                 (got.words.word, want.words.word), (got.words.mask, want.words.mask)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert len(got.words.word) > 0 or not len(owner)
