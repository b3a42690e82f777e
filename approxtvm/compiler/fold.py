"""Constant folding and shape inference of an ONNX graph (a step of :func:`approxtvm.compiler.prepare.prepare`).

Shape arithmetic (``Shape → Gather → Concat → Reshape``) leaves the shapes after a computed
``Reshape`` unknown until it is folded: rounds of shape inference and folding of the nodes whose
inputs are all constant (evaluated by onnxruntime) run until nothing changes. Weight dequantizes
are never folded: they are what the vacc patterns match.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from approxtvm.errors import ModelError

__all__ = ["MAX_FOLD_ELEMENTS", "check_shapes", "fold_constants", "infer_shapes", "replace_nodes", "subgraphs"]

LOG = logging.getLogger("approxtvm.frontend")

#: Never folded: the dequantize of a weight is what the vacc patterns match (DESIGN §2); random
#: ops are not constant; control flow carries subgraphs.
_NO_FOLD = frozenset(
    {
        "DequantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "If",
        "Loop",
        "Scan",
    }
)
#: A folded result larger than this (elements) stays a computation (keeps the model small).
MAX_FOLD_ELEMENTS = 1 << 24
#: Rounds of shape inference + folding (each round can expose new static shapes).
_MAX_FOLD_ROUNDS = 8


def replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    kept = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(kept, nodes, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(kept)


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation; a model it cannot handle is returned as is."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # custom domains, inconsistent declared shapes: keep what we have
        LOG.info("onnx shape inference failed (%s: %s); continuing without it", type(exc).__name__, exc)
        return model


def check_shapes(model: onnx.ModelProto) -> None:
    """Reject a model whose shapes or types contradict themselves (strict ONNX shape inference).

    Raises
    ------
    ModelError
        Shape or type inference fails on a node (the message names it).
    """
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        msg = str(exc).strip()
        if "InferenceError]" not in msg:  # e.g. no schema for a custom domain: not a contradiction
            LOG.info("strict shape inference gave up: %s", msg)
            return
        found = msg.splitlines()[-1][:400]
        if "node name" not in found:  # a conflict with a declared shape: onnx does not say where
            where = _declared_shape_conflict(model)
            found = f"{where}: {found}" if where else found
        raise ModelError(
            "the model's shapes or types are inconsistent",
            expected="a graph that passes ONNX shape inference",
            found=found,
            fix="fix the named node (weight ranks, channel counts, attributes) and re-export the model",
        ) from None


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)


def _declared_shape_conflict(model: onnx.ModelProto) -> str:
    """The node whose output shape, inferred from its inputs, contradicts the declared one."""
    g = model.graph
    declared_all = {vi.name: _dims(vi) for vi in [*g.input, *g.value_info]}
    for t in g.initializer:  # an initializer whose declared type disagrees with its data
        d = declared_all.get(t.name)
        if (
            d is not None
            and len(d) == len(t.dims)
            and any(isinstance(x, int) and x != y for x, y in zip(d, t.dims, strict=True))
        ):
            users = [n for n in g.node if t.name in n.input]
            who = f" read by node {users[0].name} ({users[0].op_type})" if users else ""
            return f"initializer {t.name!r}{who} has shape {list(t.dims)}, declared {list(d)}"
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    declared = {vi.name: _dims(vi) for vi in [*bare.graph.value_info, *bare.graph.output]}
    del bare.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=False)
    except Exception:
        return ""
    got = {vi.name: _dims(vi) for vi in inferred.graph.value_info}
    for node in model.graph.node:
        for o in node.output:
            a, b = declared.get(o), got.get(o)
            if a is None or b is None or len(a) != len(b):
                continue
            pairs = zip(a, b, strict=True)
            if any(isinstance(x, int) and isinstance(y, int) and x > 0 and y > 0 and x != y for x, y in pairs):
                return f"node {node.name or '<unnamed>'} ({node.op_type}) output {o!r} is {list(b)}, declared {list(a)}"
    return ""


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    g = model.graph
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = t.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in g.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(shape)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (max(0, min(rank, v + rank if v < 0 else v)) for v in (start, end))
    return np.array(shape[start:end], np.int64)


def _fold_shapes(model: onnx.ModelProto) -> bool:
    """Replace ``Shape`` / ``Size`` of statically shaped tensors by initializers."""
    g = model.graph
    shapes = _static_shapes(model)
    keep, changed = [], False
    for node in g.node:
        if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx") and node.input[0] in shapes:
            g.initializer.append(numpy_helper.from_array(_shape_value(node, shapes[node.input[0]]), node.output[0]))
            changed = True
            continue
        keep.append(node)
    if changed:
        replace_nodes(g, keep)
    return changed


def _foldable(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes computable from initializers alone (transitively), in graph order."""
    g = model.graph
    known = {t.name for t in g.initializer} | {""}
    outputs = {o.name for o in g.output}
    out = []
    for node in g.node:
        if (
            node.op_type in _NO_FOLD
            or any(o in outputs for o in node.output)
            or node.domain not in ("", "ai.onnx")
            or any(True for _ in subgraphs(node))
            or not all(i in known for i in node.input)
        ):
            continue
        out.append(node)
        known.update(node.output)
    return out


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> dict[str, np.ndarray]:
    """Values of the outputs of ``nodes`` (one reference-evaluator run over all of them)."""
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    produced = {o for n in nodes for o in n.output if o}
    needed = {i for n in nodes for i in n.input} - produced
    inits = [t for t in g.initializer if t.name in needed]
    outputs = [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in sorted(produced)]
    sub = onnx.helper.make_graph(list(nodes), "fold", [], outputs, inits)
    sub_model = onnx.helper.make_model(sub, opset_imports=list(model.opset_import))
    sub_model.ir_version = model.ir_version
    values = ReferenceEvaluator(sub_model).run(None, {})
    return dict(zip(sorted(produced), values, strict=True))


def fold_constants(model: onnx.ModelProto) -> None:
    """Fold every node computable from initializers (shape arithmetic included), in place.

    ``DequantizeLinear`` is never folded (the weight's dequantize is what the patterns match);
    ``QuantizeLinear`` of a float weight is, which turns a Q→DQ weight into the integer
    initializer + dequantize a quantizer writes. A batch of nodes the reference evaluator cannot
    evaluate stays as it is (logged).
    """
    for _ in range(_MAX_FOLD_ROUNDS):
        changed = False
        if any(n.op_type in ("Shape", "Size") for n in model.graph.node):
            model.CopyFrom(infer_shapes(model))
            changed = _fold_shapes(model)
        g = model.graph
        nodes = _foldable(model)
        if nodes:
            try:
                values = _evaluate(model, nodes)
            except Exception as exc:  # an op the reference evaluator lacks: leave those nodes alone
                LOG.info("constant folding skipped %d node(s): %s: %s", len(nodes), type(exc).__name__, exc)
                values = {}
            done = {n.name for n in nodes if all(o in values and _small(values[o]) for o in n.output if o)}
            for node in nodes:
                if node.name in done:
                    for o in node.output:
                        if o:
                            g.initializer.append(numpy_helper.from_array(np.asarray(values[o]), o))
            if done:
                replace_nodes(g, [n for n in g.node if n.name not in done])
                changed = True
        if not changed:
            return
    LOG.info("constant folding stopped after %d rounds", _MAX_FOLD_ROUNDS)


def _small(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.size <= MAX_FOLD_ELEMENTS
