"""Model zoo: ONNX builders for standard ResNets, the shipped trained digits models, a registry.

Builders (``onnx.helper`` only, no torch):

* :func:`resnet18`, :func:`resnet50` — torchvision topology at 3×224×224, 1000 classes: 7×7/2
  stem, 3×3/2 max pool (pad 1), basic (18) or bottleneck (50, stride on the 3×3, "v1.5") blocks,
  strided 1×1 projection shortcuts (``layerX.0.downsample.0``), global average pool, Flatten,
  Gemm. Layer shapes equal those of the ZigZag yardstick generator (``make_resnet_onnx.py``).
* :func:`resnet8`, :func:`resnet20` — CIFAR-style ResNets at 3×32×32, 10 classes: 3×3 stem (16
  channels), three stages of 16/32/64 channels with 1/3 basic blocks each, 1×1 projection
  shortcuts at the stage changes ("option B"), global average pool, Gemm.
* :func:`digits_cnn_graph`, :func:`digits_resnet_graph` — the topologies of the shipped trained
  models; ``scripts/train_models.py`` calls them with trained, BN-folded weights.

Every Conv has a bias (batch norm folded), so the graphs contain only Conv, Relu, Add, MaxPool,
GlobalAveragePool, Flatten and Gemm. Random weights are He-normal, seeded; the last conv of every
residual branch is scaled by ``1/sqrt(blocks)`` (Fixup-style) so activations stay O(1) through
the network without batch norm.

Registry: :func:`get_model`, :func:`model_path`, :func:`list_models`, :func:`model_info`,
:func:`manifest`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from approxtvm.errors import ModelError
from approxtvm.models._graph import Dim, GraphBuilder, WeightFn, he_init

_HERE = Path(__file__).resolve().parent

SHIPPED_MODELS: tuple[str, ...] = ("digits_cnn", "digits_resnet")
"""Trained models shipped as ONNX files inside the package."""

BUILT_MODELS: tuple[str, ...] = ("resnet8", "resnet20", "resnet18", "resnet50")
"""Models built on demand with random (He-init, seeded) weights."""


# ---------------------------------------------------------------------------------------------
# Topologies
# ---------------------------------------------------------------------------------------------


def _basic_block(
    g: GraphBuilder,
    x: str,
    name: str,
    cin: int,
    cout: int,
    stride: int,
    branch_gain: float,
) -> str:
    y = g.conv(x, f"{name}.conv1", cin, cout, 3, stride, 1)
    y = g.relu(y, f"{name}.relu1")
    y = g.conv(y, f"{name}.conv2", cout, cout, 3, 1, 1, gain=branch_gain)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = g.conv(x, f"{name}.downsample.0", cin, cout, 1, stride, 0)
    y = g.add(y, shortcut, f"{name}.add")
    return g.relu(y, f"{name}.relu2")


def _bottleneck(
    g: GraphBuilder,
    x: str,
    name: str,
    cin: int,
    width: int,
    stride: int,
    branch_gain: float,
) -> str:
    cout = 4 * width
    y = g.conv(x, f"{name}.conv1", cin, width, 1, 1, 0)
    y = g.relu(y, f"{name}.relu1")
    y = g.conv(y, f"{name}.conv2", width, width, 3, stride, 1)
    y = g.relu(y, f"{name}.relu2")
    y = g.conv(y, f"{name}.conv3", width, cout, 1, 1, 0, gain=branch_gain)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = g.conv(x, f"{name}.downsample.0", cin, cout, 1, stride, 0)
    y = g.add(y, shortcut, f"{name}.add")
    return g.relu(y, f"{name}.relu3")


def _imagenet_resnet(depth: int, batch: Dim, weights: WeightFn, num_classes: int = 1000) -> onnx.ModelProto:
    if depth == 18:
        blocks, expansion = (2, 2, 2, 2), 1
    elif depth == 50:
        blocks, expansion = (3, 4, 6, 3), 4
    else:  # pragma: no cover - internal
        raise ValueError(depth)
    branch_gain = 1.0 / math.sqrt(sum(blocks))
    g = GraphBuilder(f"resnet{depth}", [batch, 3, 224, 224], weights)
    y = g.conv(g.input, "conv1", 3, 64, 7, 2, 3)
    y = g.relu(y, "relu")
    y = g.maxpool(y, "maxpool", 3, 2, 1)
    cin = 64
    for stage, (n_blocks, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        for b in range(n_blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            name = f"layer{stage + 1}.{b}"
            if depth == 18:
                y = _basic_block(g, y, name, cin, width, stride, branch_gain)
            else:
                y = _bottleneck(g, y, name, cin, width, stride, branch_gain)
            cin = width * expansion
    y = g.global_avgpool(y)
    y = g.flatten(y)
    y = g.gemm(y, "fc", cin, num_classes, out="logits")
    return g.finish(
        y,
        [batch, num_classes],
        doc=f"ResNet-{depth} (torchvision topology, BN folded), random He-init weights",
    )


def _cifar_resnet(depth: int, batch: Dim, weights: WeightFn, num_classes: int = 10) -> onnx.ModelProto:
    if (depth - 2) % 6 != 0:  # pragma: no cover - internal
        raise ValueError(depth)
    n = (depth - 2) // 6
    branch_gain = 1.0 / math.sqrt(3 * n)
    g = GraphBuilder(f"resnet{depth}", [batch, 3, 32, 32], weights)
    y = g.conv(g.input, "conv1", 3, 16, 3, 1, 1)
    y = g.relu(y, "relu")
    cin = 16
    for stage, width in enumerate((16, 32, 64)):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            y = _basic_block(g, y, f"layer{stage + 1}.{b}", cin, width, stride, branch_gain)
            cin = width
    y = g.global_avgpool(y)
    y = g.flatten(y)
    y = g.gemm(y, "fc", cin, num_classes, out="logits")
    return g.finish(
        y,
        [batch, num_classes],
        doc=f"CIFAR-style ResNet-{depth} (1x1 projection shortcuts, BN folded), random He-init weights",
    )


def digits_cnn_graph(weights: WeightFn, batch: Dim = "N") -> onnx.ModelProto:
    """Topology of the shipped ``digits_cnn`` model (input N×1×8×8, 10 logits).

    ``conv1`` 3×3 1→16 pad 1, ReLU; ``conv2`` 3×3 16→32 stride 2 pad 1, ReLU; ``conv3`` 3×3
    32→32 pad 1, ReLU; Flatten (32·4·4 = 512); ``fc`` Gemm 512→10.
    """
    g = GraphBuilder("digits_cnn", [batch, 1, 8, 8], weights)
    y = g.relu(g.conv(g.input, "conv1", 1, 16, 3, 1, 1), "relu1")
    y = g.relu(g.conv(y, "conv2", 16, 32, 3, 2, 1), "relu2")
    y = g.relu(g.conv(y, "conv3", 32, 32, 3, 1, 1), "relu3")
    y = g.flatten(y)
    y = g.gemm(y, "fc", 32 * 4 * 4, 10, out="logits")
    return g.finish(y, [batch, 10], doc="Small CNN trained on scikit-learn 8x8 digits (BN-free)")


def digits_resnet_graph(weights: WeightFn, batch: Dim = "N") -> onnx.ModelProto:
    """Topology of the shipped ``digits_resnet`` model (input N×1×8×8, 10 logits).

    ``conv1`` 3×3 1→16 pad 1 + ReLU; ``layer1.0`` basic block 16→16 (identity shortcut);
    ``layer2.0`` basic block 16→32 stride 2 with 1×1 stride-2 projection ``layer2.0.downsample.0``;
    ``layer2.1`` basic block 32→32 (identity); global average pool; Flatten; ``fc`` Gemm 32→10.
    """
    g = GraphBuilder("digits_resnet", [batch, 1, 8, 8], weights)
    y = g.relu(g.conv(g.input, "conv1", 1, 16, 3, 1, 1), "relu")
    y = _basic_block(g, y, "layer1.0", 16, 16, 1, 1.0)
    y = _basic_block(g, y, "layer2.0", 16, 32, 2, 1.0)
    y = _basic_block(g, y, "layer2.1", 32, 32, 1, 1.0)
    y = g.global_avgpool(y)
    y = g.flatten(y)
    y = g.gemm(y, "fc", 32, 10, out="logits")
    return g.finish(y, [batch, 10], doc="Small ResNet trained on scikit-learn 8x8 digits (BN folded)")


# ---------------------------------------------------------------------------------------------
# Public builders
# ---------------------------------------------------------------------------------------------


def resnet18(batch: Dim = 1, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 (torchvision topology, BN folded) at 3×224×224 with random weights.

    Parameters
    ----------
    batch
        Batch size, or a string for a symbolic (dynamic) batch dimension.
    seed
        Seed of the He-normal weight initialisation.

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (batch×3×224×224), output ``logits`` (batch×1000); 20 Conv + 1 Gemm,
        ≈1.82 G MACs per image.
    """
    return _imagenet_resnet(18, batch, he_init(seed))


def resnet50(batch: Dim = 1, seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 (torchvision v1.5 topology, BN folded) at 3×224×224 with random weights.

    Parameters
    ----------
    batch
        Batch size, or a string for a symbolic (dynamic) batch dimension.
    seed
        Seed of the He-normal weight initialisation.

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (batch×3×224×224), output ``logits`` (batch×1000); 53 Conv + 1 Gemm,
        ≈4.09 G MACs per image, ~100 MB of float32 weights.
    """
    return _imagenet_resnet(50, batch, he_init(seed))


def resnet8(batch: Dim = 1, seed: int = 0) -> onnx.ModelProto:
    """CIFAR-style ResNet-8 at 3×32×32, 10 classes, random weights (9 Conv + 1 Gemm).

    Parameters
    ----------
    batch
        Batch size, or a string for a symbolic (dynamic) batch dimension.
    seed
        Seed of the He-normal weight initialisation.
    """
    return _cifar_resnet(8, batch, he_init(seed))


def resnet20(batch: Dim = 1, seed: int = 0) -> onnx.ModelProto:
    """CIFAR-style ResNet-20 at 3×32×32, 10 classes, random weights (21 Conv + 1 Gemm).

    Parameters
    ----------
    batch
        Batch size, or a string for a symbolic (dynamic) batch dimension.
    seed
        Seed of the He-normal weight initialisation.
    """
    return _cifar_resnet(20, batch, he_init(seed))


_BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet8": resnet8,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def list_models() -> tuple[str, ...]:
    """Names accepted by :func:`get_model` and :func:`model_path`."""
    return SHIPPED_MODELS + BUILT_MODELS


def _unknown(name: str) -> ModelError:
    return ModelError(
        f"unknown model name {name!r}",
        expected=f"one of {', '.join(list_models())}",
        found=repr(name),
        fix="pick a listed name, or pass the path of your own .onnx file",
    )


@cache
def _manifest_cached() -> dict[str, Any]:
    path = _HERE / "models.json"
    if not path.is_file():
        raise ModelError(
            f"model manifest {path} is missing",
            expected="models.json installed next to approxtvm/models/zoo.py",
            found="no file",
            fix="reinstall approxtvm, or regenerate with scripts/train_models.py",
        )
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def manifest() -> dict[str, Any]:
    """The whole ``models.json`` manifest (datasets, split, per-model entries), as a fresh copy."""
    return json.loads(json.dumps(_manifest_cached()))


def model_info(name: str) -> dict[str, Any]:
    """Manifest entry of a shipped trained model (from ``models.json``).

    Keys include ``file``, ``input_name``, ``input_shape``, ``output_name``, ``dataset``,
    ``split`` (seed, sizes, test-index hash), ``test_accuracy``, ``test_correct``, ``test_total``
    (measured with onnxruntime on the float model) and ``training`` (optimiser settings).
    """
    if name not in SHIPPED_MODELS:
        if name in BUILT_MODELS:
            raise ModelError(
                f"model {name!r} has no manifest entry",
                expected=f"a shipped trained model ({', '.join(SHIPPED_MODELS)})",
                found=f"{name!r}, a builder with random weights",
                fix=f"call approxtvm.models.zoo.{name}() to build it",
            )
        raise _unknown(name)
    entry: dict[str, Any] = manifest()["models"][name]
    return entry


def _default_cache_dir() -> Path:
    env = os.environ.get("APPROXTVM_CACHE")
    if env:
        return Path(env) / "models"
    return Path.home() / ".cache" / "approxtvm" / "models"


def model_path(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of an ONNX file for ``name``.

    Shipped models return the packaged file. Built models (random weights, batch 1, seed 0) are
    written once to ``cache_dir`` (default ``$APPROXTVM_CACHE/models`` or
    ``~/.cache/approxtvm/models``) and reused afterwards.

    Raises
    ------
    ModelError
        Unknown name, or a shipped file missing from the installation.
    """
    if name in SHIPPED_MODELS:
        path = _HERE / f"{name}.onnx"
        if not path.is_file():
            raise ModelError(
                f"shipped model file {path} is missing",
                expected=f"{name}.onnx installed as package data",
                found="no file",
                fix="reinstall approxtvm (package data models/*.onnx), or run scripts/train_models.py",
            )
        return path
    if name in _BUILDERS:
        directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        path = directory / f"{name}_b1_s0.onnx"
        if not path.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            onnx.save(_BUILDERS[name](), tmp)
            tmp.replace(path)
        return path
    raise _unknown(name)


def get_model(name: str, **kwargs: Any) -> onnx.ModelProto:
    """Load a shipped model or build a zoo model by name.

    Parameters
    ----------
    name
        One of :func:`list_models`.
    **kwargs
        For built models only: ``batch`` and ``seed``, passed to the builder.

    Raises
    ------
    ModelError
        Unknown name (the message lists the valid ones), or keyword arguments for a shipped model.
    """
    if name in SHIPPED_MODELS:
        if kwargs:
            raise ModelError(
                f"shipped model {name!r} takes no builder arguments",
                expected="get_model(name) with no keyword arguments",
                found=f"{sorted(kwargs)}",
                fix="drop the arguments (the shipped models have a dynamic batch dimension 'N')",
            )
        return onnx.load(str(model_path(name)))
    if name in _BUILDERS:
        return _BUILDERS[name](**kwargs)
    raise _unknown(name)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _input_shape(model: onnx.ModelProto) -> list[int | str]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(
            f"model {model.graph.name!r} has {len(inputs)} data inputs",
            expected="exactly one graph input",
            found=", ".join(i.name for i in inputs) or "none",
            fix="pass a single-input model",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def calibration_data(model: onnx.ModelProto | str, n: int = 8, seed: int = 0) -> np.ndarray:
    """Random float32 inputs for a model, e.g. for quantisation calibration of zoo models.

    The batch dimension (first axis) is replaced by ``n``; the other dimensions must be fixed.
    Digits models (graph name ``digits_*``) get uniform values in [0, 1) — their input range
    (pixel / 16); the others get standard-normal values (mean/std-normalised images). For real
    calibration data of the digits models use ``datasets.load_digits("train").x``.

    Parameters
    ----------
    model
        A model, or a name accepted by :func:`get_model`.
    n
        Number of samples.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (n, *input_shape[1:]).
    """
    if isinstance(model, str):
        model = get_model(model)
    shape = _input_shape(model)
    rest = shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in rest):
        raise ModelError(
            f"model {model.graph.name!r} has a symbolic non-batch input dimension",
            expected="fixed sizes after the batch dimension",
            found=str(shape),
            fix="fix the input shape of the model (e.g. onnx.tools.update_model_dims)",
        )
    full = (n, *(int(d) for d in rest))
    rng = np.random.default_rng(seed)
    if model.graph.name.startswith("digits"):
        return rng.random(full, dtype=np.float32)
    return rng.standard_normal(full, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ComputeLayer:
    """Shape and work of one Conv or Gemm node (per image, i.e. batch 1).

    Attributes
    ----------
    name
        ONNX node name.
    op
        ``"Conv"`` or ``"Gemm"``.
    out_channels, in_channels, out_rows, out_cols, kernel_rows, kernel_cols
        K, C, OY, OX, FY, FX (Gemm: OY = OX = FY = FX = 1).
    stride
        Conv stride (1 for Gemm).
    macs_per_image
        Multiply-accumulates for one image.
    weight_count
        Number of weights (biases excluded).
    """

    name: str
    op: str
    out_channels: int
    in_channels: int
    out_rows: int
    out_cols: int
    kernel_rows: int
    kernel_cols: int
    stride: int
    macs_per_image: int
    weight_count: int


def compute_layers(model: onnx.ModelProto) -> list[ComputeLayer]:
    """Conv and Gemm layers of a (shape-inferable) model, in graph order.

    Raises
    ------
    ModelError
        A Conv/Gemm whose weights are not initializers or whose output shape cannot be inferred.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    layers: list[ComputeLayer] = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w = weights.get(node.input[1])
        out = shapes.get(node.output[0])
        if w is None or out is None:
            raise ModelError(
                f"layer {node.name!r}: cannot read its weight or output shape",
                expected="weights stored as initializers and an inferable output shape",
                found=f"weight {node.input[1]!r}: {w}, output {node.output[0]!r}: {out}",
                fix="store weights as initializers (onnx.save with the weights embedded)",
            )
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            k, c, fy, fx = w
            oy, ox = out[2], out[3]
            stride = int(attrs.get("strides", [1])[0])
            group = int(attrs.get("group", 1))
            layers.append(
                ComputeLayer(
                    node.name,
                    "Conv",
                    k,
                    c * group,
                    oy,
                    ox,
                    fy,
                    fx,
                    stride,
                    k * c * oy * ox * fy * fx,
                    int(np.prod(w)),
                )
            )
        else:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            k, c = (w[0], w[1]) if attrs.get("transB", 0) else (w[1], w[0])
            layers.append(ComputeLayer(node.name, "Gemm", k, c, 1, 1, 1, 1, 1, k * c, k * c))
    return layers


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """All initializers of a model as numpy arrays, by name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
