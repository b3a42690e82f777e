"""The host side of a QDQ ONNX graph: where each offloaded layer sits, which MACs stay on the host,
and the graph cut into onnxruntime segments around the layers our kernels execute.

An offloaded layer is, in ONNX terms, ``DequantizeLinear(x_q) → Conv/Gemm/MatMul(+bias Add)``: it
reads the quantized activation ``x_q`` and produces the float tensor the next ``QuantizeLinear``
reads (the same value :func:`approxtvm.runtime.executor.to_float` returns). Cutting the graph at
those two tensors leaves host segments that onnxruntime runs with its own arithmetic, so host ops
(pooling, softmax, LayerNorm, GELU, residual adds, depthwise convs...) follow onnxruntime exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from approxtvm.compiler.frontend import LAYER_OPS, layer_names
from approxtvm.errors import ModelError

#: ONNX ops whose multiply-accumulates count as layer MACs (covered by the accelerator or not).
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True, slots=True)
class LayerSite:
    """Where an offloaded layer sits in the ONNX graph.

    Attributes
    ----------
    layer_id
        The layer id (the schedule's).
    input_name
        Tensor of quantized activation codes the layer reads (input of its DequantizeLinear).
    output_name
        Float tensor the layer produces (the Conv/Gemm output, or its bias Add's for MatMul).
    node_indices
        Graph nodes the layer replaces (the Conv/Gemm/MatMul, its bias Add, its QuantizeLinear).
    requant
        ``(y_scale, y_zero_point, dtype)`` when the layer's only reader is a per-tensor
        ``QuantizeLinear``: the site then produces that node's 8-bit output, requantized the way
        onnxruntime's fused integer kernels do; ``None``: the site produces the float result.
    input2_name
        For an activation × activation MatMul, the codes of its second operand (input of the
        second DequantizeLinear); empty otherwise.
    """

    layer_id: str
    input_name: str
    output_name: str
    node_indices: tuple[int, ...]
    requant: tuple[float, int, str] | None = None
    input2_name: str = ""


@dataclass(frozen=True, slots=True)
class HostMacs:
    """A MAC-bearing ONNX node and whether the accelerator covers it.

    Attributes
    ----------
    node
        ONNX node name (``<op>_<index>`` when unnamed).
    op
        ONNX op type.
    macs
        Multiply-accumulates per batch of the compiled size (``None`` if a shape is unknown).
    layer_id
        The offloaded layer it belongs to, or ``None`` when it runs on the host.
    reason
        Why it stays on the host (empty when offloaded).
    weight_elements
        Elements of its constant weight initializer (0 when both operands are activations).
    """

    node: str
    op: str
    macs: int | None
    layer_id: str | None
    reason: str = ""
    weight_elements: int = 0


@dataclass(frozen=True)
class Segment:
    """A run of host nodes executed as one onnxruntime model.

    Attributes
    ----------
    model
        The sub-model.
    inputs, outputs
        Tensor names it reads / produces (names of the original graph).
    """

    model: onnx.ModelProto
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type.lower()}_{index}"


def _producers(graph: onnx.GraphProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    return {o: (i, n) for i, n in enumerate(graph.node) for o in n.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for t in _node_inputs(n):
            out.setdefault(t, []).append(i)
    return out


def _weight_source(name: str, producers: dict[str, tuple[int, onnx.NodeProto]], inits: set[str]) -> str | None:
    """The initializer a weight input comes from (through DequantizeLinear / Transpose / Identity)."""
    hops = 0
    while name not in inits and name in producers and hops < 4:
        name = producers[name][1].input[0]
        hops += 1
    return name if name in inits else None


def layer_nodes(proto: onnx.ModelProto) -> dict[str, int]:
    """Layer id → index of its Conv/Gemm/MatMul node, with the front end's naming.

    The front end names a layer after the node that consumes its weight initializer
    (:func:`approxtvm.compiler.frontend.layer_names`); a node's own name is the fallback.
    """
    graph = proto.graph
    producers = _producers(graph)
    inits = {t.name for t in graph.initializer}
    by_init = layer_names(proto)
    out: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        src = _weight_source(node.input[1], producers, inits)
        lid = by_init.get(src) if src is not None else None
        if lid is not None and lid not in out:
            out[lid] = i
    for i, node in enumerate(graph.node):
        if node.op_type in LAYER_OPS and node.name and node.name not in out:
            out[node.name] = i
    return out


def _codes_match(weight: np.ndarray, codes: np.ndarray | None) -> bool:
    if codes is None:
        return False
    if codes.shape == weight.shape:
        return bool(np.array_equal(codes, weight))
    return codes.ndim == 2 and codes.T.shape == weight.shape and bool(np.array_equal(codes.T, weight))


def _shape_match(weight: np.ndarray, codes: np.ndarray | None) -> bool:
    return codes is not None and (codes.shape == weight.shape or (codes.ndim == 2 and codes.T.shape == weight.shape))


def locate_layers(proto: onnx.ModelProto, weights: dict[str, np.ndarray]) -> dict[str, int]:
    """Offloaded layer id → index of its Conv/Gemm/MatMul node.

    By name first (:func:`layer_nodes`, accepted when the node's weight has the layer's shape), then
    by the weight codes themselves among the nodes not yet claimed (exporters whose parameter names
    the Relax importer rewrites leave layers named ``layer_<i>``). Layers found neither way are left
    out of the result.

    Parameters
    ----------
    proto
        The QDQ model.
    weights
        Layer id → the weight codes of the compiled layer (OIHW or (K, C)).
    """
    index = layer_nodes(proto)
    codes = {i: initializer_codes(proto, i) for i in set(index.values())}
    out: dict[str, int] = {}
    for lid, w in weights.items():
        i = index.get(lid)
        # an activation × activation MatMul has no weight (empty codes): its node name is the match
        if i is not None and (_shape_match(w, codes[i]) or (w.size == 0 and codes[i] is None)):
            out[lid] = i
    claimed = set(out.values())
    free = [i for i in set(index.values()) - claimed]
    for lid, w in weights.items():
        if lid in out:
            continue
        hits = [i for i in free if _codes_match(w, codes[i])]
        if len(hits) >= 1:  # equal weights in two layers: take the first free one in graph order
            out[lid] = min(hits)
            free.remove(min(hits))
    return out


def layer_sites(
    proto: onnx.ModelProto,
    located: dict[str, int],
    layers: Iterable[tuple[str, bool]],
    act_matmuls: frozenset[str] = frozenset(),
) -> dict[str, LayerSite]:
    """Locate offloaded layers in the graph.

    Parameters
    ----------
    proto
        The QDQ model the layers were compiled from.
    located
        Layer id → node index (:func:`locate_layers`).
    layers
        ``(layer_id, has_bias)`` per offloaded layer.
    act_matmuls
        Layers that are activation × activation MatMuls (both operands read from the graph).

    Raises
    ------
    ModelError
        A layer cannot be located as ``DequantizeLinear → Conv/Gemm/MatMul(+Add)``.
    """
    graph = proto.graph
    producers = _producers(graph)
    consumers = _consumers(graph)
    ints = {t.name: t for t in graph.initializer}
    index = located
    sites: dict[str, LayerSite] = {}
    for lid, has_bias in layers:
        if lid not in index:
            raise ModelError(
                f"offloaded layer {lid!r} has no node in the ONNX graph",
                expected="a Conv/Gemm/MatMul node named after the layer or with its weights",
                found=f"{len(index)} located layer(s)",
                fix="compile with host='tvm'",
            )
        i = index[lid]
        node = graph.node[i]
        deq = producers.get(node.input[0])
        if deq is None or deq[1].op_type != "DequantizeLinear":
            raise ModelError(
                f"layer {lid!r}: its activation does not come from a DequantizeLinear",
                expected="DequantizeLinear → " + node.op_type,
                found="no DequantizeLinear" if deq is None else deq[1].op_type,
                fix="compile with host='tvm'",
            )
        nodes = [i]
        out = node.output[0]
        if node.op_type == "MatMul" and has_bias:  # the bias is a separate Add node
            users = consumers.get(out, [])
            if len(users) != 1 or graph.node[users[0]].op_type != "Add":
                raise ModelError(
                    f"layer {lid!r}: MatMul with bias but no single Add after it",
                    expected="MatMul → Add(DequantizeLinear(bias))",
                    found=f"{len(users)} consumer(s)",
                    fix="compile with host='tvm'",
                )
            nodes.append(users[0])
            out = graph.node[users[0]].output[0]
        elif node.op_type in ("Conv", "Gemm") and (len(node.input) > 2 and bool(node.input[2])) != has_bias:
            raise ModelError(
                f"layer {lid!r}: the schedule's bias does not match the {node.op_type} node",
                expected=f"bias {'present' if has_bias else 'absent'}",
                found=f"{len(node.input)} inputs",
                fix="compile with host='tvm'",
            )
        second = ""
        if node.op_type == "MatMul" and lid in act_matmuls:
            deq2 = producers.get(node.input[1])
            if deq2 is None or deq2[1].op_type != "DequantizeLinear":
                raise ModelError(
                    f"layer {lid!r}: the second operand of its activation × activation MatMul is not dequantized",
                    expected="DequantizeLinear → MatMul (both operands)",
                    found="no DequantizeLinear" if deq2 is None else deq2[1].op_type,
                    fix="compile with host='tvm'",
                )
            second = deq2[1].input[0]
        requant = None
        q = None if second else _sole_quantize(graph, consumers, out, ints)  # weight layers only
        if q is not None:
            qi, requant = q
            nodes.append(qi)
            out = graph.node[qi].output[0]
        sites[lid] = LayerSite(lid, deq[1].input[0], out, tuple(nodes), requant, second)
    return sites


def _sole_quantize(
    graph: onnx.GraphProto, consumers: dict[str, list[int]], out: str, inits: dict[str, onnx.TensorProto]
) -> tuple[int, tuple[float, int, str]] | None:
    """The QuantizeLinear that alone reads ``out`` with a constant per-tensor scale, if any."""
    users = consumers.get(out, [])
    if len(users) != 1 or out in {o.name for o in graph.output}:
        return None
    node = graph.node[users[0]]
    if node.op_type != "QuantizeLinear" or node.input[1] not in inits:
        return None
    if any(at.name in ("saturate", "output_dtype", "block_size") for at in node.attribute):
        return None  # float8 / blocked variants: leave the node to onnxruntime
    scale = numpy_helper.to_array(inits[node.input[1]])
    if scale.size != 1:
        return None
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            return None
        zp = numpy_helper.to_array(inits[node.input[2]])
        if zp.size != 1 or zp.dtype not in (np.uint8, np.int8):
            return None
        zp_value, dtype = int(zp.reshape(-1)[0]), str(zp.dtype)
    else:
        zp_value, dtype = 0, "uint8"
    return users[0], (float(scale.reshape(-1)[0]), zp_value, dtype)


# ---------------------------------------------------------------------------------------- MACs
def _with_batch(proto: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
    """A copy with a symbolic batch dimension of the graph inputs set to ``batch_size``, shapes
    inferred (best effort: what inference cannot resolve stays unknown)."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits or not vi.type.tensor_type.shape.dim:
            continue
        d0 = vi.type.tensor_type.shape.dim[0]
        if not d0.HasField("dim_value") or d0.dim_value <= 0:
            d0.Clear()
            d0.dim_value = batch_size
    with contextlib.suppress(Exception):
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    return m


def _shapes(proto: onnx.ModelProto, batch_size: int) -> dict[str, tuple[int, ...] | None]:
    """Static shape per tensor after onnx shape inference with the batch fixed."""
    m = _with_batch(proto, batch_size)
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in (*m.graph.input, *m.graph.value_info, *m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        vals = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
        out[vi.name] = vals if vi.type.tensor_type.HasField("shape") and all(v > 0 for v in vals) else None
    for t in m.graph.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    ins = [shapes.get(n) for n in node.input]
    y = shapes.get(node.output[0])
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    a, w = ins[0], ins[1]
    if node.op_type == "Conv":
        return None if y is None else int(np.prod(y)) * int(np.prod(w[1:]))
    if node.op_type == "ConvTranspose":
        return int(np.prod(a)) * int(np.prod(w[1:]))
    if node.op_type == "Gemm":
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        return None if y is None else int(np.prod(y)) * int(a[0] if trans_a else a[-1])
    return None if y is None else int(np.prod(y)) * int(a[-1])  # MatMul


def _host_reason(node: onnx.NodeProto, producers: dict[str, tuple[int, onnx.NodeProto]], inits: set[str]) -> str:
    """Why a MAC node most likely stays on the host (the partitioner logs the exact reason)."""
    group = next((at.i for at in node.attribute if at.name == "group"), 1)
    if node.op_type == "Conv" and group != 1:
        return f"grouped/depthwise convolution (groups = {group}): not mapped to the PE array yet"
    if node.op_type == "ConvTranspose":
        return "transposed convolution: not mapped"
    if _weight_source(node.input[1], producers, inits) is None:
        return "both operands are activations (no constant weight)"
    deq = producers.get(node.input[0])
    if deq is None or deq[1].op_type != "DequantizeLinear":
        return "float layer (its input is not dequantized from 8-bit codes)"
    return "rejected by the vacc patterns (see the approxtvm.vacc log for the reason)"


def mac_nodes(proto: onnx.ModelProto, layer_index: dict[str, int], batch_size: int) -> tuple[HostMacs, ...]:
    """Every MAC-bearing node with its MACs per batch and whether an offloaded layer covers it.

    Parameters
    ----------
    proto
        The QDQ model.
    layer_index
        Offloaded layer id → node index (:func:`layer_nodes` restricted to offloaded layers).
    batch_size
        The compiled batch size.
    """
    graph = proto.graph
    shapes = _shapes(proto, batch_size)
    producers = _producers(graph)
    inits = {t.name for t in graph.initializer}
    owner = {i: lid for lid, i in layer_index.items()}
    sizes = {t.name: int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer}
    out = []
    for i, node in enumerate(graph.node):
        if node.op_type not in MAC_OPS:
            continue
        lid = owner.get(i)
        reason = "" if lid is not None else _host_reason(node, producers, inits)
        src = _weight_source(node.input[1], producers, inits) if len(node.input) > 1 else None
        weights = sizes[src] if src is not None else 0
        out.append(HostMacs(_node_name(node, i), node.op_type, _node_macs(node, shapes), lid, reason, weights))
    return tuple(out)


# ------------------------------------------------------------------------------------ segments
def _subgraph_inputs(g: onnx.GraphProto) -> Iterator[str]:
    """Outer-scope names a subgraph (If/Loop/Scan body) reads."""
    local = {i.name for i in g.input} | {t.name for t in g.initializer}
    for n in g.node:
        for t in _node_inputs(n):
            if t and t not in local:
                yield t
        local.update(n.output)


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node, including what its subgraphs read from the enclosing scope."""
    names = [t for t in node.input if t]
    for at in node.attribute:
        if at.type == onnx.AttributeProto.GRAPH:
            names.extend(_subgraph_inputs(at.g))
        elif at.type == onnx.AttributeProto.GRAPHS:
            for g in at.graphs:
                names.extend(_subgraph_inputs(g))
    return names


def _value_infos(proto: onnx.ModelProto, batch_size: int | None) -> dict[str, onnx.ValueInfoProto]:
    """Inferred type (and, with the batch fixed, static shape) of every tensor."""
    inferred = proto
    if batch_size is not None:
        inferred = _with_batch(proto, batch_size)
    else:
        with contextlib.suppress(Exception):
            inferred = onnx.shape_inference.infer_shapes(proto)
    g = inferred.graph
    return {vi.name: vi for vi in (*g.input, *g.value_info, *g.output) if vi.type.tensor_type.elem_type}


def _static(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type.tensor_type
    return t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim)


def _elem_type(name: str, infos: dict[str, onnx.ValueInfoProto], producers: dict, inits: dict) -> int:
    if name in infos:
        return infos[name].type.tensor_type.elem_type
    prod = producers.get(name)
    if prod is not None and prod[1].op_type == "QuantizeLinear" and len(prod[1].input) > 2:
        zp = inits.get(prod[1].input[2])
        if zp is not None:
            return zp.data_type
        return onnx.TensorProto.UINT8
    return onnx.TensorProto.FLOAT


def split_graph(
    proto: onnx.ModelProto, sites: Iterable[LayerSite], batch_size: int | None = None
) -> list[Segment | LayerSite]:
    """Cut the graph into host segments and layer sites, in an executable order.

    With ``batch_size`` the segments' inputs and outputs carry the static shapes shape inference
    finds for that batch (onnxruntime plans its layouts with them); without, element types only.

    Nodes of the sites are removed; nodes no one needs any more (the weight dequantizes of the
    removed layers) are dropped. Host nodes between two sites in the graph's topological order
    form one segment, so there is at most one segment more than there are sites.
    """
    graph = proto.graph
    site_list = list(sites)
    site_nodes = {i: s for s in site_list for i in s.node_indices}
    last = {max(s.node_indices): s for s in site_list}
    for s in site_list:  # a site's internal tensors (MatMul → Add) must not be used elsewhere
        for i in s.node_indices[:-1]:
            for o in graph.node[i].output:
                users = [j for j, n in enumerate(graph.node) if o in _node_inputs(n)]
                if any(j not in s.node_indices for j in users):
                    raise ModelError(
                        f"layer {s.layer_id!r}: its MatMul result is used outside the layer",
                        expected="MatMul read only by its bias Add",
                        found=f"readers {users}",
                        fix="compile with host='tvm'",
                    )
    # liveness, backwards over nodes and sites
    needed = {o.name for o in graph.output}
    live: set[int] = set()
    for i in range(len(graph.node) - 1, -1, -1):
        if i in site_nodes:
            if i in last:
                needed.add(last[i].input_name)
                if last[i].input2_name:
                    needed.add(last[i].input2_name)
            continue
        node = graph.node[i]
        if any(o in needed for o in node.output):
            live.add(i)
            needed.update(_node_inputs(node))
    # constant subgraphs (weight dequantizes, Constant nodes) go with the segment that reads them,
    # copied into each: a weight dequantize left in an earlier segment would reach its conv as a
    # float input, which onnxruntime cannot fuse into its integer kernel (different arithmetic)
    init_names = {t.name for t in graph.initializer}
    const_nodes: dict[str, int] = {}  # output name -> producing constant node
    for i, node in enumerate(graph.node):
        if i in live and all(t in init_names or t in const_nodes for t in _node_inputs(node)):
            for o in node.output:
                const_nodes[o] = i

    def with_constants(idx: list[int]) -> list[int]:
        todo = [t for i in idx for t in _node_inputs(graph.node[i]) if t in const_nodes]
        closure: set[int] = set()
        while todo:
            j = const_nodes[todo.pop()]
            if j not in closure:
                closure.add(j)
                todo.extend(t for t in _node_inputs(graph.node[j]) if t in const_nodes)
        return sorted(closure | set(idx))

    is_const = set(const_nodes.values())
    groups: list[list[int] | LayerSite] = [[]]
    for i in range(len(graph.node)):
        if i in site_nodes:
            if i in last:
                groups.append(last[i])
                groups.append([])
        elif i in live and i not in is_const:
            cur = groups[-1]
            assert isinstance(cur, list)
            cur.append(i)
    tail = [const_nodes[o.name] for o in graph.output if o.name in const_nodes]
    if tail:  # a constant graph output: computed at the end
        groups.append(tail)
    groups = [with_constants(g) if isinstance(g, list) else g for g in groups]
    groups = [g for g in groups if not (isinstance(g, list) and not g)]
    reads: list[set[str]] = []
    for g in groups:
        if isinstance(g, LayerSite):
            reads.append({g.input_name, g.input2_name} - {""})
        else:
            reads.append({t for i in g for t in _node_inputs(graph.node[i])})
    later: list[set[str]] = [set() for _ in groups]
    acc = {o.name for o in graph.output}
    for k in range(len(groups) - 1, -1, -1):
        later[k] = set(acc)
        acc |= reads[k]
    inits = {t.name: t for t in graph.initializer}
    producers = _producers(graph)
    infos = _value_infos(proto, batch_size)
    steps: list[Segment | LayerSite] = []
    for k, g in enumerate(groups):
        if isinstance(g, LayerSite):
            steps.append(g)
            continue
        nodes = [graph.node[i] for i in g]
        produced = [o for n in nodes for o in n.output if o]
        produced_set = set(produced)
        ins: list[str] = []
        used_inits: list[str] = []
        for n in nodes:
            for t in _node_inputs(n):
                if t in produced_set or t in ins or t in used_inits:
                    continue
                (used_inits if t in inits else ins).append(t)
        outs = [o for o in produced if o in later[k]]
        if not outs:
            continue

        def vi(name: str) -> onnx.ValueInfoProto:
            if batch_size is not None and name in infos and _static(infos[name]):
                return infos[name]
            return helper.make_tensor_value_info(name, _elem_type(name, infos, producers, inits), None)

        sub = helper.make_graph(
            nodes,
            f"{graph.name or 'host'}_seg{k}",
            [vi(t) for t in ins],
            [vi(t) for t in outs],
            [inits[t] for t in used_inits],
        )
        model = helper.make_model(sub, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
        model.functions.extend(proto.functions)
        steps.append(Segment(model, tuple(ins), tuple(outs)))
    return steps


def initializer_codes(proto: onnx.ModelProto, node_index: int) -> np.ndarray | None:
    """The 8-bit weight codes a layer node reads (``None`` if not a plain initializer)."""
    graph = proto.graph
    src = _weight_source(graph.node[node_index].input[1], _producers(graph), {t.name for t in graph.initializer})
    if src is None:
        return None
    t = next(t for t in graph.initializer if t.name == src)
    return numpy_helper.to_array(t)
