"""The plane-by-plane weight-fault kernel (``faults.weight_planes``) against the product reference:
``Σ T[x][w'] − Σ T[x][w]`` from two plain table convolutions, per group."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.runtime.faults.weight_planes import add_weight_planes, planes_kernel
from approxtvm.runtime.kernels.reference import conv2d_products_reference, dense_products_reference
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.workload import LayerShape

pytestmark = pytest.mark.skipif(planes_kernel() is None, reason="TVM cannot build the kernel here")


def _reference(x: np.ndarray, w: np.ndarray, mult: Multiplier, shape: LayerShape, zx: int) -> np.ndarray:
    """Products per group from the plain table reference (int64)."""
    if shape.op == "dense":
        return dense_products_reference(x, w, mult).astype(np.int64)
    g, cg, kg = shape.groups, shape.c_per_group, shape.k_per_group
    parts = [
        conv2d_products_reference(
            x[:, i * cg : (i + 1) * cg],
            w[i * kg : (i + 1) * kg],
            mult,
            strides=(shape.stride_h, shape.stride_w),
            dilations=(shape.dilation_h, shape.dilation_w),
            pads=(shape.pad_top, shape.pad_left, shape.pad_bottom, shape.pad_right),
            pad_value=zx,
        )
        for i in range(g)
    ]
    return np.concatenate(parts, axis=1).astype(np.int64)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[LayerShape, Multiplier, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo = -(2**20) if signed else 0
    mult = Multiplier("rand", rng.integers(lo, 2**20, (256, 256)).astype(np.int32), signed)  # non-commutative
    n = draw(st.integers(1, 3))
    if draw(st.integers(0, 4)) == 0:
        shape = LayerShape.dense(n, draw(st.integers(1, 9)), draw(st.integers(1, 12)))
        xs, ws = (n, shape.c), (shape.k, shape.c)
    else:
        g = draw(st.sampled_from([1, 1, 2, 3]))
        r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        h = draw(st.integers(dil[0] * (r - 1) + 1, 9))
        w = draw(st.integers(dil[1] * (s - 1) + 1, 40))  # wide rows: several 16-lane chunks and a tail
        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        kg, cg = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        shape = LayerShape.conv2d(n, g * kg, g * cg, h, w, r, s, strides=strides, dilations=dil, pads=pads, groups=g)
        xs, ws = (n, shape.c, h, w), (shape.k, cg, r, s)
    dtype = np.int8 if signed else np.uint8
    x = rng.integers(-128 if signed else 0, 128 if signed else 256, xs).astype(dtype)
    wt = rng.integers(-128 if signed else 0, 128 if signed else 256, ws).astype(dtype)
    zx = int(rng.integers(-128, 128) if signed else rng.integers(0, 256))
    count = draw(st.integers(0, wt.size))
    index = rng.choice(wt.size, count, replace=False).astype(np.int64)
    mask = rng.integers(1, 256, count).astype(np.uint8)
    return shape, mult, x, wt, zx, index, mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_weight_planes_equal_two_reference_convolutions(case: tuple) -> None:  # type: ignore[type-arg]
    shape, mult, x, w, zx, index, mask = case
    w2 = w.copy()
    w2.view(np.uint8).reshape(-1)[index] ^= mask
    want = _reference(x, w2, mult, shape, zx) - _reference(x, w, mult, shape, zx)
    rng = np.random.default_rng(len(index))
    start = rng.integers(-(2**31), 2**31, want.shape).astype(np.int32)  # wraps like the accumulator
    out = start.copy()
    lut_t = np.ascontiguousarray(mult.table.T).reshape(-1)
    zx_byte = int(np.array(zx).astype(x.dtype).view(np.uint8))
    add_weight_planes(x, shape, zx_byte, w, lut_t, index, mask, out)
    np.testing.assert_array_equal(out, (start.astype(np.int64) + want).astype(np.int32))


def test_bad_accumulators_are_refused() -> None:
    shape = LayerShape.dense(1, 2, 3)
    x, w = np.zeros((1, 3), np.uint8), np.zeros((2, 3), np.uint8)
    lut_t = np.zeros(65536, np.int32)
    with pytest.raises(ValueError, match="int32"):
        add_weight_planes(x, shape, 0, w, lut_t, np.array([0]), np.array([1], np.uint8), np.zeros((1, 2), np.int64))
