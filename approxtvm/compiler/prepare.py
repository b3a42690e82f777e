"""ONNX preparation: rewrite a model as exporters write it into the form the importer and vacc expect.

Real exporters (torch's legacy and dynamo exporters, tf2onnx, onnxruntime's quantizer) write
graphs the vacc patterns cannot match as they are:

- equal initializers are shared, often through ``Identity`` nodes (torch's legacy exporter shares
  the zero biases of a randomly initialised network); after quantization one ``DequantizeLinear``
  then feeds several layers, and no layer owns its weight or bias;
- constants are ``Constant`` nodes, and shape arithmetic (``Shape → Gather → Concat → Reshape``)
  leaves the shapes after a computed ``Reshape`` unknown until it is folded;
- nodes may be unnamed or share names.

:func:`prepare` fixes all of that on a copy: every node gets a unique deterministic name (layer
ids are node names), ``Constant`` nodes become initializers, ``Identity`` nodes are bypassed,
constant subgraphs (shape arithmetic included, once the batch is fixed) are folded, every layer
gets its own weight and bias initializer (and its own ``DequantizeLinear``), and shapes are
inferred. The result computes exactly what the input computes. Constant folding and shape
inference are in :mod:`approxtvm.compiler.fold`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from approxtvm.compiler.fold import fold_constants, infer_shapes, replace_nodes, subgraphs
from approxtvm.errors import ModelError

LOG = logging.getLogger("approxtvm.frontend")

#: ONNX ops whose weight / bias operands become accelerator layers.
LAYER_OPS = frozenset({"Conv", "Gemm", "MatMul"})
#: Operand slots of a layer that hold parameters (weight, bias).
PARAM_SLOTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,)}


def prepare(model: onnx.ModelProto, batch_size: int | None = None) -> onnx.ModelProto:
    """A copy of ``model`` in the canonical form the compiler expects (see the module docstring).

    Parameters
    ----------
    model
        A checked ONNX model (float or QDQ).
    batch_size
        Concrete batch to give a symbolic batch dimension; with it, shape arithmetic that depends
        on the batch folds too. ``None`` keeps the batch symbolic (e.g. before calibration).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    name_nodes(out.graph)
    constants_to_initializers(out.graph)
    bypass_identities(out.graph)
    if batch_size is not None:
        set_batch(out.graph, batch_size)
    fold_constants(out)
    unshare_layer_params(out.graph)
    prune_unused_initializers(out.graph)
    return infer_shapes(out)


# ---------------------------------------------------------------------------- names
def name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique name: unnamed nodes get ``<OpType>_<index>`` (index in the graph),
    a repeated name gets ``__<k>`` appended. Deterministic, so layer ids are stable."""
    taken = Counter(n.name for n in graph.node if n.name)
    used: set[str] = set()
    for i, node in enumerate(graph.node):
        base = node.name or f"{node.op_type}_{i}"
        name, k = base, 1
        while name in used or (not node.name and taken[name]):
            k += 1
            name = f"{base}__{k}"
        used.add(name)
        node.name = name


def safe_ident(name: str) -> str:
    """``name`` as a plain identifier (letters, digits, underscores; not starting with a digit)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "t"
    return s if not s[0].isdigit() else f"t_{s}"


# ---------------------------------------------------------------------------- constants
def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a ``Constant`` node, or ``None`` for kinds kept as nodes (sparse, strings)."""
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), np.float32)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), np.int64)
    return None


def constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn ``Constant`` nodes into initializers (foldable and matchable as constants)."""
    keep = []
    for node in graph.node:
        value = _constant_value(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if value is None:
            keep.append(node)
            continue
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    replace_nodes(graph, keep)


def _rename_uses(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensor uses (node inputs, also inside subgraphs that see the outer scope)."""
    if not mapping:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for sub in subgraphs(node):
            _rename_uses(sub, mapping)


def bypass_identities(graph: onnx.GraphProto) -> None:
    """Remove ``Identity`` nodes: their users read the source tensor directly.

    An ``Identity`` whose output is a graph output stays (the output keeps its name).
    """
    outputs = {o.name for o in graph.output}
    mapping: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            src = node.input[0]
            mapping[node.output[0]] = mapping.get(src, src)  # chains resolve to their first source
            continue
        keep.append(node)
    replace_nodes(graph, keep)
    _rename_uses(graph, mapping)


def prune_unused_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers no node (or subgraph) reads and that are not graph outputs."""
    used = {o.name for o in graph.output}

    def collect(g: onnx.GraphProto) -> None:
        for node in g.node:
            used.update(node.input)
            for sub in subgraphs(node):
                collect(sub)

    collect(graph)
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        kept = [onnx.TensorProto() for _ in keep]
        for dst, src in zip(kept, keep, strict=True):
            dst.CopyFrom(src)
        del graph.initializer[:]
        graph.initializer.extend(kept)
        names = {t.name for t in keep}
        stale = [vi for vi in graph.input if vi.name not in names and _is_init_input(vi, graph)]
        for vi in stale:
            graph.input.remove(vi)


def _is_init_input(vi: onnx.ValueInfoProto, graph: onnx.GraphProto) -> bool:
    # old exporters list initializers as graph inputs too; such an input with no node user is unused
    return not any(vi.name in n.input for n in graph.node) and vi.name not in {o.name for o in graph.output}


# ---------------------------------------------------------------------------- batch
def set_batch(graph: onnx.GraphProto, batch_size: int) -> None:
    """Give the symbolic first dimension of every graph input ``batch_size`` (and every other
    declared shape that uses the same symbol, so declared and inferred shapes agree)."""
    inits = {t.name for t in graph.initializer}
    symbols: set[str] = set()
    for vi in graph.input:
        if vi.name in inits or not vi.type.tensor_type.shape.dim:
            continue
        d = vi.type.tensor_type.shape.dim[0]
        if not d.HasField("dim_value"):
            symbols.add(d.dim_param)
            d.Clear()
            d.dim_value = batch_size
    for vi in [*graph.output, *graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in symbols:
                d.Clear()
                d.dim_value = batch_size


# ---------------------------------------------------------------------------- unsharing
def _uses(graph: onnx.GraphProto) -> Counter[str]:
    c: Counter[str] = Counter()
    for node in graph.node:
        c.update(i for i in node.input if i)
    c.update(o.name for o in graph.output)
    return c


def unshare_layer_params(graph: onnx.GraphProto) -> None:
    """Give every layer its own weight/bias initializer and its own ``DequantizeLinear``.

    Exporters share equal initializers between layers (torch: zero biases); a quantizer then
    quantizes the shared tensor once, with the first layer's scale, and one dequantize feeds
    several layers. A layer that shares a parameter operand with any other user gets a private
    copy of the initializer (and of the dequantize between them), so each layer is quantized on
    its own scales and offloaded on its own.
    """
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses = _uses(graph)
    names = {t.name for t in graph.initializer} | set(producer) | {i.name for i in graph.input}
    new_inits: list[onnx.TensorProto] = []
    new_nodes: dict[str, list[onnx.NodeProto]] = {}  # layer node name → dequantizes to insert before it

    def fresh(base: str) -> str:
        k = 2
        while f"{base}__{k}" in names:
            k += 1
        names.add(f"{base}__{k}")
        return f"{base}__{k}"

    def copy_init(name: str) -> str:
        t = onnx.TensorProto()
        t.CopyFrom(inits[name])
        t.name = fresh(name)
        new_inits.append(t)
        return t.name

    for node in graph.node:
        for slot in PARAM_SLOTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            if slot >= len(node.input) or not node.input[slot]:
                continue
            t = node.input[slot]
            if t in inits:
                if uses[t] > 1:
                    uses[t] -= 1
                    node.input[slot] = copy_init(t)
                continue
            deq = producer.get(t)
            if deq is None or deq.op_type != "DequantizeLinear" or deq.input[0] not in inits:
                continue
            if uses[t] > 1:  # the dequantize output is shared: this layer gets its own dequantize
                uses[t] -= 1
                mine = onnx.NodeProto()
                mine.CopyFrom(deq)
                mine.name = fresh(deq.name)
                mine.output[0] = fresh(t)
                node.input[slot] = mine.output[0]
                new_nodes.setdefault(node.name, []).append(mine)
                uses[deq.input[0]] += 1
                deq = mine
            data = deq.input[0]
            if uses[data] > 1:  # the integer initializer is shared between dequantizes
                uses[data] -= 1
                deq.input[0] = copy_init(data)
    if not new_inits and not new_nodes:
        return
    graph.initializer.extend(new_inits)
    ordered: list[onnx.NodeProto] = []
    for node in graph.node:
        ordered += new_nodes.get(node.name, [])
        ordered.append(node)
    replace_nodes(graph, ordered)


# ---------------------------------------------------------------------------- import view
def layer_param_source(graph: onnx.GraphProto, node: onnx.NodeProto, slot: int = 1) -> str | None:
    """The initializer behind a layer's operand ``slot`` (through ``DequantizeLinear`` /
    ``Transpose``), or ``None`` when it is computed."""
    inits = {t.name for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    if slot >= len(node.input):
        return None
    src = node.input[slot]
    for _ in range(4):
        if src in inits:
            return src
        p = producer.get(src)
        if p is None or p.op_type not in ("DequantizeLinear", "Transpose") or not p.input:
            return None
        src = p.input[0]
    return None


def import_view(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str], list[str]]:
    """A copy whose layer weights have identifier names, with the weight → layer id map.

    The importer turns initializers into parameters (it drops torch's ``onnx::`` prefix), and
    parameter names are how a Relax layer is traced back to its ONNX node. Renaming each layer's
    weight initializer to ``w_<node name>`` makes that link independent of the importer's naming.

    Returns
    -------
    tuple
        The renamed copy; weight parameter name → layer id (node name); node names of all
        layer nodes in graph order.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    taken = {t.name for t in g.initializer} | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    taken |= {t.name.removeprefix("onnx::") for t in g.initializer}
    mapping: dict[str, str] = {}
    weight_to_layer: dict[str, str] = {}
    order: list[str] = []
    for node in g.node:
        if node.op_type not in LAYER_OPS or node.domain not in ("", "ai.onnx"):
            continue
        order.append(node.name)
        src = layer_param_source(g, node)
        if src is None or src in mapping:  # computed, or (after unsharing, never) shared
            continue
        base = f"w_{safe_ident(node.name)}"
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        mapping[src] = name
        weight_to_layer[name] = node.name
    for t in g.initializer:
        if t.name in mapping:
            t.name = mapping[t.name]
    for vi in g.input:
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    _rename_uses(g, mapping)
    return out, weight_to_layer, order


def resolve_batch(model: onnx.ModelProto, batch_size: int | None) -> int:
    """The batch to compile for: the model's fixed batch, ``batch_size`` for a symbolic one.

    Raises
    ------
    ModelError
        ``batch_size`` conflicts with the batch fixed in the model, or is not positive.
    """
    inits = {t.name for t in model.graph.initializer}
    fixed: dict[str, int] = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or not dims:
            continue
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            fixed[vi.name] = int(dims[0].dim_value)
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ModelError("batch_size must be positive", expected="≥ 1", found=str(batch_size), fix="use 1")
    if not fixed:
        return 1 if batch_size is None else int(batch_size)
    values = set(fixed.values())
    if len(values) > 1:
        raise ModelError(
            "the model's inputs fix different batch sizes",
            expected="one batch size for all inputs",
            found=", ".join(f"{k}: {v}" for k, v in fixed.items()),
            fix="re-export the model with a symbolic (dynamic) batch dimension",
        )
    (b,) = values
    if batch_size is not None and int(batch_size) != b:
        name = next(iter(fixed))
        raise ModelError(
            f"batch_size={batch_size} conflicts with the model: input {name!r} has a fixed batch of {b}",
            expected=f"batch_size={b} (or None to use the model's batch)",
            found=f"batch_size={batch_size}",
            fix=f"pass batch_size={b}, or re-export the model with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}}))",
        )
    return b
