"""NameLayers: give every conv2d / matmul a stable layer id taken from the ONNX node names."""

from __future__ import annotations

import tvm
from tvm import relax

from approxtvm.targets.vacc.partition import LAYER_NAMES_ATTR, LAYER_OPS

#: Ops a weight passes through between its parameter and the layer (QDQ and Gemm transB).
_WEIGHT_PATH_OPS = frozenset({"relax.dequantize", "relax.permute_dims"})


def weight_source(expr: relax.Expr, lookup: object) -> relax.Expr:
    """Follow a layer's weight operand back through dequantize / permute_dims bindings."""
    for _ in range(4):
        bound = lookup(expr) if isinstance(expr, relax.Var) else None  # type: ignore[operator]
        if not (
            isinstance(bound, relax.Call) and isinstance(bound.op, tvm.ir.Op) and bound.op.name in _WEIGHT_PATH_OPS
        ):
            break
        expr = bound.args[0]
    return expr


#: Suffixes exporters and quantizers append to a layer's weight name (torch ``conv1.weight``,
#: tf2onnx ``…/kernel:0``, onnxruntime's quantizer ``…_quantized``); stripped repeatedly.
_WEIGHT_SUFFIXES = ("_quantized", ".weight", "_weight", "/weights", "/kernel:0", "/kernel", ":0")


def id_from_parameter(name: str) -> str | None:
    """A layer id from its weight parameter's name when no ONNX table is given (``conv1.weight`` →
    ``conv1``); ``None`` for exporter-generated names that identify nothing (``onnx::Conv_193``)."""
    if not name or name.startswith("onnx::"):
        return None
    stripped = True
    while stripped:
        stripped = False
        for suffix in _WEIGHT_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, stripped = name[: -len(suffix)], True
    return name


def unique(layer: str, taken: set[str]) -> str:
    """``layer``, or ``layer#2``, ``layer#3``… when a weight shared by several layers names them all."""
    if layer not in taken:
        return layer
    i = 2
    while f"{layer}#{i}" in taken:
        i += 1
    return f"{layer}#{i}"


@tvm.transform.module_pass(opt_level=0, name="NameLayers")
class NameLayers:
    """Rename the variable bound to each conv2d / matmul to its layer id.

    The id comes from ``weight_to_layer`` (weight parameter name → ONNX node name, see
    :func:`approxtvm.compiler.prepare.import_view`). A layer whose weight is computed (a MatMul
    of two activations) takes its id from ``layer_order`` (the ONNX layer nodes in graph
    order), which the importer follows, when that order is consistent: as many Relax layers as
    ONNX layer nodes, and every weight-named layer at its own position. Without a table (a
    module from TVM's ONNX frontend or TVMScript) the id comes from the module itself: the
    weight parameter's name (:func:`id_from_parameter`). Other layers keep an id derived from
    their position (``layer_<i>``). The variable name is the
    one identity that survives parameter binding and pattern fusion, so the codegen reads the
    layer id from it. TVM sanitizes variable names (``layer1.0.conv1`` → ``layer1_0_conv1``),
    so the module attribute ``vacc.layer_names`` maps each variable name back to its id. The
    pass must run while weights are still parameters.

    Parameters
    ----------
    weight_to_layer
        Weight parameter name → layer id.
    layer_order
        ONNX layer node names in graph order (optional).
    """

    def __init__(self, weight_to_layer: dict[str, str] | None = None, layer_order: list[str] | None = None) -> None:
        self.weight_to_layer = dict(weight_to_layer or {})
        self.layer_order = list(layer_order or [])

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)  # never mutate the input
        ids: dict[str, str] = {}
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function) and (func.attrs is None or "Codegen" not in func.attrs):
                out[gv] = self._rename(func, mod, ids)
        return out.with_attr(LAYER_NAMES_ATTR, ids)

    def _known_ids(self, func: relax.Function) -> dict[relax.Var, str]:
        """Ids of the layers bound at the top level of ``func``: weight-derived, or from the
        ONNX order when the two orders agree."""
        names = self.weight_to_layer
        bound: dict[relax.Var, relax.Expr] = {}
        layers: list[tuple[relax.Var, str | None]] = []
        for block in func.body.blocks if isinstance(func.body, relax.SeqExpr) else []:
            for b in block.bindings:
                if not isinstance(b, relax.VarBinding):
                    continue
                bound[b.var] = b.value
                v = b.value
                if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and v.op.name in LAYER_OPS:
                    src = weight_source(v.args[1], bound.get)
                    layers.append((b.var, names.get(src.name) if isinstance(src, relax.Var) else None))
        order = self.layer_order
        consistent = len(order) == len(layers) and all(
            w is None or w == o for (_, w), o in zip(layers, order, strict=True)
        )
        out = {}
        for i, (var, w) in enumerate(layers):
            lid = w or (order[i] if consistent else None)
            if lid:
                out[var] = lid
        return out

    def _rename(self, func: relax.Function, mod: tvm.IRModule, ids: dict[str, str]) -> relax.Function:
        known = self._known_ids(func)
        names = self.weight_to_layer

        @relax.expr_functor.mutator
        class _Renamer(relax.PyExprMutator):
            def __init__(self, module: tvm.IRModule) -> None:
                super().__init__(module)
                self.count = 0

            def visit_var_binding_(self, binding: relax.VarBinding) -> None:
                value = self.visit_expr(binding.value)
                if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in LAYER_OPS:
                    layer = known.get(binding.var)
                    if layer is None:
                        src = weight_source(value.args[1], self.lookup_binding)
                        if isinstance(src, relax.Var):
                            layer = names.get(src.name) or (None if names else id_from_parameter(src.name))
                    layer = unique(layer or f"layer_{self.count}", set(ids.values()))
                    self.count += 1
                    emit = (
                        self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
                    )
                    new = emit(value, name_hint=layer)
                    ids[new.name] = layer
                    self.set_var_remap(binding.var, new)
                    return
                super().visit_var_binding_(binding)

        return _Renamer(mod).visit_expr(func)
