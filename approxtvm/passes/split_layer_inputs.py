"""SplitLayerInputs: give every conv2d / matmul its own dequantize of its quantized input."""

from __future__ import annotations

import tvm
from tvm import relax

from approxtvm.targets.vacc.partition import LAYER_OPS


@relax.transform.function_pass(opt_level=0, name="SplitLayerInputs")
class SplitLayerInputs:
    """Duplicate a shared activation ``dequantize`` so each layer consumes its own copy.

    In a QDQ graph one ``dequantize(x_q)`` often feeds two layers (a residual block's conv and
    its projection shortcut) or a layer and a host op (the residual add). Pattern fusion then
    puts the dequantize in only one offloaded function, and the other layer receives float
    data instead of the 8-bit codes the PE array multiplies. A private copy per layer keeps the
    integer codes at every offloaded call; host users keep the original (dead originals are
    removed by ``DeadCodeElimination``). Weight dequantizes (constant data) are left alone.
    """

    def transform_function(
        self, func: relax.Function, mod: tvm.IRModule, ctx: tvm.transform.PassContext
    ) -> relax.Function:
        if not isinstance(func, relax.Function) or (func.attrs is not None and "Codegen" in func.attrs):
            return func

        @relax.expr_functor.mutator
        class _Splitter(relax.PyExprMutator):
            def visit_var_binding_(self, binding: relax.VarBinding) -> None:
                value = self.visit_expr(binding.value)
                if (
                    isinstance(value, relax.Call)
                    and isinstance(value.op, tvm.ir.Op)
                    and value.op.name in LAYER_OPS
                    and isinstance(value.args[0], relax.Var)
                ):
                    bound = self.lookup_binding(value.args[0])
                    if (
                        isinstance(bound, relax.Call)
                        and isinstance(bound.op, tvm.ir.Op)
                        and bound.op.name == "relax.dequantize"
                        and not isinstance(bound.args[0], tvm.ir.Constant)
                    ):
                        copy = self.builder_.emit(relax.Call(bound.op, bound.args, bound.attrs, bound.ty_args))
                        value = relax.Call(value.op, [copy, *value.args[1:]], value.attrs, value.ty_args)
                emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
                self.set_var_remap(binding.var, emit(value, name_hint=binding.var.name))

        return _Splitter(mod).visit_expr(func)
