"""Layers the accelerator cannot map stay on the host, the reason is logged, results stay right."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler.driver import compile_onnx
from tests.onnx_builders import calibration

pytestmark = pytest.mark.tvm


def _depthwise_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32), "wd"),
        numpy_helper.from_array((rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32), "w3"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Conv", ["b", "wd"], ["c"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c", "w3"], ["y"], name="pw"),
    ]
    g = helper.make_graph(
        nodes,
        "dw",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 12, 12])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_grouped_conv_is_offloaded_and_matches_onnxruntime() -> None:
    model = compile_onnx(_depthwise_model(), calibration=calibration(16, size=12))
    assert model.layer_ids == ["conv1", "dw", "pw"]
    assert model.schedules["dw"].shape.groups == 8
    x = calibration(3, size=12, seed=2)
    ours = model.run(x).outputs["y"]
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(3)])
    scale = float(numpy_helper.to_array(next(t for t in model.proto.graph.initializer if t.name == "y_scale")))
    d = np.abs(ours - ref) / scale
    assert d.max() <= 2 + 1e-4 and np.mean(d <= 1 + 1e-4) >= 0.99


def _batched_weight_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((2, 6, 3)) * 0.3).astype(np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["input"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w"], ["y"], name="bmm"),
        ],
        "bmm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_batched_constant_matmul_stays_on_host_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    calib = np.random.default_rng(1).standard_normal((8, 4, 6)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="approxtvm.vacc"):
        model = compile_onnx(_batched_weight_model(), calibration=calib)
    assert model.layer_ids == []
    assert any("not 2-D" in r.getMessage() for r in caplog.records)
