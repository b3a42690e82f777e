"""A QDQ ONNX graph as a list of steps the fine-tuning model can execute (numpy only, no torch).

The fine-tuned network must compute exactly what ``compile_onnx`` runs: the accelerator layers
(``DequantizeLinear(x_q) → Conv/Gemm ← DequantizeLinear(w_q)``, bias optional) take the
activation *codes* of the ``QuantizeLinear`` before them; everything else runs on the host with
float32 ONNX semantics. This module reads the graph once into :class:`Step` records keyed by
initializer names, so that quantization parameters shared by several nodes (a scale used by a
``QuantizeLinear`` and its ``DequantizeLinear``) stay one trainable parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from approxtvm.errors import ModelError, UnsupportedOperatorError

#: Host operators the fine-tuning model emulates with the runtime's float32 arithmetic.
HOST_OPS = frozenset({"Relu", "Add", "Flatten", "GlobalAveragePool", "MaxPool", "Identity", "Reshape"})


@dataclass(frozen=True)
class LayerStep:
    """One accelerator layer (Conv or Gemm/MatMul on quantized operands).

    Attributes
    ----------
    name
        Layer id (the ONNX node name, as :func:`approxtvm.compiler.frontend.layer_names` gives it).
    op
        ``conv2d`` or ``dense``.
    codes_in
        Value holding the activation codes (the ``QuantizeLinear`` output the layer dequantizes).
    x_scale, x_zero_point
        Initializer names of the activation quantization.
    weight, w_scale, w_zero_point
        Initializer names of the weight codes and their quantization.
    bias, b_scale, b_zero_point
        Initializer names of the int32 bias and its quantization (``None`` without bias).
    out
        Output value (float32).
    strides, dilations
        ``(h, w)`` (conv2d).
    pads
        ``(top, left, bottom, right)`` (conv2d).
    transpose_weight
        The stored weight is (C, K) (``MatMul`` / ``Gemm transB=0``): dense weight = its transpose.
    """

    name: str
    op: str
    codes_in: str
    x_scale: str
    x_zero_point: str
    weight: str
    w_scale: str
    w_zero_point: str
    bias: str | None
    b_scale: str | None
    b_zero_point: str | None
    out: str
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    transpose_weight: bool = False


@dataclass(frozen=True)
class HostStep:
    """A host operator, a ``QuantizeLinear`` or an activation ``DequantizeLinear``.

    Attributes
    ----------
    op
        ONNX op type.
    inputs, outputs
        Value names (initializer inputs such as scales keep their names).
    attrs
        ONNX attributes.
    """

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class QdqGraph:
    """The parsed graph.

    Attributes
    ----------
    proto
        The QDQ model (kept to write the fine-tuned one with the same structure).
    steps
        Layers and host steps in topological order.
    initializers
        Name → array of every initializer.
    input_name, output_names
        Graph input and outputs.
    signed
        int8 operands (``True``) or uint8.
    """

    proto: onnx.ModelProto
    steps: tuple[LayerStep | HostStep, ...]
    initializers: dict[str, np.ndarray]
    input_name: str
    output_names: tuple[str, ...]
    signed: bool

    @property
    def layers(self) -> list[LayerStep]:
        """Accelerator layers in program order."""
        return [s for s in self.steps if isinstance(s, LayerStep)]


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv_geometry(node: onnx.NodeProto) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    a = _attrs(node)
    if int(a.get("group", 1)) != 1:  # type: ignore[call-overload]
        raise ModelError(
            f"layer {node.name}: grouped convolution",
            expected="group = 1 (the accelerator maps only those; grouped convs run on the host in float)",
            found=f"group = {a['group']}",
            fix="fine-tune a model without grouped/depthwise convolutions",
        )
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError(
            f"layer {node.name}: auto_pad is not supported by the fine-tuning model",
            expected="explicit pads",
            found=str(a["auto_pad"]),
            fix="export the model with explicit pads",
        )
    st = tuple(a.get("strides", [1, 1]))  # type: ignore[arg-type]
    di = tuple(a.get("dilations", [1, 1]))  # type: ignore[arg-type]
    p = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[arg-type]
    if len(st) != 2 or len(p) != 4:
        raise ModelError(
            f"layer {node.name}: only 2-D convolutions are offloaded",
            expected="Conv with 2 spatial dims",
            found=f"strides {st}",
            fix="use Conv2d layers",
        )
    return (int(st[0]), int(st[1])), (int(di[0]), int(di[1])), (int(p[0]), int(p[1]), int(p[2]), int(p[3]))


def parse_qdq(model: onnx.ModelProto, layer_ids: dict[str, str]) -> QdqGraph:
    """Read a QDQ model into steps.

    Parameters
    ----------
    model
        A QDQ model (as :func:`approxtvm.compiler.frontend.quantize` writes it).
    layer_ids
        Weight initializer name → layer id (:func:`approxtvm.compiler.frontend.layer_names`).

    Raises
    ------
    UnsupportedOperatorError
        Listing every operator the fine-tuning model cannot emulate bit-exactly.
    """
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    steps: list[LayerStep | HostStep] = []
    unsupported: dict[str, list[str]] = {}
    signed: bool | None = None
    # DQ outputs folded into a layer (weights, biases); other constant DQs stay host steps
    consumed_dq = {i for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") for i in n.input[1:]}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            layer = _layer(node, producers, inits, layer_ids)
            if layer is None:
                unsupported.setdefault(f"{node.op_type} on float operands", []).append(node.name)
                continue
            w_codes = inits[layer.weight]
            node_signed = w_codes.dtype == np.int8
            signed = node_signed if signed is None else signed
            steps.append(layer)
        elif node.op_type == "DequantizeLinear" and node.output[0] in consumed_dq and node.input[0] in inits:
            continue  # weight / bias dequantization: part of its layer
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if len(node.input) < 3:
                unsupported.setdefault(f"{node.op_type} without zero point", []).append(node.name)
                continue
            a = _attrs(node)
            if inits[node.input[1]].size != 1:
                unsupported.setdefault(f"per-channel activation {node.op_type}", []).append(node.name)
                continue
            steps.append(HostStep(node.op_type, tuple(node.input), tuple(node.output), a))
        elif node.op_type in HOST_OPS:
            steps.append(HostStep(node.op_type, tuple(node.input), tuple(node.output), _attrs(node)))
        else:
            unsupported.setdefault(node.op_type, []).append(node.name or "<unnamed>")
    if unsupported:
        listing = ", ".join(f"{op} ({len(n)}× e.g. {n[0]})" for op, n in sorted(unsupported.items()))
        raise UnsupportedOperatorError(
            f"the fine-tuning model cannot emulate {sum(map(len, unsupported.values()))} node(s): {listing}",
            expected=f"quantized Conv/Gemm/MatMul layers and host ops {', '.join(sorted(HOST_OPS))}",
            found=", ".join(sorted(unsupported)),
            fix="simplify the model, or fine-tune it in float with your own tools",
        )
    if not any(isinstance(s, LayerStep) for s in steps):
        raise ModelError(
            "the model has no quantized Conv/Gemm/MatMul layer to fine-tune",
            expected="at least one layer on quantized operands",
            found="none",
            fix="pass a float model with Conv/Gemm layers (it is quantized first)",
        )
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    return QdqGraph(
        proto=model,
        steps=tuple(steps),
        initializers=inits,
        input_name=inputs[0],
        output_names=tuple(o.name for o in model.graph.output),
        signed=bool(signed),
    )


def _dq_of(name: str, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    node = producers.get(name)
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def _layer(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], inits: dict[str, np.ndarray], layer_ids: dict[str, str]
) -> LayerStep | None:
    """The layer view of a Conv/Gemm/MatMul whose operands are dequantized codes, else ``None``."""
    xdq = _dq_of(node.input[0], producers)
    wdq = _dq_of(node.input[1], producers)
    if xdq is None or wdq is None or wdq.input[0] not in inits or len(xdq.input) < 3 or len(wdq.input) < 3:
        return None
    bias = b_scale = b_zp = None
    if len(node.input) > 2 and node.input[2]:
        bdq = _dq_of(node.input[2], producers)
        if bdq is None or bdq.input[0] not in inits or len(bdq.input) < 3:
            return None
        bias, b_scale, b_zp = bdq.input[0], bdq.input[1], bdq.input[2]
    a = _attrs(node)
    name = layer_ids.get(wdq.input[0], node.name)
    common = dict(
        name=name,
        codes_in=xdq.input[0],
        x_scale=xdq.input[1],
        x_zero_point=xdq.input[2],
        weight=wdq.input[0],
        w_scale=wdq.input[1],
        w_zero_point=wdq.input[2],
        bias=bias,
        b_scale=b_scale,
        b_zero_point=b_zp,
        out=node.output[0],
    )
    if node.op_type == "Conv":
        st, di, pads = _conv_geometry(node)
        return LayerStep(op="conv2d", strides=st, dilations=di, pads=pads, **common)  # type: ignore[arg-type]
    if node.op_type == "Gemm":
        if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0 or int(a.get("transA", 0)):  # type: ignore[arg-type]
            return None
        return LayerStep(op="dense", transpose_weight=not int(a.get("transB", 0)), **common)  # type: ignore[arg-type]
    if inits[wdq.input[0]].ndim != 2 or bias is not None:
        return None
    return LayerStep(op="dense", transpose_weight=True, **common)  # type: ignore[arg-type]
