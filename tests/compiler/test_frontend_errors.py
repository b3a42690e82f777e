"""Bad input gets a clear error: which file, what was expected, how to fix it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from approxtvm.compiler import frontend, prepare
from approxtvm.errors import ApproxTvmError, DataError, ModelError, UnsupportedOperatorError
from tests.onnx_builders import calibration, small_cnn


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        frontend.load_model(tmp_path / "nope.onnx")
    assert "nope.onnx" in str(info.value) and "fix" in str(info.value)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    f = tmp_path / "junk.onnx"
    f.write_bytes(b"\x00\x01 this is not a protobuf \xff" * 10)
    with pytest.raises(ModelError) as info:
        frontend.load_model(f)
    assert "junk.onnx" in str(info.value)


def test_text_file_is_not_a_model(tmp_path: Path) -> None:
    f = tmp_path / "notes.onnx"
    f.write_text("hello")
    with pytest.raises(ModelError, match="not an ONNX model"):
        frontend.load_model(f)


def _model_with(ops: list[str]) -> onnx.ModelProto:
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.x", 1)])


def test_all_unsupported_ops_listed_at_once() -> None:
    m = _model_with(["Relu", "FancyOpA", "Relu", "FancyOpB", "FancyOpA"])
    with pytest.raises(UnsupportedOperatorError) as info:
        frontend.check_supported(m)
    msg = str(info.value)
    assert "FancyOpA (2×" in msg and "FancyOpB (1×" in msg
    assert "Relu" not in msg.split("found:")[1]


def test_qoperator_format_gets_a_qdq_hint() -> None:
    m = _model_with(["Relu"])
    m.graph.node.append(helper.make_node("QLinearConv", ["a", "b", "c", "d", "e", "f", "g", "h"], ["o"], name="qc"))
    with pytest.raises(UnsupportedOperatorError, match="QDQ"):
        frontend.check_supported(m)


def test_calibration_shape_mismatch() -> None:
    with pytest.raises(DataError) as info:
        frontend.quantize(small_cnn(), np.zeros((4, 3, 8, 8), np.float32))
    assert "(N, 3, 16, 16)" in str(info.value)


def test_layer_names_follow_qdq_weights() -> None:
    q = frontend.quantize(small_cnn(), calibration(8))
    _, weight_to_layer, order = prepare.import_view(prepare.prepare(q, 1))
    assert sorted(weight_to_layer.values()) == ["conv1", "conv2", "conv3", "conv4", "fc"]
    assert order == ["conv1", "conv2", "conv3", "conv4", "fc"]


def test_errors_share_one_base() -> None:
    for cls in (ModelError, UnsupportedOperatorError, DataError):
        assert issubclass(cls, ApproxTvmError)
