"""SplitSharedDequantize: every layer gets its own ``dequantize`` of each operand.

Exporters share equal initializers between layers (torch's legacy exporter shares zero biases
through ``Identity`` nodes), so after import one ``dequantize(constant)`` may feed several
layers. Pattern fusion puts a binding into one composite function only; the other layers then
receive the dequantized float tensor as a second runtime input and cannot be offloaded as a
self-contained layer. Copying the (cheap, constant) dequantize per user gives every layer its
own weight and bias operands. An activation ``dequantize`` read by several layers (a residual
block's conv and its projection shortcut) is copied for each layer too, while other readers (the
residual add) keep the original. :func:`approxtvm.compiler.prepare.prepare` does the same on the
ONNX graph; this pass makes :func:`~approxtvm.targets.vacc.partition.partition_for_vacc` robust
for modules imported any other way.
"""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax

#: Relax ops of accelerator layers (their first argument is the activation).
_LAYER_OPS = frozenset({"relax.nn.conv2d", "relax.matmul"})


def _is_dequantize(value: relax.Expr) -> bool:
    return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.dequantize"


def _is_const_dequantize(value: relax.Expr) -> bool:
    return _is_dequantize(value) and isinstance(value.args[0], tvm.ir.Constant)


def _uses(func: relax.Function) -> tuple[Counter[relax.Var], Counter[relax.Var]]:
    """How many times each variable is read: anywhere, and as a direct argument of a call."""
    counts: Counter[relax.Var] = Counter()
    as_arg: Counter[relax.Var] = Counter()

    @relax.expr_functor.visitor
    class _Count(relax.PyExprVisitor):
        def visit_var_(self, var: relax.Var) -> None:
            counts[var] += 1

        def visit_dataflow_var_(self, var: relax.DataflowVar) -> None:
            counts[var] += 1

    visitor = _Count()
    for block in func.body.blocks:
        for b in block.bindings:
            visitor.visit_expr(b.value)
            if isinstance(b.value, relax.Call):
                as_arg.update(a for a in b.value.args if isinstance(a, relax.Var))
    visitor.visit_expr(func.body.body)
    return counts, as_arg


@relax.transform.function_pass(opt_level=0, name="SplitSharedDequantize")
class SplitSharedDequantize:
    """Give each reader of a shared ``dequantize(constant)`` binding a private copy (see module doc)."""

    def transform_function(
        self, func: relax.Function, mod: tvm.IRModule, ctx: tvm.transform.PassContext
    ) -> relax.Function:
        if not isinstance(func, relax.Function) or (func.attrs is not None and "Codegen" in func.attrs):
            return func
        if not isinstance(func.body, relax.SeqExpr):
            return func
        uses, as_arg = _uses(func)
        # only bindings read exclusively as call arguments: each call then emits its own copy
        shared = {
            b.var
            for block in func.body.blocks
            for b in block.bindings
            if isinstance(b, relax.VarBinding)
            and _is_const_dequantize(b.value)
            and as_arg[b.var] > 1
            and as_arg[b.var] == uses[b.var]
        }
        activations = {
            b.var
            for block in func.body.blocks
            for b in block.bindings
            if isinstance(b, relax.VarBinding)
            and _is_dequantize(b.value)
            and not _is_const_dequantize(b.value)
            and uses[b.var] > 1
        }
        if not shared and not activations:
            return func

        @relax.expr_functor.mutator
        class _Split(relax.PyExprMutator):
            def __init__(self, module: tvm.IRModule) -> None:
                super().__init__(module)
                self.values: dict[relax.Var, relax.Call] = {}

            def copy(self, var: relax.Var) -> relax.Var:
                d = self.values[var]
                return self.builder_.emit(relax.Call(d.op, self.visit_expr(d).args, d.attrs, d.ty_args), var.name)

            def visit_var_binding_(self, binding: relax.VarBinding) -> None:
                if binding.var in shared:  # emitted afresh at each reader instead
                    self.values[binding.var] = binding.value
                    return
                if binding.var in activations:  # kept for host readers; layers get copies
                    self.values[binding.var] = binding.value
                value = binding.value
                if isinstance(value, relax.Call):
                    is_layer = isinstance(value.op, tvm.ir.Op) and value.op.name in _LAYER_OPS
                    args = []
                    for i, a in enumerate(value.args):
                        if isinstance(a, relax.Var) and (a in shared or (is_layer and i == 0 and a in activations)):
                            args.append(self.copy(a))
                        else:
                            args.append(self.visit_expr(a))
                    value = relax.Call(value.op, args, value.attrs, value.ty_args)
                else:
                    value = self.visit_expr(value)
                emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
                self.set_var_remap(binding.var, emit(value, name_hint=binding.var.name))

        return _Split(mod).visit_expr(func)
