"""Fault injection (DESIGN §5): models, exact per-bit sampling, reuse-correlated corruption, determinism."""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import PolicyError, ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.faults.sample_reference import sample_block_reference
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.config import ApproxConfig, ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.tilewalk import TileWalk
from approxtvm.targets.vacc.workload import DIMS, LayerShape
from tests.runtime.layers import EXACT_S, EXACT_U, RAND_U, SPEC, _mapping, _program, layers


def _plan(noc: float = 0.0, w: float = 0.0, x: float = 0.0, msbs: int = 0, mode: str = "write") -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, msbs, (("weight", w), ("input", x)), mode)


# ------------------------------------------------------------------------------------------------
# Models and range checks
# ------------------------------------------------------------------------------------------------


def test_noc_ber_follows_q_function_and_design_anchors() -> None:
    for v, ber in ((0.6, 1e-9), (0.5, 2.9e-7), (0.4, 3.2e-5), (0.3, 1.4e-3)):
        assert faults.noc_ber(SPEC, v) == pytest.approx(ber, rel=0.05)
    assert faults.noc_ber(SPEC, None) == 0.0
    assert faults.noc_ber(SPEC, SPEC.noc.nominal_vdd_v) == 0.0  # full swing: no fault model
    with pytest.raises(PolicyError, match="swing"):
        faults.noc_ber(SPEC, 1.2)


def test_sram_ber_interpolates_and_rejects_voltages_outside_the_table() -> None:
    assert faults.sram_ber(SPEC, 0.6) == pytest.approx(1e-4)
    assert faults.sram_ber(SPEC, 0.65) == pytest.approx(1e-5, rel=1e-9)  # log-linear between 1e-4 and 1e-6
    assert faults.sram_ber(SPEC, 0.9) == 0.0
    with pytest.raises(PolicyError, match="BER table"):
        faults.sram_ber(SPEC, 0.45)  # config allows 0.4 V, the default table starts at 0.5 V


def test_plan_range_check_names_the_layer() -> None:
    shape = LayerShape.dense(1, 8, 8)
    prog, _ = _program(shape, map_layer(shape, SPEC), config=ApproxConfig(sram_v=(("weight_buffer", 0.45),)))
    with pytest.raises(PolicyError, match="layer L: SRAM voltage"):
        faults.plan_faults(prog.schedule, SPEC, 0)
    prog, _ = _program(shape, map_layer(shape, SPEC), config=ApproxConfig(sram_v=(("global_buffer", 0.7),)))
    plan = faults.plan_faults(prog.schedule, SPEC, 0)
    assert plan.trivial and plan.energy_only_buffers == ("global_buffer",)
    with pytest.raises(PolicyError, match="seed"):
        faults.sample_faults(_plan(noc=0.1), faults.tile_geometry(prog.schedule.mapping, SPEC), seed=-1)


# ------------------------------------------------------------------------------------------------
# Geometry: the same walk as iter_tiles; exposure equals the energy model's buffer writes
# ------------------------------------------------------------------------------------------------


def test_geometry_matches_iter_tiles_and_counted_buffer_writes() -> None:
    shape = LayerShape.conv2d(2, 32, 16, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    g = faults.tile_geometry(m, SPEC)
    tiles = list(TileWalk.of(m, "PE").tiles())
    assert len(tiles) == g.steps * g.instances
    for t in tiles:
        start = g.step_start[t.step] + g.inst_off[t.instance]
        assert {d: (int(start[i]), int(start[i] + g.ext[i])) for i, d in enumerate(DIMS)} == t.ranges
    counts = {(b, t): w for b, t, _, w in simulate_counts(m, SPEC).buffer_accesses}
    ev_plan = _plan(w=1e-3, x=1e-3)
    s = faults.sample_faults(ev_plan, g, seed=0)
    c = s.counters
    assert c["weight"]["sram"]["bits_exposed"] == 8 * counts[("weight_buffer", "weight")]
    assert c["input"]["sram"]["bits_exposed"] == 8 * counts[("input_buffer", "input")]


# ------------------------------------------------------------------------------------------------
# The fast sparse injection equals tile-by-tile execution with corrupted copies
# ------------------------------------------------------------------------------------------------


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


_KERNELS: list[faults.FaultKernels | None] = []


def _compiled() -> faults.FaultKernels | None:
    """The TVM-compiled fault kernels, built once (``None`` without TVM)."""
    if not _KERNELS:
        try:
            _KERNELS.append(faults.tvm_kernels())
        except Exception:
            _KERNELS.append(None)
    return _KERNELS[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_sparse_injection_equals_the_emulator(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, mult, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    prog, x = _program(m.shape, m, mult, seed=seed % 1000)
    g = faults.tile_geometry(m, SPEC)
    plan = _plan(noc=0.02, w=0.03, x=0.03, msbs=seed % 3, mode=("write", "read", "both")[seed % 3])
    sample = faults.sample_faults(plan, g, seed=seed)
    clean = accumulate(x, prog)
    fast = faults.inject(x, prog, clean, sample, g)
    ref = emulate(x, prog, corruption=_corruption(sample)).acc
    np.testing.assert_array_equal(fast, ref)
    if _compiled() is not None:
        np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g, kernels=_compiled()), ref)
    if len(sample.weight) or len(sample.input):
        np.testing.assert_array_equal(
            faults.products_delta(x, prog, g, sample).reshape(fast.shape), fast.astype(np.int64) - clean
        )


@pytest.mark.tvm
def test_compiled_kernels_equal_numpy_kernels() -> None:
    kernels = faults.tvm_kernels()
    for seed, shape in enumerate(
        (
            LayerShape.conv2d(2, 32, 16, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1)),
            LayerShape.conv2d(1, 24, 8, 7, 7, 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2)),
            LayerShape.dense(3, 40, 64),
        )
    ):
        prog, x = _program(shape, map_layer(shape, SPEC), RAND_U, seed=seed)
        g = faults.tile_geometry(prog.schedule.mapping, SPEC)
        s = faults.sample_faults(_plan(noc=0.01, w=0.02, x=0.02), g, seed=seed)
        clean = accumulate(x, prog)
        np.testing.assert_array_equal(
            faults.inject(x, prog, clean, s, g, kernels=kernels), faults.inject(x, prog, clean, s, g)
        )
        for t in ("weight", "input"):  # a single corrupted word (1-element arrays through DLPack)
            cw = s.of(t)
            one = faults.CorruptedWords(cw.residency[3:4], cw.word[3:4], cw.mask[3:4])
            single = (
                faults.FaultSample(one, faults.CorruptedWords.empty())
                if t == "weight"
                else faults.FaultSample(faults.CorruptedWords.empty(), one)
            )
            np.testing.assert_array_equal(
                faults.inject(x, prog, clean, single, g, kernels=kernels), faults.inject(x, prog, clean, single, g)
            )


@pytest.mark.tvm
def test_compiled_input_kernel_multiplies_only_for_the_unsigned_product_table() -> None:
    """The compiled input kernel multiplies instead of looking up only where the table is ``a · b``
    of the unsigned bytes; then its results equal the numpy (lookup) kernels."""
    from approxtvm.runtime.faults.delta_tvm import kernel_args

    kernels = faults.tvm_kernels()
    shape = LayerShape.conv2d(2, 32, 16, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1))
    for mult, plain in ((EXACT_U, 1), (EXACT_S, 0), (RAND_U, 0)):
        prog, x = _program(shape, map_layer(shape, SPEC), mult, seed=3)
        g = faults.tile_geometry(prog.schedule.mapping, SPEC)
        assert kernel_args(prog, g, faults.layer_arrays(prog, g)).plain_product == plain
        s = faults.sample_faults(_plan(noc=0.01, w=0.02, x=0.05), g, seed=4)
        clean = accumulate(x, prog)
        np.testing.assert_array_equal(
            faults.inject(x, prog, clean, s, g, kernels=kernels), faults.inject(x, prog, clean, s, g)
        )


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(2, 32, 16, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1)),
        LayerShape.conv2d(1, 24, 12, 7, 7, 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2), groups=4),
        LayerShape.dense(3, 40, 64),
    ],
)
def test_stacked_calls_equal_the_emulator_call_by_call(shape: LayerShape) -> None:
    """Several layer calls stacked along N, injected at once (one kernel call: every word carries
    its call), equal the emulator run on each call with that call's corrupted copies."""
    check_stacked_calls(map_layer(shape, SPEC))


def check_stacked_calls(mapping: Mapping, calls: int = 3) -> None:
    """:func:`faults.inject_calls` on ``calls`` stacked calls of a layer mapped by ``mapping``
    (numpy and compiled kernels) against the emulator, call by call."""
    prog, x0 = _program(mapping.shape, mapping, RAND_U, seed=6)
    g = faults.tile_geometry(prog.schedule.mapping, SPEC)
    rng = np.random.default_rng(1)
    xs = [x0] + [rng.integers(0, 256, x0.shape).astype(x0.dtype) for _ in range(calls - 1)]
    plan = _plan(noc=0.01, w=0.02, x=0.02)
    samples = [faults.sample_faults(plan, g, seed=3, call=c) for c in range(calls)]
    assert all(len(s.weight) and len(s.input) for s in samples)
    ref = np.concatenate([emulate(x, prog, corruption=_corruption(s)).acc for x, s in zip(xs, samples, strict=True)])
    x = np.concatenate(xs)
    clean = np.concatenate([accumulate(xc, prog) for xc in xs])
    la = faults.layer_arrays(prog, g)
    for kernels in (faults.NUMPY_KERNELS, _compiled()):
        if kernels is None:
            continue
        acc = clean.copy()
        got = faults.inject_calls(x, prog, acc, samples, g, la, kernels, kernels.prepare(prog, g, la))
        assert got is acc
        np.testing.assert_array_equal(got, ref, err_msg=kernels.name)


def test_ber_zero_is_bit_identical_and_leaves_inputs_untouched() -> None:
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    prog, x = _program(shape, map_layer(shape, SPEC), RAND_U)
    g = faults.tile_geometry(prog.schedule.mapping, SPEC)
    s = faults.sample_faults(_plan(), g, seed=3)
    assert not len(s.weight) and not len(s.input)
    clean = accumulate(x, prog)
    before = clean.copy()
    np.testing.assert_array_equal(faults.inject(x, prog, clean, s, g), before)
    hit = faults.sample_faults(_plan(noc=0.05), g, seed=3)
    faults.inject(x, prog, clean, hit, g)
    np.testing.assert_array_equal(clean, before)  # inject never mutates its accumulators


# ------------------------------------------------------------------------------------------------
# Reuse correlation on a crafted schedule (hand-computed expectation)
# ------------------------------------------------------------------------------------------------


def test_corrupted_weight_persists_for_its_residency_and_refill_is_fresh() -> None:
    # y[k, q] = Σ M(x[q], w[k]): 1×1 conv, K = 2, Q = 4. Loops: DRAM Q:2 (outer), K:2; PE Q:2.
    # Steps above the PE: (q 0–1, k 0), (q 0–1, k 1), (q 2–3, k 0), (q 2–3, k 1): the weight of
    # k = 0 is filled at step 0, evicted at step 1 and refilled at step 2.
    shape = LayerShape.conv2d(1, 2, 1, 1, 4, 1, 1)
    m = _mapping(shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("Q", 2)])
    m.validate(SPEC)
    prog, _ = _program(shape, m, zx=1, zw=2)
    x = np.array([[[[1, 2, 3, 4]]]], np.uint8)
    w = np.array([3, 5], np.uint8).reshape(2, 1, 1, 1)
    prog = LayerProgram(prog.schedule, w, None, EXACT_U, path="exact")
    g = faults.tile_geometry(m, SPEC)
    assert g.fills["weight"].tolist() == [0, 1, 2, 3] and g.instances == 1
    # the weight buffer's copy of w[0] loses its MSB during fill 0: 3 -> 131
    sample = faults.FaultSample(
        faults.CorruptedWords(np.array([0]), np.array([0]), np.array([0x80], np.uint8)), faults.CorruptedWords.empty()
    )
    got = faults.inject(x, prog, accumulate(x, prog), sample, g)
    np.testing.assert_array_equal(emulate(x, prog, _corruption(sample)).acc, got)
    # acc = M(x, w) - z_w x - z_x w + z_x z_w, corrections from the fault-free operands
    expected = np.array(
        [
            [
                [
                    [
                        131 * 1 - 2 * 1 - 3 + 2,
                        131 * 2 - 2 * 2 - 3 + 2,  # residency 0: wrong
                        3 * 3 - 2 * 3 - 3 + 2,
                        3 * 4 - 2 * 4 - 3 + 2,
                    ]
                ],  # after refill: fresh
                [[5 * q - 2 * q - 5 + 2 for q in (1, 2, 3, 4)]],
            ]
        ],
        np.int32,
    )
    np.testing.assert_array_equal(got, expected)
    # the same corrupted word in the refill (fill 2) hits the other two outputs only
    sample2 = faults.FaultSample(
        faults.CorruptedWords(np.array([2]), np.array([0]), np.array([0x80], np.uint8)), faults.CorruptedWords.empty()
    )
    got2 = faults.inject(x, prog, accumulate(x, prog), sample2, g)
    np.testing.assert_array_equal(
        got2[0, 0, 0], [3 * 1 - 2 - 3 + 2, 3 * 2 - 4 - 3 + 2, 131 * 3 - 6 - 3 + 2, 131 * 4 - 8 - 3 + 2]
    )


def test_input_copies_are_corrupted_per_receiving_pe() -> None:
    # K split over 2 PEs; both receive the same input tile (multicast) but store their own copies
    shape = LayerShape.conv2d(1, 4, 1, 1, 2, 1, 1)
    m = _mapping(shape, gb=[Loop("K", 2, True)], pe=[Loop("K", 2), Loop("Q", 2)])
    m.validate(SPEC)
    prog, _ = _program(shape, m, zx=0, zw=0)
    x = np.array([[[[10, 20]]]], np.uint8)
    w = np.array([1, 2, 3, 4], np.uint8).reshape(4, 1, 1, 1)
    prog = LayerProgram(prog.schedule, w, None, EXACT_U, path="exact")
    g = faults.tile_geometry(m, SPEC)
    assert g.instances == 2 and g.hops.tolist() == [0, 1]
    # PE 1's copy of x[q=1] flips bit 0 (20 -> 21); PE 0 (k = 0, 1) is untouched
    sample = faults.FaultSample(
        faults.CorruptedWords.empty(), faults.CorruptedWords(np.array([1]), np.array([1]), np.array([1], np.uint8))
    )
    got = faults.inject(x, prog, accumulate(x, prog), sample, g)
    np.testing.assert_array_equal(got[0, :, 0], [[10, 20], [20, 40], [30, 63], [40, 84]])
    np.testing.assert_array_equal(emulate(x, prog, _corruption(sample)).acc, got)


# ------------------------------------------------------------------------------------------------
# Sampling statistics
# ------------------------------------------------------------------------------------------------


def test_flip_counts_match_ber_times_exposure_within_4_sigma() -> None:
    shape = LayerShape.conv2d(1, 32, 16, 8, 8, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    p_noc, p_w, p_x = 2e-4, 5e-4, 1e-3
    plan = _plan(noc=p_noc, w=p_w, x=p_x, msbs=2)
    tot: dict[tuple[str, str], list[int]] = {}
    for call in range(300):
        s = faults.sample_faults(plan, g, seed=11, call=call)
        for t, c in s.counters.items():
            for src in ("noc", "sram"):
                e = tot.setdefault((t, src), [0, 0])
                e[0] += c[src]["bits_exposed"]
                e[1] += c[src]["bits_flipped"]
    for (t, src), (exposed, flipped) in tot.items():
        p = p_noc if src == "noc" else (p_w if t == "weight" else p_x)
        mean = exposed * p
        assert abs(flipped - mean) <= 4 * math.sqrt(mean * (1 - p)), (t, src, flipped, mean)
    # positions uniform over the exposed bits: each free bit lane gets its share (4σ)
    for plan, free in ((_plan(noc=1e-3, msbs=2), 6), (_plan(w=1e-3, x=1e-3), 8)):
        bits = np.zeros(8, np.int64)
        for call in range(100):
            s = faults.sample_faults(plan, g, seed=12, call=call)
            m = np.concatenate([s.weight.mask, s.input.mask])
            bits += np.unpackbits(m[:, None], axis=1, bitorder="little").sum(axis=0).astype(np.int64)
        n = bits.sum()
        assert all(abs(b - n / free) <= 4 * math.sqrt(n / free) for b in bits[:free]), bits
        assert not bits[free:].any()


def test_noc_flips_never_touch_protected_msbs() -> None:
    shape = LayerShape.conv2d(1, 32, 16, 8, 8, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    for msbs in (1, 3, 7):
        union = 0
        for call in range(20):
            s = faults.sample_faults(_plan(noc=5e-3, msbs=msbs), g, seed=5, call=call)
            assert len(s.weight) and len(s.input)
            union |= int(np.bitwise_or.reduce(np.concatenate([s.weight.mask, s.input.mask])))
        assert union == (1 << (8 - msbs)) - 1  # every free bit is hit, no protected one
    s = faults.sample_faults(_plan(noc=0.5, msbs=8), g, seed=5)
    assert not len(s.weight) and not len(s.input)


def test_seed_and_call_key_the_faults() -> None:
    shape = LayerShape.conv2d(1, 32, 16, 8, 8, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    plan = _plan(noc=1e-3, w=1e-3, x=1e-3)

    def key(seed: int, call: int, layer: int = 0) -> bytes:
        s = faults.sample_faults(replace(plan, layer_index=layer), g, seed=seed, call=call)
        return b"".join(a.tobytes() for cw in (s.weight, s.input) for a in (cw.residency, cw.word, cw.mask))

    assert key(1, 0) == key(1, 0)
    assert len({key(1, 0), key(2, 0), key(1, 1), key(1, 0, layer=1)}) == 4


def test_flips_of_one_residency_never_repeat_a_bit() -> None:
    # SRAM write faults only: one row per residency, so flips are drawn without replacement inside
    # each stored tile. At a BER where drawing with replacement would repeat bits in most tiles,
    # every flipped bit must still be a distinct set bit of the XOR masks
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    for w, x in ((0.3, 0.0), (0.0, 0.4), (0.25, 0.35)):
        for call in range(6):
            s = faults.sample_faults(_plan(w=w, x=x), g, seed=21, call=call)
            for t in ("weight", "input"):
                set_bits = int(np.unpackbits(s.of(t).mask).sum())
                ber = w if t == "weight" else x
                assert set_bits == s.counters[t]["bits_flipped"] and (set_bits > 0) == (ber > 0)


def test_blocks_sampled_together_equal_blocks_sampled_alone() -> None:
    # sample_blocks turns the flips of several blocks into words in one pass, redrawing repeated
    # positions inside each block as it goes. At BERs where repeats are common and rare, every
    # call's words, masks and counts equal those of each block drawn alone, step by step
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    plans = (  # no block redrawn; 3 of 6 (measured); every one
        _plan(noc=1e-3, w=1e-3, x=1e-3),
        _plan(w=0.01, x=0.004),
        _plan(noc=0.05, w=0.02, x=0.1, msbs=1, mode="both"),
    )
    for plan in plans:
        ev = faults.sampling.event_table(plan, g)
        together = faults.sampling.sample_blocks(plan, g, seed=5, blocks=range(3, 9), events=ev)
        alone = [s for b in range(3, 9) for s in sample_block_reference(plan, ev, 5, b)]
        assert len(together) == len(alone) == 6 * ev.block_calls
        for a, b in zip(alone, together, strict=True):
            assert np.array_equal(a.flipped, b.flipped)
            for t in ("weight", "input"):
                for f in ("residency", "word", "mask"):
                    assert np.array_equal(getattr(a.of(t), f), getattr(b.of(t), f)), (t, f)


def test_a_reused_generator_draws_what_a_fresh_one_draws() -> None:
    # the session resets one Philox generator per block instead of building one: same stream for
    # every key and counter (a block index past 2^64, a seed past 2^63, a BER high enough that
    # positions repeat and must be redrawn), and nothing carried over from the previous block
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    g = faults.tile_geometry(map_layer(shape, SPEC), SPEC)
    gen = np.random.Generator(np.random.Philox(key=0))
    gen.random(3)  # a generator in the middle of a buffer
    for plan in (_plan(noc=1e-3, w=1e-3, x=1e-3), _plan(noc=0.2, w=0.3, x=0.05, msbs=2, mode="both")):
        ev = faults.sampling.event_table(plan, g)
        for seed, block, layer in ((0, 0, 0), (7, 3, 2), (2**63 + 5, 2**70 + 1, 5)):
            pl = replace(plan, layer_index=layer)
            fresh = faults.sample_block(pl, g, seed=seed, block=block, events=ev)
            reused = faults.sample_block(pl, g, seed=seed, block=block, events=ev, generator=gen)
            assert len(fresh) == len(reused) == ev.block_calls
            for a, b in zip(fresh, reused, strict=True):
                assert np.array_equal(a.flipped, b.flipped)
                for t in ("weight", "input"):
                    for f in ("residency", "word", "mask"):
                        assert np.array_equal(getattr(a.of(t), f), getattr(b.of(t), f)), (seed, block, t, f)


# ------------------------------------------------------------------------------------------------
# Energy
# ------------------------------------------------------------------------------------------------


def _energy(config: ApproxConfig) -> dict[str, float]:
    from approxtvm.runtime.energy import layer_energy

    shape = LayerShape.conv2d(1, 64, 64, 14, 14, 3, 3, pads=(1, 1, 1, 1))
    prog, _ = _program(shape, map_layer(shape, SPEC), config=config)
    return layer_energy(prog, SPEC).by_component()


def test_energy_scales_only_by_voltage_and_is_monotone() -> None:
    nominal = _energy(ApproxConfig())
    half = _energy(ApproxConfig(noc_swing_v=0.5))
    assert half["noc_link"] == pytest.approx(nominal["noc_link"] * 0.5 / 0.9)
    assert {k: v for k, v in half.items() if k != "noc_link"} == {k: v for k, v in nominal.items() if k != "noc_link"}
    prot = _energy(ApproxConfig(noc_swing_v=0.5, noc_protected_msbs=2))
    assert prot["noc_link"] == pytest.approx(nominal["noc_link"] * (2 / 8 + 6 / 8 * 0.5 / 0.9))
    links = [_energy(ApproxConfig(noc_swing_v=v))["noc_link"] for v in (0.3, 0.4, 0.5, 0.6, 0.7, 0.9)]
    assert links == sorted(links) and links[0] < links[-1]
    for buf in ("input_buffer", "weight_buffer"):
        es = [_energy(ApproxConfig(sram_v=((buf, v),))) for v in (0.5, 0.6, 0.7, 0.8, 0.9)]
        assert [e[buf] for e in es] == sorted(e[buf] for e in es)
        assert es[1][buf] == pytest.approx(nominal[buf] * (0.6 / 0.9) ** 2)
        assert all(e["dram"] == nominal["dram"] for e in es)


# ------------------------------------------------------------------------------------------------
# Whole model: fast path untouched, counters, determinism across processes
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from approxtvm.models import load_dataset

    tr, te = load_dataset("digits:train"), load_dataset("digits:test")
    return tr.x[:128], te.x, te.y


def _compile(policy: ApproxPolicy, calib: np.ndarray, batch_size: int = 60):  # type: ignore[no-untyped-def]
    import approxtvm as at
    from approxtvm.models import get_model

    return at.compile_onnx(get_model("digits_cnn"), policy, calibration=calib, batch_size=batch_size)


def _run_config(args: tuple[float, float, int, np.ndarray, np.ndarray]) -> tuple[bytes, dict]:
    swing, volts, seed, calib, x = args
    model = _compile(
        ApproxPolicy.uniform(noc_swing_v=swing, sram_v={"input_buffer": volts, "weight_buffer": volts}), calib
    )
    res = model.run(x, seed=seed)
    return res.outputs["logits"].tobytes(), res.counters["faults"]


@pytest.mark.tvm
def test_model_runs_are_deterministic_across_processes(digits) -> None:  # type: ignore[no-untyped-def]
    calib, x, _ = digits
    x = x[:120]
    args = (0.4, 0.6, 3, calib, x)
    local = _run_config(args)
    with mp.get_context("spawn").Pool(2) as pool:
        remote = pool.map(_run_config, [args, args])
    assert remote[0] == local and remote[1] == local
    other = _run_config((0.4, 0.6, 4, calib, x))
    assert other[0] != local[0]
    c = local[1]["conv1"]["input"]
    assert c["bits_flipped"] > 0 and c["words_corrupted"] > 0 and c["bits_exposed"] > c["bits_flipped"]


@pytest.mark.tvm
def test_model_nominal_or_ber_zero_is_exact_and_low_ber_keeps_accuracy(digits) -> None:  # type: ignore[no-untyped-def]
    calib, x, y = digits
    exact = _compile(ApproxPolicy.exact(), calib)
    ref = exact.run(x)
    assert "faults" not in ref.counters
    nominal = _compile(ApproxPolicy.uniform(noc_swing_v=0.9, sram_v={"input_buffer": 0.9}), calib).run(x, seed=1)
    assert nominal.outputs["logits"].tobytes() == ref.outputs["logits"].tobytes()
    # scaled energy without faults: bit-identical outputs, energy changed only by the voltages
    scaled = _compile(ApproxPolicy.uniform(noc_swing_v=0.5, sram_v={"input_buffer": 0.6, "weight_buffer": 0.7}), calib)
    scaled.set_fault_options(faults.FaultOptions(ber_scale=0.0))
    r0 = scaled.run(x, seed=1)
    assert r0.outputs["logits"].tobytes() == ref.outputs["logits"].tobytes()
    e0, e1 = ref.energy.by_component(), r0.energy.by_component()
    assert e1["noc_link"] == pytest.approx(e0["noc_link"] * 0.5 / 0.9)
    assert e1["input_buffer"] == pytest.approx(e0["input_buffer"] * (0.6 / 0.9) ** 2)
    assert e1["weight_buffer"] == pytest.approx(e0["weight_buffer"] * (0.7 / 0.9) ** 2)
    assert all(e1[k] == e0[k] for k in e0 if k not in ("noc_link", "input_buffer", "weight_buffer"))
    # BER < 1e-9 (swing 0.65 V): the exact accuracy
    low = _compile(ApproxPolicy.uniform(noc_swing_v=0.65), calib).run(x, seed=1)
    assert faults.noc_ber(SPEC, 0.65) < 1e-9
    pred = low.outputs["logits"].argmax(1)
    assert np.mean(pred == y) == np.mean(ref.outputs["logits"].argmax(1) == y)
    assert sum(c["weight"]["bits_exposed"] + c["input"]["bits_exposed"] for c in low.counters["faults"].values()) > 0


def test_faults_on_a_spec_without_global_buffer_equal_the_emulator() -> None:
    # same code, another hierarchy: PEs fed straight from DRAM over the NoC
    d = SPEC.to_dict()
    del d["memories"]["global_buffer"]
    spec = AcceleratorSpec.from_dict({**d, "name": "no_gb"})
    shape = LayerShape.conv2d(2, 32, 8, 7, 7, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, spec)
    prog, x = _program(shape, m, RAND_U, seed=5)
    plan = faults.plan_faults(prog.schedule, spec, 0)
    assert plan.trivial  # no knob set in the schedule's config: nothing to inject
    g = faults.tile_geometry(m, spec)
    sample = faults.sample_faults(_plan(noc=0.01, w=0.01, x=0.01), g, seed=2)
    assert len(sample.weight) and len(sample.input)
    clean = accumulate(x, prog)
    np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g), emulate(x, prog, _corruption(sample)).acc)


def test_faults_on_a_spec_with_an_extra_level_equal_the_emulator() -> None:
    # same code, a fifth level: an L2 above the global buffer that also keeps the weights
    d = SPEC.to_dict()
    l2 = {"capacity_bytes": 262144, "width_bits": 256, "read_energy_pj": 80.0, "write_energy_pj": 80.0}
    mems = {**d["memories"], "l2_buffer": {**l2, "tensors": ["weight", "input", "output"], "level": "L2"}}
    spec = AcceleratorSpec.from_dict({**d, "memories": mems, "name": "with_l2"})
    shape = LayerShape.conv2d(2, 32, 8, 7, 7, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, spec)
    assert [n.level for n in m.levels] == ["DRAM", "L2", "GlobalBuffer", "PE", "Register"]
    prog, x = _program(shape, m, RAND_U, seed=5)
    g = faults.tile_geometry(m, spec)
    sample = faults.sample_faults(_plan(noc=0.01, w=0.01, x=0.01), g, seed=2)
    assert len(sample.weight) and len(sample.input)
    clean = accumulate(x, prog)
    np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g), emulate(x, prog, _corruption(sample)).acc)
