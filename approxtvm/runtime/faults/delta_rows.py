"""Input-fault deltas in the GEMM's own layouts, one vectorised loop over output channels.

:mod:`.delta_tir`'s ``input_delta`` adds into ``(N, K, P, Q)`` accumulators and reads ``(K, C, R, S)``
weights: for each corrupted input word and tap its inner loop over the output channels ``k`` walks
both arrays with a large stride (a gather and a scatter per product, measured ≈ 0.7 ns per product).
The u8 × s8 GEMM of :class:`~approxtvm.runtime.exact_layer.ExactLayer` keeps its weights as
``(R, S, C, K)`` rows of int8 codes ``w − 128`` and produces ``(N·P·Q, K)`` rows before transposing.
In those layouts the channels of one tap are contiguous in both arrays, so this kernel's inner loop
is a contiguous multiply-add, vectorised for the host's instructions (``mcpu`` from LLVM's host
detection, never assumed). Measured on ResNet-18 (one image, kernel alone, warm): 41 → 37 ms for
the heavy genome's 690 K corrupted input words (the (N, K, P, Q) kernel took ≈ 67 ms in a run);
what remains is ≈ 16 ns per word of decoding and input reads and ≈ 4 ns per tap. PE tiles of 8,
16, 32 or 64 output channels (ResNet-18's) run a kernel of that fixed width (:data:`FIXED_TILE_K`):
whole vectors, each tap's rows from per-layer tables (ResNet-18 both, in a run: 5.3–5.5 → 3.9–4.3
ms per image).

Only for exact unsigned multipliers (``M(a, b) = a·b``, :attr:`.delta_tvm.KernelArgs.plain_product`)
on ungrouped layers: each corrupted input ``x → x'`` adds ``(x' − x) · w'`` to every output its
residency computes from it, ``w'`` the weight byte the product reads (corrupted weights included,
see :mod:`.corrupted_weights`). The same integers as ``input_delta`` (tested), int32 wrap-around.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from approxtvm.runtime.faults.sampling import CorruptedWords

__all__ = ["add_input_rows", "applies", "rows_kernel"]


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    from approxtvm.runtime.kernels.cpu import detect_cpu

    @T.prim_func(s_tir=True)
    def input_delta_rows(
        instances: T.int64,
        tile_n: T.int64,
        tile_k: T.int64,
        tile_c: T.int64,
        tile_p: T.int64,
        tile_q: T.int64,
        tile_r: T.int64,
        tile_s: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
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
        tile_g: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        layer_n: T.int64,
        plain_product: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        tap_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        out_h: T.handle,
    ):
        # each corrupted input word against every weight of the PE during its residency; weights
        # (R, S, C, K) int8 codes w − 128, outputs (N, P, Q, K) int32
        T.func_attr({"global_symbol": "input_delta_rows", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nx, nw, no = (
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
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        tap = T.match_buffer(tap_h, (ntp,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "int8", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            # chained quotients: four divisions per word instead of six (one group: tile_g = 1)
            q1 = word[e] // tile_w
            q2 = q1 // tile_h
            nn = q2 // tile_c
            ww = word[e] - q1 * tile_w
            hh = q1 - q2 * tile_h
            cc = q2 - nn * tile_c
            f0 = fills[jf]
            n = ss[f0 * 8 + 0] + io[i * 8 + 0] + nn
            c = ss[f0 * 8 + 2] + io[i * 8 + 2] + cc
            p0 = ss[f0 * 8 + 3] + io[i * 8 + 3]
            q0 = ss[f0 * 8 + 4] + io[i * 8 + 4]
            r0 = ss[f0 * 8 + 5] + io[i * 8 + 5]
            s0 = ss[f0 * 8 + 6] + io[i * 8 + 6]
            hu = p0 * stride_h + r0 * dilation_h + hh - pad_top
            wu = q0 * stride_w + s0 * dilation_w + ww - pad_left
            inside = T.int64(0) <= hu and hu < in_h and T.int64(0) <= wu and wu < in_w
            xo = T.if_then_else(
                inside,
                T.Cast("int32", x[T.if_then_else(inside, ((n * in_c + c) * in_h + hu) * in_w + wu, T.int64(0))]),
                T.Cast("int32", zero_x),
            )
            d = T.bitwise_xor(xo, T.Cast("int32", mask[e])) - xo
            hw = hh * tile_w + ww
            for t in range(tln[hw]):
                tt = tst[hw] + t
                wrow = (((r0 + tap[tt]) * layer_s + s0 + tap[taps + tt]) * layer_c + c) * layer_k
                orow = ((n * layer_p + p0 + tap[2 * taps + tt]) * layer_q + q0 + tap[3 * taps + tt]) * layer_k
                for st in range(ends[jf] - f0):
                    k0 = ss[(f0 + st) * 8 + 1] + io[i * 8 + 1]
                    # explicit 16- and 8-lane chunks: a loop the compiler vectorises on its own runs
                    # a tile of 8–16 channels in its scalar remainder (16 lanes: 10 % faster than 8
                    # on the heavy genome's 690 K words)
                    for kb in range(tile_k // 16):
                        for k in T.vectorized(16):  # indices inline: a let-bound lane index is not vectorised
                            out[orow + k0 + kb * 16 + k] = out[orow + k0 + kb * 16 + k] + d * (
                                T.Cast("int32", w[wrow + k0 + kb * 16 + k]) + 128
                            )
                    for _kb in range(tile_k % 16 // 8):  # one 8-channel chunk, if any
                        for k in T.vectorized(8):
                            out[orow + k0 + tile_k // 16 * 16 + k] = out[orow + k0 + tile_k // 16 * 16 + k] + d * (
                                T.Cast("int32", w[wrow + k0 + tile_k // 16 * 16 + k]) + 128
                            )
                    for k in range(tile_k % 8):
                        ko = k0 + tile_k // 8 * 8 + k
                        out[orow + ko] = out[orow + ko] + d * (T.Cast("int32", w[wrow + ko]) + 128)

    # the host's own vector instructions (AVX2 or AVX-512, as detected)
    target = tvm.target.Target({"kind": "llvm", "mcpu": detect_cpu().llvm_cpu})
    funcs = {"input_delta_rows": input_delta_rows}
    funcs.update({f"input_delta_rows_k{tk}": _fixed_tile_k(tk) for tk in _BUILT_TILE_K})
    return tvm.compile(tvm.IRModule(funcs), target=target)


#: PE tile widths (output channels) with their own kernel, the channel loop unrolled into whole
#: vectors and each tap's rows read from per-layer tables (:func:`_tap_tables`).
FIXED_TILE_K = (8, 16, 32, 64)
_BUILT_TILE_K = FIXED_TILE_K  # what the library holds (FIXED_TILE_K may be narrowed, e.g. in the tests)


def _fixed_tile_k(tk: int) -> Any:
    """``input_delta_rows`` for PE tiles of ``tk`` output channels (a multiple of 8): the same
    sums. The generic kernel spends ≈ 55 ns per word on ResNet-18 (5–6 taps of 8–16 channels
    each): its loop bounds and chunk tests per tap and the coordinates recomputed per tap (16
    scalars spilled to the stack) cost more than the products. Here a tap is two table reads and
    ``tk / 16`` (or one 8-lane) vector multiply-adds. The word's tile coordinates stay divisions:
    decode tables (a row per word of the input tile) were faster on a warm cache but slower in a
    run, where each lookup missed (ResNet-18 both, in-run: tables 5.5–5.6 ms, divisions 3.9–4.3,
    the generic kernel 5.5 ms per image)."""
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    symbol = f"input_delta_rows_k{tk}"

    @T.prim_func(s_tir=True)
    def kernel(
        instances: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
        layer_c: T.int64,
        layer_k: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_s: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        in_c: T.int64,
        zero_x: T.int64,
        tile_c: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        tapw_h: T.handle,
        tapo_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        out_h: T.handle,
    ):
        T.func_attr({"global_symbol": symbol, "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nx, nw, no = (
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
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        tapw = T.match_buffer(tapw_h, (ntp,), "int64", align=1)
        tapo = T.match_buffer(tapo_h, (ntp,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "int8", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            q1 = word[e] // tile_w
            q2 = q1 // tile_h
            nn = q2 // tile_c
            ww = word[e] - q1 * tile_w
            hh = q1 - q2 * tile_h
            cc = q2 - nn * tile_c
            f0 = fills[jf]
            n = ss[f0 * 8 + 0] + io[i * 8 + 0] + nn
            c = ss[f0 * 8 + 2] + io[i * 8 + 2] + cc
            p0 = ss[f0 * 8 + 3] + io[i * 8 + 3]
            q0 = ss[f0 * 8 + 4] + io[i * 8 + 4]
            r0 = ss[f0 * 8 + 5] + io[i * 8 + 5]
            s0 = ss[f0 * 8 + 6] + io[i * 8 + 6]
            hu = p0 * stride_h + r0 * dilation_h + hh - pad_top
            wu = q0 * stride_w + s0 * dilation_w + ww - pad_left
            inside = T.int64(0) <= hu and hu < in_h and T.int64(0) <= wu and wu < in_w
            xo = T.if_then_else(
                inside,
                T.Cast("int32", x[T.if_then_else(inside, ((n * in_c + c) * in_h + hu) * in_w + wu, T.int64(0))]),
                T.Cast("int32", zero_x),
            )
            d = T.bitwise_xor(xo, T.Cast("int32", mask[e])) - xo
            hw = hh * tile_w + ww
            wbase = ((r0 * layer_s + s0) * layer_c + c) * layer_k  # tap (0, 0) of the word's channel
            obase = ((n * layer_p + p0) * layer_q + q0) * layer_k  # output (0, 0) of the residency
            for t in range(tln[hw]):
                wrow = wbase + tapw[tst[hw] + t]
                orow = obase + tapo[tst[hw] + t]
                for st in range(ends[jf] - f0):
                    k0 = ss[(f0 + st) * 8 + 1] + io[i * 8 + 1]
                    for kb in T.unroll(tk // 16):
                        for k in T.vectorized(16):
                            out[orow + k0 + kb * 16 + k] = out[orow + k0 + kb * 16 + k] + d * (
                                T.Cast("int32", w[wrow + k0 + kb * 16 + k]) + 128
                            )
                    for _kb in T.unroll(tk % 16 // 8):
                        for k in T.vectorized(8):
                            out[orow + k0 + tk // 16 * 16 + k] = out[orow + k0 + tk // 16 * 16 + k] + d * (
                                T.Cast("int32", w[wrow + k0 + tk // 16 * 16 + k]) + 128
                            )

    return kernel


@functools.lru_cache(maxsize=1)
def rows_kernel() -> Any:
    """The compiled kernel (once per process), or ``None`` where TVM cannot build it."""
    try:
        lib = _build()
        return lib, lib["input_delta_rows"]
    except Exception:  # no TVM / LLVM failure: the callers keep the (N, K, P, Q) kernels
        return None


@functools.lru_cache(maxsize=len(_BUILT_TILE_K))
def _fixed_kernel(tk: int) -> Any:
    """The compiled kernel for PE tiles of ``tk`` output channels (looked up once)."""
    return rows_kernel()[0][f"input_delta_rows_k{tk}"]


def applies(prepared: object) -> bool:
    """Whether :func:`add_input_rows` runs for a layer with these compiled-kernel arguments: the
    unsigned product, one group, and a kernel that builds here."""
    rec = prepared.get("record") if isinstance(prepared, dict) else None
    if rec is None or not rec.plain_product or rec.tile_g != 1 or rec.group_k != rec.layer_k:
        return False
    return rows_kernel() is not None


def _fixed_args(prepared: dict[str, Any]) -> tuple[int, ...]:
    """The scalar arguments of a fixed-width kernel (:func:`_fixed_tile_k`)."""
    r = prepared["record"]
    return (
        r.instances,
        r.tile_h,
        r.tile_w,
        r.layer_c,
        r.layer_k,
        r.layer_p,
        r.layer_q,
        r.layer_s,
        r.stride_h,
        r.stride_w,
        r.dilation_h,
        r.dilation_w,
        r.pad_top,
        r.pad_left,
        r.in_h,
        r.in_w,
        r.in_c,
        r.zero_x,
        r.tile_c,
    )


def _tap_tables(prepared: dict[str, Any]) -> tuple[Any, ...]:
    """A layer's table arguments of the fixed-width kernels (built on first use, kept in
    ``prepared``): the input-tile arrays, then per tap the offset of its weight row and of its
    output row (from the tap table's ``(r, s, p, q)``, linear in each)."""
    tables = prepared.get("rows_taps")
    if tables is None:
        import tvm_ffi

        r, keep = prepared["record"], prepared["_keep"]
        tr, ts, tp, tq = np.asarray(keep["taps"], np.int64).reshape(4, -1)
        own = [np.ascontiguousarray((tr * r.layer_s + ts) * r.layer_c * r.layer_k)]
        own.append(np.ascontiguousarray((tp * r.layer_q + tq) * r.layer_k))
        views = [prepared[k] for k in ("fills_x", "ends_x", "ss", "io", "tst", "tln")]
        views += [tvm_ffi.from_dlpack(a, require_alignment=0) for a in own]
        tables = prepared["rows_taps"] = (tuple(views), own)  # the views borrow ``own``
    return tables[0]  # type: ignore[no-any-return]


def add_input_rows(
    x: np.ndarray, prepared: dict[str, Any], words: CorruptedWords, weights: np.ndarray, out: np.ndarray
) -> None:
    """Add one layer call's input-fault deltas into ``out``.

    Parameters
    ----------
    x
        The layer's uint8 input codes (``(N, C, H, W)`` or ``(N, C)``), fault-free.
    prepared
        The layer's compiled-kernel arguments (:func:`.delta_tvm.tvm_kernels`' ``prepare``); its
        ``args`` must say ``plain_product`` and one group.
    words
        The call's corrupted input words, in the geometry ``prepared`` was built for.
    weights
        The weights the products read, ``(R·S·C, K)`` int8 codes ``w − 128`` (C-contiguous).
    out
        ``(N·P·Q, K)`` int32 rows (C-contiguous), added into in place.

    Raises
    ------
    ValueError
        Where the kernel does not apply (see :func:`applies`) or the arrays are not as described.
    """
    if not applies(prepared):
        raise ValueError("the rows kernel needs the unsigned product, one group and a TVM build")
    if not len(words):
        return
    import tvm_ffi

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    if out.dtype != np.int32 or not out.flags.c_contiguous or weights.dtype != np.int8:
        raise ValueError("add_input_rows takes int8 weights and adds into C-contiguous int32 rows")
    lib, fn = rows_kernel()
    res = np.ascontiguousarray(words.residency, np.int64)
    word = np.ascontiguousarray(words.word, np.int64)
    mask = np.ascontiguousarray(words.mask, np.uint8)
    xr = np.ascontiguousarray(x).view(np.uint8).reshape(-1)
    r = prepared["record"]
    if r.tile_k in FIXED_TILE_K:
        _fixed_kernel(r.tile_k)(
            *_fixed_args(prepared),
            dl(res),
            dl(word),
            dl(mask),
            *_tap_tables(prepared),
            dl(xr),
            dl(weights.reshape(-1)),
            dl(out.reshape(-1)),
        )
        return
    fn(
        *prepared["args"],
        dl(res),
        dl(word),
        dl(mask),
        prepared["fills_x"],
        prepared["ends_x"],
        prepared["ss"],
        prepared["io"],
        prepared["tst"],
        prepared["tln"],
        prepared["taps"],
        dl(xr),
        dl(weights.reshape(-1)),
        dl(out.reshape(-1)),
    )
    _ = lib  # keep the module alive while its function runs
