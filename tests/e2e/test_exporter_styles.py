"""A graph written the way tf2onnx writes one: NHWC input transposed in the graph, weights behind
``Transpose`` of ``…/kernel:0`` initializers, biases through ``Identity``, a dense layer as
``MatMul`` + ``Add``, ``:0``-suffixed tensor names. Layer ids are the node names; outputs agree
with onnxruntime on the same QDQ model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler.driver import compile_onnx
from tests.e2e.test_exact_vs_references import _output_step

pytestmark = pytest.mark.tvm

CONV = "StatefulPartitionedCall/model/conv/Conv2D"
DENSE = "StatefulPartitionedCall/model/dense/MatMul"


def _tf2onnx_style() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    hwio = (rng.standard_normal((3, 3, 3, 8)) * 0.3).astype(np.float32)  # TF kernel layout
    inits = [
        numpy_helper.from_array(hwio, "model/conv/Conv2D/ReadVariableOp:0"),
        numpy_helper.from_array(
            (rng.standard_normal(8) * 0.1).astype(np.float32), "model/conv/BiasAdd/ReadVariableOp:0"
        ),
        numpy_helper.from_array(
            (rng.standard_normal((8, 5)) * 0.3).astype(np.float32), "model/dense/MatMul/ReadVariableOp:0"
        ),
        numpy_helper.from_array(
            (rng.standard_normal(5) * 0.1).astype(np.float32), "model/dense/BiasAdd/ReadVariableOp:0"
        ),
        numpy_helper.from_array(np.array([-1, 8], np.int64), "const_fold_opt__7"),
    ]
    n = helper.make_node
    nodes = [
        n(
            "Transpose",
            ["input_1:0"],
            ["nchw:0"],
            name="StatefulPartitionedCall/model/conv/Conv2D__6",
            perm=[0, 3, 1, 2],
        ),
        n("Transpose", ["model/conv/Conv2D/ReadVariableOp:0"], ["kernel:0"], name="Transpose__10", perm=[3, 2, 0, 1]),
        n("Identity", ["model/conv/BiasAdd/ReadVariableOp:0"], ["bias:0"], name="Identity__11"),
        n("Conv", ["nchw:0", "kernel:0", "bias:0"], ["conv:0"], name=CONV, pads=[1, 1, 1, 1]),
        n("Relu", ["conv:0"], ["relu:0"], name="StatefulPartitionedCall/model/conv/Relu"),
        n("GlobalAveragePool", ["relu:0"], ["gap:0"], name="StatefulPartitionedCall/model/gap/Mean"),
        n("Reshape", ["gap:0", "const_fold_opt__7"], ["flat:0"], name="StatefulPartitionedCall/model/flatten/Reshape"),
        n("MatMul", ["flat:0", "model/dense/MatMul/ReadVariableOp:0"], ["mm:0"], name=DENSE),
        n(
            "Add",
            ["mm:0", "model/dense/BiasAdd/ReadVariableOp:0"],
            ["dense:0"],
            name="StatefulPartitionedCall/model/dense/BiasAdd",
        ),
    ]
    g = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["unk__12", 12, 12, 3])],
        [helper.make_tensor_value_info("dense:0", TensorProto.FLOAT, ["unk__13", 5])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def test_tf2onnx_style_graph_compiles_with_node_name_ids() -> None:
    calib = np.random.default_rng(4).standard_normal((16, 12, 12, 3)).astype(np.float32)
    model = compile_onnx(_tf2onnx_style(), calibration=calib, batch_size=4)
    assert model.layer_ids == [CONV, DENSE]
    x = np.random.default_rng(5).standard_normal((8, 12, 12, 3)).astype(np.float32)
    ours = model.run(x).outputs["dense:0"]
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input_1:0": x})[0]
    d = np.abs(ours - ref) / _output_step(model.proto)
    assert np.mean(d <= 1 + 1e-4) >= 0.99 and d.max() <= 2 + 1e-4
