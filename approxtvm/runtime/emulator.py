"""The accelerator executing one layer tile by tile: the readable specification of ``vacc`` (DESIGN §3–§5).

Everything the fast paths do (the whole-layer kernels of :mod:`approxtvm.runtime.executor`, the
sparse fault deltas of :mod:`approxtvm.runtime.faults`) must give exactly what :func:`emulate`
gives; the tests hold them to it. It is written for reading, not speed, and shares no code with
them: its loop walk, tile copies, products and zero-point corrections are all here.

What the accelerator does with a :class:`~approxtvm.targets.vacc.schedule.LayerSchedule`:

1. DRAM holds the weight bytes ``(G, K, C, R, S)`` (``K``, ``C`` per group; ``G = 1`` unless the
   layer is grouped) and the activation bytes ``(N, G, C, H, W)``; the input is padded with the
   activation zero point (padded taps are real taps: they go through the multiplier). An
   activation × activation matmul ``y[g] = a[g] · b[g]`` is a grouped dense layer: its slices are
   the groups, the rows of ``a`` the batch, and the second operand ``b`` plays the weight role
   (stored transposed, ``(G, K, C)``); it arrives with the call and streams through the NoC and the
   weight buffers like weights do.
2. The loops of the levels above the PE run in nest order: temporal loops are steps in time,
   spatial loops are PE instances (mixed radix, outermost most significant = PE number). A loop
   advances its dimension by the product of the bounds of the loops on that dimension nested
   inside it. Levels above the PE only move data; nothing there changes a byte.
3. At each step every PE needs a weight tile and an input tile. When the tile differs from the one
   it holds (a different start in a dimension that indexes the tensor), the PE's buffer is
   *filled*: it stores a fresh copy, and the copy of fill ``j`` of PE ``i`` is residency
   ``j · PEs + i``. A corruption mask given for that residency (XOR per stored byte, words in C
   order over the tile's axes) is applied to the copy, which then serves every product until the
   next fill evicts it. In an uneven mapping a buffer's tile spans the loops below its own cut:
   the PE steps over the loops above the finer of the two cuts and each step reads its box out of
   the larger copy.
4. The PE multiplies its copies (the box of this step): ``out[n, g, k, p, q] += Σ_{c, r, s} M(x[n, g, c, p·sh + r·dh,
   q·sw + s·dw], w[g, k, c, r, s])`` over its tile, ``M`` the multiplier's table (row = activation
   byte, column = weight byte). Partial sums over C, R and S tiles accumulate exactly.
5. The zero-point corrections ``− z_w Σx − z_x Σw + K z_x z_w`` (sums over one group's taps) use the
   fault-free operands (they are computed off the array), and the accumulator is int32 (wraps
   modulo 2^32).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["Corruption", "EmulatorRun", "emulate"]

#: Per tensor (``weight``, ``input``): ``(residency, word, mask)`` arrays of corrupted stored bytes.
Corruption = MappingABC[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class EmulatorRun:
    """What one emulated layer call produced.

    Attributes
    ----------
    acc
        int32 accumulators, ``(N, K, P, Q)`` (``(N, K)`` for dense, ``(..., M, K)`` for a matmul).
    words_filled
        Per tensor (``weight``, ``input``): words written into the PE buffers over the call.
    fills
        Per tensor: fills of one PE's buffer (every PE refills at the same steps).
    """

    acc: np.ndarray
    words_filled: dict[str, int]
    fills: dict[str, int]


def emulate(
    x: np.ndarray, prog: LayerProgram, corruption: Corruption | None = None, second: np.ndarray | None = None
) -> EmulatorRun:
    """Execute one layer call of ``prog`` on activation codes ``x`` as the accelerator does.

    Parameters
    ----------
    x
        Activation codes, ``(N, C, H, W)`` for conv2d, ``(N, C)`` for dense, ``(..., M, C)`` (the
        table-row operand) for an activation × activation matmul.
    prog
        The layer (schedule, weight codes, multiplier).
    corruption
        Optional XOR masks of stored bytes per tensor and residency (see the module docstring).
    second
        The matmul's second operand ``(..., C, K)`` (table columns): it plays the weight role.
    """
    sch = prog.schedule
    s, m, q = sch.shape, sch.mapping, sch.quant
    G, Kg, Cg = s.groups, s.k // s.groups, s.c // s.groups
    if s.op == "matmul":
        # slice g of a (M, C) · b (C, K) is group g of a grouped dense layer: rows = N, b^T = weights
        assert second is not None, "an activation × activation matmul needs its second operand"
        lead = np.broadcast_shapes(x.shape[:-2], second.shape[:-2])
        a = np.broadcast_to(x, (*lead, *x.shape[-2:])).reshape(G, s.n, Cg)
        b = np.broadcast_to(second, (*lead, *second.shape[-2:])).reshape(G, Cg, Kg)
        x4 = a.transpose(1, 0, 2).reshape(s.n, s.c, 1, 1)
        w5 = b.transpose(0, 2, 1).reshape(G, Kg, Cg, 1, 1)
    else:
        x4 = x.reshape(s.n, s.c, 1, 1) if s.op == "dense" else x
        w5 = prog.weight.reshape(G, Kg, Cg, s.r, s.s)
    pads = ((0, 0), (0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right))
    xpad = np.pad(x4, pads, constant_values=q.input_zero_point)  # step 1
    xpad5 = xpad.reshape(s.n, G, Cg, *xpad.shape[2:])  # group g reads channels g·C/G … (g+1)·C/G − 1
    xbytes, wbytes = np.ascontiguousarray(xpad5).view(np.uint8), np.ascontiguousarray(w5).view(np.uint8)
    table = np.asarray(prog.multiplier.table, np.int64).reshape(256, 256)

    # step 2: the loops above the PE, with the distance each one advances its dimension. Each PE
    # buffer cuts the temporal loops at its own place (its level's boundary unless the mapping is
    # uneven); the PE steps at the finest of the weight and input cuts and computes one box per step
    pe_level = m.level_index("PE")
    flat = [(li, lp) for li, nest in enumerate(m.levels) for lp in nest.loops]
    stride = [math.prod(b.bound for _, b in flat[i + 1 :] if b.dim == lp.dim) for i, (_, lp) in enumerate(flat)]
    rank = list(itertools.accumulate((0 if lp.spatial else 1 for _, lp in flat), initial=0))[:-1]
    cut = {t: m.cut("PE", t) for t in ("weight", "input")}
    step_cut = max(cut.values())

    def above(i: int, c: int) -> bool:  # loop i is outside a buffer that cuts after c temporal loops
        li, lp = flat[i]
        return li < pe_level if lp.spatial else rank[i] < c

    def extent(c: int) -> dict[str, int]:
        return {
            d: math.prod(lp.bound for i, (_, lp) in enumerate(flat) if lp.dim == d and not above(i, c)) for d in DIMS
        }

    temporal = [(lp, stride[i], rank[i]) for i, (_, lp) in enumerate(flat) if not lp.spatial and rank[i] < step_cut]
    spatial = [(lp, stride[i]) for i, (li, lp) in enumerate(flat) if lp.spatial and li < pe_level]
    n_pes = math.prod(lp.bound for lp, _ in spatial)
    ext = extent(step_cut)  # the box one step computes
    text = {t: extent(c) for t, c in cut.items()}  # the tile each buffer holds

    def rows(e: dict[str, int], along: str, kernel: str, st: int, dl: int) -> int:
        return (e[along] - 1) * st + (e[kernel] - 1) * dl + 1

    th, tw = rows(ext, "P", "R", s.stride_h, s.dilation_h), rows(ext, "Q", "S", s.stride_w, s.dilation_w)

    # a tile's words in C order over (G, K, C, R, S) for weights and (N, G, C, H, W) for inputs
    we, xe = text["weight"], text["input"]
    shapes = {
        "weight": (we["G"], we["K"], we["C"], we["R"], we["S"]),
        "input": (
            xe["N"],
            xe["G"],
            xe["C"],
            rows(xe, "P", "R", s.stride_h, s.dilation_h),
            rows(xe, "Q", "S", s.stride_w, s.dilation_w),
        ),
    }
    masks = _masks(corruption or {}, shapes)
    held: list[dict[str, tuple[tuple[int, ...], dict[str, int], np.ndarray]]] = [{} for _ in range(n_pes)]
    n_fills = [dict.fromkeys(("weight", "input"), 0) for _ in range(n_pes)]
    raw = np.zeros((s.n, G, Kg, s.p, s.q), np.int64)
    for t_idx in itertools.product(*(range(lp.bound) for lp, _, _ in temporal)):
        for pe, s_idx in enumerate(itertools.product(*(range(lp.bound) for lp, _ in spatial))):
            # where this PE's box and each buffer's tile start: the loops outside each
            o = dict.fromkeys(DIMS, 0)
            for (lp, st), i in zip(spatial, s_idx, strict=True):
                o[lp.dim] += i * st
            start = {t: dict(o) for t in cut}
            for (lp, st, r), i in zip(temporal, t_idx, strict=True):
                o[lp.dim] += i * st
                for t, c in cut.items():
                    if r < c:
                        start[t][lp.dim] += i * st
            # step 3: the tiles this PE needs now; a different tile is a fill with a fresh copy
            for t, t0 in start.items():
                e = text[t]
                key = tuple(t0[d] for d in DIMS if d in TENSOR_DIMS[t])
                if t not in held[pe] or held[pe][t][0] != key:
                    g0 = slice(t0["G"], t0["G"] + e["G"])
                    if t == "weight":
                        src = wbytes[
                            g0,
                            t0["K"] : t0["K"] + e["K"],
                            t0["C"] : t0["C"] + e["C"],
                            t0["R"] : t0["R"] + e["R"],
                            t0["S"] : t0["S"] + e["S"],
                        ]
                    else:
                        h0 = t0["P"] * s.stride_h + t0["R"] * s.dilation_h
                        v0 = t0["Q"] * s.stride_w + t0["S"] * s.dilation_w
                        src = xbytes[
                            t0["N"] : t0["N"] + e["N"],
                            g0,
                            t0["C"] : t0["C"] + e["C"],
                            h0 : h0 + shapes["input"][3],
                            v0 : v0 + shapes["input"][4],
                        ]
                    copy = src.copy()
                    mask = masks[t].get(n_fills[pe][t] * n_pes + pe)
                    if mask is not None:
                        copy ^= mask
                    held[pe][t] = (key, t0, copy)
                    n_fills[pe][t] += 1
            # the box's operands inside the held copies (the whole copy unless the mapping is uneven)
            _, w0, wfull = held[pe]["weight"]
            _, x0, xfull = held[pe]["input"]
            wt = wfull[
                o["G"] - w0["G"] : o["G"] - w0["G"] + ext["G"],
                o["K"] - w0["K"] : o["K"] - w0["K"] + ext["K"],
                o["C"] - w0["C"] : o["C"] - w0["C"] + ext["C"],
                o["R"] - w0["R"] : o["R"] - w0["R"] + ext["R"],
                o["S"] - w0["S"] : o["S"] - w0["S"] + ext["S"],
            ]
            dh_ = (o["P"] - x0["P"]) * s.stride_h + (o["R"] - x0["R"]) * s.dilation_h
            dw_ = (o["Q"] - x0["Q"]) * s.stride_w + (o["S"] - x0["S"]) * s.dilation_w
            xt = xfull[
                o["N"] - x0["N"] : o["N"] - x0["N"] + ext["N"],
                o["G"] - x0["G"] : o["G"] - x0["G"] + ext["G"],
                o["C"] - x0["C"] : o["C"] - x0["C"] + ext["C"],
                dh_ : dh_ + th,
                dw_ : dw_ + tw,
            ]
            # step 4: the PE's products over its box (each group with its own channels), into its outputs
            g = slice(o["G"], o["G"] + ext["G"])
            box = np.zeros((ext["N"], ext["G"], ext["K"], ext["P"], ext["Q"]), np.int64)
            for r in range(ext["R"]):
                for t_ in range(ext["S"]):
                    xs = xt[
                        :,
                        :,
                        :,
                        r * s.dilation_h : r * s.dilation_h + (ext["P"] - 1) * s.stride_h + 1 : s.stride_h,
                        t_ * s.dilation_w : t_ * s.dilation_w + (ext["Q"] - 1) * s.stride_w + 1 : s.stride_w,
                    ]  # (n, g, c, p, q)
                    box += table[xs[:, :, None], wt[None, :, :, :, r, t_, None, None]].sum(axis=3)
            raw[
                o["N"] : o["N"] + ext["N"],
                g,
                o["K"] : o["K"] + ext["K"],
                o["P"] : o["P"] + ext["P"],
                o["Q"] : o["Q"] + ext["Q"],
            ] += box

    # step 5: exact zero-point corrections from the clean operands, int32 accumulator
    xv, wv = xpad5.astype(np.int64), w5.astype(np.int64)
    window = np.zeros((s.n, G, s.p, s.q), np.int64)
    for r in range(s.r):
        for t_ in range(s.s):
            h0, v0 = r * s.dilation_h, t_ * s.dilation_w
            window += xv[
                :,
                :,
                :,
                h0 : h0 + (s.p - 1) * s.stride_h + 1 : s.stride_h,
                v0 : v0 + (s.q - 1) * s.stride_w + 1 : s.stride_w,
            ].sum(axis=2)
    zx = q.input_zero_point
    zw = np.broadcast_to(np.asarray(q.weight_zero_points, np.int64), (s.k,)).reshape(1, G, Kg, 1, 1)
    acc = raw - zw * window[:, :, None] - zx * wv.sum(axis=(2, 3, 4))[None, :, :, None, None] + Cg * s.r * s.s * zx * zw
    acc32 = acc.astype(np.int32).reshape(s.n, s.k, s.p, s.q)
    filled = {t: n_fills[0][t] for t in ("weight", "input")}
    words = {t: filled[t] * n_pes * math.prod(shapes[t]) for t in ("weight", "input")}
    if s.op == "matmul":  # (M, G·K) back to the slices' (..., M, K)
        out = acc32.reshape(s.n, G, Kg).transpose(1, 0, 2).reshape(*lead, s.n, Kg)
    else:
        out = acc32.reshape(s.n, s.k) if s.op == "dense" else acc32
    return EmulatorRun(out, words, filled)


def _masks(corruption: Corruption, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[int, np.ndarray]]:
    """Per tensor and residency: the XOR mask of the whole tile copy."""
    out: dict[str, dict[int, np.ndarray]] = {"weight": {}, "input": {}}
    for t, (residency, word, mask) in corruption.items():
        for res, wd, mk in zip(
            np.asarray(residency).tolist(), np.asarray(word).tolist(), np.asarray(mask).tolist(), strict=True
        ):
            tile = out[t].setdefault(res, np.zeros(shapes[t], np.uint8))
            tile.flat[wd] ^= mk
    return out
