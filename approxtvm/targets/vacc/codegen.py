"""vacc codegen: each offloaded composite function becomes a LayerSchedule plus its weights.

``relax.ext.vacc`` is the BYOC codegen hook ``RunCodegen`` calls. It lowers every function it
is given and registers, under the function's global symbol, the runtime entry the VM calls.
The entry is built by a factory the caller supplies, so this package never imports the runtime
(DESIGN: targets emit data, the runtime executes it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from approxtvm.errors import ApproxTvmError, CompileError, PolicyError, ScheduleError, ensure_ffi_errors
from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.compression import CompressedWeights
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.package_counts import package_counts
from approxtvm.targets.vacc.package_mapper import map_package
from approxtvm.targets.vacc.partition import composite_layer_id, composite_of
from approxtvm.targets.vacc.schedule import Intrinsic, LayerSchedule, QuantParams, WeightLayout
from approxtvm.targets.vacc.weight_layout import compressed_layout, dense_layout
from approxtvm.targets.vacc.workload import LayerShape

CODEGEN_NAME = "relax.ext.vacc"


@dataclass(frozen=True, slots=True)
class MultiplierInfo:
    """What the codegen needs to know of a multiplier (resolved by the caller)."""

    name: str
    table_hash: str
    mul_energy_pj: float
    signed: bool
    exact: bool = False


@dataclass(frozen=True)
class LoweredLayer:
    """A lowered layer: its schedule and the constant tensors the runtime needs.

    Attributes
    ----------
    schedule
        The layer schedule.
    weight
        Weight codes, OIHW for conv2d ((K, C / groups, R, S) when grouped) and (K, C) for dense;
        an empty array for an activation × activation matmul (its second operand streams in).
    bias
        int32 bias codes (K,) or ``None``.
    compressed
        The encoded weight tiles when the policy compresses this layer, else ``None``.
    """

    schedule: LayerSchedule
    weight: np.ndarray
    bias: np.ndarray | None
    compressed: CompressedWeights | None = None


def _const(expr: relax.Expr) -> np.ndarray:
    return expr.value.numpy()


def _ints(values: Any) -> tuple[int, ...]:
    if values is None:  # the pattern checks keep layers without static shapes on the host
        raise ScheduleError(
            "offloaded layer has no static shape",
            expected="static shapes after ONNX shape inference",
            found="unknown shape",
            fix="export the model with static shapes",
        )
    return tuple(int(v) for v in values)


def _is_act_matmul(comp: relax.Function) -> bool:
    """Whether ``comp`` is an activation × activation matmul (``Composite = vacc.qmatmul``)."""
    return comp.attrs is not None and str(comp.attrs.get("Composite", "")) == "vacc.qmatmul"


def _matmul_operands(comp: relax.Function) -> tuple[relax.Var, relax.Var]:
    """The parameters feeding the first (table row) and second (column) operand of the matmul."""
    bound = {b.var: b.value for b in comp.body.blocks[0].bindings}
    for value in bound.values():
        if isinstance(value, relax.Call) and value.op.name == "relax.matmul":
            srcs = []
            for arg in value.args[:2]:
                deq = bound.get(arg)
                src = deq.args[0] if isinstance(deq, relax.Call) else None
                if not isinstance(src, relax.Var):
                    break
                srcs.append(src)
            if len(srcs) == 2:
                return srcs[0], srcs[1]
    raise ScheduleError(
        "activation × activation matmul without dequantized operands",
        expected="matmul(dequantize(a), dequantize(b))",
        found=str(comp)[:200],
        fix="report this model: the pattern table and codegen disagree",
    )


def _recode_weights(
    weight: np.ndarray, zero_points: tuple[int, ...], activation_dtype: str
) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Weight codes in the activations' signedness: ``(codes, zero points, offset added)``.

    Flipping the top bit maps int8 ``v`` to uint8 ``v + 128`` (and back); shifting the zero
    points alike keeps every ``w − z_w``, hence the exact products.
    """
    want = np.dtype(activation_dtype)
    if weight.dtype == want:
        return weight, zero_points, 0
    offset = 128 if want == np.uint8 else -128
    recoded = (np.ascontiguousarray(weight).view(np.uint8) ^ np.uint8(0x80)).view(want)
    return recoded, tuple(z + offset for z in zero_points), offset


def lower_function(
    func: relax.Function, spec: AcceleratorSpec, resolve_multiplier: Callable[[str, bool], MultiplierInfo]
) -> LoweredLayer:
    """Lower one ``Codegen="vacc"`` function to a :class:`LoweredLayer`.

    Parameters
    ----------
    func
        Offloaded function produced by :func:`partition_for_vacc`.
    spec
        Accelerator the mapping targets.
    resolve_multiplier
        ``(spec, signed) → MultiplierInfo`` for the layer's multiplier.
    """
    comp = composite_of(func)
    layer_id = str(func.attrs["vacc.layer"]) if "vacc.layer" in func.attrs else composite_layer_id(comp)
    config = ApproxConfig.from_dict(
        json.loads(str(func.attrs.get("vacc.config", ApproxConfig().to_json()))), f"layer {layer_id}"
    )
    symbol = str(func.attrs["global_symbol"])
    act_matmul = _is_act_matmul(comp)
    if len(comp.params) != (2 if act_matmul else 1):
        raise ScheduleError(
            f"layer {layer_id}: offloaded call has {len(comp.params)} runtime inputs",
            expected=(
                "1 (the quantized activation; weights are bound constants); 2 for an activation × activation matmul"
            ),
            found=str(len(comp.params)),
            fix="bind the parameters before partitioning",
        )
    x_param = comp.params[0]
    y_param = comp.params[1] if act_matmul else None
    inputs: tuple[str, ...] = ("x",)
    if act_matmul:
        x_param, y_param = _matmul_operands(comp)
        inputs = ("a", "b") if x_param.same_as(comp.params[0]) else ("b", "a")
    env: dict[Any, tuple[str, Any]] = {}  # var -> (kind, payload)
    weight = bias = None
    quant: dict[str, Any] = {}
    shape: LayerShape | None = None
    result_var = None
    transpose_w = False
    for b in comp.body.blocks[0].bindings:
        call = b.value
        op = call.op.name
        args = call.args
        if op == "relax.dequantize":
            src = args[0]
            scale, zp = _const(args[1]).reshape(-1), _const(args[2]).reshape(-1)
            if isinstance(src, relax.Var) and src.same_as(x_param):
                quant["x"] = (float(scale[0]), int(zp[0]))
                env[b.var] = ("x", None)
            elif y_param is not None and isinstance(src, relax.Var) and src.same_as(y_param):
                # the second activation plays the weight's role (table column, weight buffer)
                quant["w"] = ((float(scale[0]),), (int(zp[0]),))
                weight = np.zeros((0, 0), dtype=str(src.ty.dtype))
                env[b.var] = ("x2", None)
            elif src.ty.dtype == "int32":
                bias = _const(src).reshape(-1).astype(np.int32)
                quant["b"] = (tuple(map(float, scale)), tuple(map(int, zp)))
                env[b.var] = ("b", None)
            else:
                weight = _const(src)
                quant["w"] = (tuple(map(float, scale)), tuple(map(int, zp)))
                env[b.var] = ("w", None)
        elif op == "relax.permute_dims":
            transpose_w = False  # matmul(x, permute_dims(W)): W is (K, C) already
            env[b.var] = ("wT", None)
        elif op == "relax.nn.conv2d":
            a = call.attrs
            xs = _ints(args[0].ty.shape)
            ws = _ints(args[1].ty.shape)
            pads = _ints(a.padding)
            shape = LayerShape.conv2d(
                xs[0],
                ws[0],
                xs[1],
                xs[2],
                xs[3],
                ws[2],
                ws[3],
                strides=_ints(a.strides),
                dilations=_ints(a.dilation),
                pads=(pads[0], pads[1], pads[2], pads[3]),
                groups=int(a.groups),
            )
            result_var = b.var
        elif op == "relax.matmul" and act_matmul:
            xs, ys = _ints(args[0].ty.shape), _ints(args[1].ty.shape)
            lead = np.broadcast_shapes(xs[:-2], ys[:-2])
            shape = LayerShape.matmul(math.prod(lead), xs[-2], ys[-1], xs[-1])
            result_var = b.var
        elif op == "relax.matmul":
            xs = _ints(args[0].ty.shape)
            kind = env.get(args[1], ("?", None))[0]
            transpose_w = kind == "w"  # matmul(x, W) with W (C, K)
            k = _ints(call.ty.shape)[-1]
            # a rank ≥ 3 input is a batch of rows: leading dimensions flatten into N
            shape = LayerShape.dense(math.prod(xs[:-1]), k, xs[-1])
            result_var = b.var
        elif op in ("relax.reshape", "relax.add"):
            result_var = b.var if op == "relax.add" else result_var
        else:
            raise ScheduleError(
                f"layer {layer_id}: unexpected op {op} in the offloaded function",
                expected="dequantize, conv2d/matmul, permute_dims, reshape, add",
                found=op,
                fix="report this model: the pattern table and codegen disagree",
            )
    if shape is None or weight is None or "x" not in quant:
        raise ScheduleError(
            f"layer {layer_id}: offloaded function lacks a layer",
            expected="conv2d or matmul",
            found="none",
            fix="report this model",
        )
    if transpose_w:
        weight = np.ascontiguousarray(weight.T)
    ws, wz = quant["w"]
    x_dtype = str(x_param.ty.dtype)
    weight, wz, offset = _recode_weights(weight, wz, x_dtype)
    body = comp.body.body
    outs = list(body.fields) if isinstance(body, relax.Tuple) else [body]
    kinds = []
    for o in outs:
        kind = env.get(o, ("", None))[0]
        if kind == "x":
            kinds.append("input_dequantized")
        elif kind == "x2":
            kinds.append("input2_dequantized")
        else:
            kinds.append("result")
    if act_matmul and config.compression != "none":
        # the second operand is produced at run time: there is no stored weight to encode
        config = dataclasses.replace(config, compression="none")
    signed = x_dtype == "int8"
    bs, bz = quant.get("b", ((), ()))
    q = QuantParams(signed, quant["x"][0], quant["x"][1], ws, wz, bs, bz, offset)
    mult = resolve_multiplier(config.multiplier, signed)
    if offset and not mult.exact:
        a, b = ("uint8", "int8") if offset > 0 else ("int8", "uint8")
        raise PolicyError(
            f"layer {layer_id}: no multiplier table for {a} activations × {b} weights",
            expected=f"the exact multiplier, or a model whose activations and weights are both {a} "
            f"(approximate tables are {a}×{a} or the other signedness on both operands)",
            found=f"multiplier {config.multiplier!r} ({'signed' if mult.signed else 'unsigned'} table) "
            f"with {a} activations and {b} weights",
            fix=f"keep this layer exact (policy rule `{layer_id}: exact`), or quantize activations and weights "
            "to the same signedness (QuantOptions(signed=...), or onnxruntime quantize_static with "
            "activation_type = weight_type)",
        )
    package = None
    if spec.package is None:
        mapping = map_layer(shape, spec, spec.mapping_objective)
        counts = analytic_counts(mapping, spec)
    else:  # split across the chiplets; the kernels run the whole layer's nest (same arithmetic)
        package = map_package(shape, spec, spec.mapping_objective)
        mapping = package.chiplet if not package.partition.splits else map_layer(shape, spec, spec.mapping_objective)
        counts = package_counts(package, spec)
    intrinsic = Intrinsic(
        "vacc.mac8",
        spec.pe_array.lanes_per_vector_mac,
        config.multiplier,
        mult.name,
        mult.table_hash,
        mult.mul_energy_pj,
    )
    compressed = None
    if config.compression == "none" or act_matmul:
        layout: WeightLayout = dense_layout(mapping, spec)
    else:
        layout, compressed = compressed_layout(mapping, weight, q.weight_zero_points[0], config.compression)
    schedule = LayerSchedule(
        layer_id,
        symbol,
        shape,
        q,
        bias is not None,
        config,
        spec.name,
        mapping,
        intrinsic,
        layout,
        tuple(kinds),
        {"counts": counts.to_dict()},
        inputs,
        package,
    )
    return LoweredLayer(schedule, weight, bias, compressed)


def _lower_or_explain(
    func: relax.Function, spec: AcceleratorSpec, resolve_multiplier: Callable[[str, bool], MultiplierInfo]
) -> LoweredLayer:
    """:func:`lower_function`; an unexpected failure becomes a project error naming the layer."""
    try:
        return lower_function(func, spec, resolve_multiplier)
    except ApproxTvmError:
        raise
    except Exception as exc:
        layer = str(func.attrs["vacc.layer"]) if func.attrs is not None and "vacc.layer" in func.attrs else "?"
        raise CompileError(
            f"layer {layer}: lowering to the accelerator failed",
            expected="a conv2d/dense layer the vacc codegen can schedule",
            found=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}",
            fix=f"keep the layer on the host (policy `host: [{layer}]`) and report the model",
        ) from exc


class CodegenSession:
    """One compilation's codegen: lowers functions, registers runtime entries, keeps the results.

    Parameters
    ----------
    spec
        Accelerator spec.
    resolve_multiplier
        Resolves a policy's multiplier spec.
    runner_factory
        Builds the runtime entry (a callable taking the VM's DPS tensors) of a lowered layer.
    """

    def __init__(
        self,
        spec: AcceleratorSpec,
        resolve_multiplier: Callable[[str, bool], MultiplierInfo],
        runner_factory: Callable[[LoweredLayer], Callable[..., None]],
    ) -> None:
        self.spec = spec
        self.resolve_multiplier = resolve_multiplier
        self.runner_factory = runner_factory
        self.layers: dict[str, LoweredLayer] = {}

    def codegen(self, functions: list[relax.Function], options: Any, constant_names: Any) -> list[Any]:
        """The ``relax.ext.vacc`` hook: lower and register every function; emit no module."""
        for func in functions:
            lowered = _lower_or_explain(func, self.spec, self.resolve_multiplier)
            self.layers[lowered.schedule.layer_id] = lowered
            tvm_ffi.register_global_func(lowered.schedule.symbol, self.runner_factory(lowered), override=True)
        return []

    @contextlib.contextmanager
    def active(self) -> Iterator[CodegenSession]:
        """Make this session the ``relax.ext.vacc`` codegen for the duration of the block."""
        previous = tvm_ffi.get_global_func(CODEGEN_NAME, allow_missing=True)
        tvm_ffi.register_global_func(CODEGEN_NAME, self.codegen, override=True)
        try:
            yield self
        finally:  # give the backend back to whoever had it (the registered default codegen)
            tvm_ffi.register_global_func(CODEGEN_NAME, previous or _no_session, override=True)


def _no_session(functions: Any, options: Any, constant_names: Any) -> list[Any]:
    raise ScheduleError(
        "relax.ext.vacc was called outside a compilation",
        expected="RunCodegen inside CodegenSession.active()",
        found="no active session",
        fix="compile with approxtvm.compile_onnx",
    )


def run_codegen(mod: tvm.IRModule, session: CodegenSession) -> tvm.IRModule:
    """Run ``RunCodegen`` with ``session`` as the vacc codegen."""
    ensure_ffi_errors()
    with session.active():
        return relax.transform.RunCodegen()(mod)
