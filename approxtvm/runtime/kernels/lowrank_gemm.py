"""Low-rank factor sums of a conv layer as onnxruntime ``MatMulInteger`` GEMMs on the integer
dot-product instruction.

The byte terms of a :class:`~approxtvm.runtime.kernels.intconv.WeightPlan` (activation byte maps
``f_j``, weight byte maps ``g_j``, window sums) are evaluated as one GEMM per call:
``Y (N·P·Q, K') = Xcol (N·P·Q, L) @ W (L, K')``, where ``Xcol`` is the im2col of the activation
maps (``L = blocks · R·S·C``, built from an NHWC copy of the input so that it copies runs of C
bytes) and ``W`` holds the weight maps of all blocks, one column per output channel plus one column
of ones per window sum. ``W`` is a constant of the layer's onnxruntime session, which packs it once;
the same session transposes the output to NCHW (blocked and threaded).

Why **int8 weights**: onnxruntime's u8×s8 integer GEMM runs on the CPU's integer dot-product
instruction (AVX-512 VNNI / AVX-VNNI), which its u8×u8 GEMM and ``ConvInteger`` do not (measured on
this project's AVX-512 VNNI host: 2–3× the u8×u8 ``ConvInteger`` per MAC, and activations ×
prepacked weights 1.1–1.8× weights × activations on ResNet-50 shapes). Weights of an int8 GEMM are
stored as ``g − 128`` and the session's weight zero point −128 restores ``g`` inside the kernel, so
the activations stay uint8 and no correction term is needed.

The products are exact integers everywhere, but CPUs without VNNI compute u8×s8 with a 16-bit
pairwise sum that **saturates** (DESIGN §2). So a block is fed to the int8 GEMM only when

* the host's u8×s8 GEMM is shown exact at run time (:func:`s8_gemm_exact`: the CPU has VNNI *and*
  a probe GEMM whose pair sums would saturate in 16 bits returns the exact int64 result), or
* no pair of products can reach the 16-bit limit: ``2 · max f · 128 ≤ 32767``;

other blocks run as uint8 in a second GEMM of the same call (u8×u8 is exact everywhere).
Each GEMM's reduction is bounded so that no int32 partial sum can overflow; a layer whose bound
fails is left to the ``ConvInteger`` path (:func:`gemm_plan` returns ``None``).
"""

from __future__ import annotations

import hashlib
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
    """One ``MatMulInteger`` of a call, ``Y (N·P·Q, cols) = Xcol (N·P·Q, rows) @ W (rows, cols)``:
    some blocks of the call, their weights all int8 or all uint8 (the activations are uint8).

    Attributes
    ----------
    blocks
        Indices of the call's blocks in this GEMM, in ``Xcol`` column order.
    maps
        Activation map per block.
    signed
        Weights fed as int8 (else uint8).
    w_mat
        int8 or uint8 (len(blocks)·taps, cols), rows in (block, r, s, c) order: the weight maps of
        the main columns (K, or 0 when the GEMM has none; a map with values above 127 stored as
        ``g − 128`` in int8), then one column of ones over one block per extra sum.
    main_cols
        K, or 0.
    extra_coefs
        Coefficient of each extra column (a window sum of the plan, or ``128 · scale`` for a block
        whose weights are stored as ``g − 128``), added to every output channel.
    w_key
        Digest of ``w_mat``: its onnxruntime session (weights prepacked) is cached under it.
    """

    blocks: tuple[int, ...]
    maps: tuple[ActivationMap, ...]
    signed: bool
    w_mat: np.ndarray
    main_cols: int
    extra_coefs: tuple[int, ...]
    w_key: str


@dataclass(frozen=True, eq=False)
class GemmCall:
    """The GEMMs of one :class:`WeightPlan` call.

    Attributes
    ----------
    scale
        Integer factor of the call's main output.
    gemms
        One or two :class:`Gemm` (int8 weights, uint8 weights).
    """

    scale: int
    gemms: tuple[Gemm, ...]


@dataclass(frozen=True, eq=False)
class GemmPlan:
    """A layer's GEMM plan (weights only; kept per layer like its :class:`WeightPlan`).

    Attributes
    ----------
    calls
        One per plan call.
    const_k
        int64 (K,): the plan's per-channel constant.
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

    ``False`` without VNNI (the 16-bit pair sums saturate). With VNNI probe GEMMs decide: every
    pair of their stored products sums to ±64770, beyond int16, so a saturating kernel returns a
    different number than the exact int64 product.
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
    # the exact session kind the plans use: prepacked int8 weights with zero point −128, a plain one
    # (weights as an input), both on one and on all threads
    probe = Gemm((0,), (), True, b, b.shape[1], (), "s8_probe")
    want = a.astype(np.int64) @ (b.astype(np.int64) + 128)
    ok = True
    for threads in (1, None):
        got = _session(sessions, probe, threads, 1, a.shape[0]).run(None, {"x": a})[0]  # type: ignore[attr-defined]
        ok = ok and bool(np.array_equal(got[0].T.astype(np.int64), want))
    plain = sessions.gemm(a.shape, b.shape, True, 1).run(None, {"x": a, "w": b})[0]  # type: ignore[attr-defined]
    ok = ok and bool(np.array_equal(plain.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64)))
    with sessions.lock:
        sessions.sessions[("s8_exact",)] = ok
    return ok


def gemm_plan(wb: np.ndarray, plan: WeightPlan, divisor: int, signed_exact: bool) -> GemmPlan | None:
    """The GEMM form of ``plan`` for OIHW weight bytes ``wb``; ``None`` if an int32 partial sum
    could overflow (the ``ConvInteger`` path then splits the reduction)."""
    k = wb.shape[0]
    taps = int(np.prod(wb.shape[1:]))
    wflat = wb.transpose(0, 2, 3, 1).reshape(k, taps)  # (r, s, c) order: the NHWC columns' order
    calls: list[GemmCall] = []
    for scale, fs, gs, ws in plan.calls:
        has_main = any(g is not None for g in gs)
        per_kind: dict[bool, list[int]] = {True: [], False: []}
        wvals: dict[int, np.ndarray] = {}
        for j in range(len(fs)):
            if gs[j] is not None:
                wvals[j] = gs[j][wflat].astype(np.int64)
        scale, fs = _fold_scale(int(scale), list(fs), wvals, not ws, signed_exact)
        for j, f in enumerate(fs):
            # int8 weights are stored as g − 128 (|value| ≤ 128) with zero point −128
            as_s8 = signed_exact or 2 * int(f.max()) * 128 <= _PAIR_MAX
            per_kind[as_s8].append(j)
        gemms = []
        for signed, blocks in ((True, per_kind[True]), (False, per_kind[False])):
            main = k if has_main and any(j in wvals for j in blocks) else 0
            extra = [(blk, int(c)) for blk, c in ws if blk in blocks]  # the plan's window sums
            if not blocks or (main == 0 and not extra):
                continue
            w_mat = np.zeros((len(blocks) * taps, main + len(extra)), np.int64)
            for bi, j in enumerate(blocks):
                if main and j in wvals:
                    w_mat[bi * taps : (bi + 1) * taps, :k] = wvals[j].T
            for ei, (blk, _) in enumerate(extra):
                bi = blocks.index(blk)
                w_mat[bi * taps : (bi + 1) * taps, main + ei] = 1
            amax = max(int(fs[j].max()) for j in blocks)
            # int8: the kernel sums f·(g − 128) and 128·f before the zero point restores Σ f·g
            gbound = max(int(w_mat.max(initial=0)), 128 if signed else 0)
            if w_mat.shape[0] * amax * gbound > _INT32_MAX:
                return None
            stored = (w_mat - 128).astype(np.int8) if signed else w_mat.astype(np.uint8)
            maps = tuple(ActivationMap.of(fs[j].astype(np.uint8)) for j in blocks)
            key = hashlib.sha1(stored.tobytes()).hexdigest() + f":{stored.shape}:{stored.dtype}"
            gemms.append(Gemm(tuple(blocks), maps, signed, stored, main, tuple(c for _, c in extra), key))
        calls.append(GemmCall(int(scale), tuple(gemms)))
    del divisor  # the caller divides; the plan is the same
    return GemmPlan(_merge_scales(calls, k, taps), plan.const_k.astype(np.int64).copy(), signed_exact)


def _map_max(amap: ActivationMap) -> int:
    """Largest byte ``amap`` feeds to the GEMM."""
    out = np.empty(256, np.uint8)
    amap.apply(np.arange(256, dtype=np.uint8), out, [None])
    return int(out.max())


def _merge_two(a: Gemm, b: Gemm, k: int, taps: int) -> Gemm | None:
    """One GEMM computing both ``a`` and ``b`` (same weight kind, calls of the same scale): their
    blocks stacked along the reduction, one main column block, both sets of extra columns (each
    zero over the other's rows); ``None`` if an int32 partial sum of the merged GEMM could
    overflow."""
    main = k if a.main_cols or b.main_cols else 0
    ea, eb = len(a.extra_coefs), len(b.extra_coefs)
    w = np.zeros((a.w_mat.shape[0] + b.w_mat.shape[0], main + ea + eb), np.int64)
    ra = a.w_mat.shape[0]
    for gm, rows, col0 in ((a, slice(0, ra), main), (b, slice(ra, None), main + ea)):
        vals = gm.w_mat.astype(np.int64) + (128 if gm.signed else 0)  # the stored g − 128 back to g
        if gm.main_cols:
            w[rows, :k] = vals[:, :k]
        w[rows, col0 : col0 + len(gm.extra_coefs)] = vals[:, gm.main_cols :]
    maps = a.maps + b.maps
    amax = max(_map_max(m) for m in maps)
    gbound = max(int(w.max(initial=0)), 128 if a.signed else 0)
    if w.shape[0] * amax * gbound > _INT32_MAX:
        return None
    stored = (w - 128).astype(np.int8) if a.signed else w.astype(np.uint8)
    key = hashlib.sha1(stored.tobytes()).hexdigest() + f":{stored.shape}:{stored.dtype}"
    return Gemm(tuple(range(len(maps))), maps, a.signed, stored, main, a.extra_coefs + b.extra_coefs, key)


def _merge_scales(calls: list[GemmCall], k: int, taps: int) -> tuple[GemmCall, ...]:
    """The calls with the GEMMs of calls of equal scale and weight kind merged (:func:`_merge_two`).

    A call's main output is ``scale · Σ_blocks``; two calls of one scale are one GEMM over both
    sets of blocks, whose sum onnxruntime forms in its accumulators: one session run, one output
    transpose and one host pass fewer per merge (EvoApproxLib circuits on ResNet-50: 3–4 GEMMs per
    layer become 2–3). The sums are the same integers (the merged bound is checked). A merged
    GEMM's block indices are its positions (the blocks of several plan calls)."""
    merged: list[GemmCall] = []
    for call in calls:
        at = next((i for i, m in enumerate(merged) if m.scale == call.scale), None)
        if at is None:
            merged.append(call)
            continue
        gemms = list(merged[at].gemms)
        for gm in call.gemms:
            j = next((i for i, o in enumerate(gemms) if o.signed == gm.signed), None)
            both = None if j is None else _merge_two(gemms[j], gm, k, taps)
            if both is None:
                gemms.append(gm)
            else:
                gemms[j] = both
        merged[at] = GemmCall(call.scale, tuple(gemms))
    return tuple(merged)


def _prime_factors(v: int) -> list[int]:
    out, p = [], 2
    while v > 1 and p * p <= v:
        while v % p == 0:
            out.append(p)
            v //= p
        p += 1
    return out + ([v] if v > 1 else [])


def _fold_scale(
    scale: int, fs: list[np.ndarray], wvals: dict[int, np.ndarray], no_sums: bool, signed_exact: bool
) -> tuple[int, list[np.ndarray]]:
    """Move prime factors of a call's integer scale into its byte maps while they stay one byte
    wide: the weight maps first (``wvals``, changed in place), then, when the call has no window
    sums over its maps (``no_sums``), the activation maps, unless that would send a block from
    the int8 GEMM to the uint8 one (the pair bound of CPUs without VNNI). The products are the
    same integers; the GEMM output needs no multiply by the scale (one pass fewer per call).
    Returns the remaining scale and the activation maps."""
    if scale <= 1 or not wvals:
        return scale, fs
    for p in _prime_factors(scale):
        if all(int(v.max(initial=0)) * p <= 255 for v in wvals.values()):
            for j in wvals:
                wvals[j] *= p
            scale //= p
            continue
        if no_sums and all(
            int(f.max()) * p <= 255
            and (signed_exact or 2 * int(f.max()) * 128 > _PAIR_MAX or 2 * int(f.max()) * p * 128 <= _PAIR_MAX)
            for f in fs
        ):
            fs = [(f.astype(np.int64) * p).astype(f.dtype) for f in fs]
            scale //= p
    return scale, fs


def im2col(planes: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """uint8 (N·P·Q, B·R·S·C) columns of ``B`` stacked maps of a padded NHWC input, ``planes``
    (N, Hp, Wp, B, C), in (block, r, s, c) order (the GEMM's weight rows); a view when the conv is
    1×1 with unit strides and no padding."""
    n, hp, wp, nb, c = planes.shape
    if g.r == g.s == 1 and g.strides == (1, 1) and (g.p, g.q) == (hp, wp):
        return planes.reshape(n * hp * wp, nb * c)
    sn, sh, sw, sb, sc = planes.strides
    view = as_strided(
        planes,
        shape=(n, g.p, g.q, nb, g.r, g.s, c),
        strides=(sn, g.stride_h * sh, g.stride_w * sw, sb, g.dilation_h * sh, g.dilation_w * sw, sc),
        writeable=False,
    )
    return np.ascontiguousarray(view).reshape(n * g.p * g.q, nb * g.r * g.s * c)


def _columns(xn: np.ndarray, g: ConvGeometry, gm: Gemm, index: list[np.ndarray | None]) -> np.ndarray:
    """The GEMM's activation columns: its maps of the padded NHWC input ``xn``, im2col'd (the maps
    run on the input, R·S times fewer bytes than the columns, each into a contiguous plane)."""
    planes = np.empty((len(gm.maps), *xn.shape), np.uint8)
    for bi, amap in enumerate(gm.maps):
        amap.apply(xn, planes[bi], index)
    if len(gm.maps) == 1:
        return im2col(planes[0][:, :, :, None, :], g)
    # (N, Hp, Wp, B, C) strides over the block-major planes: im2col copies runs of C bytes
    sb, sn, sh, sw, sc = planes.strides
    view = as_strided(planes, shape=(*xn.shape[:3], len(gm.maps), xn.shape[3]), strides=(sn, sh, sw, sb, sc))
    return im2col(view, g)


def _session(sessions: OrtSessionCache, gm: Gemm, threads: int | None, n: int, pq: int) -> object:
    """``MatMulInteger(x uint8 (N·P·Q, rows), W)`` with ``gm.w_mat`` a constant (onnxruntime prepacks
    it once); outputs ``main`` (N, K, P·Q) (the transpose in onnxruntime, blocked and threaded) and
    ``extra`` (N·P·Q, extra columns), each when the GEMM has such columns."""
    key = ("gemm_w", gm.w_key, threads, n, pq)
    return sessions.with_weights(key, gm.w_mat.nbytes, lambda: _build_session(gm, threads, n, pq))


def _build_session(gm: Gemm, threads: int | None, n: int, pq: int) -> object:
    from onnx import TensorProto, helper, numpy_helper

    from approxtvm.runtime.kernels.ort_session import runtime_session

    rows, cols = gm.w_mat.shape
    k = gm.main_cols

    def i64(name: str, *v: int) -> object:
        return numpy_helper.from_array(np.array(v, np.int64), name)

    inits = [numpy_helper.from_array(gm.w_mat, "w"), i64("ax1", 1), i64("k0", 0), i64("k1", k), i64("kend", cols)]
    inputs = ["x", "w"]
    if gm.signed:  # weights stored as g − 128: the zero point −128 restores g
        inits += [
            numpy_helper.from_array(np.array(0, np.uint8), "xz"),
            numpy_helper.from_array(np.array(-128, np.int8), "wz"),
        ]
        inputs += ["xz", "wz"]
    nodes = [helper.make_node("MatMulInteger", inputs, ["y"])]
    outputs = []
    if k:
        inits.append(i64("shape", n, pq, k))
        nodes += [
            helper.make_node("Slice", ["y", "k0", "k1", "ax1"], ["ym"]),
            helper.make_node("Reshape", ["ym", "shape"], ["ym3"]),
            helper.make_node("Transpose", ["ym3"], ["main"], perm=[0, 2, 1]),
        ]
        outputs.append(helper.make_tensor_value_info("main", TensorProto.INT32, [n, k, pq]))
    if cols > k:
        nodes.append(helper.make_node("Slice", ["y", "k1", "kend", "ax1"], ["extra"]))
        outputs.append(helper.make_tensor_value_info("extra", TensorProto.INT32, [n * pq, cols - k]))
    graph = helper.make_graph(
        nodes,
        "approxtvm_lowrank_gemm",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [n * pq, rows])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return runtime_session(model, threads, arena=False)  # kept across models: no arena (ort_session)


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
        (N, K, P, Q): int32 (wrapped) when the divisor is odd (1 included), else int64.
    """
    from approxtvm.errors import MultiplierError

    k = plan.const_k.shape[0]
    n, pq = g.n, g.p * g.q
    # An odd divisor is invertible modulo 2^32, and every sum it divides exactly: S/d wrapped to
    # int32 is (S mod 2^32)·d⁻¹ mod 2^32, so the whole sum stays in int32 (no int64 copies and no
    # int64 divmod, which cost 5x the divisor-1 call on ResNet-50 layers). Even: int64, divided.
    acc = np.int32 if divisor % 2 == 1 else np.int64
    xn = np.ascontiguousarray(xp.transpose(0, 2, 3, 1))  # NHWC: im2col copies runs of C bytes
    index: list[np.ndarray | None] = [None]  # intp codes for table maps, shared by the calls
    out: np.ndarray | None = None  # (N, K, P·Q)
    extra: np.ndarray | None = None  # Σ coef · window sum: the same for every output channel
    for call in plan.calls:
        for gm in call.gemms:
            res = _session(sessions, gm, threads, n, pq).run(None, {"x": _columns(xn, g, gm, index)})  # type: ignore[attr-defined]
            if gm.main_cols:
                part = res[0] if acc is np.int32 else res[0].astype(acc)
                if call.scale != 1:
                    part *= _ring(call.scale, acc)
                if out is None:
                    out = part
                else:
                    out += part
            if gm.extra_coefs:
                ys = res[-1] if acc is np.int32 else res[-1].astype(acc)
                for ei, coef in enumerate(gm.extra_coefs):
                    term = ys[:, ei] * _ring(coef, acc)
                    extra = term if extra is None else extra + term
    const = _ring_vec(plan.const_k, acc)[None, :, None]
    if out is None:
        out = np.empty((n, k, pq), dtype=acc)
        out[...] = const
    else:
        out += const
    if extra is not None:
        out += extra.reshape(n, 1, pq)
    if divisor != 1 and acc is np.int32:
        out *= _ring(pow(divisor, -1, 2**32), acc)
    elif divisor != 1:
        q, rem = np.divmod(out, divisor)
        if rem.any():  # cannot happen for a verified factorisation
            raise MultiplierError(
                "low-rank GEMM kernel: the factor sum is not divisible by its divisor",
                expected="an exact factorisation",
                found=f"divisor {divisor}",
                fix="report this bug; use path='table' meanwhile",
            )
        out = q
    return out.reshape(n, k, g.p, g.q)


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
