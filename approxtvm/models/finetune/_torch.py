"""torch is the optional ``train`` extra: import it only here, with a clear error when it is missing."""

from __future__ import annotations

from typing import Any

from approxtvm.errors import TrainingError


def require_torch() -> Any:
    """The ``torch`` module, or a :class:`TrainingError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise TrainingError(
            "fine-tuning needs PyTorch, which is not installed",
            expected="the optional `train` extra (torch 2.13 CPU)",
            found="no importable torch",
            fix="install approxtvm with its train extra: pip install 'approxtvm[train]'",
        ) from None
    return torch
