"""The shipped trained digits models: well-formed, BN-free, and as accurate as models.json says."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from approxtvm.models import datasets, zoo
from approxtvm.models._graph import from_arrays

ALLOWED_OPS = {"Conv", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm", "MatMul", "Reshape"}
GRAPH_FNS = {"digits_cnn": zoo.digits_cnn_graph, "digits_resnet": zoo.digits_resnet_graph}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def test_set() -> datasets.Dataset:
    return datasets.load_digits("test")


@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_file_is_well_formed(name: str) -> None:
    path = zoo.model_path(name)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    info = zoo.model_info(name)
    assert info["file"] == path.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]
    assert model.ir_version <= 9
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert {"conv1", "fc"} <= set(names)
    for node in model.graph.node:
        if node.op_type == "Conv":
            assert len(node.input) == 3, f"{node.name} has no bias"
    (inp,) = model.graph.input
    assert inp.name == info["input_name"] == "input"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == info["input_shape"] == ["N", 1, 8, 8]
    (out,) = model.graph.output
    assert out.name == info["output_name"] == "logits"


def test_resnet_has_identity_and_projection_shortcuts() -> None:
    model = zoo.get_model("digits_resnet")
    names = [n.name for n in model.graph.node]
    assert "layer2.0.downsample.0" in names
    assert "layer1.0.downsample.0" not in names and "layer2.1.downsample.0" not in names
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 3
    down = next(n for n in model.graph.node if n.name == "layer2.0.downsample.0")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in down.attribute}
    assert attrs["kernel_shape"] == [1, 1] and attrs["strides"] == [2, 2]


@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_accuracy_matches_manifest(name: str, test_set: datasets.Dataset) -> None:
    info = zoo.model_info(name)
    logits = _session(zoo.get_model(name)).run(["logits"], {"input": test_set.x})[0]
    assert logits.shape == (360, 10)
    correct = int(np.sum(np.argmax(logits, axis=1) == test_set.y))
    assert info["test_total"] == len(test_set) == 360
    assert correct == info["test_correct"]
    assert correct / len(test_set) == pytest.approx(info["test_accuracy"], abs=1e-6)
    assert correct / len(test_set) >= 0.95


@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_batch_dimension_is_dynamic(name: str, test_set: datasets.Dataset) -> None:
    sess = _session(zoo.get_model(name))
    full = sess.run(["logits"], {"input": test_set.x[:7]})[0]
    one = sess.run(["logits"], {"input": test_set.x[3:4]})[0]
    assert full.shape == (7, 10) and one.shape == (1, 10)
    np.testing.assert_allclose(one[0], full[3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_topology_equals_package_builder(name: str) -> None:
    """The file is exactly what the package's topology builder makes from its weights."""
    model = zoo.get_model(name)
    rebuilt = GRAPH_FNS[name](from_arrays(zoo.initializer_arrays(model)))
    assert rebuilt.graph.SerializeToString() == model.graph.SerializeToString()


def test_split_matches_manifest() -> None:
    split = zoo.manifest()["datasets"]["digits"]["split"]
    assert split["seed"] == datasets.DIGITS_SPLIT_SEED
    assert split["test_indices_sha256"] == datasets.digits_split_fingerprint()
    train, test = datasets.digits_split_indices("train"), datasets.digits_split_indices("test")
    assert (len(train), len(test)) == (split["train_size"], split["test_size"]) == (1437, 360)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted([*train.tolist(), *test.tolist()]) == list(range(1797))


def test_runtime_package_does_not_import_torch() -> None:
    code = (
        "import sys, approxtvm.models as m\n"
        "m.get_model('digits_cnn'); m.load_digits('test'); m.resnet8()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.tvm
@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_imports_into_relax(name: str) -> None:
    pytest.importorskip("tvm")
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(zoo.get_model(name), shape_dict={"input": [1, 1, 8, 8]}, keep_params_in_input=False)
    assert "main" in [gv.name_hint for gv in mod.get_global_vars()]
