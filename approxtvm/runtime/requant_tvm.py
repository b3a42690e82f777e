"""The requantization of int32 accumulators in one compiled pass (TVM), bit-identical to numpy's.

:class:`~approxtvm.runtime.executor.Requantizer` takes six numpy passes over a layer's outputs
(bias, float32 product, clip, rint, zero point, cast); this kernel does the same float32 arithmetic
in one loop: ``float32(acc + bias_k) · scale_k``, clamped to ``[low, high]``, rounded half to even
(``nearbyint`` in the default rounding mode, as ``np.rint``), plus ``z_y``, cast to 8 bits. Each
step is a single IEEE operation on the same operands in the same order, so the results equal the
numpy ones bit for bit (tested). Built once per process; ``None`` where TVM cannot build.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from approxtvm.runtime.exact_layer import RowsAccumulators
from approxtvm.runtime.executor import Requantizer

__all__ = ["compiled_requantize", "compiled_requantize_rows"]

#: Lane order of a 16 × 16 byte block transposed: output lane ``16 k + i`` takes input lane ``16 i + k``.
_TRANSPOSE_16 = [i * 16 + k for k in range(16) for i in range(16)]


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    def kernel(out_dtype: str) -> Any:
        @T.prim_func(s_tir=True)
        def requant(
            rows: T.int64,
            channels: T.int64,
            inner: T.int64,
            low: T.float32,
            high: T.float32,
            zero_point: T.float32,
            acc_h: T.handle,
            bias_h: T.handle,
            scale_h: T.handle,
            out_h: T.handle,
        ):
            T.func_attr({"global_symbol": "requant", "tirx.noalias": True})
            n, nk = T.int64(), T.int64()
            acc = T.match_buffer(acc_h, (n,), "int32", align=1)
            bias = T.match_buffer(bias_h, (nk,), "int32", align=1)
            scale = T.match_buffer(scale_h, (nk,), "float32", align=1)
            out = T.match_buffer(out_h, (n,), out_dtype, align=1)
            for o in range(rows):
                for k in range(channels):
                    for i in range(inner):
                        idx = (o * channels + k) * inner + i
                        v = T.Cast("float32", acc[idx] + bias[k]) * scale[k]
                        v = T.max(T.min(v, high), low)
                        out[idx] = T.Cast(out_dtype, T.nearbyint(v) + zero_point)

        return requant

    def rows_kernel(out_dtype: str) -> Any:
        @T.prim_func(s_tir=True)
        def requant_rows(
            images: T.int64,
            pixels: T.int64,
            channels: T.int64,
            low: T.float32,
            high: T.float32,
            zero_point: T.float32,
            acc_h: T.handle,
            bias_h: T.handle,
            scale_h: T.handle,
            out_h: T.handle,
        ):
            # acc (images, pixels, channels) → out (images, channels, pixels). By blocks of 16
            # pixels × 16 channels: requantized along the channels (contiguous reads, vectorised)
            # into a 16 × 16 byte block, transposed in registers (one shuffle), then written 16
            # bytes per channel (contiguous writes). A byte-by-byte transposing copy took as long
            # as the arithmetic (ResNet-18: 1.0 of 1.8 ms per image). Channels past the last full
            # block, then pixels past the last full block, one by one.
            T.func_attr({"global_symbol": "requant_rows", "tirx.noalias": True})
            n, nk = T.int64(), T.int64()
            acc = T.match_buffer(acc_h, (n,), "int32", align=1)
            bias = T.match_buffer(bias_h, (nk,), "int32", align=1)
            scale = T.match_buffer(scale_h, (nk,), "float32", align=1)
            out = T.match_buffer(out_h, (n,), out_dtype, align=1)
            blk = T.alloc_buffer((256,), out_dtype)
            blk_t = T.alloc_buffer((256,), out_dtype)
            for o in range(images):
                for ib in range(pixels // 16):
                    for kb in range(channels // 16):
                        for ii in range(16):
                            for k in T.vectorized(16):  # no let-bound values in a vectorised loop (one lane)
                                blk[ii * 16 + k] = T.Cast(
                                    out_dtype,
                                    T.nearbyint(
                                        T.max(
                                            T.min(
                                                T.Cast(
                                                    "float32",
                                                    acc[(o * pixels + ib * 16 + ii) * channels + kb * 16 + k]
                                                    + bias[kb * 16 + k],
                                                )
                                                * scale[kb * 16 + k],
                                                high,
                                            ),
                                            low,
                                        )
                                    )
                                    + zero_point,
                                )
                        blk_t[T.Ramp(0, 1, 256)] = T.Shuffle(
                            [blk[T.Ramp(r * 16, 1, 16)] for r in range(16)], _TRANSPOSE_16
                        )
                        for k in range(16):
                            for ii in T.vectorized(16):
                                out[(o * channels + kb * 16 + k) * pixels + ib * 16 + ii] = blk_t[k * 16 + ii]
                    for kr in range(channels % 16):
                        for ii in range(16):
                            v = T.Cast(
                                "float32",
                                acc[(o * pixels + ib * 16 + ii) * channels + channels // 16 * 16 + kr]
                                + bias[channels // 16 * 16 + kr],
                            )
                            v = T.max(T.min(v * scale[channels // 16 * 16 + kr], high), low)
                            out[(o * channels + channels // 16 * 16 + kr) * pixels + ib * 16 + ii] = T.Cast(
                                out_dtype, T.nearbyint(v) + zero_point
                            )
                for it in range(pixels % 16):
                    for k in range(channels):
                        v = T.Cast("float32", acc[(o * pixels + pixels // 16 * 16 + it) * channels + k] + bias[k])
                        v = T.max(T.min(v * scale[k], high), low)
                        out[(o * channels + k) * pixels + pixels // 16 * 16 + it] = T.Cast(
                            out_dtype, T.nearbyint(v) + zero_point
                        )

        return requant_rows

    from approxtvm.runtime.kernels.cpu import detect_cpu

    # the host's own instructions (rounding without a libm call per element, vector width)
    target = tvm.target.Target({"kind": "llvm", "mcpu": detect_cpu().llvm_cpu})
    out = {}
    for d in ("uint8", "int8"):
        lib = tvm.compile(tvm.IRModule({"requant": kernel(d), "requant_rows": rows_kernel(d)}), target=target)
        out[d], out[f"{d}_rows"] = lib["requant"], lib["requant_rows"]
    return out


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    try:
        return _build()
    except Exception:  # no TVM / LLVM failure: the numpy requantizer gives the same numbers
        return None


def compiled_requantize(rq: Requantizer, acc: np.ndarray) -> np.ndarray | None:
    """``rq(acc)`` in one compiled pass (``acc`` unchanged), or ``None`` when it does not apply: no
    TVM, an output type other than 8 bits, or ``acc`` not a C-contiguous int32 array of rank 2
    (dense, channels last) or 4 (conv, channels second)."""
    lib = _library()
    if lib is None or rq.dtype.name not in lib or acc.dtype != np.int32 or not acc.flags.c_contiguous:
        return None
    if acc.ndim == 4:
        rows, channels, inner = acc.shape[0], acc.shape[1], acc.shape[2] * acc.shape[3]
    elif acc.ndim == 2:
        rows, channels, inner = acc.shape[0], acc.shape[1], 1
    else:
        return None
    scale = _scale(rq, channels)
    if scale is None:
        return None
    bias = _bias(rq, channels)
    import tvm_ffi

    out = np.empty(acc.shape, rq.dtype)
    lib[rq.dtype.name](
        rows,
        channels,
        inner,
        float(rq.low),
        float(rq.high),
        float(rq.zero_point),
        *(tvm_ffi.from_dlpack(a.reshape(-1), require_alignment=0) for a in (acc, bias, scale, out)),
    )
    return out


def compiled_requantize_rows(rq: Requantizer, acc: RowsAccumulators) -> np.ndarray | None:
    """``rq(acc.standard())`` in one compiled pass that also transposes the GEMM's rows and adds
    their bias (``acc`` unchanged): the same int32 sums (``acc + bias + rq.bias`` wraps alike in
    any order) and the same float32 steps as :func:`compiled_requantize`. ``None`` where it does
    not apply (no TVM, an output type other than 8 bits)."""
    lib = _library()
    n, k, p, q = acc.shape
    rows = acc.rows
    if lib is None or rq.dtype.name not in lib or rows.dtype != np.int32 or not rows.flags.c_contiguous:
        return None
    scale = _scale(rq, k)
    if scale is None or rows.size != n * k * p * q:
        return None
    bias = _bias(rq, k)
    if acc.bias is not None:
        bias = bias + acc.bias.astype(np.int32)  # int32: wraps like the accumulator
    import tvm_ffi

    out = np.empty((n, k) if acc.dense else (n, k, p, q), rq.dtype)
    lib[f"{rq.dtype.name}_rows"](
        n,
        p * q,
        k,
        float(rq.low),
        float(rq.high),
        float(rq.zero_point),
        *(tvm_ffi.from_dlpack(a.reshape(-1), require_alignment=0) for a in (rows, bias, scale, out)),
    )
    return out


def _scale(rq: Requantizer, channels: int) -> np.ndarray | None:
    """The per-channel float32 scales (a per-tensor scale repeated: each output is multiplied by
    the same float32 either way), or ``None`` for any other shape."""
    scale = np.ascontiguousarray(rq.scale.reshape(-1), np.float32)
    if scale.size == 1:
        return np.full(channels, scale[0], np.float32)
    return scale if scale.size == channels else None


def _bias(rq: Requantizer, channels: int) -> np.ndarray:
    if rq.bias is None:
        return np.zeros(channels, np.int32)
    return np.ascontiguousarray(rq.bias.reshape(-1), np.int32)
