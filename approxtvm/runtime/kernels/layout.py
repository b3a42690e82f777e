"""Host-side buffers and the output layout pass of the pixel-major table kernels.

The register-LUT kernel of :mod:`.table_perm` and the weight-stationary kernel of :mod:`.table_tvm`
accumulate channels in vector lanes, so they write ``(N, P, Q', K')`` (pixels, then channels,
``Q'`` and ``K'`` rounded up to their tiles), while every caller wants ``(N, K, P, Q)``. numpy's
strided transpose of that int32 array took 13–20 ms per ResNet-50 stage-1 call at batch 8 (a
quarter of the call, as long as half the kernel); :func:`to_nchw` does it as one compiled pass
(a plain copy loop: reads within one pixel row of ``Q'·K'`` values, which stays in L2, writes
contiguous rows of ``Q``), 3–10× faster on this project's hosts, and drops the rounded-up
columns and channels in the same pass.

:class:`Scratch` keeps the kernels' input and output staging arrays across calls: a fresh
multi-megabyte array page-faults on first touch (≈ 9 ms of a 56 ms stage-1 call).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # TVM is imported lazily at run time
    import tvm


class KernelSource(Protocol):
    """What compiles the pass: :class:`~approxtvm.runtime.kernels.table_tvm.TvmKernelCache` (named
    structurally: that module uses this one)."""

    def get(self, key: object) -> Callable[..., object]:
        """The compiled kernel of ``key``."""


def aligned_empty(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """An uninitialised numpy array on a 64-byte boundary (TVM views it without a copy)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off : off + nbytes].view(dtype).reshape(shape)


#: Bytes of staging arrays a :class:`Scratch` keeps (least recently used dropped first): ResNet-50
#: at batch 8 needs ≈ 0.2 GB for all its shapes; beyond the budget a call allocates as before.
SCRATCH_MAX_BYTES: int = 384 * 2**20


@dataclass
class Scratch:
    """Aligned staging arrays kept across calls, one per ``(name, shape, dtype)``, at most
    ``max_bytes`` in all (least recently used dropped first).

    :meth:`borrow` lends the kept array; a caller that finds it lent (another thread in the same
    call) gets a fresh one, so concurrent calls never share memory. Contents are undefined.
    """

    max_bytes: int = SCRATCH_MAX_BYTES
    arrays: OrderedDict[tuple[str, tuple[int, ...], str], np.ndarray] = field(default_factory=OrderedDict, repr=False)
    lent: set[tuple[str, tuple[int, ...], str]] = field(default_factory=set, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def kept_bytes(self) -> int:
        """Bytes of the arrays kept now."""
        with self.lock:
            return sum(a.nbytes for a in self.arrays.values())

    @contextmanager
    def borrow(self, name: str, shape: tuple[int, ...], dtype: str) -> Iterator[np.ndarray]:
        """The kept array for ``(name, shape, dtype)`` for the duration of the ``with`` block."""
        key = (name, tuple(int(v) for v in shape), str(dtype))
        with self.lock:
            own = key not in self.lent
            arr = self.arrays.get(key) if own else None
            if own:
                self.lent.add(key)
                if arr is not None:
                    self.arrays.move_to_end(key)
        try:
            if arr is None:
                arr = aligned_empty(key[1], key[2])
                if own and arr.nbytes <= self.max_bytes:
                    with self.lock:
                        self.arrays[key] = arr
                        self._trim()
            yield arr
        finally:
            if own:
                with self.lock:
                    self.lent.discard(key)

    def _trim(self) -> None:
        """Drop least recently used arrays not lent until the kept bytes fit (lock held)."""
        total = sum(a.nbytes for a in self.arrays.values())
        for key in list(self.arrays):
            if total <= self.max_bytes:
                break
            if key not in self.lent:
                total -= self.arrays.pop(key).nbytes


@dataclass(frozen=True)
class NchwKey:
    """Shape of one compiled layout pass ``(N, P, QP, KP) → (N, K, P, Q)`` (int32)."""

    n: int
    p: int
    qp: int
    kp: int
    k: int
    q: int

    name = "to_nchw"

    def prim_func(self) -> tvm.tirx.PrimFunc:
        """The TIR kernel."""
        from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

        N, P, QP, KP, K, Q = self.n, self.p, self.qp, self.kp, self.k, self.q

        @T.prim_func(s_tir=True)
        def to_nchw(Y: T.Buffer((N, P, QP, KP), "int32"), O: T.Buffer((N, K, P, Q), "int32")):
            T.func_attr({"global_symbol": "to_nchw", "tirx.noalias": True})
            for job in T.parallel(N * P):
                for k, q in T.grid(K, Q):
                    O[job // P, k, job % P, q] = Y[job // P, job % P, q, k]

        return to_nchw


def to_nchw(y: np.ndarray, k: int, q: int, cache: KernelSource) -> np.ndarray:
    """``y[:, :, :q, :k]`` transposed to a fresh C-contiguous ``(N, K, P, Q)`` int32 array.

    Parameters
    ----------
    y
        int32 ``(N, P, QP, KP)``, C-contiguous and 64-byte aligned (:func:`aligned_empty`), with
        ``q ≤ QP`` and ``k ≤ KP``.
    k, q
        Channels and output columns kept.
    cache
        Compiled kernels (the pass is compiled once per shape).
    """
    import tvm

    n, p, qp, kp = y.shape
    if not (0 < q <= qp and 0 < k <= kp) or y.dtype != np.int32:
        raise ValueError(f"to_nchw: cannot keep {k} channels × {q} columns of {y.dtype} {y.shape}")
    out = aligned_empty((n, k, p, q), "int32")
    cache.get(NchwKey(n, p, qp, kp, k, q))(tvm.runtime.from_dlpack(y), tvm.runtime.from_dlpack(out))
    return out


__all__ = ["SCRATCH_MAX_BYTES", "KernelSource", "NchwKey", "Scratch", "aligned_empty", "to_nchw"]
