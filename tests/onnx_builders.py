"""Small float ONNX models for tests, built with onnx.helper (no training, seeded weights)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def small_cnn(seed: int = 0, classes: int = 10, size: int = 16, channels: int = 3) -> onnx.ModelProto:
    """Conv 3×3 p1 + Relu, strided conv with asymmetric pads, dilated conv, 1×1 conv + residual
    add, global average pool, Gemm: exercises strides, pads, dilation and a shared dequantize."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w1", (16, channels, 3, 3), 0.3), init("b1", (16,), 0.1),
             init("w2", (16, 16, 3, 3), 0.15), init("b2", (16,), 0.1),
             init("w3", (16, 16, 3, 3), 0.15), init("b3", (16,), 0.1),
             init("w4", (16, 16, 1, 1), 0.3), init("b4", (16,), 0.1),
             init("wf", (classes, 16), 0.4), init("bf", (classes,), 0.1)]
    N = helper.make_node
    nodes = [
        N("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        N("Relu", ["c1"], ["r1"], name="relu1"),
        N("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", strides=[2, 2], pads=[0, 0, 1, 1]),
        N("Relu", ["c2"], ["r2"], name="relu2"),
        N("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", dilations=[2, 2], pads=[2, 2, 2, 2]),
        N("Relu", ["c3"], ["r3"], name="relu3"),
        N("Conv", ["r3", "w4", "b4"], ["c4"], name="conv4"),
        N("Add", ["c4", "r2"], ["s"], name="add"),
        N("GlobalAveragePool", ["s"], ["g"], name="gap"),
        N("Flatten", ["g"], ["f"], name="flatten"),
        N("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration(n: int = 32, size: int = 16, channels: int = 3, seed: int = 1) -> np.ndarray:
    """Float inputs for calibration and testing."""
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)
