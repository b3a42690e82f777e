"""Exact-multiplier layers in one onnxruntime integer kernel, zero points included.

With ``M(a, b) = a·b`` the accumulator ``Σ (x − z_x)(w − z_w)`` is exactly what ONNX
``ConvInteger`` / ``MatMulInteger`` compute. One call per layer, with the weights and zero points
baked into a per-layer session, replaces the raw-product kernel plus the four zero-point
correction terms. Only uint8 × uint8 is used: onnxruntime's u8 × s8 kernels saturate in int16 on
AVX2-only CPUs (DESIGN §2), u8 × u8 is exact everywhere. The input is padded here with ``z_x``
(padded taps then contribute ``(z_x − z_x)·(w − z_w) = 0``, as the contract requires for the
exact multiplier), so no engine-specific padding rule is relied on.

Where onnxruntime's u8 × s8 GEMM is exact (VNNI: its int8 dot products accumulate in int32 without
saturating; :func:`s8_gemm_exact` probes it), a
third formulation, :class:`_GemmForm`, lays the input out as an im2col matrix (rows ``(n, p, q)``,
columns ``(r, s, c)``) and computes the accumulators with one ``MatMulInteger`` u8 × s8 and a
transpose back to NCHW: measured 2.6–3.5× faster than ``ConvInteger`` u8 × u8 on ResNet-18's 3×3
layers at batch 1. The fastest available formulation is chosen per layer by timing (their results
are identical).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from approxtvm.runtime.kernels.ort_session import runtime_session
from approxtvm.targets.vacc.schedule import LayerSchedule
from approxtvm.targets.vacc.workload import LayerShape


def supports(sched: LayerSchedule, weight: np.ndarray) -> bool:
    """Whether the fused path applies: unsigned operands (u8 × u8) and one weight zero point
    (``ConvInteger`` takes a per-tensor weight zero point only; per-channel scales are fine)."""
    return not sched.quant.signed and weight.dtype == np.uint8 and len(set(sched.quant.weight_zero_points)) == 1


#: MACs per call below which a per-layer session runs on the calling thread alone (about 2 ms of
#: one core). Sessions that alternate with Python code cannot let their pool spin, and waking a
#: sleeping pool costs more than it saves on small layers: measured on 2 busy cores, the digits
#: layers at batch 64 took 11.3 ms per batch with 2 threads and 1.0 ms with 1; ResNet-18's layers
#: at batch 1 (0.1–0.2 GMAC each) 166 ms with 2 threads and 123 ms with 1.
SINGLE_THREAD_MACS = 1 << 28


def session_threads(macs: int) -> int:
    """Intra-op threads of a non-spinning onnxruntime session doing ``macs`` MACs per call."""
    return 1 if macs < SINGLE_THREAD_MACS else os.cpu_count() or 1


def _session(model: onnx.ModelProto, threads: int) -> object:
    # one pool per layer session: spinning idle pools would steal the cores from the active one
    return runtime_session(model, threads)


@dataclass(frozen=True, eq=False)
class RowsAccumulators:
    """int32 accumulators in the u8 × s8 GEMM's own layout, before the transpose to ``(N, K, P, Q)``.

    Attributes
    ----------
    rows
        ``(N·P·Q, K)`` int32, C-contiguous (a dense layer: ``(N, K)``).
    bias
        ``(K,)`` int32 still to be added to every output of channel ``k`` (int32 wrap-around), or
        ``None``.
    shape
        ``(N, K, P, Q)`` of the standard layout (a dense layer: ``P = Q = 1``).
    dense
        Whether the standard layout is ``(N, K)``.
    """

    rows: np.ndarray
    bias: np.ndarray | None
    shape: tuple[int, int, int, int]
    dense: bool

    def standard(self) -> np.ndarray:
        """The accumulators in the standard layout, ``(N, K, P, Q)`` or ``(N, K)``, bias added."""
        n, k, p, q = self.shape
        y = self.rows if self.bias is None else self.rows + self.bias  # int32 + int32: wraps
        if self.dense:
            return np.ascontiguousarray(y, np.int32)
        return np.ascontiguousarray(y.reshape(n, p * q, k).transpose(0, 2, 1), np.int32).reshape(n, k, p, q)


class ExactLayer:
    """A per-layer onnxruntime session computing the exact int32 accumulators.

    Parameters
    ----------
    sched
        The layer schedule (shape, zero points).
    weight
        uint8 weight codes (OIHW or (K, C)).
    batch
        Rows per call (``N``; for a dense layer the rows of its input matrix); default: the
        schedule's. Accumulators do not depend on it: every output is its own exact sum.
    """

    def __init__(self, sched: LayerSchedule, weight: np.ndarray, batch: int | None = None) -> None:
        s, q = sched.shape, sched.quant
        n = s.n if batch is None else batch
        self.shape = s
        self.zx = q.input_zero_point
        zw = np.asarray(q.weight_zero_points[:1], np.uint8)  # all equal (see supports)
        inits = [numpy_helper.from_array(np.array(self.zx, np.uint8), "zx")]
        if s.op == "dense":
            inits += [
                numpy_helper.from_array(np.ascontiguousarray(weight.T), "w"),
                numpy_helper.from_array(zw if zw.size > 1 else zw.reshape(()), "zw"),
            ]
            node = helper.make_node("MatMulInteger", ["x", "w", "zx", "zw"], ["y"])
            x_shape, y_shape = [n, s.c], [n, s.k]
        else:
            inits += [
                numpy_helper.from_array(np.ascontiguousarray(weight), "w"),
                numpy_helper.from_array(zw if zw.size > 1 else zw.reshape(()), "zw"),
            ]
            node = helper.make_node(
                "ConvInteger",
                ["x", "w", "zx", "zw"],
                ["y"],
                strides=[s.stride_h, s.stride_w],
                dilations=[s.dilation_h, s.dilation_w],
                group=s.groups,  # grouped / depthwise: onnxruntime splits the channels alike
            )
            x_shape = [n, s.c, s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right]
            y_shape = [n, s.k, s.p, s.q]
        graph = helper.make_graph(
            [node],
            "exact_layer",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.INT32, y_shape)],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        threads = session_threads(s.macs * n // max(1, s.n))
        self._sess = _session(model, threads)
        # the same accumulators in float32 where they are exact (see _float_model): on small
        # spatial sizes MLAS's float conv is ~3× faster than ConvInteger, on large ones slower
        fmodel = _float_model(s, weight, np.asarray(q.weight_zero_points, np.int64), self.zx, n)
        self._fsess = _session(fmodel, threads) if fmodel is not None else None
        self._padded = any((s.pad_top, s.pad_bottom, s.pad_left, s.pad_right))
        self._padded_shape = tuple(x_shape)
        self._window = (
            slice(None),
            slice(None),
            slice(s.pad_top, s.pad_top + s.h),
            slice(s.pad_left, s.pad_left + s.w),
        )
        self._gemm = _GemmForm.build(s, weight, int(zw[0]), self.zx, n, threads)
        runners = {"integer": self.run_integer}
        if self._fsess is not None:
            runners["float"] = self.run_float
        if self._gemm is not None:
            runners["gemm"] = self._gemm
        self._path, best = self._fastest(runners, [n, s.c] if s.op == "dense" else [n, s.c, s.h, s.w])
        self._run = runners[self._path]
        # what the GEMM formulation costs above the chosen one (per call, measured above)
        self._gemm_extra_s = max(0.0, best["gemm"] - best[self._path]) if "gemm" in best else 0.0

    @staticmethod
    def _fastest(runners: dict[str, object], x_shape: list[int]) -> tuple[str, dict[str, float]]:
        """Time the formulations on a synthetic input (their speed does not depend on the values;
        their results are identical): one warm-up run each (first runs allocate), then the best of
        :data:`_CHOICE_RUNS` alternating runs each. One timing each was measured to pick the 3×
        slower integer kernel on a busy machine."""
        if len(runners) == 1:
            return next(iter(runners)), {}
        x = np.zeros(x_shape, np.uint8)
        best = dict.fromkeys(runners, float("inf"))
        for i in range(1 + _CHOICE_RUNS):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(x)  # type: ignore[operator]
                if i:
                    best[name] = min(best[name], time.perf_counter() - t0)
        return min(best, key=best.__getitem__), best

    @property
    def gemm_extra_s(self) -> float:
        """Seconds per call the u8 × s8 GEMM formulation (:meth:`with_weights`' kernel) took above
        :attr:`path` when the formulations were timed (0 where the GEMM is the chosen one or not
        built). Digits' first conv (one input channel) at batch 360: ≈ 0.33 ms (float 0.18 ms)."""
        return self._gemm_extra_s

    @property
    def path(self) -> str:
        """The formulation measured fastest at construction: ``integer`` (``ConvInteger`` u8 × u8),
        ``float`` (float32 where exact) or ``gemm`` (im2col and ``MatMulInteger`` u8 × s8)."""
        return self._path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int32 accumulators for activation codes ``x``."""
        return self._run(x)  # type: ignore[operator,no-any-return]

    @property
    def has_gemm(self) -> bool:
        """Whether the u8 × s8 im2col formulation is built (exact on this CPU, weights fit int8)."""
        return self._gemm is not None

    def run_gemm(self, x: np.ndarray) -> np.ndarray:
        """The accumulators by the u8 × s8 im2col GEMM (only when :attr:`has_gemm`)."""
        if self._gemm is None:
            raise ValueError("the u8 x s8 GEMM formulation is not built for this layer or CPU")
        return self._gemm(x)

    def with_weights(
        self,
        x: np.ndarray,
        index: np.ndarray,
        mask: np.ndarray,
        bias: np.ndarray | None = None,
        add: Callable[[np.ndarray, np.ndarray], None] | None = None,
        *,
        rows: bool = False,
    ) -> np.ndarray | RowsAccumulators:
        """The accumulators as if the weight bytes at flat ``(K, C, R, S)`` positions ``index``
        (each at most once) were XORed with ``mask``: ``Σ (x − z_x)(w' − z_w)``, by the u8 × s8
        GEMM with the weights passed per call (only when :attr:`has_gemm`). Fault injection uses it
        where every weight word is stored once per call (:mod:`approxtvm.runtime.faults.corrupted_weights`).

        ``bias``: int32 ``(K,)`` added to every output of channel ``k``; ``add(weights, rows)``:
        adds int32 terms into the accumulators in the GEMM's layout, ``(N·P·Q, K)`` rows, given the
        corrupted weights as ``(R·S·C, K)`` int8 codes ``w' − 128`` (input-fault deltas, see
        :mod:`approxtvm.runtime.faults.delta_rows`). Both wrap around in int32. ``rows``: return
        the :class:`RowsAccumulators` as they are (the bias not added, no transpose; a requantizer
        that reads them saves two passes over the outputs), else the usual ``(N, K, P, Q)`` array."""
        if self._gemm is None:
            raise ValueError("per-call weights need the u8 x s8 GEMM formulation, not built for this layer or CPU")
        out = self._gemm.with_weights(x, index, mask, bias, add)
        return out if rows else out.standard()

    @property
    def has_float(self) -> bool:
        """Whether the float32 formulation is exact for these weights (and built)."""
        return self._fsess is not None

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """The accumulators by the float32 session (only when :attr:`has_float`)."""
        if self._fsess is None:
            raise ValueError("the float32 formulation is not exact for this layer's weights")
        return self._fsess.run(None, {"x": np.ascontiguousarray(x)})[0]  # type: ignore[union-attr]

    def run_integer(self, x: np.ndarray) -> np.ndarray:
        """The accumulators by the ``ConvInteger`` / ``MatMulInteger`` session."""
        if self._padded:  # a fresh buffer per call (np.pad costs ~10× more on small layers)
            xp = np.full(self._padded_shape, self.zx, dtype=np.uint8)
            xp[self._window] = x
            x = xp
        return self._sess.run(None, {"x": np.ascontiguousarray(x)})[0]  # type: ignore[attr-defined]


class _GemmForm:
    """The accumulators as one u8 × s8 ``MatMulInteger``: im2col rows ``(n, p, q)`` × columns
    ``(r, s, c)`` (from a kept NHWC copy of the input whose border holds ``z_x``) against the weights
    as int8 ``w − 128`` with the int8 zero point ``z_w − 128``, transposed back to ``(N, K, P, Q)``
    in the same session; a dense layer is the product itself."""

    def __init__(self, s: LayerShape, wd: np.ndarray, zx: int, zw: int, n: int, threads: int) -> None:
        self.shape, self.n = s, n
        self._zx, self._zw, self._threads = zx, zw, threads
        self._w2 = np.ascontiguousarray(wd)  # (taps, K) int8: the weights' column layout
        self._sess = _session(self._model(weights_input=False), threads)
        self._wsess: object | None = None  # the same graph with the weights as an input (built on first use)
        self._wkeep = self._w2  # replaced by a private copy, XORed per call, on first use
        self._wlock = threading.Lock()
        self._lock = threading.Lock()  # the kept buffers serve one call at a time
        if s.op != "dense":
            hp, wp = s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right
            self._xp = np.full((n, hp, wp, s.c), zx, np.uint8)
            self._a = np.empty((n, s.p, s.q, s.r, s.s, s.c), np.uint8)

    def _model(self, weights_input: bool) -> onnx.ModelProto:
        s, n, wd = self.shape, self.n, self._w2
        dense = s.op == "dense"
        rows = n if dense else n * s.p * s.q
        inits = [
            numpy_helper.from_array(np.array(self._zx, np.uint8), "zx"),
            numpy_helper.from_array(np.array(self._zw, np.int8), "zw"),
        ]
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [rows, wd.shape[0]])]
        if weights_input:  # per-call weights; the (rows, K) products as they come (see RowsAccumulators)
            inputs.append(helper.make_tensor_value_info("w", TensorProto.INT8, list(wd.shape)))
            nodes = [helper.make_node("MatMulInteger", ["a", "w", "zx", "zw"], ["y"])]
        else:
            inits.append(numpy_helper.from_array(wd, "w"))
            nodes = [helper.make_node("MatMulInteger", ["a", "w", "zx", "zw"], ["y" if dense else "y2"])]
        if not dense and not weights_input:
            inits.append(numpy_helper.from_array(np.array([n, s.p * s.q, s.k], np.int64), "shape3"))
            nodes += [
                helper.make_node("Reshape", ["y2", "shape3"], ["y3"]),
                helper.make_node("Transpose", ["y3"], ["y"], perm=[0, 2, 1]),
            ]
        graph = helper.make_graph(
            nodes, "exact_layer_gemm", inputs, [helper.make_tensor_value_info("y", TensorProto.INT32, None)], inits
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        return model

    @staticmethod
    def build(s: LayerShape, weight: np.ndarray, zw: int, zx: int, n: int, threads: int) -> _GemmForm | None:
        """The formulation, or ``None`` where it does not apply: a grouped layer, an im2col matrix
        over :data:`GEMM_BYTES`, a sum that could leave int32, or a CPU whose u8 × s8 GEMM is not
        exact (:func:`s8_gemm_exact`)."""
        if s.op not in ("conv2d", "dense") or s.groups != 1 or weight.size == 0:
            return None
        taps = s.c if s.op == "dense" else s.c * s.r * s.s
        if 255 * 255 * taps >= 1 << 31 or (s.op != "dense" and n * s.p * s.q * taps > GEMM_BYTES):
            return None
        if not s8_gemm_exact():
            return None
        # w − z_w = (w − 128) − (z_w − 128): both terms fit int8 for any uint8 codes and zero point
        wd = (weight.astype(np.int16) - 128).astype(np.int8)
        w2 = wd.T if s.op == "dense" else wd.transpose(2, 3, 1, 0).reshape(taps, s.k)  # rows (r, s, c)
        return _GemmForm(s, w2, zx, zw - 128, n, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, None)

    def with_weights(
        self,
        x: np.ndarray,
        index: np.ndarray,
        mask: np.ndarray,
        bias: np.ndarray | None = None,
        add: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> RowsAccumulators:
        """The accumulators with the weight bytes at flat ``(K, C, R, S)`` positions ``index`` XORed
        with ``mask`` (each position at most once): ``Σ (x − z_x)(w' − z_w)`` in the GEMM's
        ``(N·P·Q, K)`` rows, the weights passed to a second session as an input (measured about
        10 % slower than the prepacked constant); ``add(weights, rows)`` then adds into the rows in
        place, given the corrupted weights as ``(R·S·C, K)`` int8 codes ``w' − 128``; ``bias`` is
        kept beside them (:class:`RowsAccumulators`)."""
        s = self.shape
        if s.op == "dense":
            k, c = np.divmod(index, s.c)
            col = c * s.k + k
        else:
            k, rest = np.divmod(index, s.c * s.r * s.s)
            c, rs = np.divmod(rest, s.r * s.s)
            col = (rs * s.c + c) * s.k + k  # row (r, s, c), column k
        if self._wsess is None:
            # the layer's own thread count: two threads for 58–116 M MACs (ResNet-18 at batch 1)
            # gained no wall time in a run and cost 6 CPU-ms per image with the other core busy
            self._wsess = _session(self._model(weights_input=True), self._threads)
            self._wkeep = self._w2.copy()
        # XOR into a kept copy and back after the run (a fresh copy of every layer's weights per
        # call costs more than the faults: ResNet-18's 11.7 MB page-fault anew)
        mine = self._wlock.acquire(blocking=False)
        try:
            w = self._wkeep if mine else self._w2.copy()
            wb = w.view(np.uint8).reshape(-1)
            wb[col] ^= mask  # int8 code w − 128 is the byte w ^ 0x80: XOR commutes
            try:
                y = self._run(x, w)
                if not (y.flags.writeable and y.flags.c_contiguous):
                    y = np.array(y, np.int32)
                if add is not None:
                    add(w, y)
            finally:
                if mine:
                    wb[col] ^= mask
        finally:
            if mine:
                self._wlock.release()
        p, q = (1, 1) if s.op == "dense" else (s.p, s.q)
        extra = None if bias is None else bias.astype(np.int32)
        return RowsAccumulators(y, extra, (len(x), s.k, p, q), s.op == "dense")

    def _run(self, x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        s = self.shape
        sess, feed = (self._sess, {}) if w is None else (self._wsess, {"w": w})
        if s.op == "dense":
            return sess.run(None, {"a": np.ascontiguousarray(x), **feed})[0]  # type: ignore[attr-defined,no-any-return]
        mine = self._lock.acquire(blocking=False)
        try:
            xp, a = (self._xp, self._a) if mine else (self._xp.copy(), np.empty_like(self._a))
            xp[:, s.pad_top : s.pad_top + s.h, s.pad_left : s.pad_left + s.w, :] = x.transpose(0, 2, 3, 1)
            sn, sh, sw, sc = xp.strides
            window = np.lib.stride_tricks.as_strided(
                xp,
                a.shape,
                (sn, sh * s.stride_h, sw * s.stride_w, sh * s.dilation_h, sw * s.dilation_w, sc),
                writeable=False,
            )
            np.copyto(a, window)
            y = sess.run(None, {"a": a.reshape(len(a) * s.p * s.q, -1), **feed})[0]  # type: ignore[attr-defined]
        finally:
            if mine:
                self._lock.release()
        return y if w is not None else y.reshape(len(x), s.k, s.p, s.q)  # type: ignore[no-any-return]


#: Largest im2col matrix (bytes) the u8 × s8 formulation keeps per layer.
GEMM_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def s8_gemm_exact() -> bool:
    """Whether onnxruntime's u8 × s8 ``MatMulInteger`` is exact on this CPU (once per process).

    The low-rank kernels' probe (:func:`approxtvm.runtime.kernels.lowrank_gemm.s8_gemm_exact`):
    without VNNI, x86 kernels add pairs of u8 · s8 products in int16 with saturation, and its
    prepacked, zero-point and plain sessions on one and all threads must all return the int64
    product.
    """
    from approxtvm.runtime.kernels.cpu import detect_cpu
    from approxtvm.runtime.kernels.intconv import OrtSessionCache
    from approxtvm.runtime.kernels.lowrank_gemm import s8_gemm_exact as probe

    return probe(OrtSessionCache(), detect_cpu().vnni)


#: Timed runs of each formulation that choose between them (after one warm-up run each).
_CHOICE_RUNS = 3

#: Largest magnitude float32 holds every integer up to (2^24): below it, sums of integer products
#: are exact in any order.
_FLOAT_EXACT = 1 << 24


def _float_model(s: LayerShape, weight: np.ndarray, zw: np.ndarray, zx: int, n: int) -> onnx.ModelProto | None:
    """``Σ (x − z_x)(w − z_w)`` as a float32 ``Conv`` / ``MatMul`` cast to int32, or ``None`` when a
    partial sum could reach 2^24 (then float32 would round).

    Every partial sum of an output is bounded by ``max|x − z_x| · Σ|w − z_w|`` over its taps, so
    below 2^24 each product and each partial sum is an integer float32 holds exactly, whatever the
    summation order (MLAS's float conv and GEMM only multiply and add). Padding with 0 after the
    subtraction is padding the codes with ``z_x``, as the contract requires.
    """
    wd = weight.astype(np.int64) - zw.reshape(-1, *([1] * (weight.ndim - 1)))
    bound = int(np.abs(wd).reshape(len(wd), -1).sum(axis=1).max(initial=0)) * max(zx, 255 - zx)
    if bound >= _FLOAT_EXACT:
        return None
    wf = wd.astype(np.float32)
    inits = [numpy_helper.from_array(np.array(zx, np.float32), "zx")]
    if s.op == "dense":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(wf.T), "w"))
        node = helper.make_node("MatMul", ["xs", "w"], ["yf"])
        x_shape = [n, s.c]
    else:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(wf), "w"))
        node = helper.make_node(
            "Conv",
            ["xs", "w"],
            ["yf"],
            strides=[s.stride_h, s.stride_w],
            dilations=[s.dilation_h, s.dilation_w],
            pads=[s.pad_top, s.pad_left, s.pad_bottom, s.pad_right],
            group=s.groups,
        )
        x_shape = [n, s.c, s.h, s.w]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["xf", "zx"], ["xs"]),
            node,
            helper.make_node("Cast", ["yf"], ["y"], to=TensorProto.INT32),
        ],
        "exact_layer_float",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model
