"""Package link faults on each receiving chiplet's copy, against an independent per-chiplet numpy conv."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from approxtvm.runtime import faults
from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.faults.package_faults import (
    arrival_flip_probability,
    chiplet_parts,
    package_delta,
    package_rng,
    received_words,
    sample_package_faults,
)
from approxtvm.runtime.faults.physics import nop_ber
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.package import PackageMapping, Partition, sub_shape
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_S, RAND_U, _program

PKG2 = AcceleratorSpec.load("simba_package_2x2")
PKG6 = AcceleratorSpec.load("simba_package_6x6")

# (shape, partition): every split family, padding/stride/dilation, grouped and dense layers
CASES = [
    (LayerShape.conv2d(2, 8, 6, 7, 7, 3, 3, pads=(1, 1, 1, 1)), Partition((("K", 4),))),
    (LayerShape.conv2d(1, 4, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1)), Partition((("C", 4),))),
    (LayerShape.conv2d(1, 4, 3, 7, 8, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1)), Partition((("P", 2), ("Q", 2)))),
    (LayerShape.conv2d(2, 6, 4, 8, 8, 3, 3, pads=(2, 1, 2, 1), dilations=(2, 2)), Partition((("N", 2), ("P", 2)))),
    (LayerShape.conv2d(1, 8, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1), groups=4), Partition((("G", 4),))),
    (LayerShape.dense(3, 12, 16), Partition((("K", 2), ("C", 2)))),
    (LayerShape.conv2d(1, 12, 6, 6, 6, 1, 1), Partition((("K", 6), ("P", 3), ("Q", 2)))),
]


def _package_program(shape, part, spec, mult=RAND_U, seed=0):  # type: ignore[no-untyped-def]
    prog, x = _program(shape, map_layer(shape, PKG2), mult, seed=seed)
    pm = PackageMapping(shape, part, map_layer(sub_shape(shape, part), spec))
    sch = replace(prog.schedule, package=pm)
    return LayerProgram(sch, prog.weight, None, prog.multiplier, path=prog.path), x, pm


def _padded(x: np.ndarray, shape: LayerShape, zx: int) -> np.ndarray:
    if shape.op == "dense":
        return x.view(np.uint8).reshape(shape.n, shape.c, 1, 1).copy()
    xp = np.full(
        (shape.n, shape.c, shape.h + shape.pad_top + shape.pad_bottom, shape.w + shape.pad_left + shape.pad_right),
        zx,
        np.uint8,
    )
    xp[:, :, shape.pad_top : shape.pad_top + shape.h, shape.pad_left : shape.pad_left + shape.w] = x.view(np.uint8)
    return xp


def _ref_part(xp: np.ndarray, w: np.ndarray, table: np.ndarray, s: LayerShape, rng: dict) -> np.ndarray:
    """Σ M(x, w) of one chiplet's part, plain loops over its ranges (the rest of the output zero)."""
    out = np.zeros((s.n, s.k, s.p, s.q), np.int64)
    cg, kg = s.c_per_group, s.k_per_group
    for g in range(*rng["G"]):
        for kl in range(*rng["K"]):
            k = g * kg + kl
            for cl in range(*rng["C"]):
                c = g * cg + cl
                for r in range(s.r):
                    for t in range(s.s):
                        for p in range(*rng["P"]):
                            for q in range(*rng["Q"]):
                                hh, ww = p * s.stride_h + r * s.dilation_h, q * s.stride_w + t * s.dilation_w
                                xs = xp[rng["N"][0] : rng["N"][1], c, hh, ww].astype(np.int64)
                                out[rng["N"][0] : rng["N"][1], k, p, q] += table[xs, int(w[k, cl, r, t])]
    return out


@pytest.mark.parametrize("case", range(len(CASES)))
def test_package_delta_equals_per_chiplet_conv_with_corrupted_copies(case: int) -> None:
    shape, part = CASES[case]
    spec = PKG6 if part.chiplets > 4 else PKG2
    prog, x, pm = _package_program(shape, part, spec, seed=case)
    parts = chiplet_parts(shape, pm, spec)
    fl = sample_package_faults(shape, parts, 0.02, 1, package_rng(5, 0, 0))
    assert fl and any(f.tensor == "weight" for f in fl) and any(f.tensor == "input" for f in fl)
    clean = accumulate(x, prog)
    got = package_delta(x, prog, clean, parts, fl)
    # reference: every chiplet computes its part from its own corrupted copies, independently
    table = np.asarray(prog.multiplier.table, np.int64).reshape(256, 256)
    zx = int(np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8))
    xp = _padded(x, shape, zx)
    w4 = prog.weight.view(np.uint8).reshape(shape.k, shape.c_per_group, shape.r, shape.s)
    delta = np.zeros((shape.n, shape.k, shape.p, shape.q), np.int64)
    for p in parts:
        xc, wc = xp.copy(), w4.copy()
        for f in fl:
            if f.chiplet == p.chiplet:
                arr = wc if f.tensor == "weight" else xc
                flat = arr.reshape(-1)
                flat[f.index] ^= f.mask
        if not (np.array_equal(xc, xp) and np.array_equal(wc, w4)):
            delta += _ref_part(xc, wc, table, shape, p.ranges) - _ref_part(xp, w4, table, shape, p.ranges)
    want = (clean.reshape(-1).astype(np.int64) + delta.reshape(-1)).astype(np.int32).reshape(clean.shape)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(clean, accumulate(x, prog))  # never mutates its accumulators


@pytest.mark.parametrize("case", range(len(CASES)))
def test_faults_hit_only_what_each_chiplet_receives(case: int) -> None:
    shape, part = CASES[case]
    spec = PKG6 if part.chiplets > 4 else PKG2
    _, _, pm = _package_program(shape, part, spec)
    parts = chiplet_parts(shape, pm, spec)
    # the parts tile the output exactly (C splits: each output once per C part)
    cover = np.zeros((shape.n, shape.k, shape.p, shape.q), np.int64)
    for p in parts:
        for g in range(*p.ranges["G"]):
            ks = slice(g * shape.k_per_group + p.ranges["K"][0], g * shape.k_per_group + p.ranges["K"][1])
            cover[slice(*p.ranges["N"]), ks, slice(*p.ranges["P"]), slice(*p.ranges["Q"])] += 1
    assert (cover == part.ways("C")).all()
    # BER 1 per hop: a free bit arrives flipped after an odd number of hops, intact after an even one
    for msbs in (0, 3):
        fl = sample_package_faults(shape, parts, 1.0, msbs, package_rng(0, 0, 0))
        for p in parts:
            got = {f.tensor: f for f in fl if f.chiplet == p.chiplet}
            if p.hops % 2 == 0:
                assert not got
                continue
            for f in got.values():
                assert (f.mask == 0xFF >> msbs).all()  # every free bit, never a protected MSB
                assert f.bits_exposed == len(f.index) * (8 - msbs) * p.hops
            # the words received: the part's weight slice and its input window (real rows unless split)
            wmask = np.zeros((shape.k, shape.c_per_group, shape.r, shape.s), bool)
            for g in range(*p.ranges["G"]):
                k0, k1 = (g * shape.k_per_group + k for k in p.ranges["K"])
                wmask[k0:k1, slice(*p.ranges["C"])] = True
            assert np.flatnonzero(wmask).tolist() == got["weight"].index.tolist()
            assert len(got["input"].index) == (
                (p.ranges["N"][1] - p.ranges["N"][0]) * len(p.channels(shape)) * len(p.rows) * len(p.cols)
            )
    assert any(p.hops % 2 for p in parts)  # the check above ran


def test_no_faults_at_ber_zero_and_counts_follow_the_arrival_probability() -> None:
    shape, part = LayerShape.conv2d(4, 16, 16, 8, 8, 3, 3, pads=(1, 1, 1, 1)), Partition((("K", 4), ("P", 2)))
    _, _, pm = _package_program(shape, part, PKG6, mult=EXACT_S)
    parts = chiplet_parts(shape, pm, PKG6)
    assert sample_package_faults(shape, parts, 0.0, 0, package_rng(0, 0, 0)) == []
    ber = 2e-3
    fl = sample_package_faults(shape, parts, ber, 2, package_rng(1, 0, 0))
    for t in ("weight", "input"):
        flips = sum(f.bits_flipped for f in fl if f.tensor == t)
        mean = 0.0
        for p in parts:
            mean += len(received_words(shape, p, t)) * 6 * arrival_flip_probability(ber, p.hops)
        assert abs(flips - mean) < 4 * np.sqrt(mean) + 1
    assert arrival_flip_probability(0.1, 2) == pytest.approx(2 * 0.1 * 0.9)
    assert arrival_flip_probability(0.3, 0) == 0.0


def test_fault_session_injects_package_faults_from_the_policy() -> None:
    shape, part = LayerShape.conv2d(2, 8, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1)), Partition((("K", 4),))
    prog, x, pm = _package_program(shape, part, PKG2)
    v = 0.3 * PKG2.package.nominal_swing_v  # type: ignore[union-attr]
    for cfg, expect in ((ApproxConfig(), 0.0), (ApproxConfig(nop_swing_v=v, nop_protected_msbs=2), nop_ber(PKG2, v))):
        sch = replace(prog.schedule, config=cfg)
        plan = faults.plan_faults(sch, PKG2, 0)
        assert plan.nop_ber == expect and plan.trivial == (expect == 0.0)
    sch = replace(prog.schedule, config=ApproxConfig(nop_swing_v=0.05, nop_protected_msbs=2))
    p2 = LayerProgram(sch, prog.weight, None, prog.multiplier, path=prog.path)
    mf = faults.ModelFaults({"L": sch}, PKG2, faults.FaultOptions(ber_scale=1.0))
    clean = accumulate(x, p2)
    runs = []
    for _ in range(2):
        sess = mf.session(seed=4)
        assert sess is not None
        runs.append((sess.apply("L", x, p2, clean), sess.counters()["L"]["package"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # a pure function of (seed, layer, call)
    acc, cnt = runs[0]
    assert not np.array_equal(acc, clean) and cnt["input"]["bits_flipped"] > 0
    parts = chiplet_parts(shape, pm, PKG2)
    want = package_delta(
        x, p2, clean, parts, sample_package_faults(shape, parts, nop_ber(PKG2, 0.05), 2, package_rng(4, 0, 0))
    )
    np.testing.assert_array_equal(acc, want)
    assert "weight" not in mf.session(seed=4).counters().get("L", {})  # no on-chip counters: NoC at full swing
