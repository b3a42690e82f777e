"""approxtvm: compile ONNX models for a virtual approximate accelerator and simulate them bit-exactly.

The public API is imported lazily so that ``import approxtvm`` (and the CLI's ``--help``) does not
pay for importing TVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "compile_onnx": "approxtvm.compiler.driver",
    "load_compiled": "approxtvm.compiler.driver",
    "CompiledModel": "approxtvm.compiler.model",
    "RunResult": "approxtvm.compiler.model",
    "QuantOptions": "approxtvm.compiler.frontend",
    "ApproxPolicy": "approxtvm.targets.vacc.config",
    "ApproxConfig": "approxtvm.targets.vacc.config",
    "AcceleratorSpec": "approxtvm.targets.vacc.hardware",
    "LayerSchedule": "approxtvm.targets.vacc.schedule",
    "EnergyReport": "approxtvm.runtime.energy",
    "partition_for_vacc": "approxtvm.targets.vacc.partition",
    "ApproxTvmError": "approxtvm.errors",
    "trace_vacc": "approxtvm.runtime.vacc_calls",
}

_ATTRS = {"trace_vacc": "trace"}  # public name → attribute of its module

__all__ = [
    "AcceleratorSpec",
    "ApproxConfig",
    "ApproxPolicy",
    "ApproxTvmError",
    "CompiledModel",
    "EnergyReport",
    "LayerSchedule",
    "QuantOptions",
    "RunResult",
    "compile_onnx",
    "load_compiled",
    "partition_for_vacc",
    "trace_vacc",
]

if TYPE_CHECKING:
    from approxtvm.compiler.driver import compile_onnx, load_compiled
    from approxtvm.compiler.frontend import QuantOptions
    from approxtvm.compiler.model import CompiledModel, RunResult
    from approxtvm.errors import ApproxTvmError
    from approxtvm.runtime.energy import EnergyReport
    from approxtvm.runtime.vacc_calls import trace as trace_vacc
    from approxtvm.targets.vacc.config import ApproxConfig, ApproxPolicy
    from approxtvm.targets.vacc.hardware import AcceleratorSpec
    from approxtvm.targets.vacc.partition import partition_for_vacc
    from approxtvm.targets.vacc.schedule import LayerSchedule


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), _ATTRS.get(name, name))
    raise AttributeError(f"module 'approxtvm' has no attribute {name!r}")
