"""The fused column kernel (products, zero-point correction, requantization in one call) equals a
product-by-product reference written here, and whole models give the same outputs fused or not.

Hypothesis over grouped and ungrouped shapes, strides, dilations, pads and pad codes, random
non-commutative tables in both 16-bit ranges, per-channel or zero weight zero points, random
correction constants (int32 wrap-around included) and requantization constants; both instruction-
set variants where the host runs them.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.runtime.kernels import KernelCache, detect_cpu, tvm_available
from approxtvm.runtime.kernels.column_fused import FusedColumn, Requant, column_pays
from approxtvm.runtime.kernels.geometry import ConvGeometry
from tests.runtime.kernels.test_table_perm import _operands, case, product_reference

pytestmark = pytest.mark.skipif(not tvm_available(), reason="the fused column kernel is a TVM kernel")

HOST = detect_cpu()


@pytest.fixture(scope="module")
def caches() -> dict[str, KernelCache]:
    """One cache per instruction-set variant the host can run (AVX2 code runs on AVX-512 hosts)."""
    out = {"host": KernelCache()}
    if HOST.avx512:
        out["avx2"] = KernelCache(host_cpu=dataclasses.replace(HOST, llvm_cpu="haswell", avx512=False, vnni=False))
    return out


def _wrap(v: np.ndarray) -> np.ndarray:
    return ((v.astype(np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def corrected_reference(x, w, table, groups, strides, dil, pads, pad, zw, const) -> np.ndarray:
    """``Σ table[x, w] − z_w[k]·Σ x_pad − const[k]`` per output, the window sum taken tap by tap
    over the padded codes (their values, not their bytes); int32 wrap."""
    raw = product_reference(x, w, table, groups, strides, dil, pads, pad).astype(np.int64)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), pad, dtype=np.int64)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x
    p, q = raw.shape[2:]
    sums = np.zeros((n, k, p, q), np.int64)
    for ko in range(k):
        for ci in range(cg):
            for ri in range(r):
                for si in range(s):
                    sums[:, ko] += xp[
                        :,
                        ko // kg * cg + ci,
                        ri * dil[0] : ri * dil[0] + (p - 1) * strides[0] + 1 : strides[0],
                        si * dil[1] : si * dil[1] + (q - 1) * strides[1] + 1 : strides[1],
                    ]
    zw64, c64 = zw.astype(np.int64)[None, :, None, None], const.astype(np.int64)[None, :, None, None]
    return _wrap(raw - zw64 * sums - c64)


def requant_reference(acc: np.ndarray, rq: Requant) -> np.ndarray:
    """onnxruntime's integer-kernel requantization, one float32 step at a time."""
    info = np.iinfo(np.dtype(rq.dtype))
    total = _wrap(acc.astype(np.int64) + rq.bias_codes.astype(np.int64)[None, :, None, None])
    v = total.astype(np.float32) * rq.scale[None, :, None, None]
    v = np.minimum(np.maximum(v, np.float32(info.min - rq.zero_point)), np.float32(info.max - rq.zero_point))
    return (np.rint(v) + np.float32(rq.zero_point)).astype(rq.dtype)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cs=case(grouped=True) | case(grouped=False), zero_zw=st.booleans(), out=st.sampled_from(["uint8", "int8"]))
def test_fused_column_matches_product_by_product_reference(caches, cs, zero_zw, out):
    m, x, w, pad = _operands(cs)
    rng = np.random.default_rng(cs["seed"] + 7)
    groups, k = cs["groups"], w.shape[0]
    lo, hi = (-128, 128) if m.signed else (0, 256)
    zw = np.zeros(k, np.int32) if zero_zw else rng.integers(lo, hi, k).astype(np.int32)
    const = rng.integers(-(2**31), 2**31, k).astype(np.int32)  # wraps the accumulator
    n, c, h, wd = x.shape
    g = ConvGeometry(n, c, h, wd, k, w.shape[2], w.shape[3], *cs["strides"], *cs["dil"], *cs["pads"])
    ref = corrected_reference(x, w, m.table, groups, cs["strides"], cs["dil"], cs["pads"], pad, zw, const)
    # small scales keep most outputs inside the 8-bit range, large ones saturate
    rq = Requant(
        rng.integers(-(2**20), 2**20, k).astype(np.int32),
        (rng.random(k) * 10.0 ** rng.uniform(-9, -3)).astype(np.float32),
        int(rng.integers(0, 256)) if out == "uint8" else int(rng.integers(-128, 128)),
        out,
    )
    wb = w.view(np.uint8)
    for isa, cache in caches.items():
        fused = FusedColumn(wb, m.table, groups, g, pad, (zw, const), m.signed, None, cache.tvm_kernels(), m.table_hash)
        got = fused(x)
        assert got.dtype == np.int32 and np.array_equal(got, ref), isa
        assert np.array_equal(fused(x), ref), isa  # buffers reused: the padding border survives
    quant = FusedColumn(wb, m.table, groups, g, pad, (zw, const), m.signed, rq, caches["host"].tvm_kernels())
    codes = quant(x)
    assert codes.dtype == np.dtype(out)
    assert np.array_equal(codes, requant_reference(ref, rq))


def test_per_thread_buffers(caches):
    """Concurrent calls of one prepared layer from several threads each get their own result."""
    rng = np.random.default_rng(3)
    table = rng.integers(0, 65536, (256, 256)).astype(np.int32)
    g = ConvGeometry(2, 8, 12, 12, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)
    w = rng.integers(0, 256, (8, 1, 3, 3), dtype=np.uint8)
    zw, const = rng.integers(0, 256, 8).astype(np.int32), np.zeros(8, np.int32)
    fused = FusedColumn(w, table, 8, g, 5, (zw, const), False, None, caches["host"].tvm_kernels())
    xs = [rng.integers(0, 256, (2, 8, 12, 12), dtype=np.uint8) for _ in range(8)]
    refs = [corrected_reference(x, w, table, 8, (2, 2), (1, 1), (1, 1, 1, 1), 5, zw, const) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            outs = list(pool.map(fused, xs))
            assert all(np.array_equal(o, r) for o, r in zip(outs, refs, strict=True))


def test_cost_model_picks_the_column_kernel_for_narrow_layers():
    """Grouped layers always take it; an ungrouped layer only with register lookups and when its
    32-channel blocks would waste lanes (or it is small); wide layers keep the register-LUT kernel."""
    dw = ConvGeometry(64, 32, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)
    assert column_pays(dw, 32, "table", None, register_lut=False)
    assert column_pays(dw, 32, "lowrank", 5, register_lut=True)
    narrow = ConvGeometry(64, 16, 32, 32, 8, 1, 1)  # 8 of 32 lanes used by the register-LUT kernel
    assert column_pays(narrow, 1, "table", None, register_lut=True)
    assert not column_pays(narrow, 1, "table", None, register_lut=False)  # scalar column reads are slow
    assert not column_pays(narrow, 1, "table_perm", None, register_lut=True)  # an explicit kernel choice
    small = ConvGeometry(1, 16, 8, 8, 64, 1, 1)  # 65 K MACs: the other paths' fixed costs dominate
    assert column_pays(small, 1, "table", None, register_lut=False)
    wide = ConvGeometry(1, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)  # ResNet-50 stage 3
    assert not column_pays(wide, 1, "table", None, register_lut=True)
    assert not column_pays(wide, 1, "lowrank", 5, register_lut=True)
    assert not column_pays(wide, 1, "lowrank", None, register_lut=True)
