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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from approxtvm.targets.vacc.schedule import LayerSchedule


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
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # one pool per layer session: spinning idle pools would steal the cores from the active one
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class ExactLayer:
    """A per-layer onnxruntime session computing the exact int32 accumulators.

    Parameters
    ----------
    sched
        The layer schedule (shape, zero points).
    weight
        uint8 weight codes (OIHW or (K, C)).
    """

    def __init__(self, sched: LayerSchedule, weight: np.ndarray) -> None:
        s, q = sched.shape, sched.quant
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
            x_shape, y_shape = [s.n, s.c], [s.n, s.k]
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
            x_shape = [s.n, s.c, s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right]
            y_shape = [s.n, s.k, s.p, s.q]
        graph = helper.make_graph(
            [node],
            "exact_layer",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.INT32, y_shape)],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        self._sess = _session(model, session_threads(s.macs))
        self._padded = any((s.pad_top, s.pad_bottom, s.pad_left, s.pad_right))
        self._padded_shape = tuple(x_shape)
        self._window = (
            slice(None),
            slice(None),
            slice(s.pad_top, s.pad_top + s.h),
            slice(s.pad_left, s.pad_left + s.w),
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int32 accumulators for activation codes ``x``."""
        if self._padded:  # a fresh buffer per call (np.pad costs ~10× more on small layers)
            xp = np.full(self._padded_shape, self.zx, dtype=np.uint8)
            xp[self._window] = x
            x = xp
        return self._sess.run(None, {"x": np.ascontiguousarray(x)})[0]  # type: ignore[attr-defined]
