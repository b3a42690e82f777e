"""Knob reach per model of the experiments: which share of MACs / weights each knob can change."""

from __future__ import annotations

from approxtvm.explore.evaluator import EvalContext, load_model_proto
from approxtvm.explore.experiments.calibration import calibration_inputs
from approxtvm.explore.knob_reach import KnobReach, knob_reach


def model_reach(ctx: EvalContext) -> KnobReach:
    """Compile ``ctx``'s model once with the exact policy (as its workers would) and measure the reach.

    The exact policy keeps on the host only what the accelerator cannot take, so this is the most
    any configuration of the genome can reach (its configurations have no ``host:`` rules).
    """
    from approxtvm.compiler.driver import compile_onnx

    proto = load_model_proto(ctx.model)
    calib = calibration_inputs(ctx.model, ctx.calibration, proto)
    model = compile_onnx(proto, None, accelerator=ctx.accelerator, calibration=calib, batch_size=ctx.batch_size)
    return knob_reach(model, ctx.model)


__all__ = ["model_reach"]
