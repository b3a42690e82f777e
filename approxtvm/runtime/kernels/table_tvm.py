"""Arbitrary-table conv on TVM: weight-stationary per-weight tables, multi-threaded, host-tuned.

For a block of output channels ``k0..k0+kb`` and input channels ``c0..c0+cc`` a TVM kernel builds
``Tab[r, s, c, u, k] = M(u, w[k, c, r, s])`` (int16/uint16 when the table fits, else int32). The
conv kernel then reads, for every activation byte ``u = x[n, y+r, x+s, c]``, one contiguous row
``Tab[r, s, c, u, :]`` and adds it to ``kb`` int32 accumulators held in registers for ``xt``
output pixels — an EmbeddingBag with no gathers (research notes s6: ≈10 G MAC/s on 2 Zen4 cores,
≈6 on AVX2). Channel blocks of ``cb`` taps stay in L2; the output is accumulated in place, so
tables are processed in chunks that bound the extra memory (``table_chunk_bytes``).

Building the tables costs ``256`` entries per weight; for layers with few output pixels a direct
gather kernel (``acc += LUT[x·257 + w]``, vectorised over output channels) is cheaper, and
:func:`conv2d_table_tvm` picks between them with a cost model (rates measured on a Zen4/Zen5).

The llvm target is built from the host CPU (``mcpu`` from LLVM's host detection, never assumed)
and every kernel is compiled once per shape into an explicit :class:`TvmKernelCache`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.kernels.cpu import CpuInfo, detect_cpu
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.layout import Scratch, to_nchw
from approxtvm.runtime.kernels.threads import configure_tvm_pool, use_tvm_threads

if TYPE_CHECKING:  # TVM is imported lazily at run time
    import tvm
    import tvm_ffi

#: Measured throughputs (2-core Zen5, AVX-512) used only to choose between the two kernels; their
#: ratios, not their values, matter: MAC/s of the table kernel with tables in cache, bytes/s at
#: which it streams tables that do not fit the caches, MAC/s of the gather kernel, and table
#: entries/s of the table builder.
TABLE_MACS_PER_S: float = 22e9
TABLE_STREAM_BYTES_PER_S: float = 8.7e9
GATHER_MACS_PER_S: float = 4.0e9
BUILD_ENTRIES_PER_S: float = 4.7e9

#: Column of the extended LUT that is all zeros: padded channels/weights index it.
ZERO_COLUMN: int = 256
LUT_COLUMNS: int = 257


@dataclass(frozen=True)
class TableKernelConfig:
    """Tiling of the table kernels.

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
        """AVX-512: 4 pixels × 64 channels (16 zmm accumulators); otherwise 4 × 32 (16 ymm)."""
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


def extended_lut(table: np.ndarray, tdtype: str) -> np.ndarray:
    """``table`` as ``tdtype`` with a zero column 256 appended: shape (256, 257)."""
    out = np.zeros((256, LUT_COLUMNS), dtype=tdtype)
    out[:, :256] = table
    return out


@dataclass(frozen=True)
class _ConvKey:
    kind: str  # "table"; ``single`` = the layer is one chunk: offsets c0 = k0 = 0 are compiled in
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
    single: bool = False


@dataclass(frozen=True)
class _BuildKey:
    r: int
    s: int
    cc: int
    kb: int
    tdtype: str


def _make_table_conv(key: _ConvKey) -> tvm.tirx.PrimFunc:
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    N, HP, WP, C, R, S = key.n, key.hp, key.wp, key.c, key.r, key.s
    CC, KB, P, QP, KP = key.cc, key.kb, key.p, key.qp, key.kp
    SH, SW, DH, DW = key.sh, key.sw, key.dh, key.dw
    XT, CB = key.xt, key.cb
    td = key.tdtype
    NCO = CC // CB
    NXO = QP // XT

    if key.single:  # constant offsets c0 = k0 = 0: simpler addressing, measured ~20 % faster

        @T.prim_func(s_tir=True)
        def table_conv_single(
            X: T.Buffer((N, HP, WP, C), "uint8"),
            Tab: T.Buffer((R, S, CC, 256, KB), td),
            Y: T.Buffer((N, P, QP, KP), "int32"),
            c0: T.int32,
            k0: T.int32,
        ):
            T.func_attr({"global_symbol": "table_conv", "tirx.noalias": True})
            for co in range(NCO):
                for npy in T.parallel(N * P):
                    for xo in range(NXO):
                        acc = T.decl_buffer((XT, KB), "int32", scope="local")
                        for xi in T.unroll(XT):
                            for k in T.vectorized(KB):
                                acc[xi, k] = Y[npy // P, npy % P, xo * XT + xi, k]
                        for r, s, ci in T.grid(R, S, CB):
                            for xi in T.unroll(XT):
                                for k in T.vectorized(KB):
                                    acc[xi, k] = acc[xi, k] + T.Cast(
                                        "int32",
                                        Tab[
                                            r,
                                            s,
                                            co * CB + ci,
                                            T.Cast(
                                                "int32",
                                                X[
                                                    npy // P,
                                                    (npy % P) * SH + r * DH,
                                                    (xo * XT + xi) * SW + s * DW,
                                                    co * CB + ci,
                                                ],
                                            ),
                                            k,
                                        ],
                                    )
                        for xi in T.unroll(XT):
                            for k in T.vectorized(KB):
                                Y[npy // P, npy % P, xo * XT + xi, k] = acc[xi, k]

        return table_conv_single

    @T.prim_func(s_tir=True)
    def table_conv(
        X: T.Buffer((N, HP, WP, C), "uint8"),
        Tab: T.Buffer((R, S, CC, 256, KB), td),
        Y: T.Buffer((N, P, QP, KP), "int32"),
        c0: T.int32,
        k0: T.int32,
    ):
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
                                acc[xi, k] = acc[xi, k] + T.Cast(
                                    "int32",
                                    Tab[
                                        r,
                                        s,
                                        co * CB + ci,
                                        T.Cast(
                                            "int32",
                                            X[
                                                npy // P,
                                                (npy % P) * SH + r * DH,
                                                (xo * XT + xi) * SW + s * DW,
                                                c0 + co * CB + ci,
                                            ],
                                        ),
                                        k,
                                    ],
                                )
                    for xi in T.unroll(XT):
                        for k in T.vectorized(KB):
                            Y[npy // P, npy % P, xo * XT + xi, k0 + k] = acc[xi, k]

    return table_conv


@dataclass(frozen=True)
class _GatherKey:
    xlen: int
    npix: int
    taps: int
    kp: int
    kb: int
    pb: int
    tdtype: str


def _make_gather_conv(key: _GatherKey) -> tvm.tirx.PrimFunc:
    """Direct gather: ``Y[pix, k] = Σ_t LUT[X[PIX[pix] + TO[t]]·257 + Wi[t, k]]``.

    Pixels are addressed through precomputed flat offsets (any batch, stride, dilation), in blocks
    of ``pb`` whose ``pb × kb`` accumulators stay in L1 while one weight row is reused ``pb`` times.
    """
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    XLEN, NPIX, TAPS, KP, KB, PB = key.xlen, key.npix, key.taps, key.kp, key.kb, key.pb
    td = key.tdtype
    NKO = KP // KB
    NPB = NPIX // PB
    LC = LUT_COLUMNS

    @T.prim_func(s_tir=True)
    def gather_conv(
        X: T.Buffer((XLEN,), "uint8"),
        PIX: T.Buffer((NPIX,), "int32"),
        TO: T.Buffer((TAPS,), "int32"),
        Wi: T.Buffer((TAPS, KP), "int32"),
        LUT: T.Buffer((256 * LC,), td),
        Y: T.Buffer((NPIX, KP), "int32"),
    ):
        T.func_attr({"global_symbol": "gather_conv", "tirx.noalias": True})
        for blk in T.parallel(NKO * NPB):
            acc = T.decl_buffer((PB, KB), "int32", scope="local")
            for pi in range(PB):
                for k in T.vectorized(KB):
                    acc[pi, k] = 0
            for t in range(TAPS):
                for pi in range(PB):
                    for k in T.vectorized(KB):
                        acc[pi, k] = acc[pi, k] + T.Cast(
                            "int32",
                            LUT[
                                T.Cast("int32", X[PIX[(blk % NPB) * PB + pi] + TO[t]]) * LC
                                + Wi[t, (blk // NPB) * KB + k]
                            ],
                        )
            for pi in range(PB):
                for k in T.vectorized(KB):
                    Y[(blk % NPB) * PB + pi, (blk // NPB) * KB + k] = acc[pi, k]

    return gather_conv


def _make_build(key: _BuildKey) -> tvm.tirx.PrimFunc:
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    R, S, CC, KB, td = key.r, key.s, key.cc, key.kb, key.tdtype
    LC = LUT_COLUMNS

    @T.prim_func(s_tir=True)
    def build_tables(
        LUT: T.Buffer((256, LC), td), Wi: T.Buffer((R, S, CC, KB), "int32"), Tab: T.Buffer((R, S, CC, 256, KB), td)
    ):
        T.func_attr({"global_symbol": "build_tables", "tirx.noalias": True})
        for j in T.parallel(R * S * CC):
            for u in range(256):
                for k in T.vectorized(KB):
                    Tab[j // (S * CC), (j // CC) % S, j % CC, u, k] = LUT[
                        u, Wi[j // (S * CC), (j // CC) % S, j % CC, k]
                    ]

    return build_tables


@dataclass
class TvmKernelCache:
    """Explicit cache of compiled TVM kernels (one per shape) for the host CPU.

    Attributes
    ----------
    cpu
        The detected host CPU; the target is ``llvm`` with ``mcpu=<cpu.llvm_cpu>``.
    config
        Tiling; defaults to :meth:`TableKernelConfig.for_cpu`.
    compile_count
        Kernels compiled so far (for tests and benchmarks).
    """

    cpu: CpuInfo = field(default_factory=detect_cpu)
    config: TableKernelConfig | None = None
    compile_count: int = 0
    kernels: dict[object, tuple[object, object]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Reused, 64-byte aligned buffer for tables that are not cached (no page faults per call);
    #: hold ``scratch_lock`` while using it.
    scratch: np.ndarray | None = field(default=None, repr=False)
    scratch_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Device copies of product tables (and their transposes) in the kernels' element type, by
    #: ``(table key, layout)``; filled by :mod:`.table_perm`.
    luts: dict[tuple[str, str], tuple[object, str]] = field(default_factory=dict, repr=False)
    #: Staging arrays of the kernels' inputs and outputs, kept across calls (:mod:`.layout`).
    scratch_arrays: Scratch = field(default_factory=Scratch, repr=False)
    #: Kernel choices measured per layer shape (:mod:`.table_choice`).
    choices: dict[tuple, str] = field(default_factory=dict, repr=False)

    def scratch_tensor(self, shape: tuple[int, ...], dtype: str) -> tvm.runtime.Tensor:
        """A TVM view (zero-copy) of the scratch buffer; caller holds :attr:`scratch_lock`."""
        import tvm

        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.scratch is None or self.scratch.size < nbytes + 64:
            self.scratch = np.empty(max(nbytes, self.config.table_chunk_bytes) + 64, dtype=np.uint8)
        off = (-self.scratch.ctypes.data) % 64
        view = self.scratch[off : off + nbytes].view(dtype).reshape(shape)
        return tvm.runtime.from_dlpack(view)

    def __post_init__(self) -> None:
        configure_tvm_pool()  # before any kernel starts TVM's thread pool
        if self.config is None:
            self.config = TableKernelConfig.for_cpu(self.cpu)

    def target(self) -> tvm.target.Target:
        """The llvm target of the host CPU."""
        import tvm

        return tvm.target.Target({"kind": "llvm", "mcpu": self.cpu.llvm_cpu, "num-cores": max(1, os.cpu_count() or 1)})

    def get(self, key: object) -> tvm_ffi.Function:
        """Compiled kernel for ``key`` (compiled on first use): a key of this module, or any frozen
        key with a ``name`` and a ``prim_func()`` (e.g. :mod:`.table_perm`)."""
        with self.lock:
            hit = self.kernels.get(key)
            if hit is None:
                import tvm

                if hasattr(key, "prim_func"):  # kernels of other modules describe themselves
                    name, func = key.name, key.prim_func()
                elif isinstance(key, _BuildKey):
                    name, func = "build_tables", _make_build(key)
                elif isinstance(key, _GatherKey):
                    name, func = "gather_conv", _make_gather_conv(key)
                else:
                    name, func = "table_conv", _make_table_conv(key)
                lib = tvm.compile(tvm.IRModule({name: func}), target=self.target())
                hit = (lib, lib[name])
                self.kernels[key] = hit
                self.compile_count += 1
            return hit[1]


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


@dataclass(frozen=True)
class TablePlan:
    """How one layer is cut into table chunks.

    Attributes
    ----------
    kb, cc
        Output and input channels per table chunk.
    kp, cpad
        Output and input channels rounded up to ``kb`` and ``cb``.
    qp, wp_ext
        Output columns rounded up to ``xt``, and the input width that covers them.
    tdtype
        Table element type.
    """

    kb: int
    cc: int
    kp: int
    cpad: int
    qp: int
    wp_ext: int
    tdtype: str

    def table_bytes(self, g: ConvGeometry) -> int:
        """Bytes of all of the layer's tables."""
        return g.r * g.s * self.cpad * 256 * self.kp * np.dtype(self.tdtype).itemsize

    def chunk_bytes(self, g: ConvGeometry) -> int:
        """Bytes of one table chunk (the extra memory of a call that does not cache tables)."""
        return g.r * g.s * self.cc * 256 * self.kb * np.dtype(self.tdtype).itemsize


def plan_tables(g: ConvGeometry, table: np.ndarray, config: TableKernelConfig) -> TablePlan:
    """Chunking of a layer's tables under ``config.table_chunk_bytes`` (``g``: padded geometry)."""
    tdtype = table_dtype(table)
    isz = np.dtype(tdtype).itemsize
    kb = min(config.kb, _round_up(g.k, 16))
    kp = _round_up(g.k, kb)
    cpad = _round_up(g.c, config.cb)
    per_c = g.r * g.s * 256 * kb * isz
    cc = max(config.cb, (config.table_chunk_bytes // per_c) // config.cb * config.cb)
    cc = min(cc, cpad)
    qp = _round_up(g.q, config.xt)
    wp_ext = max(g.wp, (qp - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1)
    return TablePlan(kb=kb, cc=cc, kp=kp, cpad=cpad, qp=qp, wp_ext=wp_ext, tdtype=tdtype)


def prefer_gather(g: ConvGeometry, plan: TablePlan, tables_cached: bool) -> bool:
    """``True`` when the direct gather kernel is predicted faster than the table kernel.

    Table kernel: MACs at :data:`TABLE_MACS_PER_S`, plus streaming its tables once, plus building
    them unless they are cached. Gather kernel: MACs at :data:`GATHER_MACS_PER_S`.
    """
    macs = g.n * g.p * plan.qp * plan.kp * g.c * g.r * g.s
    entries = g.r * g.s * plan.cpad * plan.kp * 256
    t_table = macs / TABLE_MACS_PER_S + entries * np.dtype(plan.tdtype).itemsize / TABLE_STREAM_BYTES_PER_S
    if not tables_cached:
        t_table += entries / BUILD_ENTRIES_PER_S
    return macs / GATHER_MACS_PER_S < t_table


def _weight_index(wb: np.ndarray, c0: int, c1: int, k0: int, k1: int, cpad_to: int, kpad_to: int) -> np.ndarray:
    """int32 (R, S, cpad_to, kpad_to) weight bytes of a chunk, ZERO_COLUMN where padded."""
    k_real = wb.shape[0]
    c_real = wb.shape[1]
    out = np.full((wb.shape[2], wb.shape[3], cpad_to, kpad_to), ZERO_COLUMN, dtype=np.int32)
    ce, ke = min(c1, c_real), min(k1, k_real)
    if ce > c0 and ke > k0:
        out[:, :, : ce - c0, : ke - k0] = wb[k0:ke, c0:ce].transpose(2, 3, 1, 0)
    return out


def conv2d_table_tvm(
    xp: np.ndarray,
    wb: np.ndarray,
    table: np.ndarray,
    g: ConvGeometry,
    cache: TvmKernelCache,
    tables: dict | None = None,
    kernel: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
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
    kernel
        ``"table"`` (weight-stationary tables), ``"gather"`` (direct LUT gather) or ``"auto"``.
    threads
        TVM threads (``None``: :func:`.threads.use_tvm_threads`'s choice by the layer's size).
    """
    import tvm

    use_tvm_threads(g.macs, threads)
    cfg = cache.config
    plan = plan_tables(g, table, cfg)
    if kernel == "auto":
        kernel = "gather" if prefer_gather(g, plan, tables is not None) else "table"
    lut = extended_lut(table, plan.tdtype)
    with (
        cache.scratch_arrays.borrow("table_x", (g.n, g.hp, plan.wp_ext, plan.cpad), "uint8") as x_nhwc,
        cache.scratch_arrays.borrow("table_y", (g.n, g.p, plan.qp, plan.kp), "int32") as y,
    ):
        # NHWC, zero columns for the ragged last pixel tile, zero channels up to a multiple of cb
        # (their weights index the LUT's zero column)
        x_nhwc[:, :, g.wp :] = 0
        x_nhwc[:, :, : g.wp, g.c :] = 0
        x_nhwc[:, :, : g.wp, : g.c] = xp.transpose(0, 2, 3, 1)
        if kernel == "gather":
            return _gather(x_nhwc, wb, lut, g, plan, cache)
        xt_, yt = tvm.runtime.from_dlpack(x_nhwc), tvm.runtime.from_dlpack(y)
        y[...] = 0  # the chunks accumulate into it
        if tables is not None:
            _table_chunks(xt_, yt, wb, lut, g, plan, cache, tables)
        else:
            with cache.scratch_lock:
                _table_chunks(xt_, yt, wb, lut, g, plan, cache, None)
        return to_nchw(y, g.k, g.q, cache)


#: Pixels per block of the gather kernel (8 measured best on 2 Zen5 cores, 7×7 to 56×56 layers).
GATHER_PIXEL_BLOCK: int = 8


def _gather(
    x_nhwc: np.ndarray, wb: np.ndarray, lut: np.ndarray, g: ConvGeometry, plan: TablePlan, cache: TvmKernelCache
) -> np.ndarray:
    """Run the direct gather kernel; returns int32 NKPQ."""
    import tvm

    pb = GATHER_PIXEL_BLOCK
    npq = g.n * g.p * g.q
    npix = -(-npq // pb) * pb
    _, hp, wpe, cpad = x_nhwc.shape
    n, p, q = np.meshgrid(np.arange(g.n), np.arange(g.p), np.arange(g.q), indexing="ij")
    pix = np.zeros(npix, dtype=np.int32)  # padded pixels read offset 0; their results are dropped
    pix[:npq] = (((n * hp + p * g.stride_h) * wpe + q * g.stride_w) * cpad).ravel()
    r, s, c = np.meshgrid(np.arange(g.r), np.arange(g.s), np.arange(cpad), indexing="ij")
    to = (((r * g.dilation_h) * wpe + s * g.dilation_w) * cpad + c).ravel().astype(np.int32)
    wi = _weight_index(wb, 0, cpad, 0, plan.kp, cpad, plan.kp).reshape(-1, plan.kp)
    key = _GatherKey(x_nhwc.size, npix, to.size, plan.kp, plan.kb, pb, plan.tdtype)
    y = tvm.runtime.tensor(np.zeros((npix, plan.kp), dtype=np.int32))
    cache.get(key)(
        tvm.runtime.tensor(x_nhwc.reshape(-1)),
        tvm.runtime.tensor(pix),
        tvm.runtime.tensor(to),
        tvm.runtime.tensor(wi),
        tvm.runtime.tensor(lut.reshape(-1)),
        y,
    )
    out = y.numpy()[:npq, : g.k].reshape(g.n, g.p, g.q, g.k)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _table_chunks(
    xt_: tvm.runtime.Tensor,
    yt: tvm.runtime.Tensor,
    wb: np.ndarray,
    lut: np.ndarray,
    g: ConvGeometry,
    plan: TablePlan,
    cache: TvmKernelCache,
    tables: dict | None,
) -> None:
    """Run the table kernel over every (c, k) chunk, building tables that ``tables`` lacks (into
    ``tables`` when given, else into the cache's scratch buffer)."""
    import tvm

    cfg = cache.config
    lut_t = None
    for c0 in range(0, plan.cpad, plan.cc):
        c1 = min(plan.cpad, c0 + plan.cc)
        cc = c1 - c0
        key = _ConvKey(
            "table", g.n, g.hp, plan.wp_ext, plan.cpad, g.r, g.s, cc, plan.kb, g.p, plan.qp, plan.kp, g.stride_h,
            g.stride_w, g.dilation_h, g.dilation_w, plan.tdtype, cfg.xt, cfg.cb,
            single=(cc == plan.cpad and plan.kb == plan.kp),
        )  # fmt: skip
        fn = cache.get(key)
        for k0 in range(0, plan.kp, plan.kb):
            tab = None if tables is None else tables.get((c0, k0))
            if tab is None:
                if lut_t is None:
                    lut_t = tvm.runtime.tensor(lut)
                wi = _weight_index(wb, c0, c1, k0, k0 + plan.kb, cc, plan.kb)
                shape = (g.r, g.s, cc, 256, plan.kb)
                if tables is None:
                    tab = cache.scratch_tensor(shape, plan.tdtype)
                else:
                    tab = tvm.runtime.empty(shape, plan.tdtype)
                    tables[(c0, k0)] = tab
                cache.get(_BuildKey(g.r, g.s, cc, plan.kb, plan.tdtype))(lut_t, tvm.runtime.tensor(wi), tab)
            fn(xt_, tab, yt, c0, k0)
