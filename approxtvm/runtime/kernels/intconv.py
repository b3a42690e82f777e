"""Exact integer convolutions of *byte maps* on onnxruntime's uint8×uint8 kernels.

Every exact and low-rank path reduces to sums of the form
``Σ_taps Σ_t U_t(x) · V_t(w)`` where ``U_t``/``V_t`` are integer functions of the activation and
weight bytes (:class:`IntegerFactors`). This module evaluates such sums exactly with onnxruntime
``ConvInteger`` / ``MatMulInteger`` on **uint8 × uint8** operands only — on AVX2-only CPUs
onnxruntime's u8×s8 kernels saturate in int16 (DESIGN §2), u8×u8 is exact everywhere:

* each factor is shifted to be non-negative, ``U = u0 + U'``; the cross terms ``u0·Σ V'(w)``
  (a constant per output channel) and ``v0·Σ U'(x)`` (a window sum, computed as an extra output
  channel of ones) and ``u0·v0·taps`` are added back exactly (int32 ring arithmetic, which wraps
  exactly like an int32 accumulator, or int64 when a divisor must be applied);
* a shifted factor wider than 8 bits is split into base-256 digits (one more byte term per digit);
* byte terms of equal scale share one onnxruntime call (their input channels are concatenated);
* input channels are split so that no int32 partial sum of onnxruntime can overflow;
* everything that depends only on the weights (:class:`WeightPlan`) is computed once per layer.

Padding is done here, never by onnxruntime: padded taps hold the pad code and go through ``U, V``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.byte_lru import ByteLru
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.ort_session import integer_op_session

_INT32_MAX = 2**31 - 1
_U8_PRODUCT_MAX = 255 * 255


@dataclass(frozen=True, eq=False)
class IntegerFactors:
    """An exact integer factorisation ``divisor · T[a, b] = Σ_t scale[t] · u[t, a] · v[t, b]``.

    Attributes
    ----------
    u
        int64 (r, 256): activation-byte factors (row ``t`` = ``U_t``).
    v
        int64 (r, 256): weight-byte factors.
    divisor
        Positive integer the sum is divided by (exactly) at the end.
    scale
        int64 (r,): per-term integer scale (``None``: all ones).
    """

    u: np.ndarray
    v: np.ndarray
    divisor: int = 1
    scale: np.ndarray | None = None

    def term_scale(self, t: int) -> int:
        """Scale of term ``t``."""
        return 1 if self.scale is None else int(self.scale[t])

    def normalised(self) -> IntegerFactors:
        """Same sum with each term's common factors moved into its scale (narrower byte maps)."""
        u, v = self.u.copy(), self.v.copy()
        sc = np.ones(self.rank, dtype=np.int64) if self.scale is None else self.scale.astype(np.int64).copy()
        for t in range(self.rank):
            for arr in (u, v):
                gcd = int(np.gcd.reduce(np.abs(arr[t]))) if arr[t].any() else 1
                if gcd > 1:
                    arr[t] //= gcd
                    sc[t] *= gcd
        return IntegerFactors(u=u, v=v, divisor=self.divisor, scale=sc)

    @property
    def rank(self) -> int:
        """Number of terms ``r``."""
        return int(self.u.shape[0])

    def reconstruct(self) -> np.ndarray:
        """``Σ_t u[t, a] v[t, b]`` as an int64 (256, 256) array (Python-int checked for overflow)."""
        sc = np.ones(self.rank, dtype=np.int64) if self.scale is None else self.scale
        uo = self.u.astype(object) * sc.astype(object)[:, None]
        return (uo.T @ self.v.astype(object)).astype(np.int64)

    def byte_terms(self) -> int:
        """Number of uint8 × uint8 product terms (≈ cost in units of one exact integer conv)."""
        n = 0
        for t in range(self.rank):
            du = _digits(int(self.u[t].max() - self.u[t].min()))
            n += du * _digits(int(self.v[t].max() - self.v[t].min()))
        return n


def _digits(span: int) -> int:
    """Base-256 digits needed for values 0..span (at least one)."""
    d = 1
    while span > 255:
        span >>= 8
        d += 1
    return d


#: Least bytes of constant weights kept in the sessions of :meth:`OrtSessionCache.with_weights`
#: (each session holds its weights twice: the initializer and onnxruntime's prepacked copy). One
#: ResNet-50 with 5-byte-term low-rank multipliers on every layer needs ≈ 250 MB; an exploration
#: worker compiles hundreds of configurations, whose sessions would otherwise all stay alive.
WEIGHT_SESSION_MIN_BYTES: int = 1 << 30


def default_weight_session_bytes() -> int:
    """The default budget: an eighth of the physical memory, at least 1 GiB. A model whose own
    weight sessions exceed the budget rebuilds them on every call, so the budget grows with the
    machine (a VGG-16 with 5 byte terms needs ≈ 1.4 GB; 3 GiB on a 24 GiB machine)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX, or the value is unknown
        physical = 0
    return max(WEIGHT_SESSION_MIN_BYTES, int(physical) // 8)


@dataclass
class OrtSessionCache:
    """Explicit cache of onnxruntime sessions, keyed by op, shapes, attributes and thread count.

    Thread-safe. The shape-keyed sessions take the weights as a graph input, so one session serves
    every layer of the same shape (a bounded set per network). Sessions that carry a layer's
    weights as a constant (:meth:`with_weights`) are kept least-recently-used within
    ``weight_max_bytes`` of weights.
    """

    sessions: dict[tuple, object] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    weight_max_bytes: int = field(default_factory=default_weight_session_bytes)
    _weighted: ByteLru = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._weighted = ByteLru(self.weight_max_bytes)

    def with_weights(self, key: tuple, weight_bytes: int, build: Callable[[], object]) -> object:
        """The session under ``key``, built by ``build()`` on a miss; it holds ``weight_bytes`` of
        constant weights (counted twice: initializer and prepacked copy). Least recently used
        entries are dropped to stay within :attr:`weight_max_bytes`; a session larger than that
        on its own is returned without being kept."""
        with self.lock:
            hit = self._weighted.get(key)
        if hit is not None:
            return hit
        sess = build()  # outside the lock: building prepacks the weights (milliseconds)
        with self.lock:
            hit = self._weighted.get(key)
            if hit is not None:  # another thread built it meanwhile: keep one
                return hit
            self._weighted.max_bytes = self.weight_max_bytes
            self._weighted.put(key, sess, 2 * int(weight_bytes))
            return sess

    @property
    def weight_session_bytes(self) -> int:
        """Weight bytes (both copies) held by the :meth:`with_weights` sessions now."""
        return self._weighted.total_bytes

    def conv(
        self,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        strides: tuple[int, int],
        dilations: tuple[int, int],
        threads: int | None,
    ) -> object:
        """Session computing ``ConvInteger(x uint8, w uint8)`` (no padding, no zero points)."""
        key = ("conv", x_shape, w_shape, strides, dilations, threads)
        with self.lock:
            sess = self.sessions.get(key)
            if sess is None:
                sess = integer_op_session(
                    "ConvInteger", x_shape, w_shape, threads, strides=list(strides), dilations=list(dilations)
                )
                self.sessions[key] = sess
            return sess

    def gemm(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], b_signed: bool, threads: int | None) -> object:
        """Session computing ``MatMulInteger(x uint8 (M, L), w int8 or uint8 (L, N))``."""
        key = ("gemm", a_shape, b_shape, b_signed, threads)
        with self.lock:
            sess = self.sessions.get(key)
            if sess is None:
                sess = integer_op_session("MatMulInteger", a_shape, b_shape, threads, w_signed=b_signed)
                self.sessions[key] = sess
            return sess

    def matmul(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], threads: int | None) -> object:
        """Session computing ``MatMulInteger(x uint8 (N, C), w uint8 (C, K))``."""
        key = ("matmul", x_shape, w_shape, threads)
        with self.lock:
            sess = self.sessions.get(key)
            if sess is None:
                sess = integer_op_session("MatMulInteger", x_shape, w_shape, threads)
                self.sessions[key] = sess
            return sess


@dataclass(frozen=True)
class _ByteTerm:
    scale: int
    f: np.ndarray  # (256,) uint8 activation map
    g: np.ndarray  # (256,) uint8 weight map


def _split_digits(values: np.ndarray) -> list[np.ndarray]:
    """Base-256 digits (uint8 arrays) of non-negative int64 ``values``."""
    out = []
    span = int(values.max()) if values.size else 0
    for i in range(_digits(span)):
        out.append(((values >> (8 * i)) & 0xFF).astype(np.uint8))
    return out


@dataclass
class WeightPlan:
    """Everything of a factor sum that depends only on the weights: byte maps grouped into
    onnxruntime calls, per-channel constants, and the concatenated weight tensors of each call.

    Built by :func:`weight_plan`; a caller may keep it per layer (it is reused bit for bit).

    Attributes
    ----------
    calls
        ``(scale, activation maps, weight maps, window sums [(block, coefficient)])`` per call.
    const_k
        int64 (K,): the part of every output that depends only on its channel.
    weight_tensors
        Lazily filled: concatenated uint8 weights per ``(call index, first channel)``.
    """

    calls: list[tuple[int, list[np.ndarray], list[np.ndarray | None], list[tuple[int, int]]]]
    const_k: np.ndarray
    weight_tensors: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes held (for cache accounting)."""
        return int(self.const_k.nbytes + sum(w.nbytes for w in self.weight_tensors.values()))


def weight_plan(wb: np.ndarray, factors: IntegerFactors) -> WeightPlan:
    """The weight-only part of :func:`factor_sums` for weights ``wb`` (OIHW or (K, C) bytes)."""
    dense = wb.ndim == 2
    taps = wb.shape[1] if dense else wb.shape[1] * wb.shape[2] * wb.shape[3]
    k = wb.shape[0]
    const_k = np.zeros(k, dtype=np.int64)
    const = 0
    groups: dict[int, list[_ByteTerm]] = {}
    wsum: list[tuple[np.ndarray, int]] = []  # (activation byte map, coefficient)
    used = np.bincount(wb.ravel(), minlength=256) > 0
    if not used.any():  # no weights at all (C = 0): every sum is empty
        used[0] = True
    # per-channel histograms of the weight bytes: Σ_taps V(w) = hist @ V for any map V
    flat = wb.reshape(k, -1).astype(np.int64) + 256 * np.arange(k, dtype=np.int64)[:, None]
    hist = np.bincount(flat.ravel(), minlength=256 * k).reshape(k, 256)
    for t in range(factors.rank):
        u, v = factors.u[t].astype(np.int64), factors.v[t].astype(np.int64)
        sc = factors.term_scale(t)
        if v[used].max() <= 0:  # (−u)(−v): a weight factor ≥ 0 needs no window sums
            u, v = -u, -v
        u0, v0 = int(u.min()), int(v[used].min())
        up, vp = u - u0, np.where(used, v - v0, 0)
        # fold the term's scale into a factor while it stays one byte wide
        if sc > 1 and int(up.max()) * sc <= 255:
            up, u0, sc = up * sc, u0 * sc, 1
        elif sc > 1 and int(vp.max()) * sc <= 255:
            vp, v0, sc = vp * sc, v0 * sc, 1
        ud, vd = _split_digits(up), _split_digits(vp)
        if vp.any() and up.any():
            for i, fu in enumerate(ud):
                for j, gv in enumerate(vd):
                    if fu.any() and gv.any():
                        bs = sc * 256 ** (i + j)
                        groups.setdefault(bs, []).append(_ByteTerm(bs, fu, gv))
        if u0:
            const_k += sc * u0 * (hist @ vp)  # u0 · Σ_taps V'(w): a constant per output channel
        if v0:
            for i, fu in enumerate(ud):
                if fu.any():
                    wsum.append((fu, sc * v0 * 256**i))
        const += sc * u0 * v0 * taps
    calls: list[tuple[int, list[np.ndarray], list[np.ndarray | None], list[tuple[int, int]]]] = []
    for scale, terms in groups.items():
        calls.append((scale, [bt.f for bt in terms], [bt.g for bt in terms], []))
    for fmap, coef in wsum:
        # attach the window sum to a call that already holds this map, else a call of its own
        for _, fs, _, ws in calls:
            hit = next((i for i, f in enumerate(fs) if np.array_equal(f, fmap)), None)
            if hit is not None:
                ws.append((hit, coef))
                break
        else:
            calls.append((1, [fmap], [None], [(0, coef)]))
    return WeightPlan(calls=calls, const_k=const_k + const)


def factor_sums(
    xp: np.ndarray,
    wb: np.ndarray,
    factors: IntegerFactors,
    g: ConvGeometry | None,
    sessions: OrtSessionCache,
    threads: int | None,
    plan: WeightPlan | None = None,
) -> np.ndarray:
    """Exact ``Σ_taps T(x, w)`` for ``T = (Σ_t U_t V_t) / divisor``.

    Parameters
    ----------
    xp
        Padded activation bytes, uint8: NCHW (conv) or (N, C) (dense, ``g is None``).
    wb
        Weight bytes, uint8: OIHW (conv) or (K, C) (dense).
    factors
        The factorisation of the multiplier's table.
    g
        Geometry of the (already padded, so pads are zero) conv, ``None`` for dense.
    sessions, threads
        onnxruntime session cache and thread count.
    plan
        :func:`weight_plan` of ``(wb, factors)`` kept by the caller (built here if ``None``).

    Returns
    -------
    numpy.ndarray
        (N, K, P, Q) for conv, (N, K) for dense: int32 (wrapped) when the divisor is 1, else int64.
    """
    dense = g is None
    k = wb.shape[0]
    plan = plan if plan is not None else weight_plan(wb, factors)
    # With divisor 1 every step is a ring operation: int32 arithmetic modulo 2^32 gives the same
    # wrapped int32 result as exact int64 sums, with half the memory traffic.
    acc = np.int32 if factors.divisor == 1 else np.int64
    out_shape = (xp.shape[0], k) if dense else (g.n, k, g.p, g.q)
    out = np.empty(out_shape, dtype=acc)
    out[...] = plan.const_k.astype(acc)[(slice(None), None, None) if not dense else slice(None)]
    x_index: list[np.ndarray | None] = [None]  # activation bytes as intp, shared by all calls
    for ci, (scale, fs, gs, ws) in enumerate(plan.calls):
        main, sums = _run_call(xp, wb, fs, gs, [i for i, _ in ws], g, sessions, threads, acc, plan, ci, x_index)
        if main is not None:
            if scale == 1:
                out += main
            else:
                out += main * _ring(scale, acc)
        for (_, coef), srow in zip(ws, sums, strict=True):
            out += (srow[:, None] if dense else srow[:, None, :, :]) * _ring(coef, acc)
    if factors.divisor != 1:
        q, rem = np.divmod(out, factors.divisor)
        if rem.any():  # cannot happen for a verified factorisation
            raise MultiplierError(
                "low-rank kernel: the factor sum is not divisible by its divisor",
                expected="an exact factorisation",
                found=f"divisor {factors.divisor}",
                fix="report this bug; use path='table' meanwhile",
            )
        out = q
    return out


def _ring(v: int, dtype: type) -> np.integer:
    """``v`` as a scalar of ``dtype``, wrapped modulo 2^32 for int32."""
    if dtype is np.int32:
        v = (int(v) + 2**31) % 2**32 - 2**31
    return dtype(v)


_IDENTITY = np.arange(256, dtype=np.uint8)


def _apply(
    m: np.ndarray, codes: np.ndarray, out: np.ndarray | None = None, index: np.ndarray | None = None
) -> np.ndarray:
    """``m[codes]`` (uint8), skipping the gather for the identity map.

    ``index`` is ``codes`` already converted to ``intp`` (saves numpy one conversion per map).
    """
    if np.array_equal(m, _IDENTITY):
        if out is None:
            return codes
        out[...] = codes
        return out
    idx = codes if index is None else index
    if out is None:
        return np.take(m, idx)
    np.take(m, idx, out=out)
    return out


#: Largest reduction length (channels · R · S) per onnxruntime call. Cutting the byte terms of a
#: low-rank layer into calls of ≤ 128 channels (3×3) measured slower than one wide call here
#: (BAM h=4, 5 terms × 64 channels: 4.4 ms in 3 calls, 3.3 ms in one), so the cut is generous;
#: the int32 bound below still applies.
MAX_REDUCTION_PER_CALL: int = 8192


def _run_call(
    xp: np.ndarray,
    wb: np.ndarray,
    fs: list[np.ndarray],
    gs: list[np.ndarray | None],
    sum_blocks: list[int],
    g: ConvGeometry | None,
    sessions: OrtSessionCache,
    threads: int | None,
    acc: type,
    plan: WeightPlan,
    call_index: int,
    x_index: list[np.ndarray | None],
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """onnxruntime calls for ``Σ_j f_j(x)·g_j(w)`` (``None`` if all ``g`` are None) and window sums.

    The reduction runs over the concatenated channels ``(j, c)``; it is cut into calls of at most
    :data:`MAX_REDUCTION_PER_CALL` (and never more than int32 partial sums allow).
    """
    dense = g is None
    c = wb.shape[1]
    rs = 1 if dense else wb.shape[2] * wb.shape[3]
    m = len(fs)
    if _U8_PRODUCT_MAX * rs > _INT32_MAX:
        raise MultiplierError(
            "exact kernel: filter too large for int32 partial sums",
            expected=f"R·S ≤ {_INT32_MAX // _U8_PRODUCT_MAX}",
            found=f"{rs}",
        )
    per_call = max(1, min(_INT32_MAX // (_U8_PRODUCT_MAX * rs), max(1, MAX_REDUCTION_PER_CALL // rs)))
    has_main = any(gm is not None for gm in gs)
    k = wb.shape[0]
    kk = k if has_main else 0
    main: np.ndarray | None = None
    sums: list[np.ndarray | None] = [None] * len(sum_blocks)
    total = m * c
    for j0 in range(0, total, per_call):
        j1 = min(total, j0 + per_call)
        pieces = []  # (term, c_lo, c_hi, offset in this call)
        pos = j0
        while pos < j1:
            term, c_lo = divmod(pos, c)
            c_hi = min(c, c_lo + (j1 - pos))
            pieces.append((term, c_lo, c_hi, pos - j0))
            pos += c_hi - c_lo
        width = j1 - j0
        active_sums = [(i, blk) for i, blk in enumerate(sum_blocks) if any(t == blk for t, *_ in pieces)]
        if len(pieces) == 1 and width == c:
            t = pieces[0][0]
            xcat = np.ascontiguousarray(_apply(fs[t], xp))
        else:
            xcat = np.empty((xp.shape[0], width, *xp.shape[2:]), dtype=np.uint8)
            if x_index[0] is None:
                x_index[0] = xp.astype(np.intp)
            xi = x_index[0]
            for t, lo, hi, off in pieces:
                _apply(fs[t], xp[:, lo:hi], xcat[:, off : off + hi - lo], xi[:, lo:hi])
        wcat = plan.weight_tensors.get((call_index, j0))
        if wcat is None:
            wcat = _weights_for_call(wb, gs, pieces, active_sums, k, kk, width, c)
            if dense:  # MatMulInteger reads (C, K): transpose once, not per call
                wcat = np.ascontiguousarray(wcat.T)
            plan.weight_tensors[(call_index, j0)] = wcat
        if wcat.size == 0:
            continue
        if dense:
            sess = sessions.matmul(xcat.shape, wcat.shape, threads)
            y = sess.run(None, {"x": xcat, "w": wcat})[0]
        else:
            sess = sessions.conv(xcat.shape, wcat.shape, g.strides, g.dilations, threads)
            y = sess.run(None, {"x": xcat, "w": wcat})[0]
        if acc is not np.int32:
            y = y.astype(acc)
        if has_main and any(gs[t] is not None for t, *_ in pieces):
            part = y if not active_sums else y[:, :k]
            if main is None:
                main = part.copy() if active_sums else part
            else:
                main += part
        for row, (i, _) in enumerate(active_sums):
            srow = y[:, kk + row]
            sums[i] = srow.copy() if sums[i] is None else sums[i] + srow
    return main, [sv if sv is not None else 0 for sv in sums]


def _weights_for_call(
    wb: np.ndarray,
    gs: list[np.ndarray | None],
    pieces: list[tuple[int, int, int, int]],
    active_sums: list[tuple[int, int]],
    k: int,
    kk: int,
    width: int,
    c: int,
) -> np.ndarray:
    """Concatenated uint8 weights of one onnxruntime call (main outputs, then rows of ones)."""
    if not active_sums and len(pieces) == 1 and width == c and gs[pieces[0][0]] is not None:
        return np.ascontiguousarray(_apply(gs[pieces[0][0]], wb))
    wcat = np.zeros((kk + len(active_sums), width, *wb.shape[2:]), dtype=np.uint8)
    for t, lo, hi, off in pieces:
        if gs[t] is not None:
            wcat[:k, off : off + hi - lo] = _apply(gs[t], wb[:, lo:hi])
    for row, (_, blk) in enumerate(active_sums):
        for t, lo, hi, off in pieces:
            if t == blk:
                wcat[kk + row, off : off + hi - lo] = 1
    return wcat


def exact_factors(signed: bool) -> IntegerFactors:
    """The rank-1 factorisation of the exact product ``a·b``."""
    from approxtvm.runtime.multipliers.multiplier import operand_values

    v = operand_values(signed)[None, :]
    return IntegerFactors(u=v.copy(), v=v.copy(), divisor=1)
