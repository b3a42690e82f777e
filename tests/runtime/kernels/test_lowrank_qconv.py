"""The shift form of a product table and the fused QLinearConv layer built from it (lowrank_qconv).

* ``shift_form`` reconstructs BAM (every break), operand truncation and random tables that are
  affine in the activation's bits exactly, and refuses tables that are not (Mitchell, DRUM).
* The layer's nodes, run by onnxruntime, equal a product-by-product integer conv (one table lookup
  per multiply, padded taps holding ``z_x``) with the zero-point correction and a float32
  requantization written here — hypothesis over shapes, strides, dilations, pads, batch, tables,
  zero points (per tensor and per channel), bias, scales and both weight kinds (int8
  only where the host's probe shows it exact).
* The maps (``QLinearAdd``) are ``a >> i`` for every code; the int8 probe tells an exact kernel
  from a saturating one (emulated here).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.intconv import OrtSessionCache
from approxtvm.runtime.kernels.lowrank_qconv import (
    QConvQuant,
    floor_maps_exact,
    qconv_layer,
    qconv_s8_exact,
    qconv_weights,
    shift_form,
)
from approxtvm.runtime.kernels.ort_session import runtime_session
from approxtvm.runtime.multipliers import resolve_multiplier

from .conftest import draw_conv_case
from .test_lowrank_gemm import product_reference

_BITS = (np.arange(256)[:, None] >> np.arange(8)) & 1


def _bit_affine(rng: np.random.Generator, scale: int) -> np.ndarray:
    """A random table affine in the activation's bits for every weight byte."""
    beta = rng.integers(-scale, scale + 1, (8, 256))
    h = rng.integers(-scale, scale + 1, 256)
    return _BITS @ beta + h


def _check_form(table: np.ndarray, used: np.ndarray) -> None:
    form = shift_form(table, used)
    assert form is not None
    a = np.arange(256)[:, None]
    rebuilt = form.h[None, used] + sum((a >> i) * form.g[j][None, used] for j, i in enumerate(form.shifts))
    assert np.array_equal(rebuilt, np.asarray(table, np.int64)[:, used])


@pytest.mark.parametrize("h", range(0, 8))
def test_bam_has_h_plus_one_shifts_with_byte_weight_maps(h):
    """BAM with vertical break h: g_0(b) = b with its h low bits cleared, g_i(b) = 2^h·bit_{h−i}(b)."""
    mult = resolve_multiplier(f"bam:h={h},v=0")
    form = shift_form(mult.table, np.arange(256))
    assert form is not None
    assert form.shifts == tuple(range(h + 1))
    _check_form(mult.table, np.arange(256))
    b = np.arange(256)
    assert np.array_equal(form.g[0], b & (255 - (1 << h) + 1))
    for i in range(1, h + 1):
        assert np.array_equal(form.g[i], (1 << h) * ((b >> (h - i)) & 1))


@pytest.mark.parametrize(
    "spec", ["bam:h=4,v=2", "bam:h=6,v=1", "bam:h=9,v=0", "optrunc:ka=2,kb=2", "optrunc:ka=3,kb=0", "exact"]
)
def test_other_bit_affine_multipliers_are_reconstructed(spec):
    _check_form(resolve_multiplier(spec).table, np.arange(256))


@pytest.mark.parametrize("spec", ["mitchell", "drum:k=4"])
def test_tables_not_affine_in_the_bits_have_no_form(spec):
    assert shift_form(resolve_multiplier(spec).table, np.arange(256)) is None


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n_used=st.integers(1, 256))
def test_random_bit_affine_tables_are_reconstructed_on_their_used_columns(seed, n_used):
    rng = np.random.default_rng(seed)
    table = _bit_affine(rng, 1000)
    used = np.sort(rng.choice(256, n_used, replace=False))
    broken = table.copy()
    unused = np.setdiff1d(np.arange(256), used)
    if unused.size:  # columns the layer does not use may be anything
        broken[:, unused] = rng.integers(-9, 9, (256, unused.size))
    _check_form(broken, used)
    col = int(used[0])
    broken[int(rng.integers(1, 256)) | 3, col] += 1  # not affine in the bits any more
    assert shift_form(broken, used) is None


def test_the_maps_are_floor_shifts_for_every_code():
    assert floor_maps_exact(OrtSessionCache())


def _saturating_u8s8(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A u8×s8 dot product whose adjacent pairs are summed in int16 with saturation (pre-VNNI)."""
    pairs = (x.astype(np.int64)[:, None, :] * w.astype(np.int64)[None, :, :]).reshape(x.shape[0], w.shape[0], -1, 2)
    return np.clip(pairs.sum(axis=-1), -(2**15), 2**15 - 1).sum(axis=-1)


def test_the_int8_probe_tells_an_exact_kernel_from_a_saturating_one():
    """The probe's operands: an exact kernel cancels its bias to z_y everywhere; the saturating
    pair sums of a pre-VNNI kernel would not (emulated); and without VNNI the probe says no."""
    rng = np.random.default_rng(0)
    pixel = np.full(512, 255, np.uint8)
    pixel[::7] = rng.integers(0, 256, pixel[::7].shape, dtype=np.uint8)
    w = np.where(rng.random((64, 512)) < 0.5, -128, 127).astype(np.int8)
    w[:, ::2] = w[:, 1::2]
    exact = (w.astype(np.int64) + 128) @ pixel.astype(np.int64)
    saturated = _saturating_u8s8(pixel[None], w)[0] + 128 * int(pixel.astype(np.int64).sum())
    assert np.all(saturated != exact)  # the same construction as the probe's
    assert qconv_s8_exact(OrtSessionCache(), vnni=False) is False
    host = KernelCache()
    assert qconv_s8_exact(host.sessions, host.cpu.vnni) == host.cpu.vnni  # a VNNI host passes it


def _requantize(acc: np.ndarray, bias: np.ndarray, scale: np.ndarray, zy: int, dtype: str) -> np.ndarray:
    info = np.iinfo(np.dtype(dtype))
    v = ((acc + bias[None, :, None, None] + 2**31) % 2**32 - 2**31).astype(np.int32).astype(np.float32)
    v = v * scale[None, :, None, None]
    v = np.rint(np.clip(v, np.float32(info.min - zy), np.float32(info.max - zy))) + np.float32(zy)
    return v.astype(dtype)


def _run(layer, x: np.ndarray) -> np.ndarray:
    shape = ["N", *x.shape[1:]]
    graph = helper.make_graph(
        list(layer.nodes), "fused", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], list(layer.initializers),
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return runtime_session(model, None).run(None, {"x": x})[0]


_TABLES = {
    "bam4": lambda: resolve_multiplier("bam:h=4,v=0").table,
    "bam2": lambda: resolve_multiplier("bam:h=2,v=0").table,
    "bam3v1": lambda: resolve_multiplier("bam:h=3,v=1").table,
    "random": lambda: _bit_affine(np.random.default_rng(7), 3).clip(-(2**20), 2**20),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), table=st.sampled_from(sorted(_TABLES)), signed_weights=st.booleans())
def test_fused_layer_equals_integer_conv_and_requantization(data, table, signed_weights):
    draw = data.draw
    if signed_weights and not qconv_s8_exact(KernelCache().sessions, KernelCache().cpu.vnni):
        reject()  # int8 weights only where the host's u8×s8 kernels are exact
    case = draw_conv_case(draw, False)
    x, w, rng = case["x"], case["w"], case["rng"]
    strides, dilations, pads = case["strides"], case["dilations"], case["pads"]
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    zx = int(draw(st.sampled_from([0, int(rng.integers(0, 256))])))  # 0: padding by the conv itself
    zw = np.broadcast_to(rng.integers(0, 256, draw(st.sampled_from([1, k]))), (k,)).astype(np.int64)
    if draw(st.booleans()):
        zw = np.zeros(k, np.int64)
    if draw(st.booleans()):  # sums beyond 2^24: the int32 → float32 conversion rounds
        bias = rng.integers(-(2**30), 2**30, k).astype(np.int64)
        scale = (rng.random(k) * 2.0**-23).astype(np.float32)
    else:
        bias = rng.integers(-5000, 5000, k).astype(np.int64)
        scale = (rng.random(k) * draw(st.sampled_from([1e-4, 1e-3, 1e-2]))).astype(np.float32)
    zy = int(rng.integers(0, 256))
    tab = np.asarray(_TABLES[table](), np.int64)
    form = shift_form(tab, w)
    assert form is not None
    g = ConvGeometry(n, c, h, wd, k, r, s, *strides, *dilations, *pads)
    quant = QConvQuant(zx, zw, bias, scale, zy, "uint8")
    layer = qconv_layer(form, w, g, quant, signed_weights, "x", "y", "l_")
    # onnxruntime's QLinearConv writes its input's type: an int8 output is left to the other paths
    assert qconv_layer(form, w, g, QConvQuant(zx, zw, bias, scale, 0, "int8"), signed_weights, "x", "y", "l_") is None
    if layer is None:  # weight maps wider than a byte (random tables): the other paths take it
        assert qconv_weights(form, w, quant, signed_weights) is None
        reject()
    got = _run(layer, x)

    kw = dict(strides=strides, dilations=dilations, pads=pads, pad_value=zx)
    products = product_reference(x, w, tab, **kw).astype(np.int64)
    xsum = product_reference(x, np.ones((1, c, r, s), np.uint8), np.outer(np.arange(256), np.ones(256, np.int64)), **kw)
    taps = c * r * s
    wsum = w.reshape(k, -1).astype(np.int64).sum(axis=1)
    acc = products - zw.reshape(1, -1, 1, 1) * xsum.astype(np.int64) - (zx * wsum - taps * zx * zw).reshape(1, -1, 1, 1)
    want = _requantize(acc, bias, scale, zy, "uint8")
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("signed_weights", [False, True])
def test_fused_dense_layer_equals_the_products(signed_weights):
    if signed_weights and not qconv_s8_exact(KernelCache().sessions, KernelCache().cpu.vnni):
        pytest.skip("this host's u8×s8 kernels are not exact (no VNNI): int8 weights are never used here")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (6, 40)).astype(np.uint8)
    w = rng.integers(0, 256, (7, 40)).astype(np.uint8)
    tab = resolve_multiplier("bam:h=4,v=0").table.astype(np.int64)
    zx, zw = 9, np.full(7, 131, np.int64)
    bias, scale = rng.integers(-3000, 3000, 7), np.full(7, 2e-4, np.float32)
    form = shift_form(tab, w)
    layer = qconv_layer(form, w, ConvGeometry(3, 40, 1, 1, 7, 1, 1), QConvQuant(zx, zw, bias, scale, 3, "uint8"),
                        signed_weights, "x", "y", "d_", dense=True)  # fmt: skip
    assert layer is not None
    got = _run(layer, x.reshape(2, 3, 40))  # rows of a rank-3 input (transformers)
    assert got.shape == (2, 3, 7)
    got = got.reshape(6, 7)
    acc = tab[x[:, None, :], w[None, :, :]].sum(-1) - zw * x.astype(np.int64).sum(-1, keepdims=True)
    acc = acc - (zx * w.astype(np.int64).sum(1) - 40 * zx * zw)
    want = _requantize(acc[:, :, None, None], bias, scale, 3, "uint8")[:, :, 0, 0]
    assert np.array_equal(got, want)


def test_weight_maps_that_do_not_fit_a_byte_are_refused():
    w = np.arange(256, dtype=np.uint8).reshape(4, 64, 1, 1)
    trunc = shift_form(resolve_multiplier("optrunc:ka=2,kb=2").table, w)  # 4·(b & ~3) up to 1008
    assert trunc is not None
    quant = QConvQuant(0, np.full(4, 128, np.int64), np.zeros(4, np.int64), np.ones(4, np.float32), 0, "uint8")
    assert qconv_weights(trunc, w, quant, True) is None and qconv_weights(trunc, w, quant, False) is None
    bam = shift_form(resolve_multiplier("bam:h=4,v=0").table, w)
    assert bam is not None
    made = qconv_weights(bam, w, quant, True)
    assert made is not None and made[0] == (0, 1, 2, 3, 4) and made[1].dtype == np.int8
