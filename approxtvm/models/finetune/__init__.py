"""Approximation-aware fine-tuning, bit-exact from training to the accelerator (needs the ``train`` extra).

:func:`finetune` turns a float (or QDQ) model and an approximation policy into a torch model whose
forward is the compiled model's arithmetic, bit for bit (table products of the quantized codes,
exact int32 accumulation and zero-point corrections, padded taps through the multiplier, the
host's float32 quantize/dequantize/pooling), trains it with a straight-through estimator and
writes ``model.onnx`` (QDQ) + ``policy.yaml`` that :func:`approxtvm.compile_onnx` runs with
identical outputs. torch is imported on first use, so the rest of the package works without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "finetune": "approxtvm.models.finetune.api",
    "build_net": "approxtvm.models.finetune.api",
    "to_qdq": "approxtvm.models.finetune.api",
    "resolve_policy": "approxtvm.models.finetune.api",
    "FinetuneResult": "approxtvm.models.finetune.api",
    "FinetuneOptions": "approxtvm.models.finetune.trainer",
    "EpochRecord": "approxtvm.models.finetune.trainer",
    "QuantizedNet": "approxtvm.models.finetune.qnet",
    "to_onnx": "approxtvm.models.finetune.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'approxtvm.models.finetune' has no attribute {name!r}")
