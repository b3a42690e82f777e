"""The register-LUT kernels (table_perm) equal a product-by-product numpy reference written here.

Hypothesis over shapes, strides, dilations, pads and pad codes, with random non-commutative
tables in both 16-bit ranges (signed and unsigned operands); both instruction-set variants of the
grouped kernel where the host runs them; operand order checked against an analytic table.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels import KernelCache, conv2d_products, dense_products, detect_cpu, tvm_available
from approxtvm.runtime.kernels.act_matmul import matmul_products
from approxtvm.runtime.kernels.grouped import grouped_conv2d_products
from approxtvm.runtime.multipliers.multiplier import Multiplier

pytestmark = pytest.mark.skipif(not tvm_available(), reason="the register-LUT kernels are TVM kernels")

HOST = detect_cpu()
AVX512 = HOST.avx512
needs_avx512 = pytest.mark.skipif(not AVX512, reason="vpermi2w needs an AVX-512 BW host; this CPU lacks it")


def product_reference(x, w, table, groups, strides, dilations, pads, pad_value):
    """Every multiply of the (grouped) conv is one lookup ``table[x_byte, w_byte]``; int32 wrap."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), pad_value, dtype=x.dtype)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x
    p = (xp.shape[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
    q = (xp.shape[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
    xb, wb = xp.view(np.uint8).astype(np.int64), w.view(np.uint8).astype(np.int64)
    t = np.asarray(table, np.int64)
    out = np.zeros((n, k, p, q), np.int64)
    for ko in range(k):
        for ci in range(cg):
            for ri in range(r):
                for si in range(s):
                    rows = xb[
                        :,
                        ko // kg * cg + ci,
                        ri * dilations[0] : ri * dilations[0] + (p - 1) * strides[0] + 1 : strides[0],
                        si * dilations[1] : si * dilations[1] + (q - 1) * strides[1] + 1 : strides[1],
                    ]
                    out[:, ko] += t[rows, wb[ko, ci, ri, si]]
    return out.astype(np.int32)


def _table(kind: str, seed: int) -> tuple[np.ndarray, bool]:
    rng = np.random.default_rng(seed)
    if kind == "uint16":  # unsigned operands, values up to 65535 (mul8u range)
        return rng.integers(0, 65536, (256, 256)).astype(np.int32), False
    return rng.integers(-32768, 32768, (256, 256)).astype(np.int32), True  # signed operands, int16 values


@st.composite
def case(draw, grouped: bool):
    groups = draw(st.integers(2, 5)) if grouped else 1
    cg = draw(st.sampled_from([1, 1, 2, 3])) if grouped else draw(st.integers(1, 9))
    kg = draw(st.sampled_from([1, 2])) if grouped else draw(st.integers(1, 70))
    r = draw(st.sampled_from([1, 2, 3, 5]))
    s = draw(st.sampled_from([1, 3, r]))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h0 = max(1, (r - 1) * dil[0] + 1 - pads[0] - pads[2])
    w0 = max(1, (s - 1) * dil[1] + 1 - pads[1] - pads[3])
    return dict(
        n=draw(st.integers(1, 2)),
        groups=groups,
        cg=cg,
        kg=kg,
        r=r,
        s=s,
        h=draw(st.integers(h0, h0 + 9)),
        w=draw(st.integers(w0, w0 + 9)),
        dil=dil,
        strides=strides,
        pads=pads,
        seed=draw(st.integers(0, 2**31)),
        pad_code=draw(st.integers(0, 255)),
        kind=draw(st.sampled_from(["uint16", "int16"])),
    )


def _operands(cs):
    rng = np.random.default_rng(cs["seed"])
    table, signed = _table(cs["kind"], cs["seed"] + 1)
    g = cs["groups"]
    x = rng.integers(0, 256, (cs["n"], g * cs["cg"], cs["h"], cs["w"]), dtype=np.uint8)
    w = rng.integers(0, 256, (g * cs["kg"], cs["cg"], cs["r"], cs["s"]), dtype=np.uint8)
    pad = cs["pad_code"]
    m = Multiplier(f"rand_{cs['kind']}", table, signed)
    if signed:
        return m, x.view(np.int8), w.view(np.int8), pad - 256 if pad > 127 else pad
    return m, x, w, pad


@pytest.fixture(scope="module")
def caches() -> dict[str, KernelCache]:
    """One cache per instruction-set variant the host can run (AVX2 code runs on AVX-512 hosts)."""
    out = {"host": KernelCache()}
    if HOST.avx512:
        out["avx2"] = KernelCache(host_cpu=dataclasses.replace(HOST, llvm_cpu="haswell", avx512=False, vnni=False))
    return out


@needs_avx512
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cs=case(grouped=False))
def test_register_lut_conv_matches_product_by_product_reference(caches, cs):
    m, x, w, pad = _operands(cs)
    kw = dict(strides=cs["strides"], dilations=cs["dil"], pads=cs["pads"], pad_value=pad)
    ref = product_reference(x, w, m.table, 1, cs["strides"], cs["dil"], cs["pads"], pad)
    got = conv2d_products(x, w, m, path="table_perm", cache=caches["host"], **kw)
    assert got.dtype == np.int32
    assert np.array_equal(got, ref)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cs=case(grouped=True))
def test_column_kernel_matches_product_by_product_reference(caches, cs):
    m, x, w, pad = _operands(cs)
    kw = dict(strides=cs["strides"], dilations=cs["dil"], pads=cs["pads"], pad_value=pad)
    ref = product_reference(x, w, m.table, cs["groups"], cs["strides"], cs["dil"], cs["pads"], pad)
    for isa, cache in caches.items():
        got = grouped_conv2d_products(x, w, m, groups=cs["groups"], path="table", cache=cache, **kw)
        assert got.dtype == np.int32
        assert np.array_equal(got, ref), isa


def _order_table() -> np.ndarray:
    """``T[a, b] = 128·a − b``: not commutative, every (a, b) gives its own value, fits int16."""
    a = np.arange(256)[:, None]
    b = np.arange(256)[None, :]
    return (128 * a - b).astype(np.int32)


def test_operand_order_and_padding_taps_analytic(caches):
    # activation = row, weight = column; 8 of 9 taps of a 3×3 over a 1×1 image are padding (code 200)
    m = Multiplier("order", _order_table(), False)
    x = np.array([[[[3]], [[5]]]], np.uint8)
    w = np.full((2, 1, 3, 3), 7, np.uint8)
    w[1] = 11
    for cache in caches.values():
        got = grouped_conv2d_products(x, w, m, groups=2, pads=(1, 1, 1, 1), pad_value=200, cache=cache, path="table")
        assert got[0, 0, 0, 0] == 8 * (128 * 200 - 7) + (128 * 3 - 7)
        assert got[0, 1, 0, 0] == 8 * (128 * 200 - 11) + (128 * 5 - 11)
    if AVX512:
        wd = np.full((3, 2, 1, 1), 9, np.uint8)
        got = conv2d_products(x, wd, m, path="table_perm", cache=caches["host"])
        assert np.all(got == (128 * 3 - 9) + (128 * 5 - 9))


@needs_avx512
def test_dense_rows_on_the_register_lut_kernel(caches):
    m, _, _, _ = _operands(dict(kind="uint16", seed=5, groups=1, cg=1, kg=1, n=1, h=1, w=1, r=1, s=1, pad_code=0))
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (13, 40), dtype=np.uint8)
    w = rng.integers(0, 256, (67, 40), dtype=np.uint8)
    want = product_reference(x[:, :, None, None], w[:, :, None, None], m.table, 1, (1, 1), (1, 1), (0,) * 4, 0)
    got = dense_products(x, w, m, path="table_perm", cache=caches["host"])
    assert np.array_equal(got, want[:, :, 0, 0])


def test_activation_matmul_on_the_column_kernel(caches):
    rng = np.random.default_rng(4)
    for kind in ("uint16", "int16"):
        table, signed = _table(kind, 11)
        m = Multiplier(kind, table, signed)
        dt = np.int8 if signed else np.uint8
        a = rng.integers(0, 256, (2, 3, 9, 17), dtype=np.uint8).view(dt)
        b = rng.integers(0, 256, (2, 3, 17, 6), dtype=np.uint8).view(dt)
        t = table.astype(np.int64)
        want = np.zeros((2, 3, 9, 6), np.int64)
        for ci in range(17):
            want += t[a.view(np.uint8)[..., :, ci, None], b.view(np.uint8)[..., None, ci, :]]
        for cache in caches.values():
            got = matmul_products(a, b, m, path="table", cache=cache)
            assert np.array_equal(got, want.astype(np.int32))


def test_wide_tables_fall_back_to_the_other_kernels(caches):
    # values beyond 16 bits: the automatic table path uses the per-weight-table/gather kernels, still exact
    rng = np.random.default_rng(2)
    table = rng.integers(-(2**20), 2**20, (256, 256)).astype(np.int32)
    m = Multiplier("wide", table, False)
    x = rng.integers(0, 256, (1, 3, 6, 5), dtype=np.uint8)
    w = rng.integers(0, 256, (4, 3, 3, 3), dtype=np.uint8)
    ref = product_reference(x, w, table, 1, (1, 1), (1, 1), (1, 1, 1, 1), 9)
    got = conv2d_products(x, w, m, pads=(1, 1, 1, 1), pad_value=9, path="table", cache=caches["host"])
    assert np.array_equal(got, ref)
    wg = w[:, :1]
    refg = product_reference(x, np.concatenate([wg[:3]]), table, 3, (1, 1), (1, 1), (1, 1, 1, 1), 9)
    gotg = grouped_conv2d_products(x, wg[:3], m, groups=3, pads=(1, 1, 1, 1), pad_value=9, cache=caches["host"])
    assert np.array_equal(gotg, refg)
    if AVX512:
        with pytest.raises(MultiplierError, match="16 bits"):
            conv2d_products(x, w, m, pads=(1, 1, 1, 1), path="table_perm", cache=caches["host"])


def test_table_perm_refused_without_avx512():
    cpu = dataclasses.replace(HOST, llvm_cpu="haswell", avx512=False, vnni=False)
    m = Multiplier("order", _order_table(), False)
    x = np.zeros((1, 1, 3, 3), np.uint8)
    with pytest.raises(MultiplierError, match="AVX-512"):
        conv2d_products(x, np.zeros((1, 1, 1, 1), np.uint8), m, path="table_perm", cache=KernelCache(host_cpu=cpu))


def test_layer_store_pickles_without_its_prepared_kernels(caches):
    import pickle

    from approxtvm.runtime.kernels import LayerStore

    m = Multiplier("order", _order_table(), False)
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (1, 4, 5, 5), dtype=np.uint8)
    w = rng.integers(0, 256, (4, 1, 3, 3), dtype=np.uint8)
    store = LayerStore.for_weights(w)
    want = grouped_conv2d_products(x, w, m, groups=4, pads=(1,) * 4, cache=caches["host"], store=store)
    assert any(k[0] == "column" for k in store.entries)  # the prepared kernel is kept
    back = pickle.loads(pickle.dumps(store))
    assert back.weight_key == store.weight_key and not any(k[0] == "column" for k in back.entries)
    got = grouped_conv2d_products(x, w, m, groups=4, pads=(1,) * 4, cache=caches["host"], store=back)
    assert np.array_equal(got, want)
