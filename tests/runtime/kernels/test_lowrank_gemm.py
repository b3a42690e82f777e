"""The low-rank GEMM kernel (lowrank_gemm) equals a product-by-product reference written here.

Hypothesis over shapes, strides, dilations, pads, pad codes, batch, operand signedness and low-rank
tables (broken-array, operand truncation, and random integer factorisations whose byte maps have
no fast form), with the host's int8 policy and with the int8 GEMM taken as inexact (the AVX2
policy). Also: the activation-map forms, the int8 probe, the pair-sum bound of the AVX2 policy and
the fallback when an int32 partial sum could overflow.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from approxtvm.runtime.kernels import KernelCache, conv2d_products, detect_cpu
from approxtvm.runtime.kernels.intconv import OrtSessionCache, weight_plan
from approxtvm.runtime.kernels.lowrank import find_factors
from approxtvm.runtime.kernels.lowrank_gemm import ActivationMap, gemm_plan, s8_gemm_exact
from approxtvm.runtime.multipliers.multiplier import Multiplier, operand_values

from .conftest import bam_table, draw_conv_case

HOST = detect_cpu()
#: The same host with the int8 GEMM taken as inexact (what a CPU without VNNI gets).
NO_VNNI = dataclasses.replace(HOST, vnni=False)


def product_reference(x, w, table, strides, dilations, pads, pad_value):
    """Every multiply of the conv is one lookup ``table[x_byte, w_byte]``, summed in int64, wrapped."""
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), pad_value, dtype=x.dtype)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x
    p = (xp.shape[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
    q = (xp.shape[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
    xb, wb = xp.view(np.uint8).astype(np.int64), w.view(np.uint8).astype(np.int64)
    t = np.asarray(table, np.int64)
    out = np.zeros((n, k, p, q), np.int64)
    for i in range(r):
        for j in range(s):
            r0, s0 = i * dilations[0], j * dilations[1]
            win = xb[
                :, :, r0 : r0 + strides[0] * (p - 1) + 1 : strides[0], s0 : s0 + strides[1] * (q - 1) + 1 : strides[1]
            ]
            # (N, 1, C, P, Q) activation bytes against (1, K, C, 1, 1) weight bytes: one lookup each
            out += t[win[:, None], wb[None, :, :, i, j, None, None]].sum(axis=2)
    return ((out + 2**31) % 2**32 - 2**31).astype(np.int32)


def _optrunc(signed: bool, ka: int, kb: int) -> np.ndarray:
    v = operand_values(signed)
    return ((v >> ka) << ka)[:, None] * ((v >> kb) << kb)[None, :]


def _random_lowrank(signed: bool, rank: int, seed: int) -> np.ndarray:
    """``a·b + Σ u_t(a) v_t(b)`` with random small-integer maps (no shift/mask form)."""
    rng = np.random.default_rng(seed)
    v = operand_values(signed)
    t = v[:, None] * v[None, :]
    for _ in range(rank):
        t = t + np.outer(rng.integers(-9, 10, 256), rng.integers(-40, 41, 256))
    return t


TABLES = {
    "bam4": lambda signed: bam_table(signed, 4),
    "bam2": lambda signed: bam_table(signed, 2),
    "optrunc": lambda signed: _optrunc(signed, 2, 3),
    "random2": lambda signed: _random_lowrank(signed, 2, 7),
}

CACHES = {"host": KernelCache(), "no_vnni": KernelCache(host_cpu=NO_VNNI)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    table=st.sampled_from(sorted(TABLES)),
    signed=st.booleans(),
    policy=st.sampled_from(sorted(CACHES)),
)
def test_lowrank_gemm_equals_product_reference(data, table, signed, policy):
    case = draw_conv_case(data.draw, signed)
    x, w, rng, lo, hi = case["x"], case["w"], case["rng"], case["lo"], case["hi"]
    strides, dilations, pads = case["strides"], case["dilations"], case["pads"]
    pad_value = int(rng.integers(lo, hi))
    mult = Multiplier(f"{table}_{signed}", TABLES[table](signed).astype(np.int32), signed)
    kw = dict(strides=strides, dilations=dilations, pads=pads, pad_value=pad_value)
    got = conv2d_products(x, w, mult, path="lowrank", cache=CACHES[policy], **kw)
    assert got.dtype == np.int32 and got.flags.c_contiguous
    assert np.array_equal(got, product_reference(x, w, mult.table, **kw))


def test_activation_map_forms_equal_their_table():
    codes = np.arange(256)
    rng = np.random.default_rng(0)
    maps = {
        "bit3": (codes >> 3) & 1,
        "16·bit1": ((codes >> 1) & 1) * 16,
        "1 − bit0": 1 - (codes & 1),
        "x − 128": codes ^ 0x80,
        "high nibble": codes & 0xF0,
        "15 − low nibble": 15 - (codes & 15),
        "random": rng.integers(0, 256, 256),
    }
    x = rng.integers(0, 256, (3, 7, 5), dtype=np.uint8)
    for name, m in maps.items():
        amap = ActivationMap.of(m.astype(np.uint8))
        assert (amap.lut is None) == (name != "random"), name
        out = np.empty_like(x)
        amap.apply(x, out, [None])
        assert np.array_equal(out, m.astype(np.uint8)[x]), name


def test_int8_probe_and_the_pair_bound_without_vnni():
    sessions = OrtSessionCache()
    assert s8_gemm_exact(sessions, vnni=False) is False
    exact = s8_gemm_exact(sessions, vnni=HOST.vnni)
    assert exact is (HOST.vnni and exact)  # a bool; True only on a VNNI host
    f = find_factors(bam_table(False, 4), False)
    rng = np.random.default_rng(1)
    wb = rng.integers(0, 256, (6, 4, 3, 3), dtype=np.uint8)
    plan = gemm_plan(wb, weight_plan(wb, f), f.divisor, signed_exact=False)
    assert plan is not None
    kinds = {gm.signed for call in plan.calls for gm in call.gemms}
    assert kinds == {True, False}  # the 1-bit terms as int8, the wide term as uint8
    for call in plan.calls:
        for gm in call.gemms:
            if gm.signed:  # no 16-bit pair sum of uint8 activations × int8 weights can saturate
                assert gm.w_mat.dtype == np.int8
                amax = max(int(m_bytes(m).max()) for m in gm.maps)
                assert 2 * amax * int(np.abs(gm.w_mat.astype(np.int64)).max()) <= 2**15 - 1
            else:
                assert gm.w_mat.dtype == np.uint8


def m_bytes(amap: ActivationMap) -> np.ndarray:
    """The uint8 activation values a map feeds to the GEMM, over all codes."""
    codes = np.arange(256, dtype=np.uint8)
    out = np.empty_like(codes)
    amap.apply(codes, out, [None])
    return out.astype(np.int64)


def test_int32_overflow_bound_falls_back_to_convinteger():
    """A reduction long enough for an int32 partial sum to overflow keeps the ConvInteger path."""
    mult = Multiplier("bam4", bam_table(False, 4), False)
    rng = np.random.default_rng(2)
    c = 7500  # 7500·9 taps per block: 5 blocks · 67500 · 128 · 255 > 2^31
    x = rng.integers(0, 256, (1, c, 3, 3), dtype=np.uint8)
    w = rng.integers(0, 256, (2, c, 3, 3), dtype=np.uint8)
    f = find_factors(mult.table, False, np.unique(w))
    assert gemm_plan(w, weight_plan(w, f), f.divisor, signed_exact=True) is None
    got = conv2d_products(x, w, mult, path="lowrank", cache=CACHES["host"])
    assert np.array_equal(got, product_reference(x, w, mult.table, (1, 1), (1, 1), (0, 0, 0, 0), 0))


def test_weight_sessions_stay_within_their_byte_budget_and_results_do_not_change():
    # An exploration worker compiles hundreds of configurations: the low-rank GEMM sessions that
    # hold a layer's weights as a constant must be evicted least-recently-used, and a session built
    # again after its eviction must give the same products.
    rng = np.random.default_rng(3)
    mult = Multiplier("bam4_u", bam_table(False, 4).astype(np.int32), False)
    cache = KernelCache()
    layers = [
        (rng.integers(0, 256, (1, 8, 6, 6)).astype(np.uint8), rng.integers(0, 256, (4, 8, 3, 3)).astype(np.uint8))
        for _ in range(6)
    ]
    first = [conv2d_products(x, w, mult, path="lowrank", cache=cache) for x, w in layers]
    sizes = cache.sessions._weighted.sizes()
    entry = max(set(sizes), key=sizes.count)  # the six layers' sessions (the CPU probe may add one)
    assert entry > 0 and sizes.count(entry) == len(layers)
    small = KernelCache()
    small.sessions.weight_max_bytes = int(2.5 * entry)  # room for two of them
    for _ in range(2):  # the second round rebuilds the evicted sessions
        again = [conv2d_products(x, w, mult, path="lowrank", cache=small) for x, w in layers]
        assert 0 < small.sessions.weight_session_bytes <= small.sessions.weight_max_bytes
        assert len(small.sessions._weighted) == 2 < len(cache.sessions._weighted)
    for a, b, (x, w) in zip(first, again, layers, strict=True):
        assert np.array_equal(a, b)
        assert np.array_equal(b, product_reference(x, w, mult.table, (1, 1), (1, 1), (0, 0, 0, 0), 0))


def test_weight_session_cache_is_lru_and_does_not_keep_oversized_sessions():
    built: list[str] = []

    def build(name: str):
        def make() -> object:
            built.append(name)
            return object()

        return make

    c = OrtSessionCache(weight_max_bytes=100)
    a = c.with_weights(("a",), 20, build("a"))  # counted twice: 40 bytes
    c.with_weights(("b",), 20, build("b"))
    assert c.with_weights(("a",), 20, build("a")) is a  # hit: a is now the most recent
    c.with_weights(("c",), 20, build("c"))  # 120 > 100: evicts b, the least recent
    assert c.weight_session_bytes == 80 and set(c._weighted) == {("a",), ("c",)}
    c.with_weights(("big",), 60, build("big"))  # 120 on its own: returned, not kept
    c.with_weights(("big",), 60, build("big"))
    assert built == ["a", "b", "c", "big", "big"] and set(c._weighted) == {("a",), ("c",)}


def test_default_weight_session_budget_follows_the_machine():
    from approxtvm.runtime.kernels.intconv import WEIGHT_SESSION_MIN_BYTES, default_weight_session_bytes

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = default_weight_session_bytes()
    # grows with the machine (an eighth of its memory), never below 1 GiB, never near all of it
    assert budget >= max(WEIGHT_SESSION_MIN_BYTES, physical // 8)
    assert budget <= max(WEIGHT_SESSION_MIN_BYTES, physical // 4)
    assert OrtSessionCache().weight_max_bytes == budget


#: Library circuits whose factorisation over the given weight bytes has a divisor: odd ones run in
#: int32 with the divisor's inverse modulo 2^32, even ones in int64 with a division.
DIVISOR_CASES = {
    "mul8u_17C8 all weights (odd)": ("mul8u_17C8", None, 1),
    "mul8u_18DU weights 100-159 (odd)": ("mul8u_18DU", (100, 160), 1),
    "mul8u_FTA weights 100-159 (even)": ("mul8u_FTA", (100, 160), 0),
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=st.sampled_from(sorted(DIVISOR_CASES)))
def test_lowrank_gemm_with_a_divisor_equals_product_reference(data, case):
    from approxtvm.runtime.multipliers import resolve_multiplier

    name, wrange, parity = DIVISOR_CASES[case]
    mult = resolve_multiplier(name)
    conv = draw_conv_case(data.draw, False)
    x, rng = conv["x"], conv["rng"]
    w = conv["w"] if wrange is None else rng.integers(*wrange, conv["w"].shape).astype(np.uint8)
    if wrange is not None:  # every byte of the range present, so the factorisation is the probed one
        w.reshape(-1)[: wrange[1] - wrange[0]] = np.arange(*wrange)[: w.size]
    f = find_factors(mult.table, False, None if wrange is None else np.arange(*wrange))
    assert f is not None and f.divisor > 1 and f.divisor % 2 == parity, (name, f and f.divisor)
    kw = dict(
        strides=conv["strides"], dilations=conv["dilations"], pads=conv["pads"], pad_value=int(rng.integers(0, 256))
    )
    got = conv2d_products(x, w, mult, path="lowrank", cache=CACHES["host"], **kw)
    assert got.dtype == np.int32
    assert np.array_equal(got, product_reference(x, w, mult.table, **kw))


#: Library circuits whose plans have several calls of one scale (merged into one GEMM each).
MERGE_CASES = ("mul8u_13QR", "mul8u_17QU", "mul8u_18DU", "mul8u_17C8")


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(MERGE_CASES), policy=st.sampled_from(["host", "no_vnni"]))
def test_merged_equal_scale_calls_equal_product_reference(data, name, policy):
    """Calls of equal scale run as one GEMM (fewer GEMMs than the weight plan has calls), and the
    sums still equal the product-by-product reference, with the int8 and the uint8 GEMM policy."""
    from approxtvm.runtime.multipliers import resolve_multiplier

    mult = resolve_multiplier(name)
    conv = draw_conv_case(data.draw, False)
    x, w, rng = conv["x"], conv["w"], conv["rng"]
    w = np.clip(rng.normal(128, 30, w.shape), 0, 255).astype(np.uint8)  # weights a layer has
    f = find_factors(mult.table, False, np.flatnonzero(np.bincount(w.ravel(), minlength=256)))
    assume(f is not None)
    wplan = weight_plan(w, f)
    signed_exact = policy == "host" and s8_gemm_exact(CACHES["host"].sessions, HOST.vnni)
    plan = gemm_plan(w, wplan, f.divisor, signed_exact)
    assume(plan is not None)
    assert len({c.scale for c in plan.calls}) == len(plan.calls)  # one call per scale
    assert sum(len(c.gemms) for c in plan.calls) <= len(wplan.calls) * 2
    kw = dict(
        strides=conv["strides"], dilations=conv["dilations"], pads=conv["pads"], pad_value=int(rng.integers(0, 256))
    )
    got = conv2d_products(x, w, mult, path="lowrank", cache=CACHES[policy], **kw)
    want = product_reference(x, w, mult.table, **kw)
    assert np.array_equal(got.astype(np.int64) % 2**32, want.astype(np.int64) % 2**32)


def test_merging_two_gemms_keeps_both_sums_and_refuses_an_overflowing_merge():
    """Two GEMMs of one scale merged: the merged weights are the two stacked, each one's extra
    columns zero over the other's rows; a merge whose partial sums could pass int32 is refused."""
    from approxtvm.runtime.kernels.lowrank_gemm import Gemm, _merge_two

    ident = ActivationMap.of(np.arange(256, dtype=np.uint8))
    rng = np.random.default_rng(5)
    taps, k = 3, 2
    wa = rng.integers(0, 256, (taps, k + 1)).astype(np.uint8)
    wb = rng.integers(0, 256, (taps, k)).astype(np.uint8)
    a = Gemm((0,), (ident,), False, wa, k, (7,), "a")
    b = Gemm((0,), (ident,), False, wb, k, (), "b")
    m = _merge_two(a, b, k, taps)
    assert m is not None and m.extra_coefs == (7,) and m.main_cols == k
    want = np.zeros((2 * taps, k + 1), np.int64)
    want[:taps] = wa
    want[taps:, :k] = wb
    assert np.array_equal(m.w_mat.astype(np.int64), want)
    xa, xb = rng.integers(0, 256, (4, taps)), rng.integers(0, 256, (4, taps))
    merged = np.concatenate([xa, xb], axis=1) @ m.w_mat.astype(np.int64)
    assert np.array_equal(merged[:, :k], xa @ wa[:, :k].astype(np.int64) + xb @ wb.astype(np.int64))
    assert np.array_equal(merged[:, k], xa @ wa[:, k].astype(np.int64))
    # int8 weights are stored as g − 128: merged the same way, zero rows stored as −128
    sa = Gemm((0,), (ident,), True, (wa.astype(np.int64) - 128).astype(np.int8), k, (7,), "sa")
    sb = Gemm((0,), (ident,), True, (wb.astype(np.int64) - 128).astype(np.int8), k, (), "sb")
    ms = _merge_two(sa, sb, k, taps)
    assert ms is not None and np.array_equal(ms.w_mat.astype(np.int64) + 128, want)
    # each half alone within the int32 bound (20,000 · 255 · 255 < 2^31), merged not
    big = 20_000
    ga = Gemm((0,), (ident,), False, np.full((big, k), 255, np.uint8), k, (), "ga")
    assert _merge_two(ga, ga, k, big) is None
