"""The accelerator executing one layer tile by tile: the readable specification of ``vacc`` (DESIGN §3–§5).

Everything the fast paths do (the whole-layer kernels of :mod:`approxtvm.runtime.executor`, the
sparse fault deltas of :mod:`approxtvm.runtime.faults`) must give exactly what :func:`emulate`
gives; the tests hold them to it. It is written for reading, not speed, and shares no code with
them: its loop walk, tile copies, products and zero-point corrections are all here.

What the accelerator does with a :class:`~approxtvm.targets.vacc.schedule.LayerSchedule`:

1. DRAM holds the weight bytes ``(K, C, R, S)`` and the activation bytes; the input is padded with
   the activation zero point (padded taps are real taps: they go through the multiplier).
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
4. The PE multiplies its copies: ``out[n, k, p, q] += Σ_{c, r, s} M(x[n, c, p·sh + r·dh, q·sw + s·dw],
   w[k, c, r, s])`` over its tile, ``M`` the multiplier's table (row = activation byte, column =
   weight byte). Partial sums over C, R and S tiles accumulate exactly.
5. The zero-point corrections ``− z_w Σx − z_x Σw + K z_x z_w`` use the fault-free operands (they
   are computed off the array), and the accumulator is int32 (wraps modulo 2^32).
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
        int32 accumulators, ``(N, K, P, Q)`` (``(N, K)`` for dense).
    words_filled
        Per tensor (``weight``, ``input``): words written into the PE buffers over the call.
    fills
        Per tensor: fills of one PE's buffer (every PE refills at the same steps).
    """

    acc: np.ndarray
    words_filled: dict[str, int]
    fills: dict[str, int]


def emulate(x: np.ndarray, prog: LayerProgram, corruption: Corruption | None = None) -> EmulatorRun:
    """Execute one layer call of ``prog`` on activation codes ``x`` as the accelerator does.

    Parameters
    ----------
    x
        Activation codes, ``(N, C, H, W)`` for conv2d or ``(N, C)`` for dense.
    prog
        The layer (schedule, weight codes, multiplier).
    corruption
        Optional XOR masks of stored bytes per tensor and residency (see the module docstring).
    """
    sch = prog.schedule
    s, m, q = sch.shape, sch.mapping, sch.quant
    dense = s.op == "dense"
    x4 = x.reshape(s.n, s.c, 1, 1) if dense else x
    w4 = prog.weight.reshape(s.k, s.c, 1, 1) if dense else prog.weight
    pads = ((0, 0), (0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right))
    xpad = np.pad(x4, pads, constant_values=q.input_zero_point)  # step 1
    xbytes, wbytes = xpad.view(np.uint8), np.ascontiguousarray(w4).view(np.uint8)
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

    masks = _masks(
        corruption or {}, {"weight": (ext["K"], ext["C"], ext["R"], ext["S"]), "input": (ext["N"], ext["C"], th, tw)}
    )
    held: list[dict[str, tuple[tuple[int, ...], np.ndarray]]] = [{} for _ in range(n_pes)]
    n_fills = [dict.fromkeys(("weight", "input"), 0) for _ in range(n_pes)]
    raw = np.zeros((s.n, s.k, s.p, s.q), np.int64)
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
            need = {
                "weight": wbytes[
                    o["K"] : o["K"] + ext["K"],
                    o["C"] : o["C"] + ext["C"],
                    o["R"] : o["R"] + ext["R"],
                    o["S"] : o["S"] + ext["S"],
                ],
                "input": xbytes[o["N"] : o["N"] + ext["N"], o["C"] : o["C"] + ext["C"], h0 : h0 + th, v0 : v0 + tw],
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
            # step 4: the PE's products over its tile, into its output box
            wt, xt = held[pe]["weight"][1], held[pe]["input"][1]
            box = np.zeros((ext["N"], ext["K"], ext["P"], ext["Q"]), np.int64)
            for r in range(ext["R"]):
                for t_ in range(ext["S"]):
                    xs = xt[
                        :,
                        :,
                        r * s.dilation_h : r * s.dilation_h + (ext["P"] - 1) * s.stride_h + 1 : s.stride_h,
                        t_ * s.dilation_w : t_ * s.dilation_w + (ext["Q"] - 1) * s.stride_w + 1 : s.stride_w,
                    ]
                    box += table[xs[:, None], wt[None, :, :, r, t_, None, None]].sum(axis=2)
            raw[
                o["N"] : o["N"] + ext["N"],
                o["K"] : o["K"] + ext["K"],
                o["P"] : o["P"] + ext["P"],
                o["Q"] : o["Q"] + ext["Q"],
            ] += box

    # step 5: exact zero-point corrections from the clean operands, int32 accumulator
    xv, wv = xpad.astype(np.int64), w4.astype(np.int64)
    window = np.zeros((s.n, s.p, s.q), np.int64)
    for r in range(s.r):
        for t_ in range(s.s):
            h0, v0 = r * s.dilation_h, t_ * s.dilation_w
            window += xv[
                :,
                :,
                h0 : h0 + (s.p - 1) * s.stride_h + 1 : s.stride_h,
                v0 : v0 + (s.q - 1) * s.stride_w + 1 : s.stride_w,
            ].sum(axis=1)
    zx = q.input_zero_point
    zw = np.broadcast_to(np.asarray(q.weight_zero_points, np.int64), (s.k,))[None, :, None, None]
    acc = raw - zw * window[:, None] - zx * wv.sum(axis=(1, 2, 3))[None, :, None, None] + s.c * s.r * s.s * zx * zw
    acc32 = acc.astype(np.int32)
    filled = {t: n_fills[0][t] for t in ("weight", "input")}
    words = {
        "weight": filled["weight"] * n_pes * ext["K"] * ext["C"] * ext["R"] * ext["S"],
        "input": filled["input"] * n_pes * ext["N"] * ext["C"] * th * tw,
    }
    return EmulatorRun(acc32.reshape(s.n, s.k) if dense else acc32, words, filled)


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
