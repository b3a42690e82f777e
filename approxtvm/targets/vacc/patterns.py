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


def _layer_id(ctx: relax.transform.PatternCheckContext) -> str:
    root = ctx.annotated_expr["root"]
    for var, value in ctx.matched_bindings.items():
        if value.same_as(root):
            return var.name
    return "<unnamed>"


def _reject(ctx: relax.transform.PatternCheckContext, reason: str) -> bool:
    LOG.info("vacc: layer %s stays on the host: %s", _layer_id(ctx), reason)
    return False


def _check_operands(ctx: relax.transform.PatternCheckContext) -> bool:
    x, w = ctx.annotated_expr["input"], ctx.annotated_expr["weight"]
    xd, wd = x.ty.dtype, w.ty.dtype
    if xd not in OPERAND_DTYPES or wd not in OPERAND_DTYPES:
        return _reject(ctx, f"operands are {xd}×{wd}; the PE array multiplies 8-bit integers")
    if xd != wd:
        # one multiplier table is either unsigned×unsigned or signed×signed (DESIGN §3)
        return _reject(ctx, f"mixed operand types {xd}×{wd}; quantize activations and weights alike")
    if not isinstance(w, tvm.ir.Constant):
        return _reject(ctx, "the weight is not a constant (bind the parameters first)")
    for name in ("input_deq", "weight_deq"):
        deq = ctx.annotated_expr[name]
        if int(deq.attrs.axis) not in (-1, 0, 1) and len(deq.args[1].ty.shape) > 0:
            return _reject(ctx, f"{name} quantization axis {int(deq.attrs.axis)} is not supported")
    xs = ctx.annotated_expr["input_deq"].args[1]
    if len(xs.ty.shape) > 0 and int(xs.ty.shape[0]) != 1:
        return _reject(ctx, "per-channel activation scales are not supported")
    return True


def _check_conv(ctx: relax.transform.PatternCheckContext) -> bool:
    a = ctx.annotated_expr["root"].attrs
    if a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
        return _reject(ctx, f"layouts {a.data_layout}/{a.kernel_layout} (only NCHW/OIHW)")
    wdeq = ctx.annotated_expr["weight_deq"]
    if len(wdeq.args[1].ty.shape) > 0 and int(wdeq.attrs.axis) not in (0, -4):
        return _reject(ctx, "weight scales are per input channel, not per output channel")
    return _check_operands(ctx)


def _check_dense(ctx: relax.transform.PatternCheckContext, transposed: bool) -> bool:
    x = ctx.annotated_expr["input"]
    if x.ty.shape is None or len(x.ty.shape) < 2:
        # leading dimensions of a rank ≥ 3 input are flattened into rows; a vector has none
        return _reject(ctx, "matmul input is not a matrix or a batch of rows (rank < 2 or unknown)")
    if len(ctx.annotated_expr["weight"].ty.shape) != 2:
        return _reject(ctx, "matmul weight is not 2-D (a batched constant operand is not a dense layer)")
    wdeq = ctx.annotated_expr["weight_deq"]
    if len(wdeq.args[1].ty.shape) > 0 and int(wdeq.args[1].ty.shape[0]) > 1:
        # per-channel scales must run along the output channels: axis 0 of (K, C), axis 1 of (C, K)
        axis = int(wdeq.attrs.axis) % 2
        if axis != (0 if transposed else 1):
            return _reject(ctx, "weight scales are per input channel, not per output channel")
    return _check_operands(ctx)


def _check_act_matmul(ctx: relax.transform.PatternCheckContext) -> bool:
    a, b = ctx.annotated_expr["input"], ctx.annotated_expr["weight"]
    if isinstance(b, tvm.ir.Constant) or isinstance(a, tvm.ir.Constant):
        return False  # a constant operand is a dense layer (the next patterns), not an error
    if a.ty.shape is None or b.ty.shape is None or len(a.ty.shape) < 2 or len(b.ty.shape) < 2:
        return _reject(ctx, "activation × activation matmul needs operands of rank ≥ 2 with known shapes")
    ad, bd = a.ty.dtype, b.ty.dtype
    if ad not in OPERAND_DTYPES or bd not in OPERAND_DTYPES:
        return _reject(ctx, f"operands are {ad}×{bd}; the PE array multiplies 8-bit integers")
    if ad != bd:
        return _reject(ctx, f"mixed operand types {ad}×{bd}; quantize both operands alike")
    for name in ("input_deq", "weight_deq"):
        sc = ctx.annotated_expr[name].args[1]
        if len(sc.ty.shape) > 0 and any(int(d) != 1 for d in sc.ty.shape):
            return _reject(ctx, f"{name}: per-channel activation scales are not supported")
    return True


def vacc_patterns(layer_of: dict[int, str] | None = None) -> list[FusionPattern]:
    """The pattern table, most specific first (FuseOpsByPattern prefers earlier patterns).

    Parameters
    ----------
    layer_of
        ``conv2d/matmul call handle → IR variable name`` of the module being partitioned; each
        composite function then carries ``vacc.var`` naming its layer. Fusion renames the
        variable a composite returns (a layer without bias returns its conv2d directly), so the
        name must be taken from the original binding, before fusion.
    """
    names = dict(layer_of or {})

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

    def dense_t(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_dense(ctx, transposed=True)

    def dense(ctx: relax.transform.PatternCheckContext) -> bool:
        return _check_dense(ctx, transposed=False)

    return [
        FusionPattern("vacc.qconv2d_bias", conv_bias, conv_ann, _check_conv, attrs),
        FusionPattern("vacc.qconv2d", conv, conv_ann, _check_conv, attrs),
        # both operands are activations (attention): a layer kind of its own, before the dense
        # patterns it would otherwise be rejected by
        FusionPattern("vacc.qmatmul", mm, {**dense_ann, "root": mm}, _check_act_matmul, attrs),
        FusionPattern(
            "vacc.qdense_t_bias",
            is_op("relax.add")(mm_t, _deq(is_const())),
            {**dense_ann, "root": mm_t},
            dense_t,
            attrs,
        ),
        FusionPattern("vacc.qdense_t", mm_t, {**dense_ann, "root": mm_t}, dense_t, attrs),
        FusionPattern(
            "vacc.qdense_bias", is_op("relax.add")(mm, _deq(is_const())), {**dense_ann, "root": mm}, dense, attrs
        ),
        FusionPattern("vacc.qdense", mm, {**dense_ann, "root": mm}, dense, attrs),
    ]
