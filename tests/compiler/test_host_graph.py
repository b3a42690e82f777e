"""Host side of a QDQ graph: layer location, MAC counting, segmentation (checked against analytic
MAC counts and against onnxruntime running the unsplit graph)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler import frontend
from approxtvm.compiler.host_graph import LayerSite, Segment, layer_sites, locate_layers, mac_nodes, split_graph
from approxtvm.errors import ModelError


def mixed_model(seed: int = 0) -> onnx.ModelProto:
    """conv1 3→8 (3×3, no pad) → Relu → depthwise 3×3 (pad 1) → Relu → GAP → Flatten → MatMul 8→5.

    The depthwise conv stays on the host (groups = 8); conv1 and the MatMul are offloaded.
    """
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    n = helper.make_node
    nodes = [
        n("Conv", ["input", "w1", "b1"], ["c1"], name="conv1"),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("Conv", ["r1", "wd", "bd"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"], name="relu2"),
        n("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("MatMul", ["f", "wm"], ["logits"], name="fc"),
    ]
    inits = [
        init("w1", (8, 3, 3, 3), 0.3),
        init("b1", (8,), 0.1),
        init("wd", (8, 1, 3, 3), 0.3),
        init("bd", (8,), 0.1),
        init("wm", (8, 5), 0.4),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def qdq() -> onnx.ModelProto:
    x = np.random.default_rng(1).standard_normal((16, 3, 12, 12)).astype(np.float32)
    return frontend.quantize(mixed_model(), x)


def _weights(q: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Layer id → uint8 weight codes as the codegen lays them out (OIHW / (K, C))."""
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    w1 = next(v for k, v in inits.items() if v.shape == (8, 3, 3, 3) and v.dtype == np.uint8)
    wm = next(v for k, v in inits.items() if v.shape == (8, 5) and v.dtype == np.uint8)
    return {"conv1": w1, "fc": np.ascontiguousarray(wm.T)}


def test_mac_counts_are_analytic(qdq: onnx.ModelProto) -> None:
    located = locate_layers(qdq, _weights(qdq))
    macs = {m.node: m for m in mac_nodes(qdq, located, batch_size=2)}
    assert macs["conv1"].macs == 2 * 8 * 10 * 10 * 3 * 3 * 3 and macs["conv1"].layer_id == "conv1"
    assert macs["dw"].macs == 2 * 8 * 10 * 10 * 1 * 3 * 3 and macs["dw"].layer_id is None
    assert "groups = 8" in macs["dw"].reason
    assert macs["fc"].macs == 2 * 8 * 5 and macs["fc"].layer_id == "fc"


def test_layers_are_found_by_weights_when_names_differ(qdq: onnx.ModelProto) -> None:
    w = _weights(qdq)
    located = locate_layers(qdq, {"layer_0": w["conv1"], "layer_1": w["fc"]})
    names = {lid: qdq.graph.node[i].name for lid, i in located.items()}
    assert names == {"layer_0": "conv1", "layer_1": "fc"}
    assert locate_layers(qdq, {"nope": np.zeros((2, 2), np.uint8)}) == {}
    with pytest.raises(ModelError, match="no node"):
        layer_sites(qdq, {}, [("nope", False)])


def test_split_graph_runs_like_the_whole_graph(qdq: onnx.ModelProto) -> None:
    """Segments around both layers, with the layers' float outputs computed by onnxruntime itself
    (a sub-model of just the layer's nodes), reproduce the whole graph bit for bit."""
    located = locate_layers(qdq, _weights(qdq))
    sites = layer_sites(qdq, located, [("conv1", True), ("fc", False)])
    steps = split_graph(qdq, sites.values())
    kinds = [type(s).__name__ for s in steps]
    assert kinds.count("LayerSite") == 2 and kinds.count("Segment") <= 3
    x = np.random.default_rng(5).standard_normal((2, 3, 12, 12)).astype(np.float32)
    whole = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"])
    # reference per-site outputs: the original graph with the site's tensors exposed as outputs
    exposed = onnx.ModelProto()
    exposed.CopyFrom(qdq)
    for s in sites.values():
        exposed.graph.output.append(helper.make_tensor_value_info(s.output_name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep float conv semantics
    ref_sess = ort.InferenceSession(exposed.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in exposed.graph.output]
    ref = dict(zip(names, ref_sess.run(None, {"input": x}), strict=True))
    env = {"input": x}
    for step in steps:
        if isinstance(step, LayerSite):
            assert env[step.input_name].dtype == np.uint8  # the layer reads 8-bit codes
            env[step.output_name] = ref[step.output_name]
        else:
            assert isinstance(step, Segment)
            sess = ort.InferenceSession(step.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            env.update(zip(step.outputs, sess.run(list(step.outputs), {n: env[n] for n in step.inputs}), strict=True))
    full = ort.InferenceSession(qdq.SerializeToString(), so, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(env["logits"], full.run(None, {"input": x})[0])
    assert whole.run(None, {"input": x})[0].shape == (2, 5)
    # the removed layers' weight dequantizes are gone from every segment
    seg_ops = [n.op_type for s in steps if isinstance(s, Segment) for n in s.model.graph.node]
    assert "MatMul" not in seg_ops and seg_ops.count("Conv") == 1  # only the depthwise conv is left
