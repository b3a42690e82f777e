"""Relax passes of approxtvm, usable in any ``tvm.transform.Sequential``.

Each pass takes any Relax module from TVM's ONNX frontend (or written in TVMScript):

- :class:`NameLayers`: stable layer ids (ONNX node names when a weight→node table is given,
  else the weights' own parameter names);
- :class:`SplitLayerInputs`: each layer dequantizes its own 8-bit input codes;
- :class:`AnnotateApproximation`: per-layer approximation config from an ``ApproxPolicy``;
- :class:`PruneWeights`, :class:`ClusterWeights`: weight transforms that create compressible weights.

The BYOC entry point is :func:`approxtvm.partition_for_vacc`.
"""

from __future__ import annotations

from approxtvm.passes.annotate_approximation import AnnotateApproximation
from approxtvm.passes.cluster_weights import ClusterWeights
from approxtvm.passes.name_layers import NameLayers
from approxtvm.passes.prune_weights import PruneWeights
from approxtvm.passes.split_layer_inputs import SplitLayerInputs

__all__ = ["AnnotateApproximation", "ClusterWeights", "NameLayers", "PruneWeights", "SplitLayerInputs"]
