"""Weight faults run through a table layer's own register-LUT kernel (``faults.kernel_weights``,
``FaultSession.apply_kernel``) against the emulator, on random non-commutative 16-bit tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.faults.corrupted_weights import weight_offsets
from approxtvm.runtime.faults.kernel_weights import batch_copies, inject_through_copies, inject_through_kernel
from approxtvm.runtime.faults.weight_copies import weight_copies
from approxtvm.runtime.kernels.cpu import detect_cpu
from approxtvm.runtime.kernels.reference import conv2d_products_reference
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import RAND_U, SPEC, _mapping, _program, layers

pytestmark = [
    pytest.mark.tvm,
    pytest.mark.skipif(
        not detect_cpu().avx512, reason="the register-LUT kernel (and so this path) needs AVX-512 BW on the host"
    ),
]

#: A signed non-commutative random table whose values fit int16.
RAND16_S = Multiplier("rand16_s", np.random.default_rng(9).integers(-(2**15), 2**15, (256, 256)).astype(np.int32), True)
SLOW_OK = [HealthCheck.too_slow]


def _plan(noc: float, w: float, x: float, mode: str = "write") -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, 0, (("weight", w), ("input", x)), mode)


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


def _perm_program(m: Mapping, mult: Multiplier, seed: int) -> tuple[LayerProgram, np.ndarray]:
    """A layer on the register-LUT kernel, prepared by one fault-free call."""
    # a non-zero weight zero point for an unsigned table: the accumulators then subtract z_w Σx
    prog, x = _program(m.shape, m, mult, seed=seed % 1000, zx=seed % 256, zw=(seed * 37 + 5) % 256)
    prog = LayerProgram(prog.schedule, prog.weight, None, mult, path="table_perm")
    accumulate(x, prog)
    return prog, x


def _counting(kernel):  # type: ignore[no-untyped-def]
    """``kernel`` that records the weights it was called with."""
    seen: list[np.ndarray | None] = []

    def run(weights: object) -> np.ndarray:
        if isinstance(weights, list):  # (weights, rows) pairs: one entry per pair
            seen.extend(wb.copy() for wb, _ in weights)
        else:
            seen.append(None if weights is None else np.array(weights))
        return kernel(weights)

    return run, seen


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW_OK)
@given(layers(kinds=("conv2d",)), st.sampled_from([RAND_U, RAND16_S]), st.sampled_from(["write", "read", "both"]))
def test_the_kernel_on_corrupted_weights_equals_the_emulator(
    layer: tuple[Mapping, Multiplier, int], mult: Multiplier, mode: str
) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    g = faults.tile_geometry(m, SPEC)
    if not faults.weights_stored_once(g, m):
        reject()  # W' is not defined: the session never takes the path (tested below)
    prog, x = _perm_program(m, mult, seed)
    sample = faults.sample_faults(_plan(noc=0.02, w=0.04, x=0.03, mode=mode), g, seed=seed)
    ref = emulate(x, prog, corruption=_corruption(sample)).acc
    la = faults.layer_arrays(prog, g)
    for kernels in (faults.NUMPY_KERNELS, faults.compiled_kernels()):
        kernel = prog.weight_kernel(x)
        assert kernel is not None
        run, seen = _counting(kernel)
        prep = kernels.prepare(prog, g, la)
        got = inject_through_kernel(x, prog, run, sample, g, la, kernels, prep, weight_offsets(g, m))
        np.testing.assert_array_equal(got, ref, err_msg=kernels.name)
        # the kernel ran once, on weights that differ from the layer's exactly where words were corrupted
        assert len(seen) == 1 and seen[0] is not None
        changed = int((seen[0] != prog.weight.view(np.uint8)).sum())
        assert changed == len(
            np.unique(weight_offsets(g, m)[0][sample.weight.residency] + weight_offsets(g, m)[1][sample.weight.word])
        )
        np.testing.assert_array_equal(la.wprime, la.wflat)  # the corrupted bytes are restored


def test_run_with_weights_equals_a_reference_convolution_and_checks_its_operand() -> None:
    shape = LayerShape.conv2d(2, 40, 6, 7, 7, 3, 3, pads=(1, 1, 1, 1), strides=(2, 2))
    prog, x = _perm_program(map_layer(shape, SPEC), RAND16_S, seed=3)
    kernel = prog.weight_kernel(x)
    assert kernel is not None
    other = np.random.default_rng(4).integers(-128, 128, prog.weight.shape).astype(np.int8)
    got = kernel(other.view(np.uint8))
    raw = conv2d_products_reference(x, other, RAND16_S, strides=(2, 2), pads=(1, 1, 1, 1), pad_value=0)
    ref = accumulate(x, prog, products=raw)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(kernel(None), accumulate(x, prog))  # its own weights: unchanged
    with pytest.raises(ValueError, match="uint8 expected"):
        kernel(other.view(np.uint8)[:, :3])


def test_the_session_takes_the_path_only_where_it_applies_and_keeps_its_faults() -> None:
    """Through a session: the same accumulators and counters as the sparse deltas on the
    fault-free kernel; nothing drawn or counted where the path does not apply."""
    shape = LayerShape.conv2d(1, 32, 16, 14, 14, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    g = faults.tile_geometry(m, SPEC)
    if not faults.weights_stored_once(g, m):
        pytest.skip("the mapper chose a mapping that stores a weight twice: the path cannot apply")
    prog, x = _perm_program(m, RAND_U, seed=4)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.001, w=0.003, x=0.002)
    a, b = mf.session(seed=5), mf.session(seed=5)
    assert a is not None and b is not None
    kernel = prog.weight_kernel(x)
    assert kernel is not None
    run, seen = _counting(kernel)
    got = [a.apply_kernel("L", x, prog, run) for _ in range(3)]
    ref = [b.apply("L", x, prog, accumulate(x, prog)) for _ in range(3)]
    assert len(seen) == 3 and all(s is not None for s in seen)  # each call had corrupted weights
    for gg, rr in zip(got, ref, strict=True):
        assert gg is not None
        np.testing.assert_array_equal(gg, rr)
    assert a.counters() == b.counters()
    assert a.counters() == b.counters() != mf.session(seed=5).counters()


def test_weights_loaded_twice_keep_the_delta_path_and_draw_nothing() -> None:
    # 1×1 conv; Q outside K above the PE: every weight tile is loaded again for the second half of Q
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    refill.validate(SPEC)
    assert not faults.weights_stored_once(faults.tile_geometry(refill, SPEC), refill)
    prog, x = _perm_program(refill, RAND_U, seed=6)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.05, w=0.05, x=0.05)
    kernel = prog.weight_kernel(x)
    assert kernel is not None
    c, d = mf.session(seed=5), mf.session(seed=5)
    assert c is not None and d is not None
    assert c.apply_kernel("L", x, prog, kernel) is None
    got = c.apply("L", x, prog, accumulate(x, prog))  # the first call is still call 0
    np.testing.assert_array_equal(got, d.apply("L", x, prog, accumulate(x, prog)))
    assert c.counters() == d.counters()


def _batch_refill(n: int = 2) -> Mapping:
    """A 1×3 conv whose weights are loaded again for each image (N outermost, above K)."""
    shape = LayerShape.conv2d(n, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    m = _mapping(shape, dram=[Loop("N", n), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 4), Loop("C", 2), Loop("S", 3)])
    m.validate(SPEC)
    return m


def test_batch_copies_accepts_copies_that_split_only_the_batch() -> None:
    m = _batch_refill(3)
    g = faults.tile_geometry(m, SPEC)
    assert not faults.weights_stored_once(g, m)
    copies = weight_copies(g, m)
    assert copies is not None and copies.copies == 3
    assert batch_copies(copies, 3, 1, 4) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    # the same copies against another output extent, or a batch they do not tile: refused
    assert batch_copies(copies, 3, 1, 3) is None
    assert batch_copies(copies, 4, 1, 4) is None
    # copies that split the output columns (a tile loaded again for each half of Q): refused
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    refill.validate(SPEC)
    q_copies = weight_copies(faults.tile_geometry(refill, SPEC), refill)
    assert q_copies is not None and q_copies.copies == 2 and batch_copies(q_copies, 1, 1, 4) is None


@pytest.mark.parametrize("mode", ["write", "read", "both"])
@pytest.mark.parametrize("mult", [RAND_U, RAND16_S], ids=["u16", "s16"])
def test_copies_that_split_the_batch_equal_the_emulator(mult: Multiplier, mode: str) -> None:
    m = _batch_refill(2)
    g = faults.tile_geometry(m, SPEC)
    copies = weight_copies(g, m)
    assert copies is not None
    rows = batch_copies(copies, 2, 1, 4)
    assert rows is not None
    kernels = faults.compiled_kernels()
    both = 0
    for seed in range(8):
        prog, x = _perm_program(m, mult, seed)
        sample = faults.sample_faults(_plan(noc=0.05, w=0.08, x=0.05, mode=mode), g, seed=seed)
        ref = emulate(x, prog, corruption=_corruption(sample)).acc
        la = faults.layer_arrays(prog, g)
        kernel = prog.weight_kernel(x)
        assert kernel is not None
        run, seen = _counting(kernel)
        got = inject_through_copies(x, prog, run, sample, g, la, kernels, kernels.prepare(prog, g, la), copies, rows)
        np.testing.assert_array_equal(got, ref)
        assert len(seen) == 2  # one weight tensor per copy
        both += bool(len(sample.weight) and len(sample.input))
    assert both >= 4  # most seeds corrupt weights and inputs together


def test_the_session_runs_the_kernel_per_copy_and_keeps_its_faults() -> None:
    m = _batch_refill(2)
    prog, x = _perm_program(m, RAND_U, seed=11)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.05, w=0.08, x=0.05)
    a, b = mf.session(seed=3), mf.session(seed=3)
    assert a is not None and b is not None
    kernel = prog.weight_kernel(x)
    assert kernel is not None
    run, seen = _counting(kernel)
    for _ in range(4):
        got = a.apply_kernel("L", x, prog, run)
        assert got is not None
        np.testing.assert_array_equal(got, b.apply("L", x, prog, accumulate(x, prog)))
    assert any(s is not None for s in seen)  # the copies path ran
    assert a.counters() == b.counters()
