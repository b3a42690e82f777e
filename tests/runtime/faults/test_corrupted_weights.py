"""Weight faults folded into the exact kernel (``faults.corrupted_weights``) against the emulator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.exact_layer import ExactLayer, RowsAccumulators, s8_gemm_exact
from approxtvm.runtime.executor import accumulate
from approxtvm.runtime.faults import delta_rows
from approxtvm.runtime.faults.corrupted_weights import channel_bias, channel_correction, weight_offsets
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_U, SPEC, _mapping, _program, layers, uneven_layers

_GEMM = pytest.mark.skipif(not s8_gemm_exact(), reason="this CPU's u8 x s8 GEMM saturates (no VNNI): the path is off")


def _plan(noc: float, w: float, x: float, mode: str = "write") -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, 0, (("weight", w), ("input", x)), mode)


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


def _check(
    m: Mapping, seed: int, plan: faults.FaultPlan, zx: int = 3, zw: int = 7, spec: AcceleratorSpec = SPEC
) -> bool:
    """The corrupted-weight path against the emulator and the sparse deltas on one layer call;
    ``False`` when the rule rejects the mapping (the emulator then shows a weight stored twice)."""
    prog, x = _program(m.shape, m, EXACT_U, seed=seed % 1000, zx=zx, zw=zw)
    g = faults.tile_geometry(m, spec)
    run = emulate(x, prog)
    once = faults.weights_stored_once(g, m)
    # independent oracle: the emulator's own walk counts the words it writes into the weight buffers;
    # every weight is used, so "each stored once" is "as many words written as there are weights"
    assert once == (run.words_filled["weight"] == prog.weight.size)
    if not once:
        return False
    sample = faults.sample_faults(plan, g, seed=seed)
    ref = emulate(x, prog, corruption=_corruption(sample)).acc
    exact = ExactLayer(prog.schedule, prog.weight)
    rows = x.reshape(-1, m.shape.c) if m.shape.op == "dense" else x
    la = faults.layer_arrays(prog, g)
    for kernels in (faults.NUMPY_KERNELS, faults.compiled_kernels()):
        prep = kernels.prepare(prog, g, la)
        got = faults.inject_with_weights(x, rows, prog, exact, sample, g, la, kernels, prep, weight_offsets(g, m))
        np.testing.assert_array_equal(got, ref, err_msg=kernels.name)
    np.testing.assert_array_equal(faults.inject(x, prog, accumulate(x, prog), sample, g), ref)
    return True


@_GEMM
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(kinds=("conv2d", "dense")))
def test_corrupted_weights_equal_the_emulator(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    plan = _plan(noc=0.02, w=0.03, x=0.03, mode=("write", "read", "both")[seed % 3])
    _check(m, seed, plan, zx=seed % 256, zw=(seed >> 8) % 256)


@_GEMM
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(kinds=("conv2d", "dense")))
def test_corrupted_weights_equal_the_emulator_on_uneven_mappings(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    _check(m, seed, _plan(noc=0.02, w=0.03, x=0.03))


@_GEMM
def test_the_rule_accepts_weights_split_over_pes_and_rejects_multicast_and_refill() -> None:
    # 1×1 conv, K = 4, Q = 4 (pad 1 so padded taps go through the multiplier)
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    plan = _plan(noc=0.05, w=0.05, x=0.05)
    # K split over 2 PEs, each PE loads its weights once: accepted
    split = _mapping(shape, gb=[Loop("K", 2, True)], pe=[Loop("K", 2), Loop("Q", 4), Loop("C", 2), Loop("S", 3)])
    split.validate(SPEC)
    assert _check(split, 1, plan)
    # Q split over 2 PEs (a spec that allows it): both hold every weight (multicast copies,
    # corrupted independently): rejected
    d = SPEC.to_dict()
    spec = AcceleratorSpec.from_dict({**d, "pe_array": {**d["pe_array"], "pe_spatial_dims": ["K", "Q"]}, "name": "kq"})
    multicast = _mapping(shape, gb=[Loop("Q", 2, True)], pe=[Loop("K", 4), Loop("Q", 2), Loop("C", 2), Loop("S", 3)])
    multicast.validate(spec)
    assert not _check(multicast, 1, plan, spec=spec)
    # Q outside K above the PE: every weight tile is loaded again for the second half of Q: rejected
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    refill.validate(SPEC)
    assert not _check(refill, 1, plan)
    # K outside Q: each weight tile stays for both halves of Q (one fill per tile): accepted
    kept = _mapping(
        shape, dram=[Loop("K", 2), Loop("Q", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    kept.validate(SPEC)
    assert _check(kept, 1, plan)


@_GEMM
def test_a_compiled_model_uses_the_path_and_keeps_its_faults() -> None:
    """Through a session (ResNet-like mapped layer): the same accumulators and counters as the
    sparse deltas on the fault-free kernel, with the kernel called on corrupted weights."""
    shape = LayerShape.conv2d(1, 32, 16, 14, 14, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, x = _program(shape, m, EXACT_U, seed=4)
    g = faults.tile_geometry(m, SPEC)
    if not faults.weights_stored_once(g, m):
        pytest.skip("the mapper chose a mapping that stores a weight twice")
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.001, w=0.002, x=0.002)
    exact = ExactLayer(prog.schedule, prog.weight)
    exact._gemm_extra_s = 0.0  # as if the GEMM were the layer's fastest formulation (timed, else)
    calls = []
    with_weights = exact.with_weights
    exact.with_weights = lambda *a, **k: calls.append(1) or with_weights(*a, **k)  # type: ignore[method-assign]
    a, b, c = mf.session(seed=5), mf.session(seed=5), mf.session(seed=5)
    assert a is not None and b is not None and c is not None
    got = [a.apply_exact("L", x, prog, exact, x, 1) for _ in range(2)]
    ref = [b.apply_calls("L", x, prog, exact(x), 1) for _ in range(2)]
    in_rows = [c.apply_exact("L", x, prog, exact, x, 1, gemm_rows=True) for _ in range(2)]
    assert calls == [1, 1, 1, 1]
    for gg, rr, rw in zip(got, ref, in_rows, strict=True):
        np.testing.assert_array_equal(gg, rr)
        assert isinstance(rw, RowsAccumulators) or not delta_rows.applies(mf.prepared("L", prog))
        np.testing.assert_array_equal(rw.standard() if isinstance(rw, RowsAccumulators) else rw, rr)
    assert a.counters() == b.counters() == c.counters()


@_GEMM
def test_a_layer_whose_gemm_is_slower_than_its_deltas_keeps_its_own_formulation() -> None:
    """Where the GEMM costs more above the layer's own formulation than the delta kernels take for
    the call's faults (:func:`faults.corrupted_weights.deltas_s`), the call runs the layer's own
    formulation and the deltas: the same accumulators and counters, no GEMM on corrupted weights."""
    from approxtvm.runtime.faults.corrupted_weights import DELTA_S_PER_PRODUCT, deltas_s

    shape = LayerShape.conv2d(2, 16, 1, 8, 8, 3, 3, pads=(1, 1, 1, 1))  # digits' first conv, two images
    m = map_layer(shape, SPEC)
    prog, x = _program(shape, m, EXACT_U, seed=2)
    g = faults.tile_geometry(m, SPEC)
    if not faults.weights_stored_once(g, m):
        pytest.skip("the mapper chose a mapping that stores a weight twice")
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.01, w=0.02, x=0.02)
    exact = ExactLayer(prog.schedule, prog.weight)
    assert exact.gemm_extra_s >= 0.0 and (exact.gemm_extra_s == 0.0 or exact.path != "gemm")
    sample = faults.sample_faults(mf.plans["L"], g, seed=5)
    assert len(sample.weight) and len(sample.input)
    # analytic count: a weight reaches N·P·Q outputs, an input word at most K·R·S products
    want = DELTA_S_PER_PRODUCT * (len(sample.weight) * 2 * 8 * 8 + len(sample.input) * 16 * 9)
    assert deltas_s(shape, sample) == pytest.approx(want)
    calls = []
    with_weights = exact.with_weights
    exact.with_weights = lambda *a, **k: calls.append(1) or with_weights(*a, **k)  # type: ignore[method-assign]
    for extra, uses_gemm in ((1.0, False), (0.0, True)):
        exact._gemm_extra_s = extra
        calls.clear()
        a, b = mf.session(seed=5), mf.session(seed=5)
        assert a is not None and b is not None
        got = a.apply_exact("L", x, prog, exact, x, 1)
        ref = emulate(x, prog, corruption=_corruption(sample)).acc
        np.testing.assert_array_equal(got.standard() if isinstance(got, RowsAccumulators) else got, ref)
        np.testing.assert_array_equal(b.apply_calls("L", x, prog, exact(x), 1), ref)
        assert calls == ([1] if uses_gemm else [])
        assert a.counters() == b.counters()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.sampled_from([1, 3, 9]), st.integers(0, 60), st.integers(0, 255), st.integers(0, 2**31))
def test_channel_bias_equals_the_channel_correction(channels: int, taps: int, words: int, zx: int, seed: int) -> None:
    """The GEMM rows' per-channel bias against :func:`channel_correction`'s (channels, terms), and
    against a plain loop over the corrupted words (int32 wrap-around of ``z_x Σ(w' − w)``)."""
    rng = np.random.default_rng(seed)
    wflat = rng.integers(0, 256, channels * taps * 4).astype(np.uint8)
    index = rng.choice(len(wflat), min(words, len(wflat)), replace=False)
    mask = rng.integers(1, 256, len(index)).astype(np.uint8)
    got = channel_bias(wflat, index, mask, zx, channels)
    ks, corr = channel_correction(wflat, index, mask, zx, channels)
    want = np.zeros(channels, np.int32)
    want[ks] = corr
    np.testing.assert_array_equal(got, want)
    loop = [0] * channels
    for i, m in zip(index.tolist(), mask.tolist(), strict=True):
        loop[i // (taps * 4)] += (int(wflat[i]) ^ m) - int(wflat[i])
    np.testing.assert_array_equal(got, np.array([v * zx for v in loop], np.int64).astype(np.int32))
