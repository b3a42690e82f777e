"""Approximate layers that onnxruntime can compute itself, placed back into the host graph.

A layer whose multiplier has a shift form (:mod:`approxtvm.runtime.kernels.lowrank_qconv`: BAM and
other tables affine in the activation's bits) runs as onnxruntime nodes — shifted activation
maps and one ``QLinearConv`` — with the same integers and requantization as our kernels. Put
into the QDQ graph in place of the layer's ``Conv``/``Gemm`` and ``QuantizeLinear``, such layers need
no cut: a model whose approximate layers all have the form runs as one onnxruntime session, like
the exact model (its threads spin, its layouts are planned across layers, no Python between
layers).

The host ops around the layers then run in that one session too, so onnxruntime fuses them the way
it does in the exact model (e.g. a residual ``DequantizeLinear → Add → QuantizeLinear`` becomes one
integer ``QLinearAdd``), where the cut graph can leave such an op in float (its input dequantized
in an earlier segment). The layers' outputs are the same as the kernels'; such host ops may
round differently by one code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from approxtvm.compiler.host_graph import LayerSite
from approxtvm.runtime.executor import LayerProgram, Requantizer
from approxtvm.runtime.kernels.lowrank_qconv import (
    QConvLayer,
    QConvQuant,
    floor_maps_exact,
    qconv_layer,
    qconv_s8_exact,
    shift_form,
)


def fused_layer(prog: LayerProgram, site: LayerSite, prefix: str) -> QConvLayer | None:
    """``prog`` at ``site`` as onnxruntime nodes, or ``None`` where that does not apply: an exact
    multiplier (onnxruntime runs those from the graph itself), signed activations, a grouped conv,
    a layer the graph does not requantize with a per-tensor uint8 ``QuantizeLinear``, no shift form,
    weight maps that do not fit a byte, or a host whose ``QLinearAdd`` does not compute the maps."""
    s = prog.schedule.shape
    q = prog.schedule.quant
    if (
        prog.multiplier.is_exact
        or site.requant is None
        or site.requant[2] != "uint8"
        or q.signed
        or site.input2_name
        or not ((s.op == "conv2d" and s.groups == 1) or s.op == "dense")
    ):
        return None
    form = shift_form(prog.multiplier.table, prog.weight)
    if form is None or not floor_maps_exact(prog.cache.sessions):
        return None
    rq = Requantizer.of(prog, *site.requant)
    quant = QConvQuant(
        input_zero_point=int(q.input_zero_point),
        weight_zero_points=np.broadcast_to(np.asarray(q.weight_zero_points, np.int64).reshape(-1), (s.k,)).copy(),
        bias=np.zeros(s.k, np.int64) if rq.bias is None else rq.bias.reshape(-1).astype(np.int64),
        scale=np.broadcast_to(rq.scale.reshape(-1), (s.k,)).astype(np.float32),
        output_zero_point=int(site.requant[1]),
        output_dtype=str(rq.dtype),
    )
    signed = qconv_s8_exact(prog.cache.sessions, prog.cache.cpu.vnni)
    if s.op == "dense":
        from approxtvm.runtime.kernels.geometry import ConvGeometry

        g = ConvGeometry(s.n, s.c, 1, 1, s.k, 1, 1)
        return qconv_layer(form, prog.weight, g, quant, signed, site.input_name, site.output_name, prefix, dense=True)
    return qconv_layer(form, prog.weight, prog.geometry, quant, signed, site.input_name, site.output_name, prefix)


def fuse_sites(
    proto: onnx.ModelProto,
    sites: Mapping[str, LayerSite],
    layers: Mapping[str, QConvLayer],
    keep: Sequence[LayerSite],
) -> tuple[onnx.ModelProto, list[LayerSite]]:
    """``proto`` with the nodes of each site in ``layers`` replaced by that layer's nodes (placed
    where the site's first node was, so the order stays topological), and the sites in ``keep``
    with their node indices in the new graph."""
    g = proto.graph
    drop = {i for lid in layers for i in sites[lid].node_indices}
    first = {min(sites[lid].node_indices): layers[lid] for lid in layers}
    nodes: list[onnx.NodeProto] = []
    inits = list(g.initializer)
    infos = list(g.value_info)
    index: dict[int, int] = {}
    for i, node in enumerate(g.node):
        layer = first.get(i)
        if layer is not None:
            nodes.extend(layer.nodes)
            inits.extend(layer.initializers)
            infos.extend(layer.value_infos)
        if i in drop:
            continue
        index[i] = len(nodes)
        nodes.append(node)
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits, value_info=infos)
    opsets = [o for o in proto.opset_import if o.domain != "com.microsoft"]
    ms = next((o.version for o in proto.opset_import if o.domain == "com.microsoft"), 1)
    model = helper.make_model(graph, opset_imports=[*opsets, helper.make_opsetid("com.microsoft", ms)])
    model.ir_version = proto.ir_version
    model.functions.extend(proto.functions)
    kept = [dataclasses.replace(s, node_indices=tuple(index[i] for i in s.node_indices)) for s in keep]
    return model, kept
