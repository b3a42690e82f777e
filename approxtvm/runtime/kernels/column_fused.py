"""A conv layer in one kernel call: table products, zero-point correction and requantization fused.

The weight-stationary column kernel of :mod:`.table_perm` (``Σ_taps T[x, w]`` over flattened
output pixels, 32 activation bytes per lookup) with the rest of the layer's arithmetic in its
epilogue, so a small layer costs one TVM call instead of a kernel, an onnxruntime window-sum
call and several numpy passes:

* the window sum ``Σ x_pad`` (read from the same padded bytes the lookups read, signed codes
  sign-extended) and the accumulator ``acc = Σ T[x, w] − z_w[k]·Σ x_pad − const[k]`` in int32
  ring arithmetic (every term wraps modulo 2^32, so it equals the int64 sum wrapped once — the
  same int32 value :func:`approxtvm.runtime.executor.accumulate` computes);
* optionally onnxruntime's requantization (:func:`approxtvm.runtime.executor.requantize`):
  ``acc + bias`` in int32, times the float32 scale ``s_x·s_w/s_y``, clamped, rounded half to even
  (``nearbyint``), plus ``z_y``, stored as 8-bit codes. Every step is the same float32 operation
  in the same order as numpy's, so the codes are identical.

:class:`FusedColumn` prepares one layer (kernel, weights, tap offsets, constants) and keeps its
phase-plane buffers per thread: the padding border is written once, each call writes only the
real pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.table_perm import _LANES, COLUMN_BLOCK, _aligned_empty, _lookup, _lut, _round_up
from approxtvm.runtime.kernels.threads import use_tvm_threads

if TYPE_CHECKING:  # TVM is imported lazily at run time
    import tvm

    from approxtvm.runtime.kernels.table_tvm import TvmKernelCache

#: Output types of the fused kernel: int32 accumulators or requantized 8-bit codes.
OUT_DTYPES = ("int32", "uint8", "int8")

#: MAC/s of the column kernel with register lookups, counting the dropped columns (2-core Zen4,
#: MobileNet-V2 layers at batch 1 and 64: 9.6–11 G); for the cost model only.
COLUMN_MACS_PER_S: float = 9.5e9
#: The same for the generic variant (a scalar column read per lookup; AVX2 code on the same host).
COLUMN_GENERIC_MACS_PER_S: float = 1.5e9
#: MAC/s and fixed cost per call of the weight-stationary table path of :mod:`.table_tvm` compiled
#: for AVX2 (MobileNet-V2 1×1 layers at batch 1 and 64: 0.6–2.9 G, ≈ 250 µs per call at batch 1).
TABLE_GENERIC_MACS_PER_S: float = 2.0e9
TABLE_GENERIC_CALL_S: float = 150e-6
#: MAC/s per byte term of the low-rank path's single u8×s8 GEMM (:mod:`.lowrank_gemm`) and its
#: fixed cost per layer call (activation maps, im2col, the GEMM call). Measured on a 2-core Zen4 at
#: load ≈ 5: ResNet-50 stage-1/2 layers 95–150 G per byte term, MobileNet-V2 1×1 layers of
#: 0.05–0.4 M MACs 100–200 µs per call with the host passes; for the cost model only.
LOWRANK_GEMM_MACS_PER_S: float = 100e9
LOWRANK_GEMM_CALL_S: float = 75e-6
#: Reduction length or output channels below which that rate drops in proportion (MobileNet-V2
#: 1×1 layers at batch 64, load ≈ 5: 8 channels ≈ 6.5 G, 16 ≈ 20 G, 24 ≈ 32 G per byte term).
LOWRANK_GEMM_FULL_WIDTH: int = 64
#: What an unfused layer adds to its kernel: a window-sum call and the host's correction and
#: requantization passes (a fixed cost per call plus a cost per output value; MobileNet-V2 layers
#: at batch 1 and 64, 2-core Zen4); for the cost model only.
HOST_PASSES_S: float = 40e-6
HOST_PASSES_S_PER_OUTPUT: float = 2e-9


def column_olen(g: ConvGeometry) -> int:
    """Flattened output length the column kernel computes for geometry ``g`` (with its pads)."""
    wq = -(-g.wp // g.stride_w)
    ob = min(COLUMN_BLOCK, _round_up(g.p * wq, _LANES))
    return _round_up(g.p * wq, ob)


def column_pays(g: ConvGeometry, groups: int, path: str, byte_terms: int | None, register_lut: bool) -> bool:
    """Whether a layer runs on the fused column kernel.

    Grouped layers always do on the table and low-rank paths (as in :mod:`.grouped`). An ungrouped
    layer does on the ``table`` and ``lowrank`` paths when the kernel's estimated time beats its
    path's own kernel plus the host passes the fusion saves. The own kernel is the register-LUT
    kernel of :mod:`.table_perm`, whose 32-channel blocks waste lanes on narrow layers (``table``
    with ``register_lut``), the weight-stationary tables of :mod:`.table_tvm` (``table`` without),
    or the low-rank path's GEMM over all byte terms (``lowrank``). Without ``register_lut`` (an AVX2
    host) the column kernel reads its column scalar by scalar: it wins on small layers, where the
    table path's fixed cost per call dominates.
    """
    if groups > 1:
        return path in ("table", "table_perm", "table_gather", "lowrank")
    if path not in ("table", "lowrank"):
        return False
    from approxtvm.runtime.kernels.table_perm import PERM_MACS_PER_S, perm_plan

    taps = g.c * g.r * g.s
    rate = COLUMN_MACS_PER_S if register_lut else COLUMN_GENERIC_MACS_PER_S
    column_s = g.n * g.k * column_olen(g) * taps / rate
    host_s = HOST_PASSES_S + g.n * g.k * g.p * g.q * HOST_PASSES_S_PER_OUTPUT
    if path == "table" and register_lut:
        _, _, kp, qp = perm_plan(g.unpadded())
        return column_s < g.n * g.p * qp * kp * taps / PERM_MACS_PER_S + host_s
    if path == "table":
        return column_s < g.macs / TABLE_GENERIC_MACS_PER_S + TABLE_GENERIC_CALL_S + host_s
    if byte_terms is None:
        return False
    # the GEMM loses efficiency on narrow layers (8–16 channels or taps: ≈ 1/8–1/4 of its rate)
    rate = LOWRANK_GEMM_MACS_PER_S * min(1.0, min(taps, g.k) / LOWRANK_GEMM_FULL_WIDTH)
    return column_s < byte_terms * g.macs / rate + LOWRANK_GEMM_CALL_S + host_s


@dataclass(frozen=True)
class FusedColumnKey:
    """Shape of one compiled fused column kernel.

    ``xsum``: the weight zero point is non-zero somewhere (the window sum is accumulated);
    ``signed``: activation bytes are int8 codes (sign-extended in the window sum); ``out``: one of
    :data:`OUT_DTYPES`; ``perm``: register lookup (AVX-512 BW) or the generic column read.
    """

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
    xsum: bool
    signed: bool
    out: str

    name = "column_fused"

    def prim_func(self) -> tvm.tirx.PrimFunc:
        """The TIR kernel."""
        from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

        N, C, PH, PLEN, K, CG, KG, TAPS = self.n, self.c, self.phases, self.plen, self.k, self.cg, self.kg, self.taps
        OLEN, OB, td, OUT = self.olen, self.ob, self.tdtype, self.out
        NOB, NV = OLEN // OB, OB // _LANES
        perm, xsum, signed, quant = self.perm, self.xsum, self.signed, self.out != "int32"
        wide = f"int32x{_LANES}"

        def byte_value(x: object, lanes: int) -> object:
            # the activation's value for the window sum: int8 codes are stored as their bytes
            if not signed:
                return T.Cast("int32" if lanes == 1 else wide, x)
            return T.Cast("int32" if lanes == 1 else wide, T.Cast("int8" if lanes == 1 else f"int8x{_LANES}", x))

        def corrected(a: object, s: object, zw: object, const: object) -> object:
            # acc − z_w Σx − const, int32 ring arithmetic (Σx is not accumulated when z_w = 0)
            return a - zw * s - const if xsum else a - const

        @T.prim_func(s_tir=True)
        def column_fused(
            X: T.Buffer((N, C, PH, PLEN), "uint8"),
            Wc: T.Buffer((K, CG, TAPS), "int32"),
            TPH: T.Buffer((TAPS,), "int32"),
            TOFF: T.Buffer((TAPS,), "int32"),
            LUTT: T.Buffer((256, 256), td),
            ZW: T.Buffer((K,), "int32"),
            CONST: T.Buffer((K,), "int32"),
            BIAS: T.Buffer((K,), "int32"),
            SCALE: T.Buffer((K,), "float32"),
            QP: T.Buffer((3,), "float32"),
            Y: T.Buffer((N, K, OLEN), OUT),
        ):
            T.func_attr({"global_symbol": "column_fused", "tirx.noalias": True})
            for job in T.parallel(N * K * NOB):
                acc = T.decl_buffer((OB,), "int32", scope="local")
                sx = T.decl_buffer((OB,), "int32", scope="local")
                for o in T.vectorized(OB):
                    acc[o] = 0
                    sx[o] = 0
                for c, t in T.grid(CG, TAPS):
                    if perm:
                        for v in T.unroll(NV):
                            # (no let-bound copy of the loaded bytes: TVMScript lets inside these
                            # loops lowered wrongly in the vectorized variant; LLVM merges the loads)
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
                            if xsum:
                                sx[T.ramp(v * _LANES, 1, _LANES)] = sx[T.ramp(v * _LANES, 1, _LANES)] + byte_value(
                                    X[
                                        job // (K * NOB),
                                        (job // NOB) % K // KG * CG + c,
                                        TPH[t],
                                        T.ramp((job % NOB) * OB + v * _LANES + TOFF[t], 1, _LANES),
                                    ],
                                    _LANES,
                                )
                    else:
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
                            if xsum:
                                sx[o] = sx[o] + byte_value(
                                    X[
                                        job // (K * NOB),
                                        (job // NOB) % K // KG * CG + c,
                                        TPH[t],
                                        (job % NOB) * OB + o + TOFF[t],
                                    ],
                                    1,
                                )
                for o in T.vectorized(OB):
                    if quant:
                        Y[job // (K * NOB), (job // NOB) % K, (job % NOB) * OB + o] = T.Cast(
                            OUT,
                            T.nearbyint(
                                T.min(
                                    T.max(
                                        T.Cast(
                                            "float32",
                                            corrected(acc[o], sx[o], ZW[(job // NOB) % K], CONST[(job // NOB) % K])
                                            + BIAS[(job // NOB) % K],
                                        )
                                        * SCALE[(job // NOB) % K],
                                        QP[0],
                                    ),
                                    QP[1],
                                )
                            )
                            + QP[2],
                        )
                    else:
                        Y[job // (K * NOB), (job // NOB) % K, (job % NOB) * OB + o] = corrected(
                            acc[o], sx[o], ZW[(job // NOB) % K], CONST[(job // NOB) % K]
                        )

        return column_fused


@dataclass(frozen=True)
class Requant:
    """onnxruntime's requantization constants of a layer (see :func:`approxtvm.runtime.executor.requantize`).

    Attributes
    ----------
    bias_codes
        ``bias − z_bias`` as int32 per output channel (zeros without a bias).
    scale
        float32 ``(s_x · s_w) / s_y`` per output channel.
    zero_point
        ``z_y``.
    dtype
        ``uint8`` or ``int8``.
    """

    bias_codes: np.ndarray
    scale: np.ndarray
    zero_point: int
    dtype: str


class FusedColumn:
    """One conv layer's fused column kernel, prepared once: compiled kernel, weight codes, tap
    offsets, zero-point and requantization constants, and per-thread phase-plane buffers whose
    padding border is written once. Call it with the layer's unpadded activation codes.

    Parameters
    ----------
    wb
        Weight bytes ((K, C/groups, R, S) uint8).
    table
        (256, 256) product table whose values fit 16 bits.
    groups
        Number of groups (1: an ordinary conv).
    g
        The layer's geometry (with its pads).
    pad_value
        Activation code of the padded taps (``z_x``).
    zero_point_terms
        ``z_w`` and ``z_x Σ w − taps·z_x z_w`` per output channel, int32 (wrapped).
    signed
        Whether the codes are int8 (else uint8).
    requant
        Requantization constants; ``None``: the call returns int32 accumulators.
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
        pad_value: int,
        zero_point_terms: tuple[np.ndarray, np.ndarray],
        signed: bool,
        requant: Requant | None,
        cache: TvmKernelCache,
        table_key: str | None = None,
    ) -> None:
        import tvm

        from approxtvm.runtime.kernels.table_perm import perm_available

        self.lut_t, td = _lut(table, cache, table_key, transposed=True)  # row = weight code
        sh, sw, dh, dw = g.stride_h, g.stride_w, g.dilation_h, g.dilation_w
        # phase planes as in table_perm.ColumnConv: x_pad[.., i·sh + a, j·sw + b] → plane (a, b) at
        # (i, j); outputs are flattened as o = p·wq + q (q < wq), the extra columns are dropped
        self.hq, self.wq = -(-g.hp // sh), -(-g.wp // sw)
        rr, ss = np.meshgrid(np.arange(g.r), np.arange(g.s), indexing="ij")
        tph = (((rr * dh) % sh) * sw + (ss * dw) % sw).ravel().astype(np.int32)
        toff = (((rr * dh) // sh) * self.wq + (ss * dw) // sw).ravel().astype(np.int32)
        ob = min(COLUMN_BLOCK, _round_up(g.p * self.wq, _LANES))
        self.olen = _round_up(g.p * self.wq, ob)
        self.plen = max(self.hq * self.wq, self.olen + int(toff.max()))
        kg, cg = g.k // groups, g.c // groups
        zw, const = (np.ascontiguousarray(np.broadcast_to(np.ravel(a), (g.k,)), np.int32) for a in zero_point_terms)
        if requant is None:
            bias, scale, qp, out = np.zeros(g.k, np.int32), np.zeros(g.k, np.float32), np.zeros(3, np.float32), "int32"
        else:
            info = np.iinfo(np.dtype(requant.dtype))
            zp = requant.zero_point
            bias = np.ascontiguousarray(np.broadcast_to(requant.bias_codes, (g.k,)), np.int32)
            scale = np.ascontiguousarray(np.broadcast_to(requant.scale, (g.k,)), np.float32)
            qp = np.array([info.min - zp, info.max - zp, zp], np.float32)
            out = requant.dtype
        wc = np.ascontiguousarray(wb.reshape(g.k, cg, g.r * g.s), dtype=np.int32)
        self.consts = [tvm.runtime.tensor(a) for a in (wc, tph, toff)]
        self.epilogue = [tvm.runtime.tensor(a) for a in (zw, const, bias, scale, qp)]
        key = FusedColumnKey(
            g.n, g.c, sh * sw, self.plen, g.k, cg, kg, g.r * g.s, self.olen, ob, td, perm_available(cache.cpu),
            bool(zw.any()), signed, out,
        )  # fmt: skip
        self.fn = cache.get(key)
        self.g = g
        self.out = out
        self.macs = g.n * g.k * g.p * g.q * cg * g.r * g.s
        self.pad_byte = np.array(pad_value, np.int8 if signed else np.uint8).view(np.uint8)
        self._local = threading.local()
        # where the real pixels land: per phase (a, b), rows y0::sh of x go to plane rows i0.., etc.
        self._writes = []
        for a in range(sh):
            y0 = (a - g.pad_top) % sh
            i0 = (y0 + g.pad_top) // sh
            ny = len(range(y0, g.h, sh))
            for b in range(sw):
                z0 = (b - g.pad_left) % sw
                j0 = (z0 + g.pad_left) // sw
                nz = len(range(z0, g.w, sw))
                if ny and nz:
                    self._writes.append((a * sw + b, y0, z0, i0, j0, ny, nz))

    def _buffers(self) -> tuple[np.ndarray, object, object, np.ndarray]:
        """This thread's planes (padding border written) and output buffer, with their TVM views."""
        import tvm

        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            g, hq, wq = self.g, self.hq, self.wq
            sh, sw = g.stride_h, g.stride_w
            planes = _aligned_empty((g.n, g.c, sh * sw, self.plen), "uint8")
            planes[...] = 0  # positions past the planes are read only by dropped outputs
            xpad = np.full((g.n, g.c, g.hp, g.wp), self.pad_byte, np.uint8)
            for a in range(sh):
                for b in range(sw):
                    sub = xpad[:, :, a::sh, b::sw]
                    view = planes[:, :, a * sw + b, : hq * wq].reshape(g.n, g.c, hq, wq)
                    view[:, :, : sub.shape[2], : sub.shape[3]] = sub
            y = _aligned_empty((g.n, g.k, self.olen), self.out)
            bufs = (planes, tvm.runtime.from_dlpack(planes), tvm.runtime.from_dlpack(y), y)
            self._local.bufs = bufs
        return bufs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The layer on activation codes ``x`` (NCHW, unpadded): int32 accumulators or 8-bit codes
        (N, K, P, Q), a new array."""
        g, hq, wq = self.g, self.hq, self.wq
        sh, sw = g.stride_h, g.stride_w
        planes, xt, yt, y = self._buffers()
        use_tvm_threads(self.macs)
        xb = x.view(np.uint8)
        for ph, y0, z0, i0, j0, ny, nz in self._writes:
            view = planes[:, :, ph, : hq * wq].reshape(g.n, g.c, hq, wq)
            view[:, :, i0 : i0 + ny, j0 : j0 + nz] = xb[:, :, y0::sh, z0::sw]
        self.fn(xt, *self.consts, self.lut_t, *self.epilogue, yt)
        out = y[:, :, : g.p * wq].reshape(g.n, g.k, g.p, wq)[:, :, :, : g.q]
        return np.array(out, copy=True, order="C")


__all__ = ["COLUMN_MACS_PER_S", "OUT_DTYPES", "FusedColumn", "FusedColumnKey", "Requant", "column_olen", "column_pays"]
