"""The requantizer: onnxruntime's integer-kernel requantization (QLinearConv / QGemm), its in-place
and scratch-buffer forms equal to the plain one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from approxtvm.runtime.executor import Requantizer, requantize


def _prog(k: int, bias: np.ndarray | None, op: str = "conv2d") -> object:
    q = SimpleNamespace(input_scale=0.02, weight_scales=tuple(0.001 * (1 + np.arange(k))), bias_zero_points=(0,) * k)
    return SimpleNamespace(schedule=SimpleNamespace(quant=q, shape=SimpleNamespace(op=op)), bias=bias)


def _ort_requantize(total: np.ndarray, scale: np.ndarray, y_zero_point: int) -> np.ndarray:
    """onnxruntime's QuantizeLinear of ``float32(total) · scale`` (round half to even, saturate)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "s"], ["v"]),
            helper.make_node("QuantizeLinear", ["v", "one", "zp"], ["y"]),
        ],
        "rq",
        [helper.make_tensor_value_info("t", TensorProto.INT32, list(total.shape))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, list(total.shape))],
        [
            onnx.numpy_helper.from_array(scale, "s"),
            onnx.numpy_helper.from_array(np.float32(1), "one"),
            onnx.numpy_helper.from_array(np.uint8(y_zero_point), "zp"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"t": total})[0]


def test_requantizer_forms_equal_onnxruntime_quantize() -> None:
    rng = np.random.default_rng(3)
    k = 6
    bias = rng.integers(-400, 400, k).astype(np.int32)
    prog = _prog(k, bias)
    acc = rng.integers(-60000, 60000, (4, k, 3, 5)).astype(np.int32)
    acc[0, 0, 0, :2] = (2**31 - 1, -(2**31))  # the int32 bias add wraps like the accumulator
    rq = Requantizer.of(prog, 0.05, 17, "uint8")  # type: ignore[arg-type]
    plain = requantize(acc, prog, 0.05, 17, "uint8")  # type: ignore[arg-type]
    total = acc + bias.reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(plain, _ort_requantize(total, rq.scale, 17))
    kept = acc.copy()
    np.testing.assert_array_equal(rq(kept), plain)
    np.testing.assert_array_equal(kept, acc)  # not in place: the accumulators are untouched
    scratch = np.full(acc.size, np.nan, np.float32)
    np.testing.assert_array_equal(rq(kept, in_place=True, scratch=scratch), plain)
    np.testing.assert_array_equal(kept, total)  # in place: the bias went into the caller's array
    frozen = acc.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(rq(frozen, in_place=True), plain)  # a read-only array is not written
    dense = _prog(k, None, "dense")
    x2 = rng.integers(-5000, 5000, (7, k)).astype(np.int32)
    rq2 = Requantizer.of(dense, 0.05, 0, "uint8")  # type: ignore[arg-type]
    np.testing.assert_array_equal(rq2(x2, scratch=np.empty(3, np.float32)), _ort_requantize(x2, rq2.scale, 0))
