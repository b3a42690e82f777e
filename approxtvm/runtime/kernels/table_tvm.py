"""Arbitrary-table conv on TVM: weight-stationary per-weight tables, multi-threaded, host-tuned.

For a block of output channels ``k0..k0+kb`` and input channels ``c0..c0+cc`` the host builds
``Tab[r, s, c, u, k] = M(u, w[k, c, r, s])`` (int16/uint16 when the table fits, else int32). The
kernel then reads, for every activation byte ``u = x[n, y+r, x+s, c]``, one contiguous row
``Tab[r, s, c, u, :]`` and adds it to ``kb`` int32 accumulators held in registers for ``xt``
output pixels — an EmbeddingBag with no gathers, ≈10 G MAC/s on 2 Zen4 cores (AVX-512) and ≈6 on
AVX2 (research notes s6). Channel blocks of ``cb`` taps stay in L2; the output is accumulated in
place, so tables can be processed in chunks that bound the extra memory.

The llvm target is built from the host CPU (``-mcpu`` from LLVM's host detection) and the kernels
are compiled once per shape into an explicit :class:`TvmKernelCache`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from approxtvm.runtime.kernels.cpu import CpuInfo, detect_cpu
from approxtvm.runtime.kernels.geometry import ConvGeometry


@dataclass(frozen=True)
class TableKernelConfig:
    """Tiling of the table kernel.

    Attributes
    ----------
    xt
        Output pixels per register tile.
    kb
        Output channels per block (vector lanes of the accumulators).
    cb
        Input channels per L2 block.
    table_chunk_bytes
        Upper bound of the tables built at once (extra memory per call), in bytes.
    """

    xt: int = 4
    kb: int = 64
    cb: int = 2
    table_chunk_bytes: int = 48 * 2**20

    @staticmethod
    def for_cpu(cpu: CpuInfo) -> TableKernelConfig:
        """AVX-512: 4 pixels × 64 channels (16 zmm accumulators); AVX2: 4 × 32 (16 ymm)."""
        if cpu.avx512:
            return TableKernelConfig(xt=4, kb=64, cb=2)
        return TableKernelConfig(xt=4, kb=32, cb=2)


def table_dtype(table: np.ndarray) -> str:
    """Narrowest of int16 / uint16 / int32 that holds every table value."""
    lo, hi = int(table.min()), int(table.max())
    if lo >= -(2**15) and hi < 2**15:
        return "int16"
    if lo >= 0 and hi < 2**16:
        return "uint16"
    return "int32"


@dataclass(frozen=True)
class _KernelKey:
    n: int
    hp: int
    wp: int
    c: int
    r: int
    s: int
    cc: int
    kb: int
    p: int
    qp: int
    kp: int
    sh: int
    sw: int
    dh: int
    dw: int
    tdtype: str
    xt: int
    cb: int
    target: str


def _make_prim_func(key: _KernelKey):
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    N, HP, WP, C, R, S = key.n, key.hp, key.wp, key.c, key.r, key.s
    CC, KB, P, QP, KP = key.cc, key.kb, key.p, key.qp, key.kp
    SH, SW, DH, DW = key.sh, key.sw, key.dh, key.dw
    XT, CB = key.xt, key.cb
    td = key.tdtype
    NCO = CC // CB
    NXO = QP // XT

    @T.prim_func(s_tir=True)
    def table_conv(X: T.Buffer((N, HP, WP, C), "uint8"), Tab: T.Buffer((R, S, CC, 256, KB), td),
                   Y: T.Buffer((N, P, QP, KP), "int32"), c0: T.int32, k0: T.int32):
        T.func_attr({"global_symbol": "table_conv", "tirx.noalias": True})
        for co in range(NCO):
            for npy in T.parallel(N * P):
                for xo in range(NXO):
                    acc = T.decl_buffer((XT, KB), "int32", scope="local")
                    for xi in T.unroll(XT):
                        for k in T.vectorized(KB):
                            acc[xi, k] = Y[npy // P, npy % P, xo * XT + xi, k0 + k]
                    for r, s, ci in T.grid(R, S, CB):
                        for xi in T.unroll(XT):
                            for k in T.vectorized(KB):
                                acc[xi, k] = acc[xi, k] + T.Cast("int32", Tab[
                                    r, s, co * CB + ci,
                                    T.Cast("int32", X[npy // P, (npy % P) * SH + r * DH,
                                                      (xo * XT + xi) * SW + s * DW, c0 + co * CB + ci]),
                                    k])
                    for xi in T.unroll(XT):
                        for k in T.vectorized(KB):
                            Y[npy // P, npy % P, xo * XT + xi, k0 + k] = acc[xi, k]

    return table_conv


@dataclass
class TvmKernelCache:
    """Explicit cache of compiled TVM table kernels (one per shape) for one host target.

    Attributes
    ----------
    cpu
        The detected host CPU; the target is ``llvm -mcpu=<cpu.llvm_cpu>``.
    config
        Tiling; defaults to :meth:`TableKernelConfig.for_cpu`.
    """

    cpu: CpuInfo = field(default_factory=detect_cpu)
    config: TableKernelConfig | None = None
    kernels: dict[_KernelKey, object] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    compile_count: int = 0

    def __post_init__(self) -> None:
        if self.config is None:
            self.config = TableKernelConfig.for_cpu(self.cpu)

    def target(self):
        """The llvm target of the host."""
        import tvm

        return tvm.target.Target({"kind": "llvm", "mcpu": self.cpu.llvm_cpu,
                                  "num-cores": max(1, os.cpu_count() or 1)})

    def get(self, key: _KernelKey):
        """Compiled kernel for ``key`` (compiles on first use)."""
        with self.lock:
            fn = self.kernels.get(key)
            if fn is None:
                import tvm

                lib = tvm.compile(tvm.IRModule({"table_conv": _make_prim_func(key)}), target=self.target())
                fn = lib["table_conv"]
                self.kernels[key] = (lib, fn)
                self.compile_count += 1
            else:
                fn = fn[1]
            return fn


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def build_tables(table: np.ndarray, wb: np.ndarray, c0: int, c1: int, k0: int, kb: int,
                 tdtype: str) -> np.ndarray:
    """``Tab[r, s, c, u, k] = table[u, w[k0 + k, c0 + c, r, s]]`` (zeros for ``k0 + k ≥ K``)."""
    k = wb.shape[0]
    ksel = wb[k0:min(k, k0 + kb), c0:c1]  # (kb', cc, R, S)
    tab = table.astype(tdtype, copy=False)[:, ksel.transpose(2, 3, 1, 0)]  # (256, R, S, cc, kb')
    tab = np.ascontiguousarray(tab.transpose(1, 2, 3, 0, 4))
    if tab.shape[-1] < kb:
        tab = np.concatenate([tab, np.zeros((*tab.shape[:-1], kb - tab.shape[-1]), tab.dtype)], axis=-1)
    return tab


@dataclass(frozen=True)
class TablePlan:
    """How one layer is cut into table chunks."""

    kb: int
    cc: int
    kp: int
    qp: int
    wp_ext: int
    tdtype: str

    @property
    def chunks(self) -> int:
        """Number of ``(c, k)`` table chunks."""
        return self.kp // self.kb


def plan_tables(g: ConvGeometry, table: np.ndarray, config: TableKernelConfig) -> tuple[TablePlan, int]:
    """Chunking of a layer's tables under ``config.table_chunk_bytes``; returns the plan and C chunk."""
    tdtype = table_dtype(table)
    isz = np.dtype(tdtype).itemsize
    kb = min(config.kb, _round_up(g.k, 16))
    kp = _round_up(g.k, kb)
    per_c = g.r * g.s * 256 * kb * isz
    cc = max(config.cb, (config.table_chunk_bytes // per_c) // config.cb * config.cb)
    cc = min(cc, _round_up(g.c, config.cb))
    qp = _round_up(g.q, config.xt)
    wp_ext = max(g.wp, (qp - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1)
    return TablePlan(kb=kb, cc=cc, kp=kp, qp=qp, wp_ext=wp_ext, tdtype=tdtype), cc


def conv2d_table_tvm(xp: np.ndarray, wb: np.ndarray, table: np.ndarray, g: ConvGeometry,
                     cache: TvmKernelCache, tables: dict | None = None) -> np.ndarray:
    """``Σ_taps table[x, w]`` on TVM (int32 NKPQ) over padded bytes ``xp`` (NCHW) and ``wb`` (OIHW).

    Parameters
    ----------
    xp, wb
        Padded activation bytes and weight bytes (uint8); ``g`` is the padded geometry.
    table
        int32 (256, 256) product table.
    cache
        Compiled kernels.
    tables
        Optional dict to take prebuilt tables from / store them in, keyed by chunk ``(c0, k0)``.
    """
    import tvm

    cfg = cache.config
    plan, cc = plan_tables(g, table, cfg)
    cpad = _round_up(g.c, cfg.cb)
    # NHWC, padded with zero columns for the ragged last pixel tile and zero channels (whose
    # weight tables are all zero) up to a multiple of cb
    x_nhwc = np.zeros((g.n, g.hp, plan.wp_ext, cpad), dtype=np.uint8)
    x_nhwc[:, :, :g.wp, :g.c] = xp.transpose(0, 2, 3, 1)
    tab_table = table
    y = np.zeros((g.n, g.p, plan.qp, plan.kp), dtype=np.int32)
    xt_ = tvm.runtime.tensor(x_nhwc)
    yt = tvm.runtime.tensor(y)
    for c0 in range(0, cpad, cc):
        c1 = min(cpad, c0 + cc)
        for k0 in range(0, plan.kp, plan.kb):
            key = _KernelKey(g.n, g.hp, plan.wp_ext, cpad, g.r, g.s, c1 - c0, plan.kb, g.p, plan.qp, plan.kp,
                             g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, plan.tdtype,
                             cfg.xt, cfg.cb, cache.cpu.llvm_cpu)
            fn = cache.get(key)
            tab = None if tables is None else tables.get((c0, k0))
            if tab is None:
                tab = _chunk_tables(tab_table, wb, c0, c1, g.c, k0, plan)
                if tables is not None:
                    tables[(c0, k0)] = tab
            fn(xt_, tab, yt, c0, k0)
    out = yt.numpy()[:, :, :g.q, :g.k]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _chunk_tables(table: np.ndarray, wb: np.ndarray, c0: int, c1: int, c: int, k0: int, plan: TablePlan):
    import tvm

    creal = min(c1, c)
    tab = build_tables(table, wb, c0, creal, k0, plan.kb, plan.tdtype)
    if creal < c1:  # zero tables for padding channels
        pad = np.zeros((tab.shape[0], tab.shape[1], c1 - creal, *tab.shape[3:]), tab.dtype)
        tab = np.concatenate([tab, pad], axis=2)
    return tvm.runtime.tensor(np.ascontiguousarray(tab))
