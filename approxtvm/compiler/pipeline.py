"""The ordered pass list of a compilation, one phase per line."""

from __future__ import annotations

import tvm
from tvm import relax

from approxtvm.passes.annotate_approximation import AnnotateApproximation
from approxtvm.passes.fold_weight_transpose import FoldWeightTranspose
from approxtvm.passes.name_layers import NameLayers
from approxtvm.passes.split_layer_inputs import SplitLayerInputs
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.partition import partition_for_vacc


def annotate(
    mod: tvm.IRModule, weight_to_layer: dict[str, str], policy: ApproxPolicy, layer_order: list[str] | None = None
) -> tvm.IRModule:
    """Name every layer after its ONNX node and attach its approximation config."""
    return tvm.transform.Sequential(
        [
            NameLayers(weight_to_layer, layer_order),  # layer ids from ONNX node names (weights still parameters)
            SplitLayerInputs(),  # each layer dequantizes its own 8-bit input codes
            relax.transform.DeadCodeElimination(),
            AnnotateApproximation(policy),  # per-layer ApproxConfig side table
        ]
    )(mod)


def partition(mod: tvm.IRModule, params: dict[str, object], symbol_prefix: str) -> tvm.IRModule:
    """Bind weights and offload quantized conv/dense to vacc (before any FoldConstant)."""
    if params:
        mod = relax.transform.BindParams("main", params)(mod)
    mod = FoldWeightTranspose()(mod)  # MatMul(x, Transpose(W)): the weight is a constant again
    return partition_for_vacc(mod, symbol_prefix=symbol_prefix)
