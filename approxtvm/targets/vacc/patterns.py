"""BYOC pattern table of the vacc accelerator: quantized conv2d (grouped and depthwise too), dense
layers (MatMul / Gemm with a constant weight, input of any rank), with and without bias, and
activation × activation MatMuls (attention ``QKᵀ`` and ``AV``, batched over heads).

Patterns match ``dequantize → conv2d/matmul`` and must run before ``FoldConstant``, which would
fold the weight dequantize into a float constant (DESIGN §2).
"""

from __future__ import annotations

import logging

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

LOG = logging.getLogger("approxtvm.vacc")
#: 8-bit operand types the PE array multiplies.
OPERAND_DTYPES = ("uint8", "int8")


def _deq(data: object = None) -> object:
    """``dequantize(data, scale, zero_point)`` with constant scale and zero point."""
    return is_op("relax.dequantize")(wildcard() if data is None else data, is_const(), is_const())


class HostReasons:
    """Why each rejected layer stays on the host: ``{layer id: reason}``, one reason per layer.

    Pattern checks run once per candidate pattern (with and without bias), so a layer may be
    rejected several times; the first reason is kept and logged once on ``approxtvm.vacc``.

    Parameters
    ----------
    names
        IR variable name → layer id (the ``vacc.layer_names`` side table).
    forced
        IR variable names of layers the policy keeps on the host.
    """

    def __init__(self, names: dict[str, str] | None = None, forced: set[str] | None = None) -> None:
        self.names = dict(names or {})
        self.forced = set(forced or ())
        self.reasons: dict[str, str] = {}

    def var_name(self, ctx: relax.transform.PatternCheckContext) -> str:
        """The IR variable bound to the matched conv2d / matmul."""
        root = ctx.annotated_expr["root"]
        for var, value in ctx.matched_bindings.items():
            if value.same_as(root):
                return str(var.name)
        return "<unnamed>"

    def layer_id(self, ctx: relax.transform.PatternCheckContext) -> str:
        """The layer id of the matched conv2d / matmul."""
        var = self.var_name(ctx)
        return self.names.get(var, var)

    def reject(self, ctx: relax.transform.PatternCheckContext, reason: str) -> bool:
        """Record (and log once) why the matched layer stays on the host; returns ``False``."""
        lid = self.layer_id(ctx)
        if lid not in self.reasons:
            self.reasons[lid] = reason
            LOG.info("vacc: layer %s stays on the host: %s", lid, reason)
        return False


def _static(expr: relax.Expr) -> bool:
    shape = getattr(expr.ty, "shape", None)
    return shape is not None and all(isinstance(d, tvm.tirx.IntImm) for d in shape)


def _check_operands(ctx: relax.transform.PatternCheckContext, why: HostReasons) -> bool:
    x, w, root = ctx.annotated_expr["input"], ctx.annotated_expr["weight"], ctx.annotated_expr["root"]
    if not (_static(x) and _static(w) and _static(root)):
        return why.reject(ctx, "its shape is not static after shape inference (dynamic dimensions)")
    xd, wd = x.ty.dtype, w.ty.dtype
    if xd not in OPERAND_DTYPES or wd not in OPERAND_DTYPES:
        return why.reject(ctx, f"operands are {xd}×{wd}; the PE array multiplies 8-bit integers")
    if not isinstance(w, tvm.ir.Constant):
        return why.reject(ctx, "the weight is not a constant (bind the parameters first)")
    for name in ("input_deq", "weight_deq"):
        deq = ctx.annotated_expr[name]
        if int(deq.attrs.axis) not in (-1, 0, 1) and len(deq.args[1].ty.shape) > 0:
            return why.reject(ctx, f"{name} quantization axis {int(deq.attrs.axis)} is not supported")
    xs = ctx.annotated_expr["input_deq"].args[1]
    if len(xs.ty.shape) > 0 and int(xs.ty.shape[0]) != 1:
        return why.reject(ctx, "per-channel activation scales are not supported")
    return True


def _check_conv(ctx: relax.transform.PatternCheckContext, why: HostReasons) -> bool:
    if why.var_name(ctx) in why.forced:
        return why.reject(ctx, "the policy keeps it on the host")
    a = ctx.annotated_expr["root"].attrs
    if a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
        return why.reject(ctx, f"layouts {a.data_layout}/{a.kernel_layout} (only NCHW/OIHW)")
    wdeq = ctx.annotated_expr["weight_deq"]
    if len(wdeq.args[1].ty.shape) > 0 and int(wdeq.attrs.axis) not in (0, -4):
        return why.reject(ctx, "weight scales are per input channel, not per output channel")
    return _check_operands(ctx, why)


def _check_dense(ctx: relax.transform.PatternCheckContext, why: HostReasons, transposed: bool) -> bool:
    if why.var_name(ctx) in why.forced:
        return why.reject(ctx, "the policy keeps it on the host")
    x = ctx.annotated_expr["input"]
    if x.ty.shape is None or len(x.ty.shape) < 2:
        # leading dimensions of a rank ≥ 3 input are flattened into rows; a vector has none
        rank = "unknown" if x.ty.shape is None else len(x.ty.shape)
        return why.reject(ctx, f"matmul input has rank {rank} (a dense layer needs rows: rank ≥ 2)")
    if len(ctx.annotated_expr["weight"].ty.shape) != 2:
        return why.reject(ctx, "matmul weight is not 2-D (a batched constant operand is not a dense layer)")
    wdeq = ctx.annotated_expr["weight_deq"]
    if len(wdeq.args[1].ty.shape) > 0 and int(wdeq.args[1].ty.shape[0]) > 1:
        # per-channel scales must run along the output dimension K: axis 0 of (K, C), axis 1 of (C, K)
        axis = int(wdeq.attrs.axis) % 2
        if axis != (0 if transposed else 1):
            return why.reject(ctx, "weight scales are per input feature, not per output feature")
    return _check_operands(ctx, why)


def _check_act_matmul(ctx: relax.transform.PatternCheckContext, why: HostReasons) -> bool:
    a, b = ctx.annotated_expr["input"], ctx.annotated_expr["weight"]
    if isinstance(b, tvm.ir.Constant) or isinstance(a, tvm.ir.Constant):
        return False  # a constant operand is a dense layer (the next patterns), not a rejection
    if why.var_name(ctx) in why.forced:
        return why.reject(ctx, "the policy keeps it on the host")
    root = ctx.annotated_expr["root"]
    if not (_static(a) and _static(b) and _static(root)) or len(a.ty.shape) < 2 or len(b.ty.shape) < 2:
        return why.reject(ctx, "activation × activation matmul needs static operands of rank ≥ 2")
    ad, bd = a.ty.dtype, b.ty.dtype
    if ad not in OPERAND_DTYPES or bd not in OPERAND_DTYPES:
        return why.reject(ctx, f"operands are {ad}×{bd}; the PE array multiplies 8-bit integers")
    if ad != bd:
        # one multiplier table is unsigned×unsigned or signed×signed, and neither operand is a
        # constant that could be re-coded at compile time
        return why.reject(ctx, f"mixed operand types {ad}×{bd}; quantize both operands alike")
    for name in ("input_deq", "weight_deq"):
        sc = ctx.annotated_expr[name].args[1]
        if len(sc.ty.shape) > 0 and any(int(d) != 1 for d in sc.ty.shape):
            return why.reject(ctx, f"{name}: per-channel activation scales are not supported")
    return True


def vacc_patterns(layer_of: dict[int, str] | None = None, why: HostReasons | None = None) -> list[FusionPattern]:
    """The pattern table, most specific first (FuseOpsByPattern prefers earlier patterns).

    Parameters
    ----------
    layer_of
        ``conv2d/matmul call handle → IR variable name`` of the module being partitioned; each
        composite function then carries ``vacc.var`` naming its layer. Fusion renames the
        variable a composite returns (a layer without bias returns its conv2d directly), so the
        name must be taken from the original binding, before fusion.
    why
        Collects the reason each rejected layer stays on the host.
    """
    names = dict(layer_of or {})
    why = why or HostReasons()

    def conv_check(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_conv(ctx, why)

    def dense_t_check(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_dense(ctx, why, transposed=True)

    def dense_check(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_dense(ctx, why, transposed=False)

    def matmul_check(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_act_matmul(ctx, why)

    def attrs(annotated: dict[str, relax.Expr]) -> dict[str, str]:
        return {"vacc.var": names.get(annotated["root"].__chandle__(), "")}

    x, w = wildcard(), wildcard()
    xd, wd = _deq(x), _deq(w)
    conv = is_op("relax.nn.conv2d")(xd, wd)
    conv_bias = is_op("relax.add")(conv, is_op("relax.reshape")(_deq(is_const()), wildcard()))
    conv_ann = {"input": x, "weight": w, "input_deq": xd, "weight_deq": wd, "root": conv}

    mx, mw = wildcard(), wildcard()
    mxd, mwd = _deq(mx), _deq(mw)
    mm_t = is_op("relax.matmul")(mxd, is_op("relax.permute_dims")(mwd))  # Gemm transB=1: weight (K, C)
    mm = is_op("relax.matmul")(mxd, mwd)  # MatMul / Gemm transB=0: weight (C, K)
    dense_ann = {"input": mx, "weight": mw, "input_deq": mxd, "weight_deq": mwd}
    return [
        FusionPattern("vacc.qconv2d_bias", conv_bias, conv_ann, conv_check, attrs),
        FusionPattern("vacc.qconv2d", conv, conv_ann, conv_check, attrs),
        # both operands are activations (attention): a layer kind of its own, tried before the
        # dense patterns (which would reject a non-constant weight)
        FusionPattern("vacc.qmatmul", mm, {**dense_ann, "root": mm}, matmul_check, attrs),
        FusionPattern(
            "vacc.qdense_t_bias",
            is_op("relax.add")(mm_t, _deq(is_const())),
            {**dense_ann, "root": mm_t},
            dense_t_check,
            attrs,
        ),
        FusionPattern("vacc.qdense_t", mm_t, {**dense_ann, "root": mm_t}, dense_t_check, attrs),
        FusionPattern(
            "vacc.qdense_bias", is_op("relax.add")(mm, _deq(is_const())), {**dense_ann, "root": mm}, dense_check, attrs
        ),
        FusionPattern("vacc.qdense", mm, {**dense_ann, "root": mm}, dense_check, attrs),
    ]
