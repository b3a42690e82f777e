"""Repeated positions inside the sampler's rows, found in flip order (a compiled pass, numpy fallback).

The flipped slots of one row are drawn without replacement: a position drawn again in the same row
is redrawn (:func:`approxtvm.runtime.faults.sampling.sample_blocks`). Which copies are "again" is
fixed by flip order: in every row the first flip of a position keeps it, every later one is
redrawn. :func:`repeat_flags` marks those later copies. The compiled pass walks each row once with
a scratch table of seen positions (work proportional to the flips); the numpy fallback sorts the
flips by (row, position) stably (the same marks, about ten times the time on a million flips).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["repeat_flags", "repeat_flags_numpy"]


def repeat_flags(pos: np.ndarray, begin: np.ndarray, end: np.ndarray, span: int) -> np.ndarray:
    """Indices (ascending) of the flips ``pos[j]`` that repeat an earlier position of their row;
    the rows are the flip ranges ``[begin[r], end[r])``; positions lie in ``[0, span)``."""
    fn = _compiled()
    if fn is None:
        return repeat_flags_numpy(pos, begin, end)
    import tvm_ffi

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    pos = np.ascontiguousarray(pos, np.int64)
    seg = np.empty((len(begin), 2), np.int64)
    seg[:, 0], seg[:, 1] = begin, end
    flags = np.zeros(len(pos) + 1, np.uint8)  # one spare byte: DLPack views of 1-element arrays keep odd strides
    seen = np.zeros(span + 1, np.uint8)
    fn(dl(seg.reshape(-1)), dl(pos if len(pos) > 1 else np.append(pos, 0)), dl(flags), dl(seen))
    return np.flatnonzero(flags[: len(pos)])


def repeat_flags_numpy(pos: np.ndarray, begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """:func:`repeat_flags` by a stable sort of the rows' flips by (row, position)."""
    lens = end - begin
    row = np.repeat(np.arange(len(begin)), lens)
    flip = np.repeat(begin - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    order = np.lexsort((pos[flip], row))  # stable: the flips of one (row, position) stay in flip order
    r, p, f = row[order], pos[flip[order]], flip[order]
    dup = np.flatnonzero((r[1:] == r[:-1]) & (p[1:] == p[:-1])) + 1
    return np.sort(f[dup])


@functools.lru_cache(maxsize=1)
def _compiled() -> Any:
    """The compiled pass (``None`` where TVM cannot build it here; the numpy pass then runs)."""
    try:
        return _build()["repeat_flags"]
    except Exception:  # no TVM / LLVM failure: same marks, slower
        return None


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    @T.prim_func(s_tir=True)
    def repeat_flags(seg_h: T.handle, pos_h: T.handle, flags_h: T.handle, seen_h: T.handle):
        # per row: mark the flips whose position an earlier flip of the row holds, then clear the table
        T.func_attr({"global_symbol": "repeat_flags", "tirx.noalias": True})
        ns, n, nf, nseen = T.int64(), T.int64(), T.int64(), T.int64()
        seg = T.match_buffer(seg_h, (ns,), "int64", align=1)  # flat [begin, end) per row
        pos = T.match_buffer(pos_h, (n,), "int64", align=1)
        flags = T.match_buffer(flags_h, (nf,), "uint8", align=1)
        seen = T.match_buffer(seen_h, (nseen,), "uint8", align=1)
        for sg in range(ns // 2):
            for j in range(seg[2 * sg + 1] - seg[2 * sg]):
                f = seg[2 * sg] + j
                if seen[pos[f]] != T.uint8(0):
                    flags[f] = T.uint8(1)
                else:
                    seen[pos[f]] = T.uint8(1)
            for j in range(seg[2 * sg + 1] - seg[2 * sg]):
                seen[pos[seg[2 * sg] + j]] = T.uint8(0)

    mod = tvm.IRModule({"repeat_flags": repeat_flags})
    return tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
