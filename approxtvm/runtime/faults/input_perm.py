"""Input-word fault deltas vectorised over output channels, table rows in registers (AVX-512 BW).

The scalar input kernel (:mod:`.delta_tir` ``input_delta``) adds, for every corrupted input word
``x → x'`` and every weight ``w`` of its residency, ``T[x'][w] − T[x][w]``: two table loads, a
weight load strided by ``C·R·S`` and an accumulator store strided by ``P·Q`` per product (≈ 1 ns on
ResNet-50). Its experiment-4 genomes with input buffers at 0.5 V flip tens of millions of input bits
per batch of 8, and this loop was their largest cost.

Here the same sum runs 32 output channels at a time:

* the weights are read ``k``-contiguous (``(C/G, R, S, K)`` per stored copy, as 16-bit codes);
* the two table rows ``T[x', :]`` and ``T[x, :]`` (512 bytes each at 16 bits) are looked up by
  ``vpermi2w`` register permutes, as :mod:`~approxtvm.runtime.kernels.table_perm` does (four permutes
  and three selects per 32 lookups; LLVM keeps the rows in registers across a word's products);
* the deltas go into an ``(N, P, Q, K)`` int32 buffer with contiguous vector adds, added into the
  ``(N, K, P, Q)`` accumulators once per call (:func:`add_transposed`).

On those genomes a corrupted word meets few weights (ResNet-50 mappings hold 8–64 output channels
per step and 1–7 taps per word: 16–110 products), so the per-word work matters as much as the
products: the word's tile coordinates come from a per-layer table (:attr:`PermLayer.decode`, no
64-bit divisions) and each tap's weight and output offsets are precomputed. Replayed on the input
deltas of genome 6 (captured per layer), the first form without the table was 4.4 s per batch of 8
against the scalar kernel's 5.3 s; with the live A/B in one process the genome went from 1.29 to
1.03 CPU-s per image.

Lanes past a step's ``tile_k`` channels add zero, so every step's channel range may start anywhere.
Sums are exact in int32 with wrap-around, as the hardware's accumulator and the scalar kernel, so
the results are equal bit for bit (tested against the scalar kernel and the emulator). Tables whose
values do not fit 16 bits, and CPUs without AVX-512 BW, keep the scalar kernel
(:func:`perm_layer` is ``None``).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from approxtvm.runtime.kernels.layout import Scratch
from approxtvm.runtime.kernels.table_perm import perm_dtype

__all__ = [
    "LANES",
    "PRODUCTS_PER_ACCUMULATOR",
    "PermLayer",
    "add_transposed",
    "input_perm_kernel",
    "kmajor_weights",
    "perm_layer",
    "perm_pays",
    "products_per_word",
    "run_perm",
]

LANES = 32  # 16-bit lanes of a 512-bit register
#: This path runs a call when its input-delta products reach this many per accumulator: below, the
#: buffer's zeroing and transposed add (≈ 3 ns per accumulator) cost more than the scalar kernel
#: saves (measured on the ResNet-50 layers of experiment-4 genome 6: ≈ 1–2 ns per product scalar).
PRODUCTS_PER_ACCUMULATOR = 8

_LOCK = threading.Lock()


def perm_pays(products: float, acc_elements: int) -> bool:
    """Whether a call with about ``products`` input-delta products into ``acc_elements``
    accumulators takes this path (see :data:`PRODUCTS_PER_ACCUMULATOR`)."""
    return products >= PRODUCTS_PER_ACCUMULATOR * acc_elements


@dataclass(frozen=True, eq=False)
class PermLayer:
    """One layer's constants for this path (built once per layer by :func:`perm_layer`).

    Attributes
    ----------
    kernel
        The compiled kernel for the table's 16-bit type.
    scalars
        Its scalar arguments, in order.
    lut
        The table as ``(256, 256)`` 16-bit values (row = input byte).
    acc_shape
        ``(K, P · Q)`` of one image's accumulators.
    decode
        int32, per word of the input tile (stride 8): its ``hh, ww, cc, gg, nn`` (the word index's
        mixed-radix digits, ``ww`` fastest).
    tap_offsets
        int64, per tap ``(r, s, p, q)`` of the tap table: ``(r · S + s) · K`` and ``(p · Q + q) · K``.
    """

    kernel: Any
    scalars: tuple[int, ...]
    lut: np.ndarray
    acc_shape: tuple[int, int]
    decode: np.ndarray
    tap_offsets: np.ndarray


def products_per_word(record: Any, taps_len: np.ndarray, steps: np.ndarray) -> float:
    """Mean input-delta products of one corrupted input word (taps × steps × ``tile_k``), from the
    taps per input-tile position and the steps per input residency: the cost model's estimate.
    ``record``: the layer's :class:`.delta_tvm.KernelArgs`, typed loosely here and in
    :func:`perm_layer` (``delta_tvm`` imports this module; importing it back, even for type
    checking only, is a cycle the import-graph test rejects)."""
    taps = float(np.mean(taps_len)) if len(taps_len) else 0.0
    return taps * (float(np.mean(steps)) if len(steps) else 0.0) * record.tile_k


#: Largest input tile (words) the decode table covers; a layer with larger tiles keeps the scalar kernel.
MAX_TILE_WORDS = 1 << 20


def perm_layer(record: Any, table: np.ndarray, taps: np.ndarray) -> PermLayer | None:
    """The layer's :class:`PermLayer`, or ``None`` where this path does not run (no AVX-512 BW,
    a table whose values do not fit 16 bits, a kernel that does not build, or an input tile of
    more than :data:`MAX_TILE_WORDS` words). ``record``: the layer's :class:`~.delta_tvm.KernelArgs`;
    ``taps``: the ``(4, n)`` tap table (r, s, p, q)."""
    r = record
    words = r.tile_n * r.tile_g * r.tile_c * r.tile_h * r.tile_w
    td = perm_dtype(table)
    kernel = input_perm_kernel(td) if td is not None and words <= MAX_TILE_WORDS else None
    if kernel is None:
        return None
    chunks = -(-r.tile_k // LANES)
    scalars = (
        r.instances, r.tile_k, r.tile_c, r.tile_h, r.tile_w, r.tile_g, r.layer_c, r.layer_k, r.layer_p, r.layer_q,
        r.layer_r, r.layer_s, r.stride_h, r.stride_w, r.dilation_h, r.dilation_w, r.pad_top, r.pad_left, r.in_h,
        r.in_w, r.zero_x, r.taps, r.group_k, r.in_c, r.layer_n, chunks,
    )  # fmt: skip
    lut = np.ascontiguousarray(np.asarray(table).reshape(256, 256).astype(td))
    decode = np.zeros((words, 8), np.int32)
    rest = np.arange(words)
    for col, radix in ((1, r.tile_w), (0, r.tile_h), (2, r.tile_c), (3, r.tile_g), (4, r.tile_n)):
        rest, decode[:, col] = np.divmod(rest, radix)
    t = np.asarray(taps, np.int64).reshape(4, -1)
    offsets = np.empty((t.shape[1], 2), np.int64)
    offsets[:, 0] = (t[0] * r.layer_s + t[1]) * r.layer_k
    offsets[:, 1] = (t[2] * r.layer_q + t[3]) * r.layer_k
    shape = (r.layer_k, r.layer_p * r.layer_q)
    return PermLayer(kernel, scalars, lut, shape, decode.ravel(), np.concatenate([offsets.ravel(), [0, 0]]))


def run_perm(
    layer: PermLayer,
    arrays: tuple[Any, ...],
    weights: np.ndarray,
    out: np.ndarray,
    scratch: Scratch,
    dl: Any,
) -> None:
    """Add the input deltas of one kernel call into the flat ``(N, K, P, Q)`` int32 ``out``.

    ``arrays``: the scalar kernel's array arguments from the corrupted words through the taps'
    starts and counts (``tst``, ``tln``), then ``wsel``, the per-call copy offsets ``cbase`` and the
    input bytes (DLPack); ``weights``: :func:`kmajor_weights` of the weights read."""
    k, pq = layer.acc_shape
    size = out.size
    rows = size // (k * pq)
    need = size + LANES
    cap = 1 << max(need - 1, 1).bit_length()  # a few sizes kept, not one per layer shape
    with scratch.borrow("input_perm", (cap,), "int32") as kept:
        buf = kept[:need]
        buf.fill(0)
        *words, wsel, cbase, x = arrays
        tables = (dl(layer.tap_offsets), wsel, cbase, x, dl(layer.decode))
        layer.kernel(*layer.scalars, *words, *tables, dl(weights), dl(layer.lut), dl(buf))
        add_transposed(out, buf, rows, k, pq)


def input_perm_kernel(tdtype: str) -> Any:
    """The compiled kernel for tables of ``tdtype`` (``int16``/``uint16``), or ``None`` where the host
    has no AVX-512 BW or TVM cannot build it (compiled once per process and type)."""
    with _LOCK:
        return _kernel(tdtype)


@functools.lru_cache(maxsize=4)
def _kernel(tdtype: str) -> Any:
    from approxtvm.runtime.kernels.cpu import detect_cpu
    from approxtvm.runtime.kernels.table_perm import perm_available

    cpu = detect_cpu()
    if not perm_available(cpu):
        return None
    try:
        return _build(tdtype, cpu.llvm_cpu)["input_perm"]
    except Exception:  # LLVM without the intrinsic, no TVM: the scalar kernel gives the same sums
        return None


def kmajor_weights(weights: np.ndarray, k: int, c: int, r: int, s: int) -> np.ndarray:
    """Weight bytes (copies of flat ``(K, C/G, R, S)``) as the kernel reads them: int16 codes in
    ``(C/G, R, S, K)`` per copy, and ``LANES`` trailing codes (read by lanes that add zero)."""
    size = k * c * r * s
    copies = len(weights) // size
    out = np.zeros(copies * size + LANES, np.int16)
    w = np.asarray(weights).view(np.uint8).reshape(copies, k, c, r, s)
    out[: copies * size].reshape(copies, c, r, s, k)[...] = w.transpose(0, 2, 3, 4, 1)
    return out


def add_transposed(out: np.ndarray, buf: np.ndarray, n: int, k: int, pq: int) -> None:
    """``out[n, k, pq] += buf[n, pq, k]`` in place (int32 wrap-around); ``buf`` holds at least
    ``n · pq · k`` elements (the kernel's trailing lanes are ignored)."""
    o = out.reshape(n, k, pq)
    b = buf[: n * pq * k].reshape(n, pq, k)
    for i in range(n):  # one image at a time: the transposed operand stays cache-friendly
        np.add(o[i], b[i].T, out=o[i])


def _build(td: str, mcpu: str) -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    from approxtvm.runtime.kernels.table_perm import _lookup

    wide = f"int32x{LANES}"

    @T.prim_func(s_tir=True)
    def input_perm(
        instances: T.int64,
        tile_k: T.int64,
        tile_c: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
        tile_g: T.int64,
        layer_c: T.int64,
        layer_k: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_r: T.int64,
        layer_s: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        zero_x: T.int64,
        taps: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        layer_n: T.int64,
        chunks: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        cl_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        tofs_h: T.handle,
        wsel_h: T.handle,
        cbase_h: T.handle,
        x_h: T.handle,
        dec_h: T.handle,
        wk_h: T.handle,
        lut_h: T.handle,
        buf_h: T.handle,
    ):
        # each corrupted input word against every weight of its residency, 32 output channels a step
        T.func_attr({"global_symbol": "input_perm", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nws, ncb, nx, nw, no, ndec = (
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
        )
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        cl = T.match_buffer(cl_h, (ne,), "int64", align=1)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        tofs = T.match_buffer(tofs_h, (ntp,), "int64", align=1)  # per tap: weight and output offsets
        wsel = T.match_buffer(wsel_h, (nws,), "int64", align=1)  # per (step, PE): element offset of its copy
        cbase = T.match_buffer(cbase_h, (ncb,), "int64", align=1)  # per call: element offset of its copies
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        dec = T.match_buffer(dec_h, (ndec,), "int32", align=1)  # per tile word: hh ww cc gg nn (stride 8)
        wk = T.match_buffer(wk_h, (nw,), "int16", align=1)  # per copy (C/G, R, S, K), LANES spare codes
        lut = T.match_buffer(lut_h, (256, 256), td, align=1)
        buf = T.match_buffer(buf_h, (no,), "int32", align=1)  # (N, P, Q, K), LANES spare elements
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            # the word's tile coordinates from the table: no 64-bit divisions per word
            hh = T.Cast("int64", dec[word[e] * 8 + 0])
            ww = T.Cast("int64", dec[word[e] * 8 + 1])
            f0 = fills[jf]
            n = ss[f0 * 8 + 0] + io[i * 8 + 0] + T.Cast("int64", dec[word[e] * 8 + 4]) + cl[e] * layer_n
            g = ss[f0 * 8 + 7] + io[i * 8 + 7] + T.Cast("int64", dec[word[e] * 8 + 3])
            c = ss[f0 * 8 + 2] + io[i * 8 + 2] + T.Cast("int64", dec[word[e] * 8 + 2])
            p0 = ss[f0 * 8 + 3] + io[i * 8 + 3]
            q0 = ss[f0 * 8 + 4] + io[i * 8 + 4]
            r0 = ss[f0 * 8 + 5] + io[i * 8 + 5]
            s0 = ss[f0 * 8 + 6] + io[i * 8 + 6]
            hu = p0 * stride_h + r0 * dilation_h + hh - pad_top
            wu = q0 * stride_w + s0 * dilation_w + ww - pad_left
            inside = T.int64(0) <= hu and hu < in_h and T.int64(0) <= wu and wu < in_w
            xo = T.if_then_else(
                inside,
                T.Cast(
                    "int64",
                    x[T.if_then_else(inside, ((n * in_c + g * layer_c + c) * in_h + hu) * in_w + wu, T.int64(0))],
                ),
                zero_x,
            )
            xn = T.bitwise_xor(xo, T.Cast("int64", mask[e]))
            hw = hh * tile_w + ww
            wb0 = ((c * layer_r + r0) * layer_s + s0) * layer_k + g * group_k
            ob0 = ((n * layer_p + p0) * layer_q + q0) * layer_k + g * group_k
            for t in range(tln[hw]):
                tt = tst[hw] + t
                for st in range(ends[jf] - f0):
                    k0 = ss[(f0 + st) * 8 + 1] + io[i * 8 + 1]
                    wc = cbase[cl[e]] + wsel[(f0 + st) * instances + i] + wb0 + tofs[2 * tt] + k0
                    for kc in range(chunks):
                        # no let-bound vector index (TVM 0.27 then scatters lane by lane): ramps inline
                        idx = wk[T.ramp(wc + kc * LANES, 1, LANES)]
                        buf[T.ramp(ob0 + tofs[2 * tt + 1] + k0 + kc * LANES, 1, LANES)] = buf[
                            T.ramp(ob0 + tofs[2 * tt + 1] + k0 + kc * LANES, 1, LANES)
                        ] + T.Select(
                            T.ramp(T.Cast("int32", kc * LANES), 1, LANES) < T.broadcast(T.Cast("int32", tile_k), LANES),
                            T.Cast(wide, _lookup(lut, xn, idx, td)) - T.Cast(wide, _lookup(lut, xo, idx, td)),
                            T.broadcast(T.int32(0), LANES),
                        )

    mod = tvm.IRModule({"input_perm": input_perm})
    return tvm.compile(mod, target=tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))
