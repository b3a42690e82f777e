"""Faults of an uneven mapping's tiles as faults of the boxes the PE computes (what the deltas run on).

In an uneven mapping a PE buffer's tile may hold several boxes' operands (the buffer cuts the loop
nest above the PE's step). A corrupted stored word then corrupts each box that reads it during the
residency, at that box's own word position; the delta kernels need nothing else.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample
from approxtvm.targets.vacc.mapping import Mapping

__all__ = ["for_deltas"]


def for_deltas(geom: TileGeometry, sample: FaultSample, mapping: Mapping) -> tuple[TileGeometry, FaultSample]:
    """The geometry the deltas run on and ``sample`` expressed in it.

    Even mappings: both unchanged. Uneven: a corrupted word of a buffer's tile is the same
    corruption of every box, during that residency, that reads it (its word in the box's C order).
    """
    boxes = geom.compute
    if boxes is None:
        return geom, sample
    sh = mapping.shape
    n_inst = geom.instances
    out = {}
    for t, cw in (("weight", sample.weight), ("input", sample.input)):
        if not len(cw):
            out[t] = cw
            continue
        j, i = cw.residency // n_inst, cw.residency % n_inst
        start = boxes.step_start[geom.fills[t][j]] + boxes.inst_off[i]
        coords = np.unravel_index(cw.word, geom.tile_dims(t, mapping))
        # the boxes computed during each residency, and where the word sits in each
        ff = boxes.fills[t]
        lo, hi = np.searchsorted(ff, geom.fills[t][j]), np.searchsorted(ff, geom.ends[t][j])
        lens = hi - lo
        rec = np.repeat(np.arange(len(j)), lens)
        jj = lo[rec] + np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        box = boxes.step_start[ff[jj]] + boxes.inst_off[i[rec]]
        st = start[rec]
        if t == "weight":
            rel = [st[:, _D[d]] + c[rec] - box[:, _D[d]] for d, c in zip("GKCRS", coords, strict=True)]
        else:
            nn, gg, cc, hh, ww = (c[rec] for c in coords)

            def row(b: np.ndarray, along: str, kernel: str, stride: int, dil: int) -> np.ndarray:
                return b[:, _D[along]] * stride + b[:, _D[kernel]] * dil

            rel = [
                st[:, _D["N"]] + nn - box[:, _D["N"]],
                st[:, _D["G"]] + gg - box[:, _D["G"]],
                st[:, _D["C"]] + cc - box[:, _D["C"]],
                row(st, "P", "R", sh.stride_h, sh.dilation_h) + hh - row(box, "P", "R", sh.stride_h, sh.dilation_h),
                row(st, "Q", "S", sh.stride_w, sh.dilation_w) + ww - row(box, "Q", "S", sh.stride_w, sh.dilation_w),
            ]
        dims = boxes.tile_dims(t, mapping)
        inside = np.ones(len(jj), bool)
        for r, n in zip(rel, dims, strict=True):
            inside &= (r >= 0) & (r < n)
        keep = np.flatnonzero(inside)
        word = np.ravel_multi_index(tuple(r[keep] for r in rel), dims).astype(np.int64)
        out[t] = CorruptedWords((jj[keep] * n_inst + i[rec][keep]).astype(np.int64), word, cw.mask[rec][keep])
    return boxes, replace(sample, weight=out["weight"], input=out["input"])
