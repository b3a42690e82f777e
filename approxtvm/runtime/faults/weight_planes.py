"""Weight-fault deltas of a layer whose weights are stored once per call, one output plane at a time.

Where every weight word sits in one residency (:func:`~.corrupted_weights.weights_stored_once`),
every product that reads weight ``w[k, c, r, s]`` reads the same stored copy ``w'``: its delta
``T[x][w'] − T[x][w]`` goes to every output ``(n, k, p, q)``, whatever step or PE computed it. So
the deltas need no residency walk: per corrupted weight, the 256-entry difference row
``D[v] = T[v][w'] − T[v][w]`` (two contiguous rows of the transposed table), then for every image
and output row ``out[n, k, p, :] += D[x[n, c, p·sh + r·dh − pad, q·sw + s·dw − pad]]`` (the zero
point's byte in the padding), the ``q`` loop in 16-lane chunks compiled for the host's vector
instructions. :mod:`.delta_tir`'s ``weight_delta`` walks every step of the residency with two
table reads per product (≈ 2 ns per product on ResNet-50 at batch 8: the steps' tiles are a few
outputs wide); this kernel reads one.

Results equal the residency walk bit for bit (int32 wrap-around; tested against the emulator).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry

if TYPE_CHECKING:
    from approxtvm.targets.vacc.workload import LayerShape

__all__ = ["add_weight_planes", "planes_kernel", "residency_boxes"]


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    from approxtvm.runtime.kernels.cpu import detect_cpu

    @T.prim_func(s_tir=True)
    def weight_planes(
        layer_n: T.int64,
        layer_k: T.int64,
        layer_c: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_r: T.int64,
        layer_s: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        zero_x: T.int64,
        index_h: T.handle,
        mask_h: T.handle,
        res_h: T.handle,
        box_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        lut_t_h: T.handle,
        out_h: T.handle,
    ):
        # each corrupted weight (flat index into (K, C/G, R, S), XOR mask) against every output of
        # its channel inside its copy's output box (n0, n_len, p0, p_len, q0, q_len):
        # out (N, K, P, Q) int32, x (N, C, H, W) uint8 codes, lut_t[w·256 + x] = T[x][w]
        T.func_attr({"global_symbol": "weight_planes", "tirx.noalias": True})
        ne, nb, nx, nw, no = T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        index = T.match_buffer(index_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        res = T.match_buffer(res_h, (ne,), "int64", align=1)  # the word's box (row of ``box``)
        box = T.match_buffer(box_h, (nb,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "uint8", align=1)
        lut_t = T.match_buffer(lut_t_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        d = T.alloc_buffer((256,), "int32")
        for e in range(ne):
            # chained quotients of the flat weight index
            q1 = index[e] // layer_s
            q2 = q1 // layer_r
            k = q2 // layer_c
            s_ = index[e] - q1 * layer_s
            r = q1 - q2 * layer_r
            c = q2 - k * layer_c + k // group_k * layer_c  # input channel over all groups
            wo = T.Cast("int64", w[index[e]])
            rn = T.bitwise_xor(wo, T.Cast("int64", mask[e])) * 256
            ro = wo * 256
            for v in T.vectorized(256):
                d[v] = lut_t[rn + v] - lut_t[ro + v]
            dz = d[zero_x]
            # the q range whose tap lies inside the image: q·sw + s·dw − pad_left in [0, in_w),
            # within the box's [qa, qe) (every loop below starts at 0: TVM 0.27 pitfall)
            a = pad_left - s_ * dilation_w
            bx = res[e] * 6
            qa = box[bx + 4]
            qe = box[bx + 4] + box[bx + 5]
            q_lo = T.min(T.max((a + stride_w - 1) // stride_w, qa), qe)
            q_hi = T.max(T.min((in_w + a + stride_w - 1) // stride_w, qe), q_lo)
            for n in range(box[bx + 1]):
                for p in range(box[bx + 3]):
                    hu = (box[bx + 2] + p) * stride_h + r * dilation_h - pad_top
                    ob = (((box[bx] + n) * layer_k + k) * layer_p + box[bx + 2] + p) * layer_q
                    if T.int64(0) <= hu and hu < in_h:
                        xb = (((box[bx] + n) * in_c + c) * in_h + hu) * in_w - a
                        for qq in range(q_lo - qa):
                            out[ob + qa + qq] = out[ob + qa + qq] + dz
                        for qb in range((q_hi - q_lo) // 16):
                            for qv in T.vectorized(16):
                                out[ob + q_lo + qb * 16 + qv] = (
                                    out[ob + q_lo + qb * 16 + qv]
                                    + d[T.Cast("int64", x[xb + (q_lo + qb * 16 + qv) * stride_w])]
                                )
                        for qt in range((q_hi - q_lo) % 16):
                            out[ob + q_hi - (q_hi - q_lo) % 16 + qt] = (
                                out[ob + q_hi - (q_hi - q_lo) % 16 + qt]
                                + d[T.Cast("int64", x[xb + (q_hi - (q_hi - q_lo) % 16 + qt) * stride_w])]
                            )
                        for qr in range(qe - q_hi):
                            out[ob + q_hi + qr] = out[ob + q_hi + qr] + dz
                    else:
                        for qq in range(qe - qa):
                            out[ob + qa + qq] = out[ob + qa + qq] + dz

    target = tvm.target.Target({"kind": "llvm", "mcpu": detect_cpu().llvm_cpu})
    return tvm.compile(tvm.IRModule({"weight_planes": weight_planes}), target=target)


@functools.lru_cache(maxsize=1)
def planes_kernel() -> Any:
    """The compiled kernel (once per process), or ``None`` where TVM cannot build it."""
    try:
        lib = _build()
        return lib, lib["weight_planes"]
    except Exception:  # no TVM / LLVM failure: the callers keep the residency walk
        return None


def add_weight_planes(
    x: np.ndarray,
    shape: LayerShape,
    zero_x: int,
    weight: np.ndarray,
    lut_t: np.ndarray,
    index: np.ndarray,
    mask: np.ndarray,
    out: np.ndarray,
    boxes: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Add the deltas of the corrupted weights ``index`` (flat into the layer's ``(K, C/G, R, S)``
    weight bytes) XORed with ``mask`` into the accumulators ``out``, each over the outputs of its
    channel inside its output box.

    Parameters
    ----------
    x
        The layer's fault-free input codes, ``(N, C, H, W)`` or ``(N, C)``.
    shape
        The layer's shape (conv2d, grouped or not, or dense).
    zero_x
        The input zero point as a stored byte (what a padded tap holds).
    weight
        The layer's fault-free weight codes (any shape, ``(K, C/G, R, S)`` order).
    lut_t
        The transposed table, ``lut_t[w · 256 + x] = T[x][w]`` (int32, 65536).
    index, mask
        The corrupted weights and their XOR masks.
    out
        ``(N, K, P, Q)`` (or ``(N, K)``) int32 accumulators, C-contiguous, added into in place.
    boxes
        ``(box of every word, boxes)``: the outputs each corrupted copy is read for, rows
        ``(n0, n_len, p0, p_len, q0, q_len)`` (:func:`residency_boxes`); ``None``: whole planes
        (every weight stored once, each index at most once).

    Raises
    ------
    ValueError
        Where the kernel does not build here (see :func:`planes_kernel`) or ``out`` is not as described.
    """
    kernel = planes_kernel()
    if kernel is None:
        raise ValueError("the weight-plane kernel needs a TVM build")
    if out.dtype != np.int32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("add_weight_planes adds into writeable C-contiguous int32 accumulators")
    if not len(index):
        return
    import tvm_ffi

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    s = shape
    dense = s.op == "dense"
    args = (
        s.n, s.k, s.c_per_group, 1 if dense else s.p, 1 if dense else s.q, 1 if dense else s.r,
        1 if dense else s.s, s.k_per_group, s.c, 1 if dense else s.h, 1 if dense else s.w,
        1 if dense else s.stride_h, 1 if dense else s.stride_w, 1 if dense else s.dilation_h,
        1 if dense else s.dilation_w, 0 if dense else s.pad_top, 0 if dense else s.pad_left, int(zero_x),
    )  # fmt: skip
    if boxes is None:
        dims = (s.n, 1, 1) if dense else (s.n, s.p, s.q)
        boxes = (np.zeros(len(index), np.int64), np.array([[0, dims[0], 0, dims[1], 0, dims[2]]], np.int64))
    res, table = boxes
    lib, fn = kernel
    xr = np.ascontiguousarray(x).view(np.uint8).reshape(-1)
    wb = np.ascontiguousarray(weight).view(np.uint8).reshape(-1)
    fn(
        *args,
        dl(np.ascontiguousarray(index, np.int64)),
        dl(np.ascontiguousarray(mask, np.uint8)),
        dl(np.ascontiguousarray(res, np.int64)),
        dl(np.ascontiguousarray(table, np.int64).reshape(-1)),
        dl(xr),
        dl(wb),
        dl(np.ascontiguousarray(lut_t, np.int32).reshape(-1)),
        dl(out.reshape(-1)),
    )
    _ = lib  # keep the module alive while its function runs


def residency_boxes(geom: TileGeometry, tensor_dims: tuple[int, int, int]) -> np.ndarray | None:
    """Per weight residency of ``geom`` (``fill · instances + PE``), the outputs its steps compute
    as one box ``(n0, n_len, p0, p_len, q0, q_len)``, clipped to the layer's ``(N, P, Q)``
    (``tensor_dims``); ``None`` when some residency's steps do not tile a box (then its copy's
    deltas need the step walk).

    Within a weight residency the weights are fixed, so its steps differ only in ``N``, ``P`` and
    ``Q``; the union of their boxes is checked to cover its bounding box exactly once.
    """
    cols = [_D[d] for d in "NPQ"]
    ext = geom.ext[cols]
    fills, ends = geom.fills["weight"], geom.residency_ends("weight")
    n_inst = geom.instances
    out = np.empty((len(fills), n_inst, 6), np.int64)
    lim = np.array(tensor_dims, np.int64)
    for j, (f0, f1) in enumerate(zip(fills.tolist(), ends.tolist(), strict=True)):
        st = geom.step_start[f0:f1][:, cols]
        for i in range(n_inst):
            lo = np.clip(st + geom.inst_off[i, cols], 0, lim)
            hi = np.clip(st + geom.inst_off[i, cols] + ext, 0, lim)
            b0, b1 = lo.min(axis=0), hi.max(axis=0)
            cover = np.zeros(b1 - b0, np.int64)  # every output of the bounding box computed exactly once
            for a, e in zip((lo - b0).tolist(), (hi - b0).tolist(), strict=True):
                cover[a[0] : e[0], a[1] : e[1], a[2] : e[2]] += 1
            if not (cover == 1).all():
                return None
            out[j, i] = (b0[0], b1[0] - b0[0], b0[1], b1[1] - b0[1], b0[2], b1[2] - b0[2])
    return out.reshape(-1, 6)
