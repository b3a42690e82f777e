"""ONNX preparation: same function (onnxruntime gives identical outputs), canonical form."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler import frontend, prepare
from approxtvm.errors import ModelError
from tests.onnx_builders import calibration

N = helper.make_node


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _reference(model: onnx.ModelProto) -> onnx.ModelProto:
    """The source model with its duplicated node name changed by hand (onnxruntime rejects it)."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    seen: set[str] = set()
    for i, n in enumerate(ref.graph.node):
        if n.name and n.name in seen:
            n.name = f"dup_{i}"
        seen.add(n.name)
    return ref


def _shared_bias_model() -> onnx.ModelProto:
    """Three convs sharing one zero bias through Identity chains and a Constant, unnamed nodes,
    a duplicated node name, and a channel shuffle whose Reshape shapes are computed."""
    rng = np.random.default_rng(0)
    w = [
        numpy_helper.from_array((rng.standard_normal((8, c, 3, 3)) * 0.2).astype(np.float32), f"onnx::Conv_{i}")
        for i, c in enumerate((3, 8, 8))
    ]
    zero = numpy_helper.from_array(np.zeros(8, np.float32), "onnx::Conv_99")
    nodes = [
        N("Identity", ["onnx::Conv_99"], ["b1"], name="Identity_1"),
        N("Identity", ["b1"], ["b2"]),  # a chain, unnamed
        N("Conv", ["input", "onnx::Conv_0", "onnx::Conv_99"], ["c0"], pads=[1, 1, 1, 1]),  # unnamed
        N("Relu", ["c0"], ["r0"], name="act"),
        N("Conv", ["r0", "onnx::Conv_1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        N("Relu", ["c1"], ["r1"], name="act"),  # duplicated name
        N("Conv", ["r1", "onnx::Conv_2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        N("Shape", ["c2"], ["s"], name="shape"),
        N("Constant", [], ["i0"], name="k0", value=numpy_helper.from_array(np.array([0], np.int64))),
        N("Gather", ["s", "i0"], ["n"], name="gather", axis=0),
        N("Constant", [], ["rest"], name="k1", value=numpy_helper.from_array(np.array([2, 4, 8, 8], np.int64))),
        N("Concat", ["n", "rest"], ["shp"], name="concat", axis=0),
        N("Reshape", ["c2", "shp"], ["v"], name="view"),
        N("Transpose", ["v"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        N("Constant", [], ["back"], name="k2", value=numpy_helper.from_array(np.array([-1, 8, 8, 8], np.int64))),
        N("Reshape", ["t", "back"], ["y"], name="view2"),
    ]
    g = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])],
        [*w, zero],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_prepared_model_computes_the_same_and_is_canonical() -> None:
    src = _shared_bias_model()
    out = prepare.prepare(src)
    ops = [n.op_type for n in out.graph.node]
    assert "Identity" not in ops and "Constant" not in ops
    names = [n.name for n in out.graph.node]
    assert len(set(names)) == len(names) and all(names)
    assert "Conv_2" in names  # unnamed node: <OpType>_<index in the original graph>
    biases = [n.input[2] for n in out.graph.node if n.op_type == "Conv"]
    assert len(set(biases)) == 3  # every layer owns its bias
    x = calibration(3, size=8)
    np.testing.assert_array_equal(_ort(out, x), _ort(_reference(src), x))


def test_batch_fixed_folds_the_shape_arithmetic() -> None:
    out = prepare.prepare(_shared_bias_model(), batch_size=2)
    ops = [n.op_type for n in out.graph.node]
    assert "Shape" not in ops and "Gather" not in ops and "Concat" not in ops
    inits = {t.name for t in out.graph.initializer}
    assert all(n.input[1] in inits for n in out.graph.node if n.op_type == "Reshape")
    x = calibration(2, size=8)
    np.testing.assert_array_equal(_ort(out, x), _ort(_reference(_shared_bias_model()), x))


def test_quantized_shared_bias_gets_one_dequantize_per_layer() -> None:
    q = frontend.quantize(prepare.prepare(_shared_bias_model()), calibration(8, size=8))
    out = prepare.prepare(q)
    producer = {o: n for n in out.graph.node for o in n.output}
    convs = [n for n in out.graph.node if n.op_type == "Conv"]
    for slot in (1, 2):
        deqs = [producer[c.input[slot]] for c in convs]
        assert all(d.op_type == "DequantizeLinear" for d in deqs)
        assert len({d.name for d in deqs}) == 3 and len({d.input[0] for d in deqs}) == 3
    x = calibration(3, size=8)
    np.testing.assert_array_equal(_ort(out, x), _ort(q, x))


def test_a_dequantize_shared_by_two_layers_is_split() -> None:
    """A pre-quantized graph where one DequantizeLinear feeds two convs (as after quantizing a
    shared initializer) gets a private dequantize and initializer per layer."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, (4, 4, 1, 1), dtype=np.uint8), "wq"),
        numpy_helper.from_array(np.array(0.02, np.float32), "ws"),
        numpy_helper.from_array(np.array(128, np.uint8), "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
    ]
    nodes = [
        N("QuantizeLinear", ["input", "xs", "xz"], ["xq"], name="q"),
        N("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq"),
        N("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq"),
        N("Conv", ["xd", "wd"], ["a"], name="conv_a"),
        N("Conv", ["xd", "wd"], ["b"], name="conv_b"),
        N("Add", ["a", "b"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5, 5])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    out = prepare.prepare(m)
    producer = {o: n for n in out.graph.node for o in n.output}
    a, b = (n for n in out.graph.node if n.op_type == "Conv")
    assert producer[a.input[1]].name != producer[b.input[1]].name
    assert producer[a.input[1]].input[0] != producer[b.input[1]].input[0]
    view, weight_to_layer, order = prepare.import_view(out)
    assert sorted(weight_to_layer.values()) == ["conv_a", "conv_b"] and order == ["conv_a", "conv_b"]
    x = calibration(2, size=5, channels=4)
    np.testing.assert_array_equal(_ort(view, x), _ort(m, x))


@pytest.mark.parametrize(("requested", "fixed", "expected"), [(None, None, 1), (8, None, 8), (None, 4, 4), (4, 4, 4)])
def test_resolve_batch(requested: int | None, fixed: int | None, expected: int) -> None:
    m = _shared_bias_model()
    if fixed is not None:
        d = m.graph.input[0].type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = fixed
    assert prepare.resolve_batch(m, requested) == expected


def test_conflicting_batch_is_a_clear_error() -> None:
    m = _shared_bias_model()
    d = m.graph.input[0].type.tensor_type.shape.dim[0]
    d.Clear()
    d.dim_value = 4
    with pytest.raises(ModelError) as info:
        prepare.resolve_batch(m, 2)
    assert "fixed batch of 4" in str(info.value) and "batch_size=4" in str(info.value)
