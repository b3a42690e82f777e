"""Sparse exact deltas of faulty products, numpy (DESIGN §5).

Faults corrupt the operand bytes entering the multiplier (padding taps included: the padded input
tile is what the input buffer holds). The zero-point corrections stay exact — computed off-array
from the fault-free operands. Hence ``acc_faulty = acc_clean + Δ`` with
``Δ = Σ_residency Σ_MAC [M(x', w') − M(x, w)]`` over the MACs that touch a corrupted byte: weights
× every output of their residency, inputs × every weight of theirs, plus the exact cross term
where a corrupted weight meets a corrupted input in the same step and PE. int32 wrap-around is
kept. :mod:`approxtvm.runtime.faults.delta_tvm` compiles the same loops with TVM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.boxes import for_deltas
from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import FAULT_DIMS, TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample, StackedSamples

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = [
    "NUMPY_KERNELS",
    "FaultKernels",
    "LayerArrays",
    "MatmulOperands",
    "inject",
    "inject_calls",
    "layer_arrays",
    "matmul_operands",
    "padded_input",
    "products_delta",
    "scatter_numpy",
]

_CHUNK_ELEMS = 1 << 14  # gathered operands per vectorised chunk (small temporaries are reused)


@dataclass(frozen=True, eq=False)
class LayerArrays:
    """Per-layer constants of the delta computation (flat offsets, table, weight bytes, tap tables)."""

    table: np.ndarray  # int32 (65536,): table[a * 256 + w]
    wflat: np.ndarray  # weight bytes, flat (K·C/G·R·S); empty for a matmul (its weights come per call)
    dims: tuple[int, ...]  # N, K, C / G, P, Q, R, S, Hp, Wp (K over all groups, C per group)
    in_c: int  # input channels over all groups (C)
    group_k: int  # output channels of one group (K / G)
    box_x: np.ndarray  # (Nt·Pt·Qt,) offsets in the padded input of an output box's (n, p, q)
    box_o: np.ndarray  # same box in the output
    k_w: np.ndarray  # (Kt,) offsets of k in the weights
    k_o: np.ndarray  # (Kt,) offsets of k in the output
    taps_start: np.ndarray  # per input-tile position (hh·Wt + ww): first of its taps in the tap arrays
    taps_len: np.ndarray  # number of (r, s) taps of the tile that read that position
    taps: np.ndarray  # (4, n) tile-relative r, s and the output p, q each tap produces
    xpad: np.ndarray | None  # padded-input scratch (border = zero point), refilled inside each call
    wprime: np.ndarray  # copy of wflat that a call corrupts and restores (see corrupted_weights)


def layer_arrays(prog: LayerProgram, geom: TileGeometry) -> LayerArrays:
    geom = geom.compute or geom  # uneven mappings: the deltas run on the PE's boxes
    s = prog.schedule.shape
    hp, wp = s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right
    if s.op == "dense":
        hp = wp = 1
    e = {d: int(geom.ext[_D[d]]) for d in FAULT_DIMS}
    n, p, q = np.meshgrid(np.arange(e["N"]), np.arange(e["P"]), np.arange(e["Q"]), indexing="ij")
    box_x = (n * (s.c * hp * wp) + p * (s.stride_h * wp) + q * s.stride_w).ravel().astype(np.int64)
    box_o = (n * (s.k * s.p * s.q) + p * s.q + q).ravel().astype(np.int64)
    kt = np.arange(e["K"], dtype=np.int64)
    ht = s.input_extent(e["P"], e["R"], s.stride_h, s.dilation_h)
    wt = s.input_extent(e["Q"], e["S"], s.stride_w, s.dilation_w)
    starts, lens, taps = [], [], []
    for hh in range(ht):
        for ww in range(wt):
            starts.append(len(taps))
            for r in range(e["R"]):
                dp, mh = divmod(hh - r * s.dilation_h, s.stride_h)
                if hh - r * s.dilation_h < 0 or mh or dp >= e["P"]:
                    continue
                for t in range(e["S"]):
                    dq, mw = divmod(ww - t * s.dilation_w, s.stride_w)
                    if ww - t * s.dilation_w < 0 or mw or dq >= e["Q"]:
                        continue
                    taps.append((r, t, dp, dq))
            lens.append(len(taps) - starts[-1])
    xpad = None
    if s.op != "dense" and (s.pad_top or s.pad_bottom or s.pad_left or s.pad_right):
        zx = np.array(prog.schedule.quant.input_zero_point).astype(prog.weight.dtype).view(np.uint8)
        xpad = np.full((s.n, s.c, hp, wp), zx, np.uint8)
    return LayerArrays(
        np.array(prog.multiplier.table, dtype=np.int32).ravel(),  # own writeable copies
        np.array(prog.weight).view(np.uint8).ravel(),
        (s.n, s.k, s.c_per_group, s.p, s.q, s.r, s.s, hp, wp),
        s.c,
        s.k_per_group,
        box_x,
        box_o,
        kt * (s.c_per_group * s.r * s.s),
        kt * (s.p * s.q),
        np.array(starts, np.int64),
        np.array(lens, np.int64),
        np.array(taps, np.int64).reshape(-1, 4).T.copy(),
        xpad,
        np.array(prog.weight).view(np.uint8).ravel(),
    )


def padded_input(x: np.ndarray, prog: LayerProgram, scratch: np.ndarray | None = None) -> np.ndarray:
    """The padded input bytes, flat (what the input buffers hold, halo and padding included).

    ``scratch`` (border already holding the zero point) is reused for the result when given.
    """
    s = prog.schedule.shape
    xb = np.ascontiguousarray(x).view(np.uint8)
    if s.op == "dense" or not (s.pad_top or s.pad_bottom or s.pad_left or s.pad_right):
        return xb.ravel()
    if scratch is None:
        zx = np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8)
        scratch = np.full((s.n, s.c, s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right), zx, np.uint8)
    scratch[:, :, s.pad_top : s.pad_top + s.h, s.pad_left : s.pad_left + s.w] = xb
    return scratch.ravel()


def _input_bytes(
    x: np.ndarray, prog: LayerProgram, n: np.ndarray, c: np.ndarray, h: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Input bytes at padded coordinates ``(n, c, h, w)`` (the zero point in the padding), int64."""
    s = prog.schedule.shape
    xb = np.ascontiguousarray(x).view(np.uint8).ravel()
    if s.op == "dense":
        return xb[n * s.c + c].astype(np.int64)
    hu, wu = h - s.pad_top, w - s.pad_left
    inside = (hu >= 0) & (hu < s.h) & (wu >= 0) & (wu < s.w)
    idx = ((n * s.c + c) * s.h + np.clip(hu, 0, s.h - 1)) * s.w + np.clip(wu, 0, s.w - 1)
    zx = int(np.array(prog.schedule.quant.input_zero_point).astype(x.dtype).view(np.uint8))
    return np.where(inside, xb[idx], zx).astype(np.int64)


def _expand_steps(begin: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(record index, step) for every step of every record's residency."""
    lens = end - begin
    rec = np.repeat(np.arange(len(begin)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return rec, begin[rec] + (np.arange(int(lens.sum())) - first)


def products_delta(
    x: np.ndarray,
    prog: LayerProgram,
    geom: TileGeometry,
    sample: FaultSample,
    arrays: LayerArrays | None = None,
    second: np.ndarray | None = None,
) -> np.ndarray:
    """``Σ M(x', w') − Σ M(x, w)`` of the layer under ``sample`` (int64, shaped like the accumulators:
    ``(N, K, P, Q)``, ``(..., M, K)`` for a matmul whose second operand is ``second``).

    Exact: weight faults × every output of their residency, input faults × every weight of theirs,
    and the cross term where a corrupted weight meets a corrupted input in the same step.
    """
    s = prog.schedule.shape
    la = arrays if arrays is not None else layer_arrays(prog, geom)
    geom, sample = for_deltas(geom, sample, prog.schedule.mapping)
    out = np.zeros(s.n * s.k * s.p * s.q, np.int64)
    if s.op == "matmul":
        op = matmul_operands(x, second, prog)
        _delta_into(out, op.x, prog, geom, sample, la, op.wflat)
        return op.from_canonical(out.reshape(s.n, s.k))
    _delta_into(out, x, prog, geom, sample, la, la.wflat)
    return out.reshape(s.n, s.k, s.p, s.q)


@dataclass(frozen=True, eq=False)
class MatmulOperands:
    """An activation × activation matmul call as the grouped dense layer the accelerator runs.

    Attributes
    ----------
    x
        The first operand as dense input rows, ``(M, G·C)`` (slice ``g`` in columns ``g·C …``).
    wflat
        The second operand as grouped weight bytes ``(G·K, C)``, flat (the transposed slices).
    lead
        The slices' batch shape (``G`` = its product).
    """

    x: np.ndarray
    wflat: np.ndarray
    lead: tuple[int, ...]

    def to_canonical(self, acc: np.ndarray) -> np.ndarray:
        """Accumulators ``(..., M, K)`` as the dense layer's ``(M, G·K)``."""
        g = int(np.prod(self.lead, dtype=np.int64))
        m, k = acc.shape[-2:]
        return acc.reshape(g, m, k).transpose(1, 0, 2).reshape(m, g * k)

    def from_canonical(self, out: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_canonical`."""
        g = int(np.prod(self.lead, dtype=np.int64))
        m = out.shape[0]
        return out.reshape(m, g, -1).transpose(1, 0, 2).reshape(*self.lead, m, -1)


def matmul_operands(a: np.ndarray, b: np.ndarray | None, prog: LayerProgram) -> MatmulOperands:
    """The operands of a matmul call laid out as the layer's grouped dense problem (see the emulator)."""
    s = prog.schedule.shape
    if b is None:
        raise ValueError(f"layer {prog.schedule.layer_id}: an activation × activation matmul needs its second operand")
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    g = s.groups
    a3 = np.broadcast_to(a, (*lead, *a.shape[-2:])).reshape(g, s.n, s.c_per_group)
    b3 = np.broadcast_to(b, (*lead, *b.shape[-2:])).reshape(g, s.c_per_group, s.k_per_group)
    x = np.ascontiguousarray(a3.transpose(1, 0, 2)).reshape(s.n, s.c)
    w = np.ascontiguousarray(b3.transpose(0, 2, 1)).view(np.uint8).ravel()
    return MatmulOperands(x, w, tuple(lead))


def scatter_numpy(
    src: np.ndarray,
    sbase: np.ndarray,
    soff: np.ndarray,
    obase: np.ndarray,
    ooff: np.ndarray,
    a1: np.ndarray,
    a0: np.ndarray,
    lut: np.ndarray,
    out: np.ndarray,
    mul: int,
) -> None:
    """``out[obase[i] + ooff[j]] += lut[v·mul + a1[i]] − lut[v·mul + a0[i]]``, ``v = src[sbase[i] + soff[j]]``.

    The inner loop of both fault terms (a corrupted weight against the inputs of its outputs, a
    corrupted input against the weights of its outputs). Chunked so that temporaries stay small
    (fresh large numpy temporaries page-fault); :func:`tvm_kernels` holds the compiled equivalent.
    """
    chunk = max(1, _CHUNK_ELEMS // max(1, len(soff)))
    for a in range(0, len(sbase), chunk):
        sl = slice(a, a + chunk)
        v = src[sbase[sl, None] + soff].astype(np.int64) * mul
        d = lut[v + a1[sl, None]] - lut[v + a0[sl, None]]
        np.add.at(out, (obase[sl, None] + ooff).ravel(), d.astype(out.dtype, copy=False).ravel())  # 1-D: fast


#: ``kernels.prepare(prog, geom, arrays)``: a layer's constant kernel arguments, built once per layer.
Prepare = Callable[["LayerProgram", TileGeometry, LayerArrays], object]
#: ``kernels.delta(x, prog, geom, arrays, prepared, sample, out, wflat)``: add the delta into flat
#: ``out`` (``wflat``: the flat weight bytes, the layer's own or a matmul call's second operand).
Delta = Callable[
    [np.ndarray, "LayerProgram", TileGeometry, LayerArrays, object, FaultSample, np.ndarray, np.ndarray], None
]
#: ``kernels.delta_calls(x, prog, geom, arrays, prepared, samples, out, wflat)``: :data:`Delta` for
#: consecutive layer calls stacked along ``N`` (sample ``c`` belongs to the ``c``-th block of rows;
#: or the calls' words in shared arrays).
DeltaCalls = Callable[
    [
        np.ndarray,
        "LayerProgram",
        TileGeometry,
        LayerArrays,
        object,
        Sequence[FaultSample] | StackedSamples,
        np.ndarray,
        np.ndarray,
    ],
    None,
]


#: ``kernels.input_copies(x, prepared, words, weights, select, out[, calls, call_base])``: add the
#: input-word deltas of one call (``words``, in the deltas' geometry) into flat ``out``, against the
#: weight copy each PE holds at each step (``weights``: the copies' bytes end to end; ``select``: per
#: ``step · instances + PE`` the byte offset of its copy; see :mod:`.weight_copies`). With ``calls``
#: (the call of every word, int64) and ``call_base`` (per call, the byte offset of that call's copies
#: in ``weights``): the words of consecutive calls stacked along ``N``, each call against its own copies.
InputCopies = Callable[..., None]


@dataclass(frozen=True, eq=False)
class FaultKernels:
    """The inner loops of :func:`inject`: numpy (:data:`NUMPY_KERNELS`) or compiled with TVM.

    Attributes
    ----------
    name
        ``numpy`` or ``tvm``.
    prepare
        Builds a layer's constant kernel arguments (the caller caches them per layer).
    delta
        Adds ``Σ M(x', w') − Σ M(x, w)`` of a sample into the flat int32 accumulators.
    delta_calls
        The same for the samples of consecutive layer calls stacked along ``N``.
    input_copies
        Input-word deltas against per-step weight copies (:data:`InputCopies`; compiled kernels
        only: ``None`` keeps the cross term).
    """

    name: str
    prepare: Prepare
    delta: Delta
    delta_calls: DeltaCalls
    input_copies: InputCopies | None = None


def _delta_into(
    out: np.ndarray,
    x: np.ndarray,
    prog: LayerProgram,
    geom: TileGeometry,
    sample: FaultSample,
    la: LayerArrays,
    wflat: np.ndarray,
) -> None:
    """Add the delta of :func:`products_delta` into the flat accumulator ``out`` (int32 wraps), numpy.

    Channels: ``C`` is per group (the weights' axis), ``Ct`` over all groups (the input's); the
    records carry global output and input channels (``g·K/G + k``, ``g·C/G + c``).
    """
    sch = prog.schedule
    sh_, m = sch.shape, sch.mapping
    sh, sw, dh, dw = sh_.stride_h, sh_.stride_w, sh_.dilation_h, sh_.dilation_w
    _, K, C, P, Q, R, S, Hp, Wp = la.dims
    Ct, Kg = la.in_c, la.group_k
    T = la.table
    n_inst = geom.instances
    a_rec: dict[str, np.ndarray] | None = None
    b_rec: dict[str, np.ndarray] | None = None

    cw = sample.weight
    if len(cw):
        j, i = cw.residency // n_inst, cw.residency % n_inst
        gg, kk, cc, rr, ss = np.unravel_index(cw.word, geom.tile_dims("weight", m))
        st = geom.step_start[geom.fills["weight"][j]] + geom.inst_off[i]
        g = st[:, _D["G"]] + gg
        k, c = g * Kg + st[:, _D["K"]] + kk, st[:, _D["C"]] + cc  # global output, in-group input channel
        r, t = st[:, _D["R"]] + rr, st[:, _D["S"]] + ss
        wo = wflat[((k * C + c) * R + r) * S + t].astype(np.int64)
        wn = wo ^ cw.mask.astype(np.int64)
        rec, step = _expand_steps(geom.fills["weight"][j], geom.residency_ends("weight")[j])
        box = geom.step_start[step] + geom.inst_off[i[rec]]
        n0, p0, q0 = box[:, _D["N"]], box[:, _D["P"]], box[:, _D["Q"]]
        a_rec = {
            "step": step,
            "inst": i[rec],
            "k": k[rec],
            "c": (g * C + c)[rec],  # global input channel
            "r": r[rec],
            "s": t[rec],
            "wo": wo[rec],
            "wn": wn[rec],
        }
        xb = ((n0 * Ct + a_rec["c"]) * Hp + p0 * sh + a_rec["r"] * dh) * Wp + q0 * sw + a_rec["s"] * dw
        ob = ((n0 * K + a_rec["k"]) * P + p0) * Q + q0
        scatter_numpy(padded_input(x, prog, la.xpad), xb, la.box_x, ob, la.box_o, a_rec["wn"], a_rec["wo"], T, out, 256)

    cx = sample.input
    if len(cx):
        mark = None
        if a_rec is not None:  # cross term: only a (PE, channel) holding a corrupted weight matters
            mark = np.zeros(n_inst * Ct, bool)
            mark[a_rec["inst"] * Ct + a_rec["c"]] = True
        rows = _input_rows(x, prog, geom, la, cx)
        scatter_numpy(wflat, rows["wb"], la.k_w, rows["ob"], la.k_o, rows["xn"], rows["xo"], T, out, 1)
        if mark is not None:
            b_rec = rows
        if b_rec is not None and mark is not None:
            sel = np.flatnonzero(mark[b_rec["inst"] * Ct + b_rec["c"]])
            b_rec = {k: v[sel] for k, v in b_rec.items()} if len(sel) else None

    if a_rec is not None and b_rec is not None:
        _cross_term(out, a_rec, b_rec, geom, (Ct, R, S, K, P, Q), T)


def _input_rows(
    x: np.ndarray, prog: LayerProgram, geom: TileGeometry, la: LayerArrays, cx: CorruptedWords
) -> dict[str, np.ndarray]:
    """One row per (corrupted input, tap of its tile, step of its residency), numpy.

    Each row holds the MAC coordinates (step, PE, n, c, r, s, p, q; ``c`` the global input channel),
    the old/new byte (·256) and the flat weight/output offsets of the PE's first output channel of
    the input's group at that step.
    """
    sch = prog.schedule
    sh_, m = sch.shape, sch.mapping
    sh, sw, dh, dw = sh_.stride_h, sh_.stride_w, sh_.dilation_h, sh_.dilation_w
    _, K, C, P, Q, R, S, _, _ = la.dims
    Kg = la.group_k
    n_inst = geom.instances
    j, i = cx.residency // n_inst, cx.residency % n_inst
    xdims = geom.tile_dims("input", m)
    nn, gg, cc, hh, ww = np.unravel_index(cx.word, xdims)
    st = geom.step_start[geom.fills["input"][j]] + geom.inst_off[i]
    p0, q0, r0, s0 = st[:, _D["P"]], st[:, _D["Q"]], st[:, _D["R"]], st[:, _D["S"]]
    g = st[:, _D["G"]] + gg
    n, c = st[:, _D["N"]] + nn, st[:, _D["C"]] + cc
    h, w = p0 * sh + r0 * dh + hh, q0 * sw + s0 * dw + ww
    xo = _input_bytes(x, prog, n, g * C + c, h, w)
    xn = xo ^ cx.mask.astype(np.int64)
    # taps (r, s) of the tile that read this input, and the output (p, q) they produce
    hw = hh * xdims[4] + ww
    e, ti = _expand_steps(la.taps_start[hw], la.taps_start[hw] + la.taps_len[hw])
    ra, sa, dp, dq = la.taps[:, ti]
    begin = geom.fills["input"][j[e]]
    rec, step = _expand_steps(begin, geom.residency_ends("input")[j[e]])
    e, ra, sa, dp, dq = e[rec], ra[rec], sa[rec], dp[rec], dq[rec]
    ie = i[e]
    k0 = g[e] * Kg + geom.step_start[step, _D["K"]] + geom.inst_off[ie, _D["K"]]  # global output channel
    cg = c[e]
    rows = {
        "step": step,
        "inst": ie,
        "n": n[e],
        "c": g[e] * C + cg,
        "r": r0[e] + ra,
        "s": s0[e] + sa,
        "p": p0[e] + dp,
        "q": q0[e] + dq,
        "xo": xo[e] * 256,
        "xn": xn[e] * 256,
    }
    rows["wb"] = ((k0 * C + cg) * R + rows["r"]) * S + rows["s"]
    rows["ob"] = ((rows["n"] * K + k0) * P + rows["p"]) * Q + rows["q"]
    return rows


def _cross_term(
    out: np.ndarray,
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    geom: TileGeometry,
    dims: tuple[int, ...],
    T: np.ndarray,
) -> None:
    """Correct MACs where a corrupted weight meets a corrupted input in the same step and PE."""
    C, R, S, K, P, Q = dims

    def key(d: dict[str, np.ndarray]) -> np.ndarray:
        return (((d["step"] * geom.instances + d["inst"]) * C + d["c"]) * R + d["r"]) * S + d["s"]

    ka, kb = key(a), key(b)
    order = np.argsort(ka, kind="stable")  # the weight side is the small one: sort it, search into it
    kas = ka[order]
    lo, hi = np.searchsorted(kas, kb, "left"), np.searchsorted(kas, kb, "right")
    if not np.any(hi > lo):
        return
    ib, ia_pos = _expand_steps(lo, hi)
    ia = order[ia_pos]
    wo, wn, xo, xn = a["wo"][ia], a["wn"][ia], b["xo"][ib], b["xn"][ib]
    corr = (T[xn + wn] - T[xn + wo]) - (T[xo + wn] - T[xo + wo])
    np.add.at(out, ((b["n"][ib] * K + a["k"][ia]) * P + b["p"][ib]) * Q + b["q"][ib], corr.astype(out.dtype))


def inject(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    sample: FaultSample,
    geom: TileGeometry,
    arrays: LayerArrays | None = None,
    kernels: FaultKernels | None = None,
    prepared: object = None,
    second: np.ndarray | None = None,
) -> np.ndarray:
    """The layer's int32 accumulators under ``sample``, from its fault-free accumulators ``acc``.

    The deltas are added in int32 with wrap-around, which equals the int32 accumulator of the
    whole faulty sum (addition modulo 2^32 is associative). ``kernels``: numpy (default) or the
    compiled :func:`~approxtvm.runtime.faults.delta_tvm.tvm_kernels` (same results); ``prepared``:
    the layer's ``kernels.prepare`` result when the caller keeps it (built here otherwise);
    ``second``: an activation × activation matmul's second operand (its weights for this call).
    """
    if not len(sample.weight) and not len(sample.input):
        return acc
    la = arrays if arrays is not None else layer_arrays(prog, geom)
    k = kernels or NUMPY_KERNELS
    if prepared is None:
        prepared = k.prepare(prog, geom, la)
    geom, sample = for_deltas(geom, sample, prog.schedule.mapping)
    if prog.schedule.shape.op == "matmul":
        op = matmul_operands(x, second, prog)
        out = np.array(op.to_canonical(acc), dtype=np.int32, order="C")
        k.delta(op.x, prog, geom, la, prepared, sample, out.reshape(-1), op.wflat)
        return op.from_canonical(out)
    out = np.array(acc, dtype=np.int32, copy=True)
    k.delta(x, prog, geom, la, prepared, sample, out.reshape(-1), la.wflat)
    return out


def _numpy_delta(
    x: np.ndarray,
    prog: LayerProgram,
    geom: TileGeometry,
    la: LayerArrays,
    prepared: object,
    sample: FaultSample,
    out: np.ndarray,
    wflat: np.ndarray,
) -> None:
    _delta_into(out, x, prog, geom, sample, la, wflat)


def _numpy_delta_calls(
    x: np.ndarray,
    prog: LayerProgram,
    geom: TileGeometry,
    la: LayerArrays,
    prepared: object,
    samples: Sequence[FaultSample] | StackedSamples,
    out: np.ndarray,
    wflat: np.ndarray,
) -> None:
    if isinstance(samples, StackedSamples):
        samples = samples.samples()
    xs, os_ = len(x) // len(samples), out.size // len(samples)
    for c, s in enumerate(samples):
        _delta_into(out[c * os_ : (c + 1) * os_], x[c * xs : (c + 1) * xs], prog, geom, s, la, wflat)


def inject_calls(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    samples: Sequence[FaultSample] | StackedSamples,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`inject` of consecutive calls of a conv/dense layer at once, in place: ``x`` and ``acc``
    stack the calls' inputs and int32 accumulators along ``N`` (call ``c`` = the ``c``-th block of
    rows); ``samples`` holds one sample per call (or all in shared arrays). ``weights``: the flat
    weight bytes the products read (default: the layer's own; corrupted weights whose faults
    ``acc`` already holds, see :mod:`.corrupted_weights`). Returns ``acc``."""
    if prog.schedule.shape.op == "matmul":
        raise ValueError("inject_calls takes conv and dense layers (an activation matmul's weights vary per call)")
    if acc.dtype != np.int32 or not acc.flags.c_contiguous or not acc.flags.writeable:
        raise ValueError("inject_calls adds in place into a writeable C-contiguous int32 array")
    if isinstance(samples, StackedSamples) and geom.compute is not None:
        samples = samples.samples()  # uneven mappings: the boxes' words, call by call (below)
    wflat = arrays.wflat if weights is None else weights
    if isinstance(samples, StackedSamples):
        if len(samples.weight) or len(samples.input):
            kernels.delta_calls(x, prog, geom, arrays, prepared, samples, acc.reshape(-1), wflat)
        return acc
    if any(len(s.weight) or len(s.input) for s in samples):
        boxes = geom
        boxed = []
        for s in samples:  # uneven mappings: the deltas run on the PE's boxes (same geometry for every call)
            boxes, b = for_deltas(geom, s, prog.schedule.mapping)
            boxed.append(b)
        kernels.delta_calls(x, prog, boxes, arrays, prepared, boxed, acc.reshape(-1), wflat)
    return acc


def _no_preparation(prog: LayerProgram, geom: TileGeometry, la: LayerArrays) -> object:
    return ()


#: Pure-numpy kernels (no TVM needed).
NUMPY_KERNELS = FaultKernels("numpy", _no_preparation, _numpy_delta, _numpy_delta_calls)
