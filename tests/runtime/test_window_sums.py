"""Layer accumulators (int32 ring arithmetic, onnxruntime window sums) equal the contract computed
product by product: ``acc = Σ_taps (M(x, w) − z_w·x − z_x·w + z_x·z_w)`` in int64, wrapped once."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.runtime.window_sums import WindowSums
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.schedule import Intrinsic, LayerSchedule, QuantParams, WeightLayout
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import SPEC, _mapping

_RNG = np.random.default_rng(11)
TABLES = {
    False: Multiplier("rand_u", _RNG.integers(0, 65536, (256, 256)).astype(np.int32), False),
    True: Multiplier("rand_s", _RNG.integers(-16384, 16385, (256, 256)).astype(np.int32), True),
}


def contract(x, w, table, groups, strides, dilations, pads, zx, zw):
    """Every tap: ``M(x, w) − z_w x − z_x w + z_x z_w`` (padded taps hold z_x), int64 then wrapped."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), zx, dtype=np.int64)
    xp[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = x
    xb = xp.astype(np.int64) & 0xFF
    wv = w.astype(np.int64)
    p = (xp.shape[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
    q = (xp.shape[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
    t = table.astype(np.int64)
    out = np.zeros((n, k, p, q), np.int64)
    for ko in range(k):
        for ci in range(cg):
            for ri in range(r):
                for si in range(s):
                    sl = (
                        slice(None),
                        ko // kg * cg + ci,
                        slice(ri * dilations[0], ri * dilations[0] + (p - 1) * strides[0] + 1, strides[0]),
                        slice(si * dilations[1], si * dilations[1] + (q - 1) * strides[1] + 1, strides[1]),
                    )
                    xv, b = xp[sl], xb[sl]
                    out[:, ko] += t[b, wv[ko, ci, ri, si] & 0xFF] - zw[ko] * xv - zx * wv[ko, ci, ri, si] + zx * zw[ko]
    return out.astype(np.int32)


def _schedule(shape: LayerShape, mult: Multiplier, zx: int, zws: tuple[int, ...]) -> LayerSchedule:
    q = QuantParams(mult.signed, 0.1, zx, (0.01,) * len(zws), zws)
    intr = Intrinsic("vacc.mac8", 8, mult.name, mult.name, mult.table_hash, 0.2)
    return LayerSchedule(
        "L", "sym", shape, q, False, ApproxConfig(), SPEC.name, _mapping(shape), intr, WeightLayout((), (), ())
    )


@st.composite
def layer(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    kg = draw(st.integers(1, 3))
    r, s = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2, 3]))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, (r - 1) * dil[0] + 1 - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, (s - 1) * dil[1] + 1 - pads[1] - pads[3]), 7))
    signed = draw(st.booleans())
    per_channel = draw(st.booleans())
    lo, hi = (-128, 127) if signed else (0, 255)
    zx = draw(st.integers(lo, hi))
    nz = groups * kg if per_channel else 1
    zws = tuple(draw(st.integers(lo, hi)) for _ in range(nz))
    shape = LayerShape.conv2d(
        draw(st.integers(1, 2)), groups * kg, groups * cg, h, w, r, s, strides=strides, dilations=dil, pads=pads,
        groups=groups,
    )  # fmt: skip
    return shape, signed, zx, zws, draw(st.integers(0, 2**31))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=layer())
def test_accumulators_equal_the_contract_product_by_product(case):
    shape, signed, zx, zws, seed = case
    mult = TABLES[signed]
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 128) if signed else (0, 256)
    x = rng.integers(lo, hi, (shape.n, shape.c, shape.h, shape.w)).astype(dt)
    w = rng.integers(lo, hi, (shape.k, shape.c_per_group, shape.r, shape.s)).astype(dt)
    prog = LayerProgram(_schedule(shape, mult, zx, zws), w, None, mult, path="table_numpy")
    zw = np.broadcast_to(np.asarray(zws, np.int64), (shape.k,))
    pads = (shape.pad_top, shape.pad_left, shape.pad_bottom, shape.pad_right)
    want = contract(
        x, w, mult.table, shape.groups, (shape.stride_h, shape.stride_w), (shape.dilation_h, shape.dilation_w),
        pads, zx, zw,
    )  # fmt: skip
    got = accumulate(x, prog)
    assert got.dtype == np.int32
    assert np.array_equal(got, want)


def test_window_sums_count_padding_as_the_zero_point():
    # 3×3 window over a 2×2 image with pad 1, 2 channels: corner windows see 5 padded taps per channel
    shape = LayerShape.conv2d(1, 1, 2, 2, 2, 3, 3, pads=(1, 1, 1, 1))
    sched = _schedule(shape, TABLES[False], 9, (0,))
    x = np.array([[[[1, 2], [3, 4]], [[10, 20], [30, 40]]]], np.uint8)
    got = WindowSums(sched)(x)
    assert got.shape == (1, 1, 2, 2)
    assert np.all(got == 110 + 2 * 5 * 9)  # every window covers the whole image plus 5 padded taps


def test_window_sums_of_signed_codes():
    shape = LayerShape.conv2d(1, 2, 2, 3, 3, 2, 2, pads=(0, 0, 1, 1), groups=2)
    sched = _schedule(shape, TABLES[True], -5, (0,))
    x = np.arange(-9, 9, dtype=np.int8).reshape(1, 2, 3, 3)
    got = WindowSums(sched)(x)
    xp = np.full((1, 2, 4, 4), -5, np.int64)
    xp[:, :, :3, :3] = x
    want = xp[:, :, :3, :3] + xp[:, :, 1:, :3] + xp[:, :, :3, 1:] + xp[:, :, 1:, 1:]
    assert np.array_equal(got, want)
