"""Low-rank factor sums of a conv layer as onnxruntime ``MatMulInteger`` GEMMs with int8 activations.

The byte terms of a :class:`~approxtvm.runtime.kernels.intconv.WeightPlan` (activation byte maps
``f_j``, weight byte maps ``g_j``, window-sum rows) are evaluated as one GEMM per call:
``Y (K', N·P·Q) = Wcat (K', L) @ Xcol (L, N·P·Q)``, where ``Wcat`` holds the weight maps of all
blocks side by side (``L = blocks · C·R·S``) and ``Xcol`` the im2col of the activation maps. The
output is already in NCHW order.

Why a GEMM with **int8** activations: onnxruntime's u8×s8 integer GEMM runs on the CPU's integer
dot-product instruction (AVX-512 VNNI / AVX-VNNI), which its u8×u8 GEMM and ``ConvInteger`` do not;
measured on this project's AVX-512 VNNI host, ``MatMulInteger`` u8×s8 ran 2–3× faster per MAC than
the u8×u8 ``ConvInteger`` the generic low-rank path uses (``ConvInteger`` with int8 weights was
slower still).

Exactness of int8: a byte map ``f`` with values above 127 is stored as ``f − 128`` (the byte
``f ^ 0x80``), and ``128 · Σ_taps g(w)`` (a constant per output channel) is added back; window-sum
rows get ``128 · taps`` back. The products are exact integers everywhere, but CPUs without VNNI
compute u8×s8 with a 16-bit pairwise sum that **saturates** (DESIGN §2). So a block is fed as int8
only when

* the host's u8×s8 GEMM is shown exact at run time (:func:`s8_gemm_exact`: the CPU has VNNI *and*
  a probe GEMM whose pair sums would saturate in 16 bits returns the exact int64 result), or
* no pair of products can reach the 16-bit limit: ``2 · max|f| · max g ≤ 32767``;

other blocks run as uint8 in a second GEMM of the same call (u8×u8 is exact everywhere).
Each GEMM's reduction is bounded so that no int32 partial sum can overflow; a layer whose bound
fails is left to the ``ConvInteger`` path (:func:`gemm_plan` returns ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.intconv import OrtSessionCache, WeightPlan

_INT32_MAX = 2**31 - 1
#: Largest |pair sum| a 16-bit saturating multiply-add (``vpmaddubsw``) keeps exact.
_PAIR_MAX = 2**15 - 1


@dataclass(frozen=True, eq=False)
class ActivationMap:
    """One activation byte map as the bytes fed to the GEMM: ``((x >> shift) & mask) ^ flip``
    (``shift < 0``: a left shift, modulo 256), or a 256-entry table ``lut`` when the map has no such
    form. Bit extractions and their scaled or complemented forms (``16·a_i``, ``1 − a_i``) are the
    common maps; the fast form costs two or three vector passes and no index conversion.

    Attributes
    ----------
    shift, mask, flip
        The fast form (a map stored as ``f − 128`` in int8 has its top bit flipped).
    lut
        uint8 (256,) bytes per activation code, ``None`` for the fast form.
    """

    shift: int
    mask: int
    flip: int
    lut: np.ndarray | None

    @staticmethod
    def of(stored: np.ndarray) -> ActivationMap:
        """The evaluator of ``stored`` (uint8 (256,): the byte fed to the GEMM per activation code)."""
        codes = np.arange(256, dtype=np.int64)
        flip = int(stored[0])  # every fast form maps code 0 to ``flip``
        want = stored.astype(np.int64) ^ flip
        for shift in range(-7, 8):
            moved = (codes >> shift) if shift >= 0 else (codes << -shift) & 0xFF
            mask = int(np.bitwise_or.reduce(want))
            if np.array_equal(want, moved & mask):
                return ActivationMap(shift, mask, flip, None)
        return ActivationMap(0, 0xFF, 0, np.ascontiguousarray(stored, dtype=np.uint8))

    def apply(self, src: np.ndarray, out: np.ndarray, index: list[np.ndarray | None]) -> None:
        """Write the map of the uint8 codes ``src`` into the uint8 view ``out`` (same shape).

        ``index`` caches ``src`` as ``intp`` for table maps (shared by the maps of one call).
        """
        if self.lut is not None:
            if index[0] is None:
                index[0] = src.astype(np.intp)
            np.take(self.lut, index[0], out=out)
            return
        if self.shift > 0:
            np.right_shift(src, self.shift, out=out)
            src = out
        elif self.shift < 0:
            np.left_shift(src, -self.shift, out=out)
            src = out
        if self.mask != 0xFF:
            np.bitwise_and(src, self.mask, out=out)
            src = out
        if self.flip:
            np.bitwise_xor(src, self.flip, out=out)
        elif src is not out:
            np.copyto(out, src)


@dataclass(frozen=True, eq=False)
class Gemm:
    """One ``MatMulInteger`` of a call: some blocks of the call, all int8 or all uint8.

    Attributes
    ----------
    blocks
        Indices of the call's blocks in this GEMM, in ``Xcol`` order.
    maps
        Activation map per block.
    signed
        Activations fed as int8 (else uint8).
    w_mat
        uint8 (rows, len(blocks)·taps): weight maps of the main rows (K, or 0 when the call has none),
        then one row of ones per window sum in ``sum_rows``.
    main_rows
        K, or 0.
    sum_rows
        Window-sum indices (into the call's window sums) computed as the extra rows, in row order.
    """

    blocks: tuple[int, ...]
    maps: tuple[ActivationMap, ...]
    signed: bool
    w_mat: np.ndarray
    main_rows: int
    sum_rows: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class GemmCall:
    """The GEMMs of one :class:`WeightPlan` call, and its scale and window-sum coefficients.

    Attributes
    ----------
    scale
        Integer factor of the call's main output.
    gemms
        One or two :class:`Gemm` (int8 blocks, uint8 blocks).
    sum_coefs
        Coefficient of each window sum.
    sum_offsets
        Added to each window sum before its coefficient (``128·taps`` for an int8-shifted block).
    """

    scale: int
    gemms: tuple[Gemm, ...]
    sum_coefs: tuple[int, ...]
    sum_offsets: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class GemmPlan:
    """A layer's GEMM plan (weights only; kept per layer like its :class:`WeightPlan`).

    Attributes
    ----------
    calls
        One per plan call.
    const_k
        int64 (K,): the plan's per-channel constant plus the int8 shift corrections.
    signed_exact
        Whether the host's u8×s8 GEMM was taken as exact when the plan was built.
    """

    calls: tuple[GemmCall, ...]
    const_k: np.ndarray
    signed_exact: bool

    @property
    def nbytes(self) -> int:
        """Bytes held (for cache accounting)."""
        return int(self.const_k.nbytes + sum(g.w_mat.nbytes for c in self.calls for g in c.gemms))


def s8_gemm_exact(sessions: OrtSessionCache, vnni: bool) -> bool:
    """Whether onnxruntime's u8×s8 ``MatMulInteger`` is exact on this host (cached in ``sessions``).

    ``False`` without VNNI (the 16-bit pair sums saturate). With VNNI a probe GEMM decides: every
    pair of its products sums to ±64770, beyond int16, so a saturating kernel returns a different
    number than the exact int64 product.
    """
    if not vnni:
        return False
    with sessions.lock:
        hit = sessions.sessions.get(("s8_exact",))
    if hit is not None:
        return bool(hit)
    rng = np.random.default_rng(0)
    a = np.full((64, 512), 255, np.uint8)
    a[:, ::7] = rng.integers(0, 256, a[:, ::7].shape, dtype=np.uint8)
    b = np.where(rng.random((512, 64)) < 0.5, -128, 127).astype(np.int8)
    b[::2] = b[1::2]  # equal signs in every pair: the pair sums reach ±64770
    sess = sessions.gemm(a.shape, b.shape, True, 1)
    got = sess.run(None, {"x": a, "w": b})[0]
    ok = bool(np.array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64)))
    with sessions.lock:
        sessions.sessions[("s8_exact",)] = ok
    return ok


def gemm_plan(wb: np.ndarray, plan: WeightPlan, divisor: int, signed_exact: bool) -> GemmPlan | None:
    """The GEMM form of ``plan`` for OIHW weight bytes ``wb``; ``None`` if an int32 partial sum
    could overflow (the ``ConvInteger`` path then splits the reduction)."""
    k = wb.shape[0]
    taps = int(np.prod(wb.shape[1:]))
    wflat = wb.reshape(k, taps)
    const_k = plan.const_k.astype(np.int64).copy()
    calls: list[GemmCall] = []
    for scale, fs, gs, ws in plan.calls:
        has_main = any(g is not None for g in gs)
        sum_blocks = [blk for blk, _ in ws]
        offsets = [0] * len(ws)
        per_kind: dict[bool, list[int]] = {True: [], False: []}
        stored: dict[int, np.ndarray] = {}
        for j, f in enumerate(fs):
            f = f.astype(np.int64)
            wide = int(f.max()) > 127
            gmax = int(gs[j].max()) if gs[j] is not None else 0
            if any(b == j for b in sum_blocks):
                gmax = max(gmax, 1)
            amax = 128 if wide else int(f.max())
            as_s8 = signed_exact or 2 * amax * gmax <= _PAIR_MAX
            per_kind[as_s8].append(j)
            stored[j] = (f ^ 0x80 if (as_s8 and wide) else f).astype(np.uint8)
            if as_s8 and wide:
                # Σ (f − 128)·g = Σ f·g − 128·Σ_taps g(w): add the per-channel constant back
                if gs[j] is not None:
                    const_k += scale * 128 * gs[j][wflat].astype(np.int64).sum(axis=1)
                for i, blk in enumerate(sum_blocks):
                    if blk == j:
                        offsets[i] = 128 * taps
        gemms = []
        for signed, blocks in ((True, per_kind[True]), (False, per_kind[False])):
            if not blocks:
                continue
            rows = [i for i, blk in enumerate(sum_blocks) if blk in blocks]
            main = k if has_main and any(gs[j] is not None for j in blocks) else 0
            if main == 0 and not rows:
                continue
            w_mat = np.zeros((main + len(rows), len(blocks) * taps), np.uint8)
            amax = max(
                int(np.abs(stored[j].view(np.int8).astype(np.int64) if signed else stored[j]).max()) for j in blocks
            )
            gmax = 1 if rows else 0
            for bi, j in enumerate(blocks):
                if main and gs[j] is not None:
                    w_mat[:k, bi * taps : (bi + 1) * taps] = gs[j][wflat]
                    gmax = max(gmax, int(gs[j].max()))
            for ri, i in enumerate(rows):
                bi = blocks.index(sum_blocks[i])
                w_mat[main + ri, bi * taps : (bi + 1) * taps] = 1
            if w_mat.shape[1] * amax * gmax > _INT32_MAX:
                return None
            maps = tuple(ActivationMap.of(stored[j]) for j in blocks)
            gemms.append(Gemm(tuple(blocks), maps, signed, w_mat, main, tuple(rows)))
        calls.append(GemmCall(scale, tuple(gemms), tuple(c for _, c in ws), tuple(offsets)))
    del divisor  # the caller divides; the plan is the same
    return GemmPlan(tuple(calls), const_k, signed_exact)


def im2col(planes: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """uint8 (B·C·R·S, N·P·Q) columns of ``B`` stacked padded inputs ``planes`` (B, N, C, Hp, Wp),
    block-major (the order of the GEMM's weight columns); a view when the conv is 1×1, unit-stride
    and ``B = N = 1``."""
    nb, n, c, hp, wp = planes.shape
    if g.r == g.s == 1 and g.strides == (1, 1) and n == nb == 1:
        return planes.reshape(c, hp * wp)
    sb, sn, sc, sh, sw = planes.strides
    view = as_strided(
        planes,
        shape=(nb, c, g.r, g.s, n, g.p, g.q),
        strides=(sb, sc, g.dilation_h * sh, g.dilation_w * sw, sn, g.stride_h * sh, g.stride_w * sw),
        writeable=False,
    )
    return np.ascontiguousarray(view).reshape(nb * c * g.r * g.s, n * g.p * g.q)


def _columns(xp: np.ndarray, g: ConvGeometry, gm: Gemm, cache: dict[str, object]) -> np.ndarray:
    """The GEMM's activation columns: its maps of ``xp``, im2col'd.

    A 1×1 conv maps its (strided) columns, which are never more than the input; a larger filter
    maps the padded input first (R·S times fewer bytes than its columns) and im2cols all blocks
    in one copy.
    """
    index = cache.setdefault("index", [None])
    if g.r * g.s == 1:
        cols = cache.get("cols")
        if cols is None:
            cols = cache["cols"] = im2col(xp[None], g)
        taps = cols.shape[0]
        xcol = np.empty((len(gm.maps) * taps, cols.shape[1]), np.uint8)
        for bi, amap in enumerate(gm.maps):
            amap.apply(cols, xcol[bi * taps : (bi + 1) * taps], index)  # type: ignore[arg-type]
        return xcol
    planes = np.empty((len(gm.maps), *xp.shape), np.uint8)
    for bi, amap in enumerate(gm.maps):
        amap.apply(xp, planes[bi], index)  # type: ignore[arg-type]
    return im2col(planes, g)


def gemm_sums(
    xp: np.ndarray,
    g: ConvGeometry,
    plan: GemmPlan,
    divisor: int,
    sessions: OrtSessionCache,
    threads: int | None,
) -> np.ndarray:
    """Exact ``Σ_taps T(x, w)`` of a conv by the GEMM plan (same contract as
    :func:`~approxtvm.runtime.kernels.intconv.factor_sums`).

    Parameters
    ----------
    xp
        Padded activation bytes, uint8 NCHW.
    g
        Geometry of the padded conv (pads all zero).
    plan
        :func:`gemm_plan` of the layer.
    divisor
        The factorisation's divisor.
    sessions, threads
        onnxruntime session cache and thread count.

    Returns
    -------
    numpy.ndarray
        (N, K, P, Q): int32 (wrapped) when the divisor is 1, else int64.
    """
    from approxtvm.errors import MultiplierError

    k = plan.const_k.shape[0]
    n, npq = g.n, g.n * g.p * g.q
    acc = np.int32 if divisor == 1 else np.int64
    # (K, N·P·Q) in the order the GEMMs produce; NCHW at the end
    out = np.empty((k, npq), dtype=acc)
    out[...] = _ring_vec(plan.const_k, acc)[:, None]
    shared: dict[str, object] = {}  # the input's columns / intp codes, shared by the calls' maps
    for call in plan.calls:
        sums: list[np.ndarray | None] = [None] * len(call.sum_coefs)
        for gm in call.gemms:
            xcol = _columns(xp, g, gm, shared)
            sess = sessions.gemm(gm.w_mat.shape, xcol.shape, gm.signed, threads)
            y = sess.run(None, {"x": gm.w_mat, "w": xcol.view(np.int8) if gm.signed else xcol})[0]
            if gm.main_rows:
                main = y[:k] if acc is np.int32 else y[:k].astype(acc)
                if call.scale == 1:
                    out += main
                else:
                    out += main * _ring(call.scale, acc)
            for ri, i in enumerate(gm.sum_rows):
                sums[i] = y[gm.main_rows + ri]
        for i, srow in enumerate(sums):
            if srow is None:
                continue
            total = srow.astype(acc) + _ring(call.sum_offsets[i], acc)
            out += (total * _ring(call.sum_coefs[i], acc))[None, :]
    if divisor != 1:
        q, rem = np.divmod(out, divisor)
        if rem.any():  # cannot happen for a verified factorisation
            raise MultiplierError(
                "low-rank GEMM kernel: the factor sum is not divisible by its divisor",
                expected="an exact factorisation",
                found=f"divisor {divisor}",
                fix="report this bug; use path='table' meanwhile",
            )
        out = q
    res = out.reshape(k, n, g.p, g.q)
    return np.ascontiguousarray(res.transpose(1, 0, 2, 3)) if n > 1 else res.reshape(1, k, g.p, g.q)


def _ring(v: int, dtype: type) -> np.integer:
    """``v`` as a scalar of ``dtype``, wrapped modulo 2^32 for int32."""
    if dtype is np.int32:
        v = (int(v) + 2**31) % 2**32 - 2**31
    return dtype(v)


def _ring_vec(v: np.ndarray, dtype: type) -> np.ndarray:
    """int64 ``v`` as ``dtype``, wrapped modulo 2^32 for int32."""
    if dtype is np.int32:
        return ((v.astype(np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)
    return v.astype(dtype)
