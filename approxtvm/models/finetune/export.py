"""Write a fine-tuned :class:`~.qnet.QuantizedNet` as a QDQ ONNX model plus its policy file.

The graph keeps the structure of the QDQ model it was built from; only initializers change:
weight codes, int32 bias codes, and every scale, written with the exact float32 values the
torch forward used, so ``compile_onnx(model.onnx, policy=policy.yaml)`` computes the same outputs.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import numpy_helper

from approxtvm.models.finetune._torch import require_torch
from approxtvm.models.finetune.graph import LayerStep
from approxtvm.models.finetune.qnet import QuantizedNet
from approxtvm.targets.vacc.config import ApproxPolicy

torch = require_torch()


def quantized_initializers(net: QuantizedNet) -> dict[str, np.ndarray]:
    """Initializer name → new value, for every initializer the fine-tuning changed."""
    inits = net.graph.initializers
    new: dict[str, np.ndarray] = {}
    code_dtype = np.int8 if net.graph.signed else np.uint8
    with torch.no_grad():
        for key, p in net.scales.items():
            name = _init_name(net, key)
            new[name] = p.detach().numpy().astype(np.float32).reshape(inits[name].shape)
        for step in net.graph.layers:
            new[step.weight] = net.weight_codes(step).numpy().astype(code_dtype).reshape(inits[step.weight].shape)
            if step.bias is not None:
                _bias(net, step, new)
    return new


def _bias(net: QuantizedNet, step: LayerStep, new: dict[str, np.ndarray]) -> None:
    inits = net.graph.initializers
    assert step.bias is not None and step.b_scale is not None and step.b_zero_point is not None
    codes = net.bias_codes(step).numpy().astype(np.int64).astype(np.int32)
    scale = net.bias_scale(step).numpy().astype(np.float32)
    k = codes.size
    new[step.bias] = codes.reshape(inits[step.bias].shape)
    new[step.b_scale] = (np.broadcast_to(scale, (k,)) if inits[step.b_scale].size == k else scale).reshape(
        inits[step.b_scale].shape
    )
    new[step.b_zero_point] = np.zeros(inits[step.b_zero_point].shape, inits[step.b_zero_point].dtype)


def _init_name(net: QuantizedNet, key: str) -> str:
    for name in net.graph.initializers:
        if name.replace(".", "__") == key:
            return name
    raise KeyError(key)


def to_onnx(net: QuantizedNet) -> onnx.ModelProto:
    """The fine-tuned QDQ model."""
    model = copy.deepcopy(net.graph.proto)
    new = quantized_initializers(net)
    for t in model.graph.initializer:
        if t.name in new:
            t.CopyFrom(numpy_helper.from_array(np.array(new[t.name], order="C"), t.name))  # keeps 0-d shapes
    model.producer_name = "approxtvm finetune"
    return model


def save(
    net: QuantizedNet, policy: ApproxPolicy, out_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model.onnx`` (QDQ) and ``policy.yaml`` (and ``finetune.yaml`` with ``extra``) to ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(net), str(d / "model.onnx"))
    (d / "policy.yaml").write_text(yaml.safe_dump(policy.to_dict(), sort_keys=False))
    if extra is not None:
        (d / "finetune.yaml").write_text(yaml.safe_dump(extra, sort_keys=False))
    return d
