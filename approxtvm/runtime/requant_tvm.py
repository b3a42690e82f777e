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

from approxtvm.runtime.executor import Requantizer

__all__ = ["compiled_requantize"]


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

    from approxtvm.runtime.kernels.cpu import detect_cpu

    # the host's own instructions (rounding without a libm call per element, vector width)
    target = tvm.target.Target({"kind": "llvm", "mcpu": detect_cpu().llvm_cpu})
    return {d: tvm.compile(tvm.IRModule({"requant": kernel(d)}), target=target)["requant"] for d in ("uint8", "int8")}


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
    scale = np.ascontiguousarray(rq.scale.reshape(-1), np.float32)
    if scale.size != channels:
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


def _bias(rq: Requantizer, channels: int) -> np.ndarray:
    if rq.bias is None:
        return np.zeros(channels, np.int32)
    return np.ascontiguousarray(rq.bias.reshape(-1), np.int32)
