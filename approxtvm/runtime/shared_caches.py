"""Caches several compiled models of one process may share: what depends on layer shapes, loop
mappings and multiplier tables, never on which configuration a model was compiled with.

An exploration worker compiles the same network with many configurations (a multiplier per
layer, NoC swings, SRAM voltages). Most of the setup of a compiled model is per layer *shape*
(TVM table kernels, onnxruntime integer-op sessions), per *mapping* (access counts, the fault
tile geometry) or per multiplier *table* (factorisations, device copies of the table) — the
same in every configuration. A :class:`SharedCaches` passed to
:func:`~approxtvm.compiler.driver.compile_onnx` keeps that work for the next model; a model
compiled without one gets fresh caches (the results are the same either way: every entry is a
pure function of its key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from approxtvm.runtime.kernels import KernelCache
from approxtvm.targets.vacc.hardware import AcceleratorSpec


@dataclass
class SharedCaches:
    """Per-process caches shared by compiled models (owned by the caller, e.g. a worker).

    Attributes
    ----------
    kernels
        Compiled TVM kernels per shape, onnxruntime sessions per shape, factorisations and device
        tables per multiplier table, weight tables (LRU by size).
    counts
        Per accelerator spec: mapping → simulated access counts (energy).
    geometry
        Per accelerator spec: mapping → fault tile geometry.
    """

    kernels: KernelCache = field(default_factory=KernelCache)
    counts: dict[AcceleratorSpec, dict[object, Any]] = field(default_factory=dict)
    geometry: dict[AcceleratorSpec, dict[object, Any]] = field(default_factory=dict)

    def counts_for(self, spec: AcceleratorSpec) -> dict[object, Any]:
        """The mapping → access-counts cache of one accelerator."""
        return self.counts.setdefault(spec, {})

    def geometry_for(self, spec: AcceleratorSpec) -> dict[object, Any]:
        """The mapping → fault-geometry cache of one accelerator."""
        return self.geometry.setdefault(spec, {})


__all__ = ["SharedCaches"]
