"""The exact-layer sessions: ConvInteger/MatMulInteger and the float32 formulation where it is exact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.runtime.exact_layer import ExactLayer, s8_gemm_exact
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.workload import LayerShape
from tests.onnx_builders import numpy_conv_acc
from tests.runtime.layers import EXACT_U, SPEC, _program


def _reference(x: np.ndarray, prog) -> np.ndarray:  # type: ignore[no-untyped-def]
    s, q = prog.schedule.shape, prog.schedule.quant
    zw = np.asarray(q.weight_zero_points, np.int64)
    if s.op == "dense":
        return (x.astype(np.int64) - q.input_zero_point) @ (prog.weight.astype(np.int64) - zw[:, None]).T
    g = s.groups
    cg, kg = s.c // g, s.k // g
    return np.concatenate(
        [
            numpy_conv_acc(
                x[:, i * cg : (i + 1) * cg],
                prog.weight[i * kg : (i + 1) * kg],
                q.input_zero_point,
                zw,
                stride=(s.stride_h, s.stride_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
                dilation=(s.dilation_h, s.dilation_w),
            )
            for i in range(g)
        ],
        axis=1,
    )


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["conv", "grouped", "dense"]),
    st.integers(1, 3),
    st.sampled_from([1, 2]),
    st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3)]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**16),
)
def test_both_formulations_equal_a_plain_integer_reference(kind, n, stride, pads, zx, zw, seed) -> None:  # type: ignore[no-untyped-def]
    if kind == "dense":
        shape = LayerShape.dense(n, 24, 40)
    else:
        g = 4 if kind == "grouped" else 1
        shape = LayerShape.conv2d(n, 8 * g, 3 * g, 9, 8, 3, 2, strides=(stride, 1), pads=pads, groups=g)
    prog, x = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=zx, zw=zw, seed=seed)
    layer = ExactLayer(prog.schedule, prog.weight)
    ref = _reference(x, prog)
    assert layer.has_float  # 8-bit codes over ≤ 40 taps stay far below 2^24
    np.testing.assert_array_equal(layer.run_integer(x), ref)
    np.testing.assert_array_equal(layer.run_float(x), ref)
    if layer.has_gemm:  # u8 × s8 on a CPU where it is exact (probed)
        np.testing.assert_array_equal(layer.run_gemm(x), ref)
    else:
        assert kind == "grouped" or not s8_gemm_exact()
    for _ in range(3):  # the timed choice returns the same accumulators whichever it keeps
        np.testing.assert_array_equal(layer(x), ref)
    assert layer.path in ("float", "integer", "gemm")


def test_float_formulation_is_refused_where_float32_could_round() -> None:
    # 512 input channels × 3×3 taps, weights at distance 128 from z_w: 4608 · 128 · 255 ≈ 1.5e8 > 2^24
    shape = LayerShape.conv2d(1, 2, 512, 3, 3, 3, 3, pads=(1, 1, 1, 1))
    prog, x = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=0, zw=128)
    w = np.where(np.arange(prog.weight.size).reshape(prog.weight.shape) % 2, 255, 0).astype(np.uint8)
    layer = ExactLayer(prog.schedule, w)
    assert not layer.has_float and layer.path in ("integer", "gemm")
    with pytest.raises(ValueError, match="not exact"):
        layer.run_float(x)
    x = np.full_like(x, 255)  # the largest sums: still exact on the integer session
    for _ in range(3):
        ref = (255 * (w.astype(np.int64) - 128)).reshape(2, 512, 3, 3)
        got = layer(x)
        assert got[0, 0, 1, 1] == ref[0].sum() and got[0, 1, 1, 1] == ref[1].sum()


@pytest.mark.skipif(not s8_gemm_exact(), reason="this CPU's u8 x s8 GEMM saturates (no VNNI): never built")
@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(["conv", "dense"]),
    st.integers(1, 3),
    st.sampled_from([(1, 1), (2, 1), (1, 2)]),
    st.sampled_from([1, 2]),
    st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3)]),
    st.integers(0, 255),
    st.sampled_from([0, 1, 127, 128, 200, 255]),  # weights − z_w span -255 … 255: beyond int8
    st.integers(0, 2**16),
)
def test_gemm_formulation_equals_a_plain_integer_reference(kind, n, stride, dilation, pads, zx, zw, seed) -> None:  # type: ignore[no-untyped-def]
    if kind == "dense":
        shape = LayerShape.dense(n, 24, 40)
    else:
        shape = LayerShape.conv2d(n, 8, 5, 9, 8, 3, 2, strides=stride, pads=pads, dilations=(dilation, 1))
    prog, x = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=zx, zw=zw, seed=seed)
    layer = ExactLayer(prog.schedule, prog.weight)
    assert layer.has_gemm
    ref = _reference(x, prog)
    got = layer.run_gemm(x)
    assert got.dtype == np.int32 and got.flags.c_contiguous and got.flags.writeable  # the fault deltas add in place
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(layer.run_gemm(x[::-1].copy()), _reference(x[::-1].copy(), prog))  # kept buffers
    # per-call weights: the bytes at some flat (K, C, R, S) positions XORed, against the reference on those weights
    rng = np.random.default_rng(seed)
    index = rng.choice(prog.weight.size, size=min(7, prog.weight.size), replace=False)
    mask = rng.integers(1, 256, len(index)).astype(np.uint8)
    w2 = prog.weight.copy()
    w2.reshape(-1)[index] ^= mask
    got = layer.with_weights(x, index, mask)
    assert got.dtype == np.int32 and got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, _reference(x, replace(prog, weight=w2)))
    np.testing.assert_array_equal(layer(x), ref)  # the layer's own weights are untouched
    mask2 = np.roll(mask, 1)  # another call, other corruption: nothing kept from the last one
    w3 = prog.weight.copy()
    w3.reshape(-1)[index] ^= mask2
    np.testing.assert_array_equal(layer.with_weights(x, index, mask2), _reference(x, replace(prog, weight=w3)))
