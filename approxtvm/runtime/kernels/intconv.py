"""Exact integer convolutions of *byte maps* on onnxruntime's uint8×uint8 kernels.

Every exact and low-rank path reduces to sums of the form
``Σ_taps Σ_t U_t(x) · V_t(w)`` where ``U_t``/``V_t`` are integer functions of the activation and
weight bytes (:class:`IntegerFactors`). This module evaluates such sums exactly with onnxruntime
``ConvInteger`` / ``MatMulInteger`` on **uint8 × uint8** operands only — on AVX2-only CPUs
onnxruntime's u8×s8 kernels saturate in int16 (DESIGN §2), u8×u8 is exact everywhere:

* each factor is shifted to be non-negative, ``U = u0 + U'``; the cross terms ``u0·Σ V'(w)``
  (a constant per output channel) and ``v0·Σ U'(x)`` (a window sum, computed as an extra output
  channel of ones) and ``u0·v0·taps`` are added back exactly in int64;
* a shifted factor wider than 8 bits is split into base-256 digits (one more byte term per digit);
* byte terms of equal scale share one onnxruntime call (their input channels are concatenated);
* input channels are split so that no int32 partial sum of onnxruntime can overflow.

Padding is done here, never by onnxruntime: padded taps hold the pad code and go through ``U, V``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels.geometry import ConvGeometry

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


@dataclass
class OrtSessionCache:
    """Explicit cache of onnxruntime sessions, keyed by op, shapes, attributes and thread count.

    Thread-safe; sessions take the weights as a graph input, so one session serves every layer of
    the same shape.
    """

    sessions: dict[tuple, object] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def conv(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], strides: tuple[int, int],
             dilations: tuple[int, int], threads: int | None) -> object:
        """Session computing ``ConvInteger(x uint8, w uint8)`` (no padding, no zero points)."""
        key = ("conv", x_shape, w_shape, strides, dilations, threads)
        with self.lock:
            sess = self.sessions.get(key)
            if sess is None:
                sess = _make_session("ConvInteger", x_shape, w_shape, threads,
                                     strides=list(strides), dilations=list(dilations))
                self.sessions[key] = sess
            return sess

    def matmul(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], threads: int | None) -> object:
        """Session computing ``MatMulInteger(x uint8 (N, C), w uint8 (C, K))``."""
        key = ("matmul", x_shape, w_shape, threads)
        with self.lock:
            sess = self.sessions.get(key)
            if sess is None:
                sess = _make_session("MatMulInteger", x_shape, w_shape, threads)
                self.sessions[key] = sess
            return sess


def _make_session(op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], threads: int | None,
                  **attrs: object) -> object:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w"], ["y"], **attrs)], f"approxtvm_{op}",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape)),
         helper.make_tensor_value_info("w", TensorProto.UINT8, list(w_shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads else 0
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


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


def factor_sums(xp: np.ndarray, wb: np.ndarray, factors: IntegerFactors, g: ConvGeometry | None,
                sessions: OrtSessionCache, threads: int | None) -> np.ndarray:
    """Exact ``Σ_taps T(x, w)`` for ``T = (Σ_t U_t V_t) / divisor`` (int64).

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

    Returns
    -------
    numpy.ndarray
        int64 (N, K, P, Q) for conv, (N, K) for dense.
    """
    dense = g is None
    taps = wb.shape[1] if dense else wb.shape[1] * wb.shape[2] * wb.shape[3]
    k = wb.shape[0]
    const_k = np.zeros(k, dtype=np.int64)
    const = 0
    groups: dict[int, list[_ByteTerm]] = {}
    wsum: list[tuple[np.ndarray, int]] = []  # (activation byte map, coefficient)
    for t in range(factors.rank):
        u, v = factors.u[t].astype(np.int64), factors.v[t].astype(np.int64)
        sc = factors.term_scale(t)
        u0, v0 = int(u.min()), int(v.min())
        up, vp = u - u0, v - v0
        ud, vd = _split_digits(up), _split_digits(vp)
        if vp.any() and up.any():
            for i, fu in enumerate(ud):
                for j, gv in enumerate(vd):
                    if fu.any() and gv.any():
                        bs = sc * 256 ** (i + j)
                        groups.setdefault(bs, []).append(_ByteTerm(bs, fu, gv))
        if u0:
            # u0 · Σ_taps V'(w): a constant per output channel
            red = tuple(range(1, wb.ndim))
            const_k += sc * u0 * vp[wb].sum(axis=red, dtype=np.int64)
        if v0:
            for i, fu in enumerate(ud):
                if fu.any():
                    wsum.append((fu, sc * v0 * 256**i))
        const += sc * u0 * v0 * taps

    if dense:
        out = np.zeros((xp.shape[0], k), dtype=np.int64)
    else:
        out = np.zeros((g.n, k, g.p, g.q), dtype=np.int64)
    out += const_k[None, :, None, None] if not dense else const_k[None, :]
    out += const

    calls: list[tuple[int, list[np.ndarray], list[np.ndarray | None], list[int]]] = []
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
    for scale, fs, gs, ws in calls:
        main, sums = _run_call(xp, wb, fs, gs, [i for i, _ in ws], g, sessions, threads)
        if any(gg is not None for gg in gs):
            out += scale * main
        for (_, coef), srow in zip(ws, sums, strict=True):
            out += coef * (srow[:, None] if dense else srow[:, None, :, :])
    if factors.divisor != 1:
        q, rem = np.divmod(out, factors.divisor)
        if rem.any():  # cannot happen for a verified factorisation
            raise MultiplierError(
                "low-rank kernel: the factor sum is not divisible by its divisor",
                expected="an exact factorisation", found=f"divisor {factors.divisor}",
                fix="report this bug; use path='table' meanwhile",
            )
        out = q
    return out


def _run_call(xp: np.ndarray, wb: np.ndarray, fs: list[np.ndarray], gs: list[np.ndarray | None],
              sum_blocks: list[int], g: ConvGeometry | None, sessions: OrtSessionCache,
              threads: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One or more onnxruntime calls: main output ``Σ_j f_j(x)·g_j(w)`` and window sums of ``f_j``."""
    dense = g is None
    c = wb.shape[1]
    rs = 1 if dense else wb.shape[2] * wb.shape[3]
    m = len(fs)
    # channel chunk so that a uint8×uint8 int32 sum over (chunk · m · R · S) taps cannot overflow
    c_chunk = max(1, min(c, _INT32_MAX // (_U8_PRODUCT_MAX * m * rs)))
    if _U8_PRODUCT_MAX * m * rs > _INT32_MAX:
        raise MultiplierError(
            "exact kernel: filter too large for int32 partial sums",
            expected=f"R·S·terms ≤ {_INT32_MAX // _U8_PRODUCT_MAX}", found=f"{m * rs}",
        )
    main = None
    sums: list[np.ndarray] = []
    k = wb.shape[0]
    n_sum = len(sum_blocks)
    for c0 in range(0, c, c_chunk):
        c1 = min(c, c0 + c_chunk)
        xs = xp[:, c0:c1]
        ws = wb[:, c0:c1]
        xcat = np.concatenate([f[xs] for f in fs], axis=1) if m > 1 else fs[0][xs]
        cc = c1 - c0
        wshape = (k + n_sum, m * cc) + (() if dense else ws.shape[2:])
        wcat = np.zeros(wshape, dtype=np.uint8)
        for j, gm in enumerate(gs):
            if gm is not None:
                wcat[:k, j * cc:(j + 1) * cc] = gm[ws]
        for i, blk in enumerate(sum_blocks):
            wcat[k + i, blk * cc:(blk + 1) * cc] = 1
        if dense:
            sess = sessions.matmul(xcat.shape, (wcat.shape[1], wcat.shape[0]), threads)
            y = sess.run(None, {"x": np.ascontiguousarray(xcat), "w": np.ascontiguousarray(wcat.T)})[0]
            y = y.astype(np.int64)
            part_main, part_sums = y[:, :k], [y[:, k + i] for i in range(n_sum)]
        else:
            sess = sessions.conv(xcat.shape, wcat.shape, g.strides, g.dilations, threads)
            y = sess.run(None, {"x": np.ascontiguousarray(xcat), "w": wcat})[0]
            y = y.astype(np.int64)
            part_main, part_sums = y[:, :k], [y[:, k + i] for i in range(n_sum)]
        main = part_main if main is None else main + part_main
        sums = part_sums if not sums else [a + b for a, b in zip(sums, part_sums, strict=True)]
    return main, sums


def exact_factors(signed: bool) -> IntegerFactors:
    """The rank-1 factorisation of the exact product ``a·b``."""
    from approxtvm.runtime.multipliers.multiplier import operand_values

    v = operand_values(signed)[None, :]
    return IntegerFactors(u=v.copy(), v=v.copy(), divisor=1)
