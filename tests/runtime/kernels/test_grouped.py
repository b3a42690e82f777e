"""Grouped / depthwise convolutions and activation × activation MatMuls equal a product-by-product
numpy reference written here (hypothesis over shapes, groups, strides, pads; non-commutative tables)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels import tvm_available
from approxtvm.runtime.kernels.act_matmul import choose_matmul_path, matmul_products
from approxtvm.runtime.kernels.grouped import grouped_conv2d_products
from approxtvm.runtime.multipliers import resolve_multiplier

FAST = {"exact_u": ["exact"], "exact_s": ["exact"], "bam_u": ["lowrank"], "bam_s": ["lowrank"]}
TABLE = ["table_numpy"] + (["table"] if tvm_available() else [])
ALL = ["exact_u", "exact_s", "bam_u", "bam_s", "rand_u", "rand_s"]


def grouped_reference(x, w, table, groups, strides, dilations, pads, pad_value):
    """Product by product: every (n, k, p, q, c, r, s) multiply is one table lookup ``table[x, w]``."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), pad_value, dtype=x.dtype)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x
    p = (xp.shape[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
    q = (xp.shape[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
    xb, wb = xp.view(np.uint8).astype(np.int64), w.view(np.uint8).astype(np.int64)
    out = np.zeros((n, k, p, q), np.int64)
    for ko in range(k):
        grp = ko // kg
        for ci in range(cg):
            for ri in range(r):
                for si in range(s):
                    rows = xb[
                        :,
                        grp * cg + ci,
                        ri * dilations[0] : ri * dilations[0] + (p - 1) * strides[0] + 1 : strides[0],
                        si * dilations[1] : si * dilations[1] + (q - 1) * strides[1] + 1 : strides[1],
                    ]
                    out[:, ko] += table[rows, wb[ko, ci, ri, si]]
    return out.astype(np.int32)


@st.composite
def grouped_case(draw):
    groups = draw(st.integers(1, 6))
    cg = draw(st.sampled_from([1, 1, 2, 3]))  # depthwise (cg = 1) half of the time
    kg = draw(st.sampled_from([1, 1, 2]))
    r = draw(st.sampled_from([1, 3, 5]))
    s = draw(st.sampled_from([1, 3, r]))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
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
        h=draw(st.integers(h0, h0 + 6)),
        w=draw(st.integers(w0, w0 + 6)),
        dil=dil,
        strides=strides,
        pads=pads,
        seed=draw(st.integers(0, 2**31)),
        pad_code=draw(st.integers(0, 255)),
    )


def _grouped_operands(m, case):
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    x = rng.integers(0, 256, (case["n"], g * case["cg"], case["h"], case["w"]), dtype=np.uint8)
    w = rng.integers(0, 256, (g * case["kg"], case["cg"], case["r"], case["s"]), dtype=np.uint8)
    pad = case["pad_code"]
    if m.signed:
        return x.view(np.int8), w.view(np.int8), pad - 256 if pad > 127 else pad
    return x, w, pad


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=grouped_case())
def test_grouped_paths_match_product_by_product_reference(mults, kcache, name, case):
    m = mults[name]
    x, w, pad = _grouped_operands(m, case)
    kw = dict(strides=case["strides"], dilations=case["dil"], pads=case["pads"], pad_value=pad)
    ref = grouped_reference(x, w, m.table, case["groups"], case["strides"], case["dil"], case["pads"], pad)
    for path in FAST.get(name, []) + TABLE + ["reference", None]:
        got = grouped_conv2d_products(x, w, m, groups=case["groups"], path=path, cache=kcache, **kw)
        assert got.dtype == np.int32
        assert np.array_equal(got, ref), path


def test_padding_taps_go_through_the_table(mults, kcache):
    # a depthwise 3×3 over a 1×1 image with pad 1: 8 of the 9 taps are padding
    m = mults["rand_u"]
    x = np.array([[[[7]], [[9]]]], np.uint8)
    w = np.arange(18, dtype=np.uint8).reshape(2, 1, 3, 3)
    got = grouped_conv2d_products(x, w, m, groups=2, pads=(1, 1, 1, 1), pad_value=200, cache=kcache)
    t = m.table.astype(np.int64)
    for c, xv in enumerate((7, 9)):
        want = sum(t[200, w[c, 0, r, s]] for r in range(3) for s in range(3) if (r, s) != (1, 1))
        assert got[0, c, 0, 0] == np.int32(want + t[xv, w[c, 0, 1, 1]])


def test_wide_groups_use_per_group_convs_and_agree(mults, kcache):
    # RegNet/ResNeXt-like: few groups, 8×8 channels per group (the per-group table path)
    m = mults["rand_u"]
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 16, 6, 7), dtype=np.uint8)
    w = rng.integers(0, 256, (16, 8, 3, 3), dtype=np.uint8)
    ref = grouped_reference(x, w, m.table, 2, (1, 1), (1, 1), (1, 1, 1, 1), 3)
    for path in TABLE:
        got = grouped_conv2d_products(x, w, m, groups=2, pads=(1, 1, 1, 1), pad_value=3, path=path, cache=kcache)
        assert np.array_equal(got, ref), path


def test_grouped_rejects_channels_that_do_not_split(mults):
    x = np.zeros((1, 6, 4, 4), np.uint8)
    with pytest.raises(MultiplierError, match="groups"):
        grouped_conv2d_products(x, np.zeros((4, 3, 3, 3), np.uint8), mults["exact_u"], groups=4)
    with pytest.raises(MultiplierError, match="approximate"):
        grouped_conv2d_products(x, np.zeros((6, 1, 3, 3), np.uint8), mults["rand_u"], groups=6, path="exact")


# ----------------------------------------------------------------------------------- act × act


def matmul_reference(a, b, table):
    """``Σ_c table[a[..., m, c], b[..., c, k]]``, one product at a time over c."""
    ab, bb = a.view(np.uint8).astype(np.int64), b.view(np.uint8).astype(np.int64)
    out = np.zeros((*a.shape[:-1], b.shape[-1]), np.int64)
    for ci in range(a.shape[-1]):
        out += table[ab[..., :, ci][..., :, None], bb[..., ci, :][..., None, :]]
    return out.astype(np.int32)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lead=st.sampled_from([(), (2,), (1, 3), (2, 2)]),
    m_=st.integers(1, 9),
    c=st.integers(1, 40),
    k=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_act_matmul_paths_match_reference(mults, kcache, name, lead, m_, c, k, seed):
    m = mults[name]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (*lead, m_, c), dtype=np.uint8).view(m.operand_dtype)
    b = rng.integers(0, 256, (*lead, c, k), dtype=np.uint8).view(m.operand_dtype)
    ref = matmul_reference(a, b, m.table)
    for path in FAST.get(name, []) + TABLE + ["reference", None]:
        got = matmul_products(a, b, m, path=path, cache=kcache)
        assert got.dtype == np.int32 and got.shape == ref.shape
        assert np.array_equal(got, ref), path


def test_act_matmul_operand_order_is_row_then_column(mults, kcache):
    # a non-commutative table: swapping the operands must change the result
    m = mults["rand_u"]
    a = np.array([[3, 200]], np.uint8)
    b = np.array([[200], [3]], np.uint8)
    t = m.table.astype(np.int64)
    got = matmul_products(a, b, m, cache=kcache)
    assert got[0, 0] == np.int32(t[3, 200] + t[200, 3])
    assert choose_matmul_path(m, kcache) in ("table", "table_numpy")


@pytest.mark.real_circuit
def test_mul8u_fta_depthwise_and_matmul(kcache):
    m = resolve_multiplier("mul8u_FTA")  # shipped with the package: runs on any clone
    assert m.table[200, 3] != m.table[3, 200]  # DESIGN §3: activation = row
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (2, 8, 9, 9), dtype=np.uint8)
    w = rng.integers(0, 256, (8, 1, 3, 3), dtype=np.uint8)
    kw = dict(strides=(2, 2), dilations=(1, 1), pads=(1, 1, 1, 1), pad_value=200)
    ref = grouped_reference(x, w, m.table, 8, kw["strides"], kw["dilations"], kw["pads"], 200)
    assert np.array_equal(grouped_conv2d_products(x, w, m, groups=8, cache=kcache, **kw), ref)
    a = rng.integers(0, 256, (3, 5, 16), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 16, 7), dtype=np.uint8)
    assert np.array_equal(matmul_products(a, b, m, cache=kcache), matmul_reference(a, b, m.table))
