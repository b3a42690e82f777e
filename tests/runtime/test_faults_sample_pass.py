"""The sampler's compiled bookkeeping (``faults.sample_pass``) against its numpy path, element for element."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.runtime import faults
from approxtvm.runtime.faults import sample_pass, sampling
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import SPEC, _mapping

pytestmark = pytest.mark.tvm


def _geometries() -> list[faults.TileGeometry]:
    # K over 2 PEs and Q stepped above the PE (several fills per tensor, NoC hops); a mapper-chosen
    # conv; a dense layer (one large input tile)
    shape = LayerShape.conv2d(1, 4, 2, 3, 4, 3, 3, pads=(1, 1, 1, 1))
    m = _mapping(
        shape,
        dram=[Loop("Q", 2)],
        gb=[Loop("K", 2, True)],
        pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("P", 3), Loop("R", 3), Loop("S", 3)],
    )
    m.validate(SPEC)
    conv = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    dense = LayerShape.dense(2, 64, 40)
    return [faults.tile_geometry(g, SPEC) for g in (m, map_layer(conv, SPEC), map_layer(dense, SPEC))]


GEOMETRIES = _geometries()


def _plan(noc: float, w: float, x: float, msbs: int, mode: str) -> faults.FaultPlan:
    return faults.FaultPlan("L", 3, noc, msbs, (("weight", w), ("input", x)), mode)


def _same(a: sampling.SampleBlock, b: sampling.SampleBlock) -> None:
    assert a.bounds == b.bounds
    np.testing.assert_array_equal(a.flipped, b.flipped)
    for x, y in ((a.call, b.call), (a.is_input, b.is_input), (a.words.residency, b.words.residency),
                 (a.words.word, b.words.word), (a.words.mask, b.words.mask)):  # fmt: skip
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


BERS = st.sampled_from([0.0, 1e-4, 3e-3, 0.03, 0.3])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(range(len(GEOMETRIES))),
    BERS,
    BERS,
    BERS,
    st.integers(0, 3),  # protected MSBs on the NoC: 5-8 free bits per word
    st.sampled_from(["write", "read", "both"]),
    st.integers(0, 2**64 - 1),  # seed
    st.integers(0, 2**20),  # first block
    st.integers(1, 3),  # blocks
    st.sampled_from([0, 8, 10**6]),  # few: every row through the hash set / the default / pairwise
    st.sampled_from([0, 4096, 10**9]),  # dense: every tile sorted / the default / every tile dense
    st.sampled_from([0, 10**9]),  # bits: every larger row through the hash set / the table when it fits
)
def test_compiled_pass_equals_the_numpy_path(
    gi: int,
    noc: float,
    w: float,
    x: float,
    msbs: int,
    mode: str,
    seed: int,
    first: int,
    nb: int,
    few: int,
    dense: int,
    bits: int,
) -> None:
    g = GEOMETRIES[gi]
    plan = _plan(noc, w, x, msbs, mode)
    ev = sampling.event_table(plan, g)
    if not len(ev.slots):
        return
    blocks = range(first, first + nb)
    want = sampling._stacked_numpy(plan, ev, seed, blocks, None)
    paths = {"few": few, "dense": dense, "bits": bits}
    got = sampling._stacked_compiled(plan, ev, seed, blocks, None, **paths)
    if got is None:  # out of spare uniforms for the redraws: only at rates near 1
        assert max(noc, w, x) >= 0.3
        spare = sample_pass.many_spare_uniforms
        got = sampling._stacked_compiled(plan, ev, seed, blocks, None, spare=spare, **paths)
        assert got is not None
    _same(got, want)


def test_every_path_of_the_pass_is_reached() -> None:
    # the hypothesis test above holds each path to numpy only if its examples reach it: here, cases
    # that reach them by construction, checked from the draws themselves: repeated slots in rows of
    # at most FEW_FLIPS flips and in larger rows (redraws on both repeat paths), tile copies of more
    # than 16 flips (merge passes after the insertion sorts), two blocks, a reused generator
    g = GEOMETRIES[0]
    plan = _plan(0.02, 0.05, 0.02, 1, "both")
    ev = sampling.event_table(plan, g)
    rng = sampling.block_generator(0, plan.layer_index, 2, None)
    counts = rng.binomial(*ev.block_rows)
    hit = np.flatnonzero(counts)
    owner = np.repeat(hit, counts[hit])
    pos = sampling.uniform_slots(rng, ev.slots[owner % len(ev.slots)])
    rows_with_repeats = [r for r in hit.tolist() if len(set(pos[owner == r].tolist())) < counts[r]]
    assert any(counts[r] <= sample_pass.FEW_FLIPS for r in rows_with_repeats), rows_with_repeats
    assert any(counts[r] > sample_pass.FEW_FLIPS for r in rows_with_repeats), rows_with_repeats
    per_call = counts.reshape(ev.block_calls, len(ev.slots))
    assert max(int(per_call[:, ev.key_base == kb].sum(axis=1).max()) for kb in set(ev.key_base.tolist())) > 16
    gen = np.random.Generator(np.random.Philox(key=0))
    want = sampling._stacked_numpy(plan, ev, 0, range(2, 4), None)
    for few in (0, sample_pass.FEW_FLIPS, 10**6):
        for dense in (0, sample_pass.DENSE_WORDS_PER_FLIP, 10**9):
            for bits in (0, 10**9):
                got = sampling._stacked_compiled(plan, ev, 0, range(2, 4), gen, few=few, dense=dense, bits=bits)
                assert got is not None
                _same(got, want)


def test_a_block_out_of_spare_uniforms_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # out of spares, a block is drawn again with many more (the same samples); out of those too, by numpy
    g = GEOMETRIES[0]
    plan = _plan(0.3, 0.3, 0.3, 0, "both")  # many repeated slots: redraws needed
    ev = sampling.event_table(plan, g)
    assert sampling._stacked_compiled(plan, ev, 5, range(0, 2), None, spare=lambda n: 0) is None
    many = sampling._stacked_compiled(plan, ev, 5, range(0, 2), None, spare=sample_pass.many_spare_uniforms)
    assert many is not None
    want = sampling._stacked_numpy(plan, ev, 5, range(0, 2), None)
    _same(many, want)
    monkeypatch.setattr(sample_pass, "spare_uniforms", lambda n: 0)
    _same(sampling.sample_blocks_stacked(plan, g, seed=5, blocks=range(0, 2), events=ev), want)
    monkeypatch.setattr(sample_pass, "many_spare_uniforms", lambda n: 0)
    _same(sampling.sample_blocks_stacked(plan, g, seed=5, blocks=range(0, 2), events=ev), want)


def test_where_the_pass_does_not_build_numpy_samples_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    g = GEOMETRIES[2]
    plan = _plan(1e-3, 0.01, 0.02, 2, "write")
    ev = sampling.event_table(plan, g)
    fast = sampling.sample_blocks_stacked(plan, g, seed=9, blocks=range(4, 7), events=ev)
    monkeypatch.setattr(sample_pass, "compiled", lambda: None)
    _same(sampling.sample_blocks_stacked(plan, g, seed=9, blocks=range(4, 7), events=ev), fast)


def test_the_pass_builds_where_tvm_does() -> None:
    assert sample_pass.compiled() is not None  # else every run silently takes the slower numpy path


def test_layer_args_group_the_rows_of_one_tile_copy() -> None:
    # the tile copies are the rows' distinct word-key bases in ascending order, each holding the
    # rows (one per source) with that base; weight copies come before input copies
    plan = _plan(0.01, 0.01, 0.01, 0, "both")
    ev = sampling.event_table(plan, GEOMETRIES[0])
    a = ev.pass_args
    e = a.rows
    order = a.table[4 * e : 5 * e]
    starts = a.table[5 * e + a.streams + 1 : 5 * e + a.streams + 2 + a.groups]
    bases = np.unique(ev.key_base)
    assert a.groups == len(bases) and starts[-1] == e
    for q in range(a.groups):
        rows = order[starts[q] : starts[q + 1]]
        assert set(ev.key_base[rows].tolist()) == {bases[q]}
        assert sorted(rows.tolist()) == rows.tolist()  # sources in table order
    assert a.first_input_group == int(np.searchsorted(bases, ev.tensor_base[1]))


def test_blocks_do_not_share_the_kept_scratch() -> None:
    # the pass reuses one scratch between calls: every block it returned must own its words (a
    # later block sampled into the same scratch leaves an earlier one unchanged)
    plan = _plan(0.02, 0.05, 0.05, 0, "both")
    ev = sampling.event_table(plan, GEOMETRIES[1])
    first = sampling.sample_blocks_stacked(plan, GEOMETRIES[1], seed=3, blocks=range(0, 2), events=ev)
    copy = sampling._stacked_numpy(plan, ev, 3, range(0, 2), None)
    _same(first, copy)
    for seed in (4, 5):  # more flips than the first: the scratch is reused, then grown
        heavier = _plan(0.05, 0.1, 0.1, 0, "both")
        sampling.sample_blocks_stacked(heavier, GEOMETRIES[1], seed=seed, blocks=range(0, 3))
    _same(first, copy)
    for a in (first.words.residency, first.words.word, first.call, first.flipped):
        assert a.base is None or a.base.size <= 3 * (len(first.words) + 2)  # not a view of the scratch


def test_a_concurrent_caller_gets_its_own_scratch() -> None:
    s = sample_pass._Scratch()
    with s.lend(100) as a, s.lend(100) as b:
        assert a is not b and not np.shares_memory(a, b)
    with s.lend(10) as c:
        assert np.shares_memory(a, c)  # the kept one, lent again once free
    with s.lend(1 << 20) as d:
        assert len(d) >= 1 << 20


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(range(len(GEOMETRIES))),
    BERS,
    BERS,
    st.integers(0, 2**64 - 1),
    st.integers(1, 3),  # blocks
    st.data(),
)
def test_stacked_calls_are_the_calls_words_by_tensor(
    gi: int, w: float, x: float, seed: int, nb: int, data: st.DataObject
) -> None:
    # SampleBlock.stacked against a selection by each word's own call and tensor flags
    plan = _plan(0.01, w, x, 0, "both")
    block = sampling.sample_blocks_stacked(plan, GEOMETRIES[gi], seed=seed, blocks=range(0, nb))
    first = data.draw(st.integers(0, len(block) - 1))
    calls = data.draw(st.integers(1, len(block) - first))
    got = block.stacked(first, calls)
    inside = (block.call >= first) & (block.call < first + calls)
    for tensor, cw, call in ((False, got.weight, got.weight_call), (True, got.input, got.input_call)):
        sel = np.flatnonzero(inside & (block.is_input == tensor))
        np.testing.assert_array_equal(cw.residency, block.words.residency[sel])
        np.testing.assert_array_equal(cw.word, block.words.word[sel])
        np.testing.assert_array_equal(cw.mask, block.words.mask[sel])
        np.testing.assert_array_equal(call, block.call[sel] - first)
        assert call.dtype == np.int64
    np.testing.assert_array_equal(got.flipped, block.flipped[first : first + calls])
    # the per-call word counts read off the bounds, against counting each word's own flags
    weight_words, input_words = block.word_counts(first, calls)
    calls_of = block.call[inside] - first
    np.testing.assert_array_equal(weight_words, np.bincount(calls_of[~block.is_input[inside]], minlength=calls))
    np.testing.assert_array_equal(input_words, np.bincount(calls_of[block.is_input[inside]], minlength=calls))


@pytest.mark.parametrize("slice_words", [0, 1 << 40])
def test_stacked_calls_by_slices_and_by_one_mask_agree(slice_words: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of SampleBlock.stacked (a slice per call, or one mask over the calls' range for
    many light calls) give each call's words by tensor, in order, with their calls."""
    monkeypatch.setattr(sampling, "_SLICE_WORDS_PER_CALL", slice_words)
    plan = _plan(0.01, 0.002, 0.004, 0, "both")
    for gi, seed in ((0, 1), (1, 2), (len(GEOMETRIES) - 1, 3)):
        block = sampling.sample_blocks_stacked(plan, GEOMETRIES[gi], seed=seed, blocks=range(0, 4))
        assert len(block) >= 4
        for first, calls in ((0, len(block)), (1, len(block) - 1), (0, 2)):
            got = block.stacked(first, calls)
            for c in range(calls):
                one = block.sample(first + c)
                for cw, call, want in (
                    (got.weight, got.weight_call, one.weight),
                    (got.input, got.input_call, one.input),
                ):
                    sel = np.flatnonzero(call == c)
                    np.testing.assert_array_equal(cw.residency[sel], want.residency)
                    np.testing.assert_array_equal(cw.word[sel], want.word)
                    np.testing.assert_array_equal(cw.mask[sel], want.mask)
            assert np.all(np.diff(got.weight_call) >= 0) and np.all(np.diff(got.input_call) >= 0)
            assert got.weight_call.dtype == got.input_call.dtype == np.int64
