"""partition_for_vacc: the BYOC entry point that offloads quantized conv/dense layers to vacc."""

from __future__ import annotations

import json
import re

import tvm
from tvm import relax

from approxtvm.errors import ensure_ffi_errors
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.patterns import HostReasons, vacc_patterns
from approxtvm.targets.vacc.split_shared import SplitSharedDequantize

#: Module attribute written by AnnotateApproximation (IR variable name → config JSON).
APPROX_ATTR = "vacc.approx"
#: Module attribute written by NameLayers (IR variable name → layer id).
LAYER_NAMES_ATTR = "vacc.layer_names"
#: Module attribute written by AnnotateApproximation (IR variable name → why the policy keeps it on the host).
HOST_POLICY_ATTR = "vacc.host_policy"
#: Module attribute written by partition_for_vacc (layer id → why it stays on the host).
HOST_REASONS_ATTR = "vacc.host_reasons"
#: Offloaded-function attribute naming the accelerator spec (name, path or spec JSON).
ACCELERATOR_ATTR = "vacc.accelerator"
#: Relax ops the accelerator executes.
LAYER_OPS = frozenset({"relax.nn.conv2d", "relax.matmul"})


def module_table(mod: tvm.IRModule, attr: str) -> dict[str, str]:
    """A ``str → str`` side table stored as an IRModule attribute (empty if absent)."""
    return {str(k): str(v) for k, v in ((mod.attrs or {}).get(attr, {}) or {}).items()}


def composite_of(func: relax.Function) -> relax.Function:
    """The composite function inside an offloaded (``Codegen="vacc"``) function."""
    for binding in func.body.blocks[0].bindings:
        if isinstance(binding.value, relax.Function):
            return binding.value
    raise ValueError("offloaded function holds no composite function")


def layer_vars(func: relax.Function) -> dict[int, str]:
    """``conv2d/matmul call handle → name of the variable it is bound to`` in ``func``."""
    out: dict[int, str] = {}
    for block in func.body.blocks:
        for b in block.bindings:
            v = b.value
            if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and v.op.name in LAYER_OPS:
                out[v.__chandle__()] = b.var.name
    return out


def composite_layer_id(comp: relax.Function) -> str:
    """IR name of a composite's layer: ``vacc.var`` set at fusion, else the conv/matmul's variable."""
    if comp.attrs is not None and str(comp.attrs.get("vacc.var", "")):
        return str(comp.attrs["vacc.var"])
    for binding in comp.body.blocks[0].bindings:
        v = binding.value
        if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and v.op.name in LAYER_OPS:
            return binding.var.name
    raise ValueError("composite function holds no conv2d/matmul")


def _symbol(prefix: str, layer_id: str) -> str:
    return prefix + re.sub(r"[^0-9A-Za-z_]", "_", layer_id)


@tvm.transform.module_pass(opt_level=0, name="AttachVaccLayerInfo")
class AttachVaccLayerInfo:
    """Copy each layer's id and config onto its offloaded function and give it a unique symbol.

    Symbols are ``<prefix><layer id>``: the VM resolves offloaded calls by global symbol, and
    the default ``fused_…_vacc`` names would collide between two compiled models (DESIGN §2).
    """

    def __init__(self, symbol_prefix: str = "vacc_", accelerator: str = "simba_like") -> None:
        self.symbol_prefix = symbol_prefix
        self.accelerator = accelerator

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        table = module_table(mod, APPROX_ATTR)
        names = module_table(mod, LAYER_NAMES_ATTR)
        default = ApproxConfig().to_json()
        out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)  # never mutate the input module
        used: set[str] = set()
        for gv, func in mod.functions.items():
            if not isinstance(func, relax.Function) or func.attrs is None or func.attrs.get("Codegen") != "vacc":
                continue
            var = composite_layer_id(composite_of(func))
            lid = names.get(var, var)
            cfg = str(table.get(var, default))
            json.loads(cfg)  # the side table only ever holds canonical JSON
            func = (
                func.with_attr("vacc.layer", lid)
                .with_attr("vacc.config", cfg)
                .with_attr(ACCELERATOR_ATTR, self.accelerator)
            )
            symbol = _symbol(self.symbol_prefix, lid)
            while symbol in used:  # ids that sanitize alike (a.b / a_b) must not share a symbol
                symbol += "_"
            used.add(symbol)
            func = func.with_attr("global_symbol", symbol)
            out[gv] = func
        return out


def params_by_name(
    mod: tvm.IRModule, params: dict[str, object] | list[object] | tuple[object, ...] | None, entry: str = "main"
) -> dict[str, object]:
    """Parameters keyed by name, from a dict or from the list ``relax.frontend.detach_params`` gives.

    A list binds, in order, the parameters of ``entry`` after its ``num_input`` runtime inputs
    (the layout of ``from_onnx(..., keep_params_in_input=True)``).
    """
    if not params:
        return {}
    if isinstance(params, dict):
        return dict(params)
    func = mod[entry]
    n_in = int(func.attrs["num_input"]) if func.attrs is not None and "num_input" in func.attrs else 0
    names = [p.name for p in func.params[n_in:]]
    if len(names) != len(params):
        from approxtvm.errors import ModelError

        raise ModelError(
            "partition_for_vacc: the parameter list does not match the module",
            expected=f"{len(names)} values (the parameters of {entry!r} after its {n_in} inputs)",
            found=f"{len(params)} values",
            fix="pass detach_params(mod)[1]['main'] of this very module, or a {name: value} dict",
        )
    return dict(zip(names, params, strict=True))


def partition_for_vacc(
    mod: tvm.IRModule,
    params: dict[str, object] | list[object] | tuple[object, ...] | None = None,
    *,
    symbol_prefix: str = "vacc_",
    entry: str = "main",
    accelerator: str | object = "simba_like",
) -> tvm.IRModule:
    """Offload every supported quantized conv2d / dense layer to vacc.

    Parameters
    ----------
    mod
        Imported (and optionally annotated) module, before ``FoldConstant``.
    params
        Parameters to bind as constants first (weights must be constants to be offloaded): a
        ``{name: value}`` dict, or the list ``relax.frontend.detach_params`` returns for ``entry``.
    symbol_prefix
        Prefix of the offloaded functions' global symbols (unique per compiled model).
    entry
        Function holding the layers.
    accelerator
        Spec the registered ``relax.ext.vacc`` codegen maps the layers onto: a shipped name, a
        YAML path or an :class:`~approxtvm.targets.vacc.hardware.AcceleratorSpec`.

    Returns
    -------
    tvm.IRModule
        A new module; ``mod`` is not changed. Offloaded functions carry ``Codegen="vacc"``,
        ``vacc.layer``, ``vacc.config`` and ``vacc.accelerator`` attributes; rejected layers stay
        on the host (the reason is logged on the ``approxtvm.vacc`` logger and kept per layer in
        the module attribute ``vacc.host_reasons``, see :func:`host_reasons`).
    """
    ensure_ffi_errors()
    bound = params_by_name(mod, params, entry)
    if bound:
        mod = relax.transform.BindParams(entry, bound)(mod)
    mod = SplitSharedDequantize()(mod)  # a weight/bias dequantize shared by layers: one copy per layer
    why = HostReasons(module_table(mod, LAYER_NAMES_ATTR), set(module_table(mod, HOST_POLICY_ATTR)))
    fuse = relax.transform.FuseOpsByPattern(
        vacc_patterns(layer_vars(mod[entry]), why), bind_constants=True, annotate_codegen=True
    )
    out = tvm.transform.Sequential([fuse, AttachVaccLayerInfo(symbol_prefix, _accelerator_attr(accelerator))])(mod)
    offloaded = {
        str(f.attrs["vacc.layer"])
        for f in out.functions.values()
        if isinstance(f, relax.Function) and f.attrs is not None and "vacc.layer" in f.attrs
    }
    # a layer rejected by one pattern may still be taken by another (e.g. without its bias)
    reasons = {lid: r for lid, r in why.reasons.items() if lid not in offloaded}
    for var in layer_vars(mod[entry]).values():
        lid = module_table(mod, LAYER_NAMES_ATTR).get(var, var)
        if lid not in offloaded and lid not in reasons:
            reasons[lid] = "no vacc pattern matches (the layer is not dequantize → conv2d/matmul on 8-bit codes)"
    return out.with_attr(HOST_REASONS_ATTR, reasons)


def host_reasons(mod: tvm.IRModule) -> dict[str, str]:
    """``layer id → reason`` for every conv2d / matmul that stays on the host."""
    return module_table(mod, HOST_REASONS_ATTR)


def _accelerator_attr(accelerator: object) -> str:
    """The ``vacc.accelerator`` attribute: a name or path as given, a spec object as its JSON."""
    if isinstance(accelerator, str):
        return accelerator
    import os

    if isinstance(accelerator, os.PathLike):
        return os.fspath(accelerator)
    return json.dumps(accelerator.to_dict())  # type: ignore[attr-defined]
