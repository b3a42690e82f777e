"""PruneWeights: magnitude pruning of the quantized weight constants to the zero-point code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from approxtvm.errors import PolicyError, ensure_ffi_errors
from approxtvm.targets.vacc.compression.transforms import prune_codes, prune_codes_global
from approxtvm.targets.vacc.partition import LAYER_OPS

__all__ = [
    "LayerWeight",
    "PruneWeights",
    "check_layer_ids",
    "host_functions",
    "layer_weights",
    "prune_codes",
    "rebuild",
    "replace_weights",
]

_DEQUANTIZE = "relax.dequantize"
_PATH_OPS = frozenset({_DEQUANTIZE, "relax.permute_dims"})


@dataclass(frozen=True, slots=True)
class LayerWeight:
    """The quantized constant weight of one layer.

    Attributes
    ----------
    layer
        Layer id (name of the variable bound to the conv2d / matmul).
    dequantize
        The ``R.dequantize`` call whose data operand is the constant.
    codes
        The weight codes (uint8 / int8), a copy.
    scale
        Dequantize scale (scalar or one per channel along ``axis``).
    zero_point
        Dequantize zero point (scalar or per channel).
    axis
        Channel axis of the constant (normalised to ``0..ndim-1``).
    """

    layer: str
    dequantize: relax.Call
    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


def _const_value(expr: relax.Expr, bindings: dict[relax.Var, relax.Expr]) -> np.ndarray | None:
    if isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None


def layer_weights(func: relax.Function) -> tuple[dict[str, LayerWeight], list[str]]:
    """Find every layer's quantized constant weight in ``func``.

    A layer's second operand is followed back through ``permute_dims`` / ``dequantize``
    bindings; the weight is quantized and constant when a ``dequantize`` on that path takes a
    constant (inline, or bound to a variable) with constant scale and zero point.

    Returns
    -------
    tuple[dict[str, LayerWeight], list[str]]
        Layer id → weight, and the ids of layers whose weight is not a quantized constant.
    """
    bindings: dict[relax.Var, relax.Expr] = {}
    layers: list[tuple[str, relax.Expr]] = []

    @relax.expr_functor.visitor
    class _Collector(relax.PyExprVisitor):
        def visit_var_binding_(self, binding: relax.VarBinding) -> None:
            bindings[binding.var] = binding.value
            v = binding.value
            if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and v.op.name in LAYER_OPS:
                layers.append((binding.var.name, v.args[1]))
            super().visit_var_binding_(binding)

    _Collector().visit_expr(func)
    found: dict[str, LayerWeight] = {}
    missing: list[str] = []
    for layer, expr in layers:
        weight = None
        for _ in range(4):
            bound = bindings.get(expr) if isinstance(expr, relax.Var) else None
            if not (isinstance(bound, relax.Call) and isinstance(bound.op, tvm.ir.Op) and bound.op.name in _PATH_OPS):
                break
            if bound.op.name == _DEQUANTIZE:
                codes, scale, zp = (_const_value(a, bindings) for a in bound.args[:3])
                if codes is not None and scale is not None and zp is not None and codes.dtype in (np.uint8, np.int8):
                    axis = int(bound.attrs.axis) % max(codes.ndim, 1)
                    weight = LayerWeight(layer, bound, codes, scale, zp, axis)
                break
            expr = bound.args[0]
        if weight is None:
            missing.append(layer)
        else:
            found[layer] = weight
    return found, missing


def replace_weights(func: relax.Function, new_codes: dict[relax.Call, np.ndarray]) -> relax.Function:
    """Return ``func`` with the data operand of the given ``dequantize`` calls replaced.

    ``new_codes`` maps a dequantize call (as found by :func:`layer_weights`) to its new codes
    (same shape and dtype); a new constant is made for each. ``func`` is not modified.
    """
    targets = list(new_codes.items())

    @relax.expr_functor.mutator
    class _Replacer(relax.PyExprMutator):
        def visit_call_(self, call: relax.Call) -> relax.Expr:
            for deq, codes in targets:
                if call.same_as(deq):
                    return relax.Call(
                        call.op, [relax.const(codes), *call.args[1:]], call.attrs, call.ty_args, call.span
                    )
            return super().visit_call_(call)

    return _Replacer().visit_expr(func)


def host_functions(mod: tvm.IRModule) -> list[tuple[tvm.ir.GlobalVar, relax.Function]]:
    """Relax functions of ``mod`` that are not offloaded (no ``Codegen`` attribute)."""
    return [
        (gv, f)
        for gv, f in mod.functions_items()
        if isinstance(f, relax.Function) and (f.attrs is None or "Codegen" not in f.attrs)
    ]


def check_layer_ids(
    requested: list[str], found: dict[str, LayerWeight], missing: list[str], pass_name: str, option: str
) -> None:
    unknown = [lid for lid in requested if lid not in found]
    if unknown:
        bad = [lid for lid in unknown if lid in missing]
        raise PolicyError(
            f"{pass_name}: {option} names layer(s) {', '.join(map(repr, unknown))} without a quantized constant weight",
            expected=f"layer ids among: {', '.join(found) or '(none)'}",
            found=(f"{', '.join(bad)} have non-constant or float weights; " if bad else "")
            + f"{len(unknown)} unmatched id(s)",
            fix="run after NameLayers, weight binding and QDQ import; check the layer names",
        )


def rebuild(mod: tvm.IRModule, funcs: dict[tvm.ir.GlobalVar, relax.Function]) -> tvm.IRModule:
    """A new module equal to ``mod`` with some functions replaced (``mod`` is not modified)."""
    items = {gv: funcs.get(gv, f) for gv, f in mod.functions_items()}
    return tvm.IRModule(items, attrs=mod.attrs, global_infos=mod.global_infos)


@tvm.transform.module_pass(opt_level=0, name="PruneWeights")
class PruneWeights:
    """Magnitude pruning: set the smallest weights of each layer to its zero-point code.

    Runs on the quantized model after weight binding and :class:`NameLayers`, before
    partitioning: each layer's weight is a uint8 / int8 constant consumed by ``R.dequantize``.
    Magnitude is ``|code − zero_point| · |scale|`` (per-channel parameters along the dequantize
    axis); see :func:`~approxtvm.targets.vacc.compression.transforms.prune_codes` for the exact
    count and the tie rule.

    Parameters
    ----------
    sparsity
        One fraction for every layer, or layer id → fraction (other layers are left alone; an
        id that matches no quantized layer is an error).
    scope
        ``"layer"``: each layer reaches its sparsity; ``"global"``: one threshold over all
        layers together (``sparsity`` must then be a single fraction).
    """

    def __init__(self, sparsity: float | dict[str, float], scope: str = "layer") -> None:
        ensure_ffi_errors()
        if scope not in ("layer", "global"):
            raise PolicyError(
                "PruneWeights: unknown scope",
                expected="'layer' or 'global'",
                found=repr(scope),
                fix="use scope='layer' (per-layer sparsity) or 'global' (one threshold)",
            )
        if scope == "global" and isinstance(sparsity, dict):
            raise PolicyError(
                "PruneWeights: global pruning takes one sparsity",
                expected="a float",
                found="a per-layer dict",
                fix="use scope='layer' for per-layer sparsities",
            )
        values = sparsity.values() if isinstance(sparsity, dict) else [sparsity]
        for s in values:
            if not isinstance(s, int | float) or not 0.0 <= float(s) <= 1.0:
                raise PolicyError(
                    "PruneWeights: sparsity out of range",
                    expected="a fraction in [0, 1]",
                    found=repr(s),
                    fix="e.g. 0.5 prunes half of the weights",
                )
        self.sparsity = dict(sparsity) if isinstance(sparsity, dict) else float(sparsity)
        self.scope = scope

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        per_func = {gv: layer_weights(f) for gv, f in host_functions(mod)}
        found = {lid: w for ws, _ in per_func.values() for lid, w in ws.items()}
        missing = [lid for _, ms in per_func.values() for lid in ms]
        if isinstance(self.sparsity, dict):
            check_layer_ids(list(self.sparsity), found, missing, "PruneWeights", "sparsity")
            targets = {lid: self.sparsity[lid] for lid in found if lid in self.sparsity}
        else:
            targets = dict.fromkeys(found, self.sparsity)
        new: dict[str, np.ndarray] = {}
        if self.scope == "global":
            layers = list(targets)
            specs = [(found[lid].codes, found[lid].zero_point, found[lid].scale, found[lid].axis) for lid in layers]
            pruned = prune_codes_global(specs, float(self.sparsity))  # type: ignore[arg-type]
            new = dict(zip(layers, pruned, strict=True))
        else:
            for lid, s in targets.items():
                w = found[lid]
                new[lid] = prune_codes(w.codes, w.zero_point, w.scale, s, axis=w.axis)
        funcs = {}
        for gv, (ws, _) in per_func.items():
            repl = {w.dequantize: new[lid] for lid, w in ws.items() if lid in new}
            if repl:
                funcs[gv] = replace_weights(mod[gv], repl)
        return rebuild(mod, funcs)
