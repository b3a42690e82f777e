"""Exact-multiplier layers in one onnxruntime integer kernel, zero points included.

With ``M(a, b) = a·b`` the accumulator ``Σ (x − z_x)(w − z_w)`` is exactly what ONNX
``ConvInteger`` / ``MatMulInteger`` compute. One call per layer, with the weights and zero points
baked into a per-layer session, replaces the raw-product kernel plus the four zero-point
correction terms. Only uint8 × uint8 is used: onnxruntime's u8 × s8 kernels saturate in int16 on
AVX2-only CPUs (DESIGN §2), u8 × u8 is exact everywhere. The input is padded here with ``z_x``
(padded taps then contribute ``(z_x − z_x)·(w − z_w) = 0``, as the contract requires for the
exact multiplier), so no engine-specific padding rule is relied on.
"""

from __future__ import annotations

import os
import time

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
        self._float = self._fsess is not None and self._float_is_faster(
            [n, s.c] if s.op == "dense" else [n, s.c, s.h, s.w]
        )

    def _float_is_faster(self, x_shape: list[int]) -> bool:
        """Time both sessions on a synthetic input (their speed does not depend on the values; their
        results are identical): one warm-up run each (first runs allocate), then the best of
        :data:`_CHOICE_RUNS` alternating runs each. One timing each was measured to pick the 3×
        slower integer kernel on a busy machine."""
        x = np.full(x_shape, self.zx, np.uint8)
        best = {False: float("inf"), True: float("inf")}
        for i in range(2 + 2 * _CHOICE_RUNS):
            use_float = bool(i % 2)
            t0 = time.perf_counter()
            self.run_float(x) if use_float else self.run_integer(x)
            if i >= 2:
                best[use_float] = min(best[use_float], time.perf_counter() - t0)
        return best[True] < best[False]

    @property
    def path(self) -> str:
        """``float`` when the float session was measured faster at construction, else ``integer``."""
        return "float" if self._float else "integer"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int32 accumulators for activation codes ``x``."""
        return self.run_float(x) if self._float else self.run_integer(x)

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
