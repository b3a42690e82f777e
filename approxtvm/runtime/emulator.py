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
   next fill evicts it.
4. The PE multiplies its copies: ``out[n, g, k, p, q] += Σ_{c, r, s} M(x[n, g, c, p·sh + r·dh,
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

    # step 2: the loops above the PE, with the distance each one advances its dimension
    pe_level = m.level_index("PE")
    flat = [lp for nest in m.levels for lp in nest.loops]
    n_above = sum(len(nest.loops) for nest in m.levels[:pe_level])
    stride = [math.prod(b.bound for b in flat[i + 1 :] if b.dim == lp.dim) for i, lp in enumerate(flat)]
    ext = {d: math.prod(lp.bound for lp in flat[n_above:] if lp.dim == d) for d in DIMS}
    temporal = [(lp, stride[i]) for i, lp in enumerate(flat[:n_above]) if not lp.spatial]
    spatial = [(lp, stride[i]) for i, lp in enumerate(flat[:n_above]) if lp.spatial]
    n_pes = math.prod(lp.bound for lp, _ in spatial)
    th = (ext["P"] - 1) * s.stride_h + (ext["R"] - 1) * s.dilation_h + 1
    tw = (ext["Q"] - 1) * s.stride_w + (ext["S"] - 1) * s.dilation_w + 1

    # a tile's words in C order over (G, K, C, R, S) for weights and (N, G, C, H, W) for inputs
    shapes = {
        "weight": (ext["G"], ext["K"], ext["C"], ext["R"], ext["S"]),
        "input": (ext["N"], ext["G"], ext["C"], th, tw),
    }
    masks = _masks(corruption or {}, shapes)
    held: list[dict[str, tuple[tuple[int, ...], np.ndarray]]] = [{} for _ in range(n_pes)]
    n_fills = [dict.fromkeys(("weight", "input"), 0) for _ in range(n_pes)]
    raw = np.zeros((s.n, G, Kg, s.p, s.q), np.int64)
    for t_idx in itertools.product(*(range(lp.bound) for lp, _ in temporal)):
        base = dict.fromkeys(DIMS, 0)
        for (lp, st), i in zip(temporal, t_idx, strict=True):
            base[lp.dim] += i * st
        for pe, s_idx in enumerate(itertools.product(*(range(lp.bound) for lp, _ in spatial))):
            o = dict(base)
            for (lp, st), i in zip(spatial, s_idx, strict=True):
                o[lp.dim] += i * st
            # step 3: the tiles this PE needs now; a different tile is a fill with a fresh copy
            h0 = o["P"] * s.stride_h + o["R"] * s.dilation_h
            v0 = o["Q"] * s.stride_w + o["S"] * s.dilation_w
            g = slice(o["G"], o["G"] + ext["G"])
            need = {
                "weight": wbytes[
                    g,
                    o["K"] : o["K"] + ext["K"],
                    o["C"] : o["C"] + ext["C"],
                    o["R"] : o["R"] + ext["R"],
                    o["S"] : o["S"] + ext["S"],
                ],
                "input": xbytes[o["N"] : o["N"] + ext["N"], g, o["C"] : o["C"] + ext["C"], h0 : h0 + th, v0 : v0 + tw],
            }
            for t, src in need.items():
                key = tuple(o[d] for d in DIMS if d in TENSOR_DIMS[t])
                if t not in held[pe] or held[pe][t][0] != key:
                    copy = src.copy()
                    mask = masks[t].get(n_fills[pe][t] * n_pes + pe)
                    if mask is not None:
                        copy ^= mask
                    held[pe][t] = (key, copy)
                    n_fills[pe][t] += 1
            # step 4: the PE's products over its tile (each group with its own channels), into its box
            wt, xt = held[pe]["weight"][1], held[pe]["input"][1]
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
