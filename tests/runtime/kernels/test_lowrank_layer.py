"""The one-session low-rank layer (lowrank_layer) equals a product-by-product integer conv with the
zero-point correction and a float32 requantization written here (or, in its accumulator form, the
corrected int32 sums themselves).

Hypothesis over shapes, strides, dilations, pads, batch, operand signedness, low-rank tables,
activation and weight zero points (per tensor and per channel), bias, scales and the output type,
with the host's int8 policy and the AVX2 one; plus the window index against a direct loop.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import DataError
from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.intconv import weight_plan
from approxtvm.runtime.kernels.lowrank import find_factors
from approxtvm.runtime.kernels.lowrank_gemm import gemm_plan, s8_gemm_exact
from approxtvm.runtime.kernels.lowrank_layer import LayerQuant, LowRankLayer, window_index

from .conftest import draw_conv_case
from .test_lowrank_gemm import CACHES, TABLES, product_reference


def _requantize(acc: np.ndarray, bias: np.ndarray, scale: np.ndarray, zy: int, dtype: str) -> np.ndarray:
    """onnxruntime's integer-kernel requantization, step by step in float32."""
    info = np.iinfo(np.dtype(dtype))
    v = (acc.astype(np.int64) + bias[None, :, None, None]).astype(np.int32).astype(np.float32)
    v = v * scale[None, :, None, None]
    v = np.rint(np.clip(v, np.float32(info.min - zy), np.float32(info.max - zy))) + np.float32(zy)
    return v.astype(dtype)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    table=st.sampled_from(sorted(TABLES)),
    signed=st.booleans(),
    policy=st.sampled_from(sorted(CACHES)),
)
def test_lowrank_layer_equals_integer_conv_and_requantization(data, table, signed, policy):
    draw = data.draw
    case = draw_conv_case(draw, signed)
    x, w, rng, lo, hi = case["x"], case["w"], case["rng"], case["lo"], case["hi"]
    strides, dilations, pads = case["strides"], case["dilations"], case["pads"]
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    dt = x.dtype
    zx = int(rng.integers(lo, hi))
    zw = rng.integers(lo, hi, draw(st.sampled_from([1, k]))).astype(np.int64)
    if draw(st.booleans()):
        zw[:] = 0  # symmetric weights: no window sums
    if draw(st.booleans()):  # sums beyond 2^24: the int32 → float32 conversion rounds
        bias = rng.integers(-(2**30), 2**30, k).astype(np.int64)
        scale = (rng.random(k) * 2.0**-23).astype(np.float32)
    else:
        bias = rng.integers(-5000, 5000, k).astype(np.int64)
        scale = (rng.random(k) * draw(st.sampled_from([1e-4, 1e-3, 1e-2]))).astype(np.float32)
    out_dtype = draw(st.sampled_from(["uint8", "int8", "int32"]))  # int32: the accumulators
    zy = int(rng.integers(*((-128, 128) if out_dtype == "int8" else (0, 256))))

    tab = TABLES[table](signed)
    wb = w.view(np.uint8)
    f = find_factors(tab, signed, wb)
    assert f is not None
    if f.divisor != 1:
        reject()  # the one-session form needs int32 accumulators
    cache: KernelCache = CACHES[policy]
    plan = gemm_plan(wb, weight_plan(wb, f), f.divisor, s8_gemm_exact(cache.sessions, cache.cpu.vnni))
    if plan is None:
        reject()
    g = ConvGeometry(n, c, h, wd, k, r, s, *strides, *dilations, *pads)
    taps = c * r * s
    wsum = w.reshape(k, -1).astype(np.int64).sum(axis=1)
    quant = LayerQuant(zx, zw, zx * wsum - taps * zx * zw, bias, scale, zy, out_dtype, signed)
    got = LowRankLayer(plan, g, quant)(x)

    kw = dict(strides=strides, dilations=dilations, pads=pads, pad_value=zx)
    products = product_reference(x, w, tab, **kw).astype(np.int64)
    ones = np.ones((1, c, r, s), dt)
    xsum = product_reference(x, ones, np.outer(np.arange(256) - (256 * (np.arange(256) >= 128) if signed else 0),
                                               np.ones(256, np.int64)), **kw).astype(np.int64)  # fmt: skip
    acc = products - zw.reshape(1, -1, 1, 1) * xsum - (zx * wsum - taps * zx * zw).reshape(1, -1, 1, 1)
    wrapped = (acc + 2**31) % 2**32 - 2**31
    want = wrapped.astype(np.int32) if out_dtype == "int32" else _requantize(wrapped, bias, scale, zy, out_dtype)
    assert got.dtype == np.dtype(out_dtype) and got.shape == want.shape
    assert np.array_equal(got, want)


def test_window_index_is_the_tap_pixel():
    g = ConvGeometry(2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 2, 1, 0, 2, 1)
    idx = window_index(g)
    for n in range(g.n):
        for p in range(g.p):
            for q in range(g.q):
                for r in range(g.r):
                    for s in range(g.s):
                        row = (n * g.p + p) * g.q + q
                        pix = (n * g.hp + p * g.stride_h + r * g.dilation_h) * g.wp + q * g.stride_w + s * g.dilation_w
                        assert idx[row, r * g.s + s] == pix


def test_concurrent_calls_of_one_layer_equal_sequential_ones():
    """Two threads calling the same layer at once (models sharing a kernel cache) do not share
    the input buffers: each gets its own result."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (8, 1, 16, 12, 12)).astype(np.uint8)
    w = rng.integers(0, 256, (8, 16, 3, 3)).astype(np.uint8)
    tab = TABLES["bam4"](False)
    f = find_factors(tab, False, w)
    cache: KernelCache = CACHES["host"]
    plan = gemm_plan(w, weight_plan(w, f), f.divisor, s8_gemm_exact(cache.sessions, cache.cpu.vnni))
    assert plan is not None and f.divisor == 1
    g = ConvGeometry(1, 16, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
    wsum = w.reshape(8, -1).astype(np.int64).sum(axis=1)
    zw = np.array([131], np.int64)
    quant = LayerQuant(
        3, zw, 3 * wsum - 144 * 3 * zw, np.zeros(8, np.int64), np.full(8, 1e-3, np.float32), 0, "uint8", False
    )
    layer = LowRankLayer(plan, g, quant)
    want = [layer(xi) for xi in x]
    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(layer, x))
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b)
    with pytest.raises(DataError, match="wrong shape or type"):
        layer(x[0].astype(np.int8))
    with pytest.raises(DataError, match="wrong shape or type"):
        layer(x[0][:, :8])


@pytest.mark.parametrize("table", ["optrunc", "bam2"])
def test_a_layer_without_product_terms_is_its_constants(table):
    """Weights whose every product the table maps to one value leave the plan no GEMM: the output
    is then the per-channel constants, broadcast over every pixel (a 1×1, one-channel conv found
    by hypothesis: the session used to fail on a (1, K) constant it reshaped to the output)."""
    x = np.random.default_rng(0).integers(0, 256, (2, 1, 3, 4)).astype(np.uint8)
    tab = TABLES[table](False)
    for wv in range(256):  # a weight byte whose column of the table is constant
        if np.all(tab[:, wv] == tab[0, wv]):
            break
    else:
        pytest.fail(f"{table}: no constant column")
    w = np.full((1, 1, 1, 1), wv, np.uint8)
    f = find_factors(tab, False, w.view(np.uint8))
    cache: KernelCache = CACHES["host"]
    plan = gemm_plan(w, weight_plan(w, f), f.divisor, s8_gemm_exact(cache.sessions, cache.cpu.vnni))
    assert plan is not None and f.divisor == 1
    g = ConvGeometry(2, 1, 3, 4, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0)
    zx, bias, scale = 9, np.array([300], np.int64), np.array([1e-2], np.float32)
    quant = LayerQuant(zx, np.zeros(1, np.int64), np.array([zx * wv], np.int64), bias, scale, 5, "uint8", False)
    got = LowRankLayer(plan, g, quant)(x)
    acc = product_reference(x, w, tab, (1, 1), (1, 1), (0, 0, 0, 0), zx).astype(np.int64) - zx * wv
    assert np.array_equal(got, _requantize(acc, bias, scale, 5, "uint8"))
