"""FoldWeightTranspose: a constant that the graph transposes and quantizes becomes constant codes.

Exporters write a Linear layer as ``MatMul(x, Transpose(W))``; onnxruntime's QDQ quantizer then
quantizes the transposed weight like an activation, either from the float constant,
``quantize(permute_dims(W), s, z)``, or by re-quantizing its codes,
``quantize(permute_dims(dequantize(W_q, s, z)), s, z)``. Both are constants, so the weight operand
becomes ``dequantize(codes, s, z)`` and the layer a dense layer whose weights stay resident, not an
activation × activation matmul. The codes are computed as ONNX ``QuantizeLinear`` defines them
(float32 ``x / s``, rounded half to even, plus ``z``, saturated); per-channel re-quantization is
left for the matmul path, which computes it correctly at run time.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call


def _scalar(expr: relax.Expr) -> np.ndarray | None:
    if not isinstance(expr, tvm.ir.Constant):
        return None
    v = expr.value.numpy()
    return v if v.size == 1 else None


@relax.transform.function_pass(opt_level=0, name="FoldWeightTranspose")
class FoldWeightTranspose:
    """Replace ``quantize(permute_dims(dequantize(W_q, s, z)), s, z)`` (constant ``W_q``) by the
    permuted codes. Run after the weights are bound as constants, before partitioning."""

    def __init__(self) -> None:
        self.codes = is_const()
        self.scale, self.zp = is_const(), is_const()
        self.scale2, self.zp2 = is_const(), is_const()
        self.perm = is_op("relax.permute_dims")(is_op("relax.dequantize")(self.codes, self.scale, self.zp))
        self.pattern = is_op("relax.quantize")(self.perm, self.scale2, self.zp2)
        self.fconst = is_const()
        self.fperm = is_op("relax.permute_dims")(self.fconst)
        self.fpattern = is_op("relax.quantize")(self.fperm, self.scale2, self.zp2)

    def transform_function(
        self, func: relax.Function, mod: tvm.IRModule, ctx: tvm.transform.PassContext
    ) -> relax.Function:
        if not isinstance(func, relax.Function) or (func.attrs is not None and "Codegen" in func.attrs):
            return func

        def rewriter(expr: relax.Expr, matches: dict) -> relax.Expr:
            s1, z1 = _scalar(matches[self.scale]), _scalar(matches[self.zp])
            s2, z2 = _scalar(matches[self.scale2]), _scalar(matches[self.zp2])
            codes = matches[self.codes].value.numpy()
            if s1 is None or s2 is None or z1 is None or z2 is None:
                return expr  # per-channel: the re-quantization is not a plain permutation
            if float(s1) != float(s2) or int(z1) != int(z2) or str(codes.dtype) != str(expr.ty.dtype):
                return expr
            axes = matches[self.perm].attrs.axes
            order = None if axes is None else [int(a) for a in axes]
            return relax.const(np.ascontiguousarray(np.transpose(codes, order)), str(codes.dtype))

        def from_float(expr: relax.Expr, matches: dict) -> relax.Expr:
            s2, z2 = _scalar(matches[self.scale2]), _scalar(matches[self.zp2])
            w = matches[self.fconst].value.numpy()
            dtype = np.dtype(str(expr.ty.dtype))
            if s2 is None or z2 is None or w.dtype != np.float32 or dtype not in (np.uint8, np.int8):
                return expr
            axes = matches[self.fperm].attrs.axes
            wt = np.transpose(w, None if axes is None else [int(a) for a in axes])
            info = np.iinfo(dtype)
            q = np.rint(wt / np.float32(s2)).astype(np.int64) + int(z2)
            return relax.const(np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype)), str(dtype))

        func = rewrite_call(self.fpattern, from_float, func)
        return rewrite_call(self.pattern, rewriter, func)
