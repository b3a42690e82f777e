"""ResNet builders: topology, layer shapes vs the ZigZag yardstick generator, MACs, registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from approxtvm.errors import ModelError
from approxtvm.models import zoo

# Copy of /work/shared/zigzag-reference/workloads/layer_shapes.json, written by the yardstick's
# make_resnet_onnx.py (ZigZag's ResNet-18/50 workloads: name, K, C, OY, OX, FY, FX, MACs per layer).
YARDSTICK = json.loads((Path(__file__).parent / "data" / "zigzag_layer_shapes.json").read_text())

ALLOWED_OPS = {"Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["logits"], {"input": x})[0])


@pytest.fixture(scope="module")
def built() -> dict[str, onnx.ModelProto]:
    return {name: zoo.get_model(name) for name in zoo.BUILT_MODELS}


@pytest.mark.parametrize(
    ("name", "n_conv", "in_shape", "classes"),
    [
        ("resnet8", 9, (3, 32, 32), 10),
        ("resnet20", 21, (3, 32, 32), 10),
        ("resnet18", 20, (3, 224, 224), 1000),
        ("resnet50", 53, (3, 224, 224), 1000),
    ],
)
def test_topology_and_output(
    built: dict[str, onnx.ModelProto],
    name: str,
    n_conv: int,
    in_shape: tuple[int, ...],
    classes: int,
) -> None:
    model = built[name]
    onnx.checker.check_model(model)
    assert model.ir_version <= 9
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = [n.op_type for n in model.graph.node]
    assert set(ops) <= ALLOWED_OPS
    assert ops.count("Conv") == n_conv and ops.count("Gemm") == 1
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names)
    assert names[0] == "conv1" and names[-1] == "fc"
    assert all(len(n.input) == 3 for n in model.graph.node if n.op_type in ("Conv", "Gemm"))
    x = zoo.calibration_data(model, n=1, seed=0)
    assert x.shape == (1, *in_shape) and x.dtype == np.float32
    y = _run(model, x)
    assert y.shape == (1, classes)
    assert np.all(np.isfinite(y))
    assert 0.1 < float(y.std()) < 100.0  # Fixup-style scaling keeps activations O(1) without BN


@pytest.mark.parametrize(("name", "gmacs"), [("resnet18", 1.82), ("resnet50", 4.09)])
def test_layer_shapes_match_yardstick(built: dict[str, onnx.ModelProto], name: str, gmacs: float) -> None:
    ours = zoo.compute_layers(built[name])
    ref = YARDSTICK[name]["layers"]
    assert len(ours) == len(ref) == YARDSTICK[name]["conv_gemm_layers"]
    for layer, r in zip(ours, ref, strict=True):
        # the yardstick names the projection conv "layerX.0.downsample" (torchvision: ".downsample.0")
        assert layer.name.removesuffix(".0") == r["name"] or layer.name == r["name"]
        got = (
            layer.out_channels,
            layer.in_channels,
            layer.out_rows,
            layer.out_cols,
            layer.kernel_rows,
            layer.kernel_cols,
        )
        assert got == (r["K"], r["C"], r["OY"], r["OX"], r["FY"], r["FX"]), layer.name
        assert layer.macs_per_image == r["macs"]
        assert layer.weight_count == r["weights"]
    total = sum(layer.macs_per_image for layer in ours)
    assert total == YARDSTICK[name]["total_macs"]
    assert total / 1e9 == pytest.approx(gmacs, abs=0.01)


def test_bottleneck_stride_on_3x3(built: dict[str, onnx.ModelProto]) -> None:
    layers = {layer.name: layer for layer in zoo.compute_layers(built["resnet50"])}
    assert layers["layer2.0.conv1"].stride == 1
    assert layers["layer2.0.conv2"].stride == 2
    assert layers["layer2.0.downsample.0"].stride == 2
    assert layers["layer1.0.downsample.0"].stride == 1  # 64 -> 256 projection without stride


def test_seeded_and_batchable() -> None:
    a, b, c = zoo.resnet8(seed=0), zoo.resnet8(seed=0), zoo.resnet8(seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()
    assert _run(zoo.resnet20(batch=2), zoo.calibration_data("resnet20", n=2)).shape == (2, 10)
    dyn = zoo.resnet8(batch="N")
    assert _run(dyn, zoo.calibration_data(dyn, n=3)).shape == (3, 10)


def test_calibration_data() -> None:
    x1 = zoo.calibration_data("resnet8", n=4, seed=3)
    x2 = zoo.calibration_data("resnet8", n=4, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, zoo.calibration_data("resnet8", n=4, seed=4))
    d = zoo.calibration_data("digits_cnn", n=5)
    assert d.shape == (5, 1, 8, 8) and d.min() >= 0.0 and d.max() < 1.0


def test_calibration_data_needs_fixed_sample_shape() -> None:
    model = zoo.resnet8()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(ModelError, match="symbolic"):
        zoo.calibration_data(model, n=1)


def test_registry_names_and_errors(tmp_path: Path) -> None:
    expected = {"digits_cnn", "digits_resnet", "resnet8", "resnet20", "resnet18", "resnet50"}
    assert set(zoo.list_models()) == expected
    with pytest.raises(ModelError) as exc:
        zoo.get_model("resnet19")
    for name in zoo.list_models():
        assert name in str(exc.value)
    with pytest.raises(ModelError, match="resnet19"):
        zoo.model_path("resnet19")
    with pytest.raises(ModelError, match="no builder arguments"):
        zoo.get_model("digits_cnn", batch=2)
    with pytest.raises(ModelError, match="builder"):
        zoo.model_info("resnet18")
    assert zoo.model_path("digits_cnn").name == "digits_cnn.onnx"
    path = zoo.model_path("resnet8", cache_dir=tmp_path)
    assert path.parent == tmp_path and path.is_file()
    assert onnx.load(str(path)).SerializeToString() == zoo.resnet8().SerializeToString()
    mtime = path.stat().st_mtime_ns
    assert zoo.model_path("resnet8", cache_dir=tmp_path) == path and path.stat().st_mtime_ns == mtime
    assert zoo.get_model("resnet8", batch=4).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_builder_rejects_wrong_weights() -> None:
    from approxtvm.models._graph import from_arrays

    arrays = zoo.initializer_arrays(zoo.get_model("digits_cnn"))
    with pytest.raises(ModelError, match=r"conv1\.weight"):
        zoo.digits_resnet_graph(from_arrays({k: v for k, v in arrays.items() if k != "conv1.weight"}))
    arrays["conv3.weight"] = arrays["conv3.weight"][:, :16]
    with pytest.raises(ModelError, match="wrong shape"):
        zoo.digits_cnn_graph(from_arrays(arrays))
