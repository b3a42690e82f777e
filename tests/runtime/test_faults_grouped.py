"""Fault injection on grouped / depthwise convolutions and activation × activation matmuls.

The sparse deltas (numpy and TVM) must equal the emulator executing the same corrupted tile copies;
a matmul's second operand plays the weight role (weight buffer, its own voltage, sampled per call).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import accumulate, accumulate_matmul
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.onnx_builders import numpy_conv_acc
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _mapping, _program, layers, matmul_operand
from tests.runtime.test_faults import _compiled, _corruption, _plan


def _clean(x: np.ndarray, prog, b: np.ndarray | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    return accumulate_matmul(x, b, prog) if b is not None else accumulate(x, prog)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(kinds=("grouped", "matmul")))
def test_grouped_and_matmul_injection_equals_the_emulator(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, mult, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    prog, x = _program(m.shape, m, mult, seed=seed % 1000)
    b = matmul_operand(prog, seed % 1000) if m.shape.op == "matmul" else None
    g = faults.tile_geometry(m, SPEC)
    plan = _plan(noc=0.02, w=0.03, x=0.03, msbs=seed % 3, mode=("write", "read", "both")[seed % 3])
    sample = faults.sample_faults(plan, g, seed=seed)
    clean = _clean(x, prog, b)
    run = emulate(x, prog, second=b)
    np.testing.assert_array_equal(run.acc, clean)  # the fault-free kernels are the emulator
    ref = emulate(x, prog, corruption=_corruption(sample), second=b).acc
    fast = faults.inject(x, prog, clean, sample, g, second=b)
    np.testing.assert_array_equal(fast, ref)
    if _compiled() is not None:
        np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g, kernels=_compiled(), second=b), ref)
    if len(sample.weight) or len(sample.input):
        delta = faults.products_delta(x, prog, g, sample, second=b)
        np.testing.assert_array_equal(delta.reshape(fast.shape), fast.astype(np.int64) - clean)


def test_exact_grouped_emulation_equals_a_plain_integer_convolution_per_group() -> None:
    shape = LayerShape.conv2d(2, 12, 6, 7, 7, 3, 3, strides=(2, 2), pads=(1, 0, 1, 2), groups=3)
    prog, x = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=5, zw=9)
    q = prog.schedule.quant
    ref = np.concatenate(
        [
            numpy_conv_acc(
                x[:, 2 * g : 2 * g + 2],
                prog.weight[4 * g : 4 * g + 4],
                q.input_zero_point,
                np.asarray(q.weight_zero_points),
                stride=(2, 2),
                dilation=(1, 1),
                pads=(1, 0, 1, 2),
            )
            for g in range(3)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(emulate(x, prog).acc, ref)


def test_exact_matmul_emulation_equals_numpy_integer_matmul() -> None:
    shape = LayerShape.matmul(6, 5, 4, 8)
    prog, _ = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=5, zw=9)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 3, 5, 8)).astype(np.uint8)  # batch 2 × 3 heads = 6 slices
    b = rng.integers(0, 256, (2, 3, 8, 4)).astype(np.uint8)
    ref = np.matmul(a.astype(np.int64) - 5, b.astype(np.int64) - 9)
    np.testing.assert_array_equal(emulate(a, prog, second=b).acc, ref)


def test_a_corrupted_second_operand_hits_only_its_slice_and_residency() -> None:
    # y[g] = a[g] · b[g], 2 slices, M = 2, C = 1, K = 2. Loops: DRAM G:2, M(N):2; PE K:2.
    # The second operand (weight role) of slice 0 is filled once (step 0) and kept for both rows.
    shape = LayerShape.matmul(2, 2, 2, 1)
    m = _mapping(shape, dram=[Loop("G", 2), Loop("N", 2)], pe=[Loop("K", 2)])
    m.validate(SPEC)
    prog, _ = _program(shape, m, zx=0, zw=0)
    a = np.array([[[1], [2]], [[3], [4]]], np.uint8)  # (G, M, C)
    b = np.array([[[5, 6]], [[7, 8]]], np.uint8)  # (G, C, K)
    g = faults.tile_geometry(m, SPEC)
    assert g.fills["weight"].tolist() == [0, 2] and g.fills["input"].tolist() == [0, 1, 2, 3]
    # weight fill 0 (slice 0), word 1 = b[0, 0, k=1] loses bit 1: 6 -> 4, for rows m = 0 and 1
    sample = faults.FaultSample(
        faults.CorruptedWords(np.array([0]), np.array([1]), np.array([2], np.uint8)), faults.CorruptedWords.empty()
    )
    got = faults.inject(a, prog, accumulate_matmul(a, b, prog), sample, g, second=b)
    np.testing.assert_array_equal(got, [[[5, 4], [10, 8]], [[21, 24], [28, 32]]])
    np.testing.assert_array_equal(emulate(a, prog, _corruption(sample), second=b).acc, got)
    # an input fault (fill 3 = slice 1, row 1: a = 4 -> 5) hits that row of that slice only
    sample = faults.FaultSample(
        faults.CorruptedWords.empty(), faults.CorruptedWords(np.array([3]), np.array([0]), np.array([1], np.uint8))
    )
    got = faults.inject(a, prog, accumulate_matmul(a, b, prog), sample, g, second=b)
    np.testing.assert_array_equal(got, [[[5, 6], [10, 12]], [[21, 24], [35, 40]]])


@pytest.mark.tvm
@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(2, 32, 32, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1), groups=32),  # depthwise
        LayerShape.conv2d(1, 24, 12, 7, 7, 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2), groups=4),
        LayerShape.matmul(8, 17, 16, 24),  # attention QKᵀ-like: 8 heads, 17 tokens
    ],
)
def test_compiled_kernels_equal_numpy_kernels_on_mapper_mappings(shape: LayerShape) -> None:
    kernels = faults.tvm_kernels()
    prog, x = _program(shape, map_layer(shape, SPEC), RAND_U, seed=4)
    b = matmul_operand(prog, 4) if shape.op == "matmul" else None
    g = faults.tile_geometry(prog.schedule.mapping, SPEC)
    s = faults.sample_faults(_plan(noc=0.01, w=0.02, x=0.02), g, seed=9)
    assert len(s.weight) and len(s.input)
    clean = _clean(x, prog, b)
    numpy_result = faults.inject(x, prog, clean, s, g, second=b)
    np.testing.assert_array_equal(faults.inject(x, prog, clean, s, g, kernels=kernels, second=b), numpy_result)
    np.testing.assert_array_equal(emulate(x, prog, _corruption(s), second=b).acc, numpy_result)
