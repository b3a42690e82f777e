"""Arbitrary-table convolutions with the table's rows held in vector registers (no per-weight tables).

A 16-bit product table row ``T[u, 0:256]`` is 512 bytes: eight 512-bit registers. AVX-512 BW's
``vpermi2w`` looks up 32 lanes of 16-bit indices in 64 entries held in two registers, so four of
them plus two selects on index bits 6 and 7 give 32 exact table lookups with no memory gather and
no per-weight table (a per-weight table costs 256 entries per weight, ≈ 12 GB per ResNet-50 image
at batch 1). Two kernels, both bit-exact (the tests check them against the reference):

``conv2d_perm`` (ungrouped conv and dense, AVX-512 BW only)
    *activation-stationary*: for every output pixel and tap the activation byte ``u`` selects the
    row ``T[u, :]``, loaded once into registers and looked up by the weight codes of ``kb`` output
    channels (32 per ``vpermi2w``), accumulated in int32 registers for ``xt`` pixels.
``grouped_table_tvm`` (grouped / depthwise conv, every x86 CPU)
    *weight-stationary*: for every output channel and tap the weight byte ``w`` selects the column
    ``T[:, w]`` (a row of the transposed table), looked up by 32 activation bytes at a time over the
    flattened output pixels (strides become stride-1 reads of phase planes built on the host). On
    AVX-512 BW the lookup is the register permute; elsewhere a 512-byte column read (L1-resident).

Tables whose values do not fit 16 bits are not handled here (:func:`perm_dtype` is ``None``): the
callers use the weight-stationary/gather kernels of :mod:`.table_tvm` for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.kernels.cpu import CpuInfo
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.layout import aligned_empty as _aligned_empty
from approxtvm.runtime.kernels.layout import to_nchw
from approxtvm.runtime.kernels.threads import use_tvm_threads

if TYPE_CHECKING:  # TVM is imported lazily at run time
    import tvm

    from approxtvm.runtime.kernels.table_tvm import TvmKernelCache

#: MAC/s of :func:`conv2d_perm` (2-core Zen4, ResNet-50 stage 3–4 layers), for the cost model only.
PERM_MACS_PER_S: float = 12e9

_PERM = "llvm.x86.avx512.vpermi2var.hi.512"
_LANES = 32  # 16-bit lanes of a 512-bit register


def perm_dtype(table: np.ndarray) -> str | None:
    """``int16`` / ``uint16`` when every table value fits, else ``None`` (not for these kernels)."""
    lo, hi = int(table.min()), int(table.max())
    if lo >= -(2**15) and hi < 2**15:
        return "int16"
    if lo >= 0 and hi < 2**16:
        return "uint16"
    return None


def perm_available(cpu: CpuInfo) -> bool:
    """Whether the register-permute lookup (AVX-512 BW ``vpermi2w``) runs on ``cpu``."""
    return cpu.avx512


def _lookup(tab: tvm.tirx.Buffer, row: object, idx: object, td: str) -> object:
    """32 lanes ``tab[row, idx]`` (idx int16x32 in 0..255) by four ``vpermi2w`` and three selects."""
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    vt = f"{td}x{_LANES}"
    perm = T.llvm_lookup_intrinsic_id(_PERM)
    parts = [
        T.call_llvm_pure_intrin(
            perm,
            tab[row, T.ramp(64 * i, 1, _LANES)],
            idx,
            tab[row, T.ramp(64 * i + _LANES, 1, _LANES)],
            dtype=vt,
        )
        for i in range(4)
    ]
    zero = T.broadcast(T.int16(0), _LANES)
    b6 = T.bitwise_and(idx, T.broadcast(T.int16(64), _LANES)) != zero
    b7 = T.bitwise_and(idx, T.broadcast(T.int16(128), _LANES)) != zero
    return T.Select(b7, T.Select(b6, parts[3], parts[2]), T.Select(b6, parts[1], parts[0]))


@dataclass(frozen=True)
class PermKey:
    """Shape of one compiled activation-stationary kernel (``conv2d_perm``)."""

    n: int
    hp: int
    wp: int
    c: int
    r: int
    s: int
    kp: int
    p: int
    qp: int
    sh: int
    sw: int
    dh: int
    dw: int
    tdtype: str
    xt: int
    kb: int

    name = "perm_conv"

    def prim_func(self) -> tvm.tirx.PrimFunc:
        """The TIR kernel."""
        from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

        N, HP, WP, C, R, S, KP, P, QP = self.n, self.hp, self.wp, self.c, self.r, self.s, self.kp, self.p, self.qp
        SH, SW, DH, DW, XT, KB, td = self.sh, self.sw, self.dh, self.dw, self.xt, self.kb, self.tdtype
        NKO, NXO, NV = KP // KB, QP // XT, KB // _LANES
        wide = f"int32x{_LANES}"

        @T.prim_func(s_tir=True)
        def perm_conv(
            X: T.Buffer((N, HP, WP, C), "uint8"),
            Wi: T.Buffer((R, S, C, KP), "int16"),
            LUT: T.Buffer((256, 256), td),
            Y: T.Buffer((N, P, QP, KP), "int32"),
        ):
            T.func_attr({"global_symbol": "perm_conv", "tirx.noalias": True})
            for job in T.parallel(N * P * NKO):
                acc = T.decl_buffer((XT, KB), "int32", scope="local")
                for xo in range(NXO):
                    for xi in T.unroll(XT):
                        for k in T.vectorized(KB):
                            acc[xi, k] = 0
                    for r, s, c in T.grid(R, S, C):
                        for xi in T.unroll(XT):
                            u = T.Cast(
                                "int32",
                                X[
                                    job // (P * NKO),
                                    (job // NKO) % P * SH + r * DH,
                                    (xo * XT + xi) * SW + s * DW,
                                    c,
                                ],
                            )
                            for kv in T.unroll(NV):
                                wv = Wi[r, s, c, T.ramp((job % NKO) * KB + kv * _LANES, 1, _LANES)]
                                acc[xi, T.ramp(kv * _LANES, 1, _LANES)] = acc[
                                    xi, T.ramp(kv * _LANES, 1, _LANES)
                                ] + T.Cast(wide, _lookup(LUT, u, wv, td))
                    for xi in T.unroll(XT):
                        for k in T.vectorized(KB):
                            Y[job // (P * NKO), (job // NKO) % P, xo * XT + xi, (job % NKO) * KB + k] = acc[xi, k]

        return perm_conv


def _lut(table: np.ndarray, cache: TvmKernelCache, table_key: str | None, transposed: bool) -> tuple[object, str]:
    """The table (row = activation) or its transpose (row = weight) as a TVM tensor of its 16-bit
    type, kept in ``cache`` under ``table_key`` (the multiplier's table hash) when given."""
    import tvm

    key = (table_key, "T" if transposed else "N")
    if table_key is not None:
        hit = cache.luts.get(key)
        if hit is not None:
            return hit
    td = perm_dtype(table)
    if td is None:
        raise ValueError("the register-LUT kernels need a table whose values fit 16 bits")
    arr = np.asarray(table).T if transposed else np.asarray(table)
    hit = (tvm.runtime.tensor(np.ascontiguousarray(arr, dtype=td)), td)
    if table_key is not None:
        cache.luts[key] = hit
    return hit


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


#: Pixels per register tile and widest channel block of :func:`conv2d_perm` (2 × 128 measured best
#: on ResNet-50 layers, 7×7 to 56×56, on a 2-core Zen4).
PERM_XT: int = 2
PERM_KB: int = 128


def perm_plan(g: ConvGeometry) -> tuple[int, int, int, int]:
    """``(xt, kb, kp, qp)`` of :func:`conv2d_perm` for the padded geometry ``g``."""
    kb = min(PERM_KB, _round_up(g.k, _LANES))
    return PERM_XT, kb, _round_up(g.k, kb), _round_up(g.q, PERM_XT)


class PermConv:
    """One layer's activation-stationary register-LUT kernel, prepared once: compiled kernel, padded
    int16 weight codes and the table on the device. Call it with padded activation bytes.

    Parameters
    ----------
    wb
        Weight bytes (OIHW uint8).
    table
        (256, 256) product table whose values fit :func:`perm_dtype`.
    g
        Padded geometry (pads zero).
    cache
        Compiled kernels (the host must have AVX-512 BW, :func:`perm_available`).
    table_key
        Identity of ``table`` (its hash) under which its device copy is kept in ``cache``.
    """

    def __init__(
        self, wb: np.ndarray, table: np.ndarray, g: ConvGeometry, cache: TvmKernelCache, table_key: str | None = None
    ) -> None:
        import tvm

        self.lut, td = _lut(table, cache, table_key, transposed=False)
        xt, kb, self.kp, self.qp = perm_plan(g)
        self.wp_ext = max(g.wp, (self.qp - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1)
        wi = _aligned_empty((g.r, g.s, g.c, self.kp), "int16")
        wi[...] = 0  # padded channels look up code 0; their outputs are dropped
        wi[..., : g.k] = wb.transpose(2, 3, 1, 0)
        self.wi = tvm.runtime.from_dlpack(wi)
        self._wi_host = wi  # keeps the memory the device view points at alive
        key = PermKey(
            g.n, g.hp, self.wp_ext, g.c, g.r, g.s, self.kp, g.p, self.qp, g.stride_h, g.stride_w, g.dilation_h,
            g.dilation_w, td, xt, kb,
        )  # fmt: skip
        self.fn = cache.get(key)
        self.cache = cache
        self.g = g

    def __call__(self, xp: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``Σ_taps table[x, w]`` (int32 NKPQ) for padded activation bytes ``xp`` (NCHW uint8);
        ``threads``: TVM threads (``None``: :func:`.threads.use_tvm_threads`'s choice by size)."""
        return self._run(xp, self.wi, threads)

    def _run(self, xp: np.ndarray, wi: tvm.runtime.Tensor, threads: int | None) -> np.ndarray:
        import tvm

        g = self.g
        use_tvm_threads(g.macs, threads)
        scratch = self.cache.scratch_arrays
        with (
            scratch.borrow("perm_x", (g.n, g.hp, self.wp_ext, g.c), "uint8") as x_nhwc,
            scratch.borrow("perm_y", (g.n, g.p, self.qp, self.kp), "int32") as y,
        ):
            if self.wp_ext > g.wp:
                x_nhwc[:, :, g.wp :] = 0
            x_nhwc[:, :, : g.wp] = xp.transpose(0, 2, 3, 1)
            self.fn(tvm.runtime.from_dlpack(x_nhwc), wi, self.lut, tvm.runtime.from_dlpack(y))
            return to_nchw(y, g.k, g.q, self.cache)

    def run_with_weights(self, xp: np.ndarray, wb: np.ndarray, threads: int | None = None) -> np.ndarray:
        """:meth:`__call__` with other weight bytes ``wb`` (OIHW uint8, the prepared layer's shape),
        through the same compiled kernel and table: for a call whose stored weights differ from the
        layer's (fault injection's corrupted weights). Costs one relayout of the weights."""
        import tvm

        g = self.g
        if wb.shape != (g.k, g.c, g.r, g.s) or wb.dtype != np.uint8:
            raise ValueError(f"weights of shape {(g.k, g.c, g.r, g.s)} uint8 expected, found {wb.shape} {wb.dtype}")
        with self.cache.scratch_arrays.borrow("perm_w", (g.r, g.s, g.c, self.kp), "int16") as wi:
            wi[..., g.k :] = 0
            wi[..., : g.k] = wb.transpose(2, 3, 1, 0)
            return self._run(xp, tvm.runtime.from_dlpack(wi), threads)


def conv2d_perm(
    xp: np.ndarray,
    wb: np.ndarray,
    table: np.ndarray,
    g: ConvGeometry,
    cache: TvmKernelCache,
    table_key: str | None = None,
) -> np.ndarray:
    """``Σ_taps table[x, w]`` (int32 NKPQ) by the activation-stationary register-LUT kernel
    (:class:`PermConv` built and run once)."""
    return PermConv(wb, table, g, cache, table_key)(xp)


@dataclass(frozen=True)
class ColumnKey:
    """Shape of one compiled weight-stationary grouped kernel (``grouped_table_tvm``)."""

    n: int
    c: int
    phases: int
    plen: int
    k: int
    cg: int
    kg: int
    taps: int
    olen: int
    ob: int
    tdtype: str
    perm: bool

    name = "column_conv"

    def prim_func(self) -> tvm.tirx.PrimFunc:
        """The TIR kernel."""
        from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

        N, C, PH, PLEN, K, CG, KG, TAPS = self.n, self.c, self.phases, self.plen, self.k, self.cg, self.kg, self.taps
        OLEN, OB, td = self.olen, self.ob, self.tdtype
        NOB, NV = OLEN // OB, OB // _LANES
        wide = f"int32x{_LANES}"

        if self.perm:

            @T.prim_func(s_tir=True)
            def column_conv(
                X: T.Buffer((N, C, PH, PLEN), "uint8"),
                Wc: T.Buffer((K, CG, TAPS), "int32"),
                TPH: T.Buffer((TAPS,), "int32"),
                TOFF: T.Buffer((TAPS,), "int32"),
                LUTT: T.Buffer((256, 256), td),
                Y: T.Buffer((N, K, OLEN), "int32"),
            ):
                T.func_attr({"global_symbol": "column_conv", "tirx.noalias": True})
                for job in T.parallel(N * K * NOB):
                    acc = T.decl_buffer((OB,), "int32", scope="local")
                    for o in T.vectorized(OB):
                        acc[o] = 0
                    for c, t in T.grid(CG, TAPS):
                        for v in T.unroll(NV):
                            acc[T.ramp(v * _LANES, 1, _LANES)] = acc[T.ramp(v * _LANES, 1, _LANES)] + T.Cast(
                                wide,
                                _lookup(
                                    LUTT,
                                    Wc[(job // NOB) % K, c, t],
                                    T.Cast(
                                        f"int16x{_LANES}",
                                        X[
                                            job // (K * NOB),
                                            (job // NOB) % K // KG * CG + c,
                                            TPH[t],
                                            T.ramp((job % NOB) * OB + v * _LANES + TOFF[t], 1, _LANES),
                                        ],
                                    ),
                                    td,
                                ),
                            )
                    for o in T.vectorized(OB):
                        Y[job // (K * NOB), (job // NOB) % K, (job % NOB) * OB + o] = acc[o]

            return column_conv

        @T.prim_func(s_tir=True)
        def column_conv_generic(
            X: T.Buffer((N, C, PH, PLEN), "uint8"),
            Wc: T.Buffer((K, CG, TAPS), "int32"),
            TPH: T.Buffer((TAPS,), "int32"),
            TOFF: T.Buffer((TAPS,), "int32"),
            LUTT: T.Buffer((256, 256), td),
            Y: T.Buffer((N, K, OLEN), "int32"),
        ):
            T.func_attr({"global_symbol": "column_conv", "tirx.noalias": True})
            for job in T.parallel(N * K * NOB):
                acc = T.decl_buffer((OB,), "int32", scope="local")
                for o in T.vectorized(OB):
                    acc[o] = 0
                for c, t in T.grid(CG, TAPS):
                    for o in T.vectorized(OB):
                        acc[o] = acc[o] + T.Cast(
                            "int32",
                            LUTT[
                                Wc[(job // NOB) % K, c, t],
                                T.Cast(
                                    "int32",
                                    X[
                                        job // (K * NOB),
                                        (job // NOB) % K // KG * CG + c,
                                        TPH[t],
                                        (job % NOB) * OB + o + TOFF[t],
                                    ],
                                ),
                            ],
                        )
                for o in T.vectorized(OB):
                    Y[job // (K * NOB), (job // NOB) % K, (job % NOB) * OB + o] = acc[o]

        return column_conv_generic


#: Output pixels per block of the grouped kernel (accumulators of 4 registers pairs).
COLUMN_BLOCK: int = 128


class ColumnConv:
    """One grouped layer's weight-stationary column kernel, prepared once: compiled kernel, weight
    codes, tap offsets and the transposed table on the device. Call it with padded activation bytes.

    Parameters
    ----------
    wb
        Weight bytes ((K, C/groups, R, S) uint8).
    table
        (256, 256) product table whose values fit :func:`perm_dtype`.
    groups
        Number of groups.
    g
        Geometry of the padded conv (``g.c`` = all input channels, pads zero).
    cache
        Compiled kernels; the register lookup is used when the host has AVX-512 BW.
    table_key
        Identity of ``table`` (its hash) under which its device copy is kept in ``cache``.
    """

    def __init__(
        self,
        wb: np.ndarray,
        table: np.ndarray,
        groups: int,
        g: ConvGeometry,
        cache: TvmKernelCache,
        table_key: str | None = None,
    ) -> None:
        import tvm

        self.lut_t, td = _lut(table, cache, table_key, transposed=True)  # row = weight code
        sh, sw, dh, dw = g.stride_h, g.stride_w, g.dilation_h, g.dilation_w
        # phase planes: x[.., i·sh + a, j·sw + b] → plane (a, b) at (i, j), so every tap reads its
        # plane with unit stride at a fixed offset; outputs are flattened as o = p·wq + q (q < wq)
        self.hq, self.wq = -(-g.hp // sh), -(-g.wp // sw)
        rr, ss = np.meshgrid(np.arange(g.r), np.arange(g.s), indexing="ij")
        tph = (((rr * dh) % sh) * sw + (ss * dw) % sw).ravel().astype(np.int32)
        toff = (((rr * dh) // sh) * self.wq + (ss * dw) // sw).ravel().astype(np.int32)
        ob = min(COLUMN_BLOCK, _round_up(g.p * self.wq, _LANES))
        self.olen = _round_up(g.p * self.wq, ob)
        self.plen = max(self.hq * self.wq, self.olen + int(toff.max()))
        kg, cg = g.k // groups, g.c // groups
        wc = np.ascontiguousarray(wb.reshape(g.k, cg, g.r * g.s), dtype=np.int32)
        self.consts = [tvm.runtime.tensor(wc), tvm.runtime.tensor(tph), tvm.runtime.tensor(toff)]
        key = ColumnKey(
            g.n, g.c, sh * sw, self.plen, g.k, cg, kg, g.r * g.s, self.olen, ob, td, perm_available(cache.cpu)
        )  # fmt: skip
        self.fn = cache.get(key)
        self.g = g
        self.macs = g.n * g.k * g.p * g.q * cg * g.r * g.s

    def __call__(self, xp: np.ndarray, threads: int | None = None) -> np.ndarray:
        """``Σ_taps table[x, w]`` (int32 NKPQ) for padded activation bytes ``xp`` (NCHW uint8);
        ``threads``: TVM threads (``None``: :func:`.threads.use_tvm_threads`'s choice by size)."""
        import tvm

        g, hq, wq = self.g, self.hq, self.wq
        use_tvm_threads(self.macs, threads)
        sh, sw = g.stride_h, g.stride_w
        planes = _aligned_empty((g.n, g.c, sh * sw, self.plen), "uint8")
        if sh == sw == 1 and g.hp * g.wp == hq * wq:
            planes[:, :, 0, : hq * wq] = xp.reshape(g.n, g.c, hq * wq)
            planes[:, :, 0, hq * wq :] = 0
        else:
            planes[...] = 0
            for a in range(sh):
                for b in range(sw):
                    sub = xp[:, :, a::sh, b::sw]
                    view = planes[:, :, a * sw + b, : hq * wq].reshape(g.n, g.c, hq, wq)
                    view[:, :, : sub.shape[2], : sub.shape[3]] = sub
        y = _aligned_empty((g.n, g.k, self.olen), "int32")
        self.fn(tvm.runtime.from_dlpack(planes), *self.consts, self.lut_t, tvm.runtime.from_dlpack(y))
        out = y[:, :, : g.p * wq].reshape(g.n, g.k, g.p, wq)[:, :, :, : g.q]
        return np.ascontiguousarray(out)


def grouped_table_tvm(
    xp: np.ndarray,
    wb: np.ndarray,
    table: np.ndarray,
    groups: int,
    g: ConvGeometry,
    cache: TvmKernelCache,
    table_key: str | None = None,
) -> np.ndarray:
    """``Σ_taps table[x, w]`` of a grouped conv (int32 NKPQ) by the weight-stationary column kernel
    (:class:`ColumnConv` built and run once)."""
    return ColumnConv(wb, table, groups, g, cache, table_key)(xp)


__all__ = [
    "PERM_MACS_PER_S",
    "ColumnConv",
    "ColumnKey",
    "PermConv",
    "PermKey",
    "conv2d_perm",
    "grouped_table_tvm",
    "perm_available",
    "perm_dtype",
    "perm_plan",
]
