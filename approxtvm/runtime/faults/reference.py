"""The faulty layer executed tile by tile with corrupted tile copies: the slow specification tests use."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.delta_numpy import layer_arrays, padded_input
from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import FaultSample
from approxtvm.runtime.kernels import conv2d_products
from approxtvm.targets.vacc.workload import DIMS

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["faulty_products_reference"]


def faulty_products_reference(
    x: np.ndarray, prog: LayerProgram, geom: TileGeometry, sample: FaultSample, path: str | None = None
) -> np.ndarray:
    """``Σ M(x', w')`` executed tile by tile with corrupted tile copies (the specification).

    Every temporal step above the PE level and every PE instance multiplies the PE's stored copies
    — the clean tiles with the XOR masks of their current residency applied — with the kernel and
    accumulates into its output box. Slow; for tests.

    Parameters
    ----------
    path
        Kernel path; default ``exact`` for an exact multiplier, ``table_numpy`` otherwise (corrupted
        bytes may fall outside a low-rank factorisation restricted to the layer's weights).
    """
    sch = prog.schedule
    s, m = sch.shape, sch.mapping
    la = layer_arrays(prog, geom)
    N, K, C, P, Q, R, S, Hp, Wp = la.dims
    xp = padded_input(x, prog).reshape(N, C, Hp, Wp)
    wb = la.wflat.reshape(K, C, R, S)
    path = path or ("exact" if prog.multiplier.is_exact else "table_numpy")
    dtype = np.int8 if sch.quant.signed else np.uint8
    n_inst = geom.instances
    wdims, xdims = geom.tile_dims("weight", m), geom.tile_dims("input", m)
    masks: dict[str, dict[int, np.ndarray]] = {}
    for t, dims in (("weight", wdims), ("input", xdims)):
        cw = sample.of(t)
        per: dict[int, np.ndarray] = {}
        for res, wd, mk in zip(cw.residency.tolist(), cw.word.tolist(), cw.mask.tolist(), strict=True):
            arr = per.setdefault(res, np.zeros(math.prod(dims), np.uint8))
            arr[wd] ^= mk
        masks[t] = per
    e = {d: int(geom.ext[_D[d]]) for d in DIMS}
    acc = np.zeros((N, K, P, Q), np.int64)
    for step in range(geom.steps):
        jw = int(np.searchsorted(geom.fills["weight"], step, "right")) - 1
        jx = int(np.searchsorted(geom.fills["input"], step, "right")) - 1
        for i in range(n_inst):
            st = {d: int(v) for d, v in zip(DIMS, geom.step_start[step] + geom.inst_off[i], strict=True)}
            wt = wb[
                st["K"] : st["K"] + e["K"],
                st["C"] : st["C"] + e["C"],
                st["R"] : st["R"] + e["R"],
                st["S"] : st["S"] + e["S"],
            ].copy()
            h0, w0 = st["P"] * s.stride_h + st["R"] * s.dilation_h, st["Q"] * s.stride_w + st["S"] * s.dilation_w
            xt = xp[
                st["N"] : st["N"] + e["N"], st["C"] : st["C"] + e["C"], h0 : h0 + xdims[2], w0 : w0 + xdims[3]
            ].copy()
            mw = masks["weight"].get(jw * n_inst + i)
            if mw is not None:
                wt ^= mw.reshape(wdims)
            mx = masks["input"].get(jx * n_inst + i)
            if mx is not None:
                xt ^= mx.reshape(xdims)
            part = conv2d_products(
                xt.view(dtype),
                wt.view(dtype),
                prog.multiplier,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                path=path,
            )
            acc[
                st["N"] : st["N"] + e["N"],
                st["K"] : st["K"] + e["K"],
                st["P"] : st["P"] + e["P"],
                st["Q"] : st["Q"] + e["Q"],
            ] += part
    out = acc.astype(np.int32)
    return out.reshape(s.n, s.k) if s.op == "dense" else out
