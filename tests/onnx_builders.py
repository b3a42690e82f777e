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

    inits = [
        init("w1", (16, channels, 3, 3), 0.3),
        init("b1", (16,), 0.1),
        init("w2", (16, 16, 3, 3), 0.15),
        init("b2", (16,), 0.1),
        init("w3", (16, 16, 3, 3), 0.15),
        init("b3", (16,), 0.1),
        init("w4", (16, 16, 1, 1), 0.3),
        init("b4", (16,), 0.1),
        init("wf", (classes, 16), 0.4),
        init("bf", (classes,), 0.1),
    ]
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
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration(n: int = 32, size: int = 16, channels: int = 3, seed: int = 1) -> np.ndarray:
    """Float inputs for calibration and testing."""
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)


def single_conv(
    k: int,
    c: int,
    size: int,
    r: int,
    *,
    stride: int = 1,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: int = 1,
    seed: int = 0,
    relu: bool = True,
) -> onnx.ModelProto:
    """One Conv (+ Relu): for accumulator tests over kernel sizes, strides, pads, dilations."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(
        (rng.standard_normal((k, c, r, r)) * (1.0 / np.sqrt(c * r * r))).astype(np.float32), "w"
    )
    b = numpy_helper.from_array((rng.standard_normal(k) * 0.1).astype(np.float32), "b")
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "w", "b"],
            ["c"],
            name="conv",
            strides=[stride, stride],
            pads=[pad[0], pad[1], pad[2], pad[3]],
            dilations=[dilation, dilation],
        )
    ]
    out = "c"
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
        out = "y"
    hp = size + pad[0] + pad[2]
    wp = size + pad[1] + pad[3]
    p = (hp - dilation * (r - 1) - 1) // stride + 1
    q = (wp - dilation * (r - 1) - 1) // stride + 1
    graph = helper.make_graph(
        nodes,
        "single_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, size, size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", k, p, q])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def numpy_conv_acc(
    x: np.ndarray,
    w: np.ndarray,
    zx: int,
    zw: np.ndarray,
    *,
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Plain numpy integer convolution Σ (x − z_x)(w − z_w), input padded with z_x: the reference."""
    xi = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=zx) - zx
    wi = w.astype(np.int64) - np.asarray(zw, np.int64).reshape(-1, 1, 1, 1)
    k, _, r, s = wi.shape
    n, _, hp, wp = xi.shape
    p = (hp - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (wp - dilation[1] * (s - 1) - 1) // stride[1] + 1
    out = np.zeros((n, k, p, q), np.int64)
    for i in range(r):
        for j in range(s):
            patch = xi[
                :,
                :,
                i * dilation[0] : i * dilation[0] + stride[0] * (p - 1) + 1 : stride[0],
                j * dilation[1] : j * dilation[1] + stride[1] * (q - 1) + 1 : stride[1],
            ]
            out += np.einsum("ncpq,kc->nkpq", patch, wi[:, :, i, j])
    return out
