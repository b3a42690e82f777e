"""Layers, mappings and programs for runtime tests (hypothesis strategies and builders)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from approxtvm.runtime.executor import LayerProgram
from approxtvm.runtime.multipliers import Multiplier, exact_table
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import LEVELS, TENSORS, Boundary, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.schedule import Intrinsic, LayerSchedule, QuantParams, WeightLayout
from approxtvm.targets.vacc.workload import DIMS, LayerShape

SPEC = AcceleratorSpec.load("simba_like")
_RNG = np.random.default_rng(7)
#: A non-commutative random table: any operand-order or lookup mistake shows up.
RAND_U = Multiplier("rand_u", _RNG.integers(0, 65536, (256, 256)).astype(np.int32), False)
EXACT_U = Multiplier("exact_u", exact_table(False), False)
EXACT_S = Multiplier("exact_s", exact_table(True), True)


def _mapping(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


def _program(
    shape: LayerShape,
    mapping: Mapping,
    mult: Multiplier = EXACT_U,
    *,
    zx: int = 3,
    zw: int = 7,
    seed: int = 0,
    config: ApproxConfig | None = None,
) -> tuple[LayerProgram, np.ndarray]:
    rng = np.random.default_rng(seed)
    config = config or ApproxConfig()
    dtype = np.int8 if mult.signed else np.uint8
    lo, hi = (-128, 128) if mult.signed else (0, 256)
    if mult.signed:
        zx = zw = 0
    q = QuantParams(mult.signed, 0.1, zx, (0.01,), (zw,))
    intr = Intrinsic("vacc.mac8", 8, mult.name, mult.name, mult.table_hash, 0.2)
    sch = LayerSchedule("L", "sym", shape, q, False, config, SPEC.name, mapping, intr, WeightLayout((), (), ()))
    cg = shape.c_per_group
    wshape = (shape.k, cg) if shape.op == "dense" else (shape.k, cg, shape.r, shape.s)
    xshape = (shape.n, shape.c) if shape.op == "dense" else (shape.n, shape.c, shape.h, shape.w)
    if shape.op == "matmul":  # a (G, M, C) codes; the second operand comes with each call (matmul_operand)
        wshape, xshape = (0,), (shape.groups, shape.n, cg)
    w = rng.integers(lo, hi, wshape).astype(dtype)
    x = rng.integers(lo, hi, xshape).astype(dtype)
    path = "exact" if mult.name.startswith("exact") else "table_numpy"
    return LayerProgram(sch, w, None, mult, path=path), x


def matmul_operand(prog: LayerProgram, seed: int = 0) -> np.ndarray:
    """Random codes of a matmul's second operand ``(G, C, K)`` (the weight role) for ``prog``."""
    s = prog.schedule.shape
    signed = prog.multiplier.signed
    lo, hi = (-128, 128) if signed else (0, 256)
    rng = np.random.default_rng(seed + 1)
    return rng.integers(lo, hi, (s.groups, s.c_per_group, s.k_per_group)).astype(np.int8 if signed else np.uint8)


def _factor(draw: st.DrawFn, n: int, parts: int) -> list[int]:
    out = []
    for _ in range(parts - 1):
        f = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
        out.append(f)
        n //= f
    return [*out, n]


@st.composite
def layers(draw: st.DrawFn, kinds: tuple[str, ...] = ("conv2d", "dense")) -> tuple[Mapping, Multiplier, int]:
    """A layer with a random valid-looking mapping (the caller skips those ``validate`` rejects).

    ``kinds``: ``conv2d``, ``dense``, ``grouped`` (grouped or depthwise conv2d) and ``matmul``
    (activation × activation, batch slices = groups).
    """
    kind = draw(st.sampled_from(kinds))
    k = draw(st.sampled_from([2, 4, 8, 12, 16]))
    c = draw(st.sampled_from([1, 3, 4, 8]))
    r = draw(st.sampled_from([1, 2, 3]))
    stride = draw(st.sampled_from([1, 2]))
    dil = draw(st.sampled_from([1, 2])) if r > 1 else 1
    h = draw(st.integers(dil * (r - 1) + 1, 7))
    n = draw(st.sampled_from([1, 2]))
    pad = draw(st.sampled_from([0, 1]))
    groups = draw(st.sampled_from([2, 3, 4])) if kind in ("grouped", "matmul") else 1
    if kind == "dense":
        shape = LayerShape.dense(n, k, c * 4)
    elif kind == "matmul":
        shape = LayerShape.matmul(groups, draw(st.sampled_from([1, 2, 3])), k, c)
    else:
        depthwise = kind == "grouped" and draw(st.booleans())
        cin, kout = (groups, groups * draw(st.sampled_from([1, 2]))) if depthwise else (c * groups, k * groups)
        shape = LayerShape.conv2d(
            n,
            kout if kind == "grouped" else k,
            cin if kind == "grouped" else c,
            h,
            h,
            r,
            r,
            strides=(stride, stride),
            dilations=(dil, dil),
            pads=(pad, pad, pad, pad),
            groups=groups,
        )
    b = shape.bounds
    k_pe = draw(st.sampled_from([d for d in range(1, 17) if b["K"] % d == 0]))
    g_pe = draw(st.sampled_from([d for d in range(1, 17 // k_pe + 1) if b["G"] % d == 0]))
    k_vm = draw(st.sampled_from([d for d in range(1, 9) if (b["K"] // k_pe) % d == 0]))
    g_vm = draw(st.sampled_from([d for d in range(1, 8 // k_vm + 1) if (b["G"] // g_pe) % d == 0]))
    c_ln = draw(st.sampled_from([d for d in range(1, 9) if b["C"] % d == 0]))
    rest = dict(b)
    rest["K"] //= k_pe * k_vm
    rest["G"] //= g_pe * g_vm
    rest["C"] //= c_ln
    levels: list[list[Loop]] = [[], [], [], []]
    for d in DIMS:
        for lvl, f in enumerate(_factor(draw, rest[d], 4 if d in ("N", "P", "Q") else 3)):
            if f > 1:
                levels[lvl].append(Loop(d, f))
    for lv in levels:
        lv[:] = draw(st.permutations(lv))
    levels[1] += [Loop(d, x, True) for d, x in (("K", k_pe), ("G", g_pe)) if x > 1]
    levels[2] += [Loop(d, x, True) for d, x in (("K", k_vm), ("G", g_vm), ("C", c_ln)) if x > 1]
    m = Mapping(shape, tuple(LevelNest(nm, tuple(lv)) for nm, lv in zip(LEVELS, levels, strict=True)))
    return m, draw(st.sampled_from([EXACT_U, RAND_U, EXACT_S])), draw(st.integers(0, 2**32))


@st.composite
def uneven_layers(draw: st.DrawFn, kinds: tuple[str, ...] = ("conv2d", "dense")) -> tuple[Mapping, Multiplier, int]:
    """:func:`layers` with every tensor's on-chip cuts drawn anywhere in the loop nest (uneven).

    Cuts along a storage chain are drawn in order, so they nest; ``validate`` still rejects tiles
    that are non-contiguous or do not fit (the caller skips those).
    """
    m, mult, seed = draw(layers(kinds))
    hier = Hierarchy.of(SPEC)
    n = len(m.temporal_loops)
    bounds = []
    for t in TENSORS:
        low = 0
        for lv in hier.levels[1:]:
            if hier.buffer_of(lv.name, t) is None:
                continue
            c = draw(st.integers(low, n))
            low = c
            if c != m.even_cut(lv.name):
                bounds.append(Boundary(t, lv.name, c))
    return Mapping(m.shape, m.levels, tuple(bounds)), mult, seed
