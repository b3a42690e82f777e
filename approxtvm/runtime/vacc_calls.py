"""Layer calls from a TVM VM built by the user's own pipeline, and what the accelerator did in them.

A module partitioned with :func:`approxtvm.partition_for_vacc` and built with ``relax.build``
calls ``approxtvm.vacc.execute`` once per offloaded layer call (see
:mod:`approxtvm.targets.vacc.byoc`). :func:`execute` decodes the layer's embedded blob once per
process, runs it bit-exactly like :meth:`approxtvm.CompiledModel.run`, and, inside a
:func:`trace` block, records the call's energy and injects the faults its configuration asks for::

    with approxtvm.trace_vacc(seed=0) as tr:
        out = vm["main"](x)
    tr.energy.total_pj, tr.energy.by_layer(), tr.fault_counters()

Outside a ``trace`` block layers run fault-free (a layer that scales a NoC swing or a buffer
voltage warns once that its faults need a seed).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from approxtvm.runtime.energy import EnergyReport, LayerEnergy, layer_energy
from approxtvm.runtime.executor import CallLog, LayerProgram, make_runner
from approxtvm.runtime.kernels import KernelCache
from approxtvm.targets.vacc.hardware import AcceleratorSpec


@dataclass(frozen=True, eq=False)
class _LoadedLayer:
    program: LayerProgram
    spec: AcceleratorSpec
    layer_index: int
    energy: LayerEnergy


@dataclass
class VaccTrace:
    """What the accelerator did during the VM calls of one :func:`trace` block.

    Attributes
    ----------
    seed
        Seed of the fault generators.
    calls
        Layer ids, one per offloaded call, in call order.
    """

    seed: int
    calls: list[str] = field(default_factory=list)
    _energies: list[LayerEnergy] = field(default_factory=list, repr=False)
    _faults: dict[str, Any] = field(default_factory=dict, repr=False)  # layer id -> FaultSession
    _log: CallLog = field(default_factory=CallLog, repr=False)

    @property
    def energy(self) -> EnergyReport:
        """Energy of every recorded layer call (offloaded layers only, like ``RunResult.energy``)."""
        return EnergyReport(tuple(self._energies))

    def fault_counters(self) -> dict[str, Any]:
        """Per-layer fault counters, as ``RunResult.counters["faults"]``."""
        out: dict[str, Any] = {}
        for session in self._faults.values():
            if session is not None:  # None: the layer scales nothing
                out.update(session.counters())
        return out


_ACTIVE: contextvars.ContextVar[VaccTrace | None] = contextvars.ContextVar("approxtvm_vacc_trace", default=None)


@contextlib.contextmanager
def trace(seed: int = 0) -> Iterator[VaccTrace]:
    """Record energy and inject faults (seeded) for the vacc layer calls made inside the block.

    Parameters
    ----------
    seed
        Seed of the fault generators: the same module, inputs and seed give the same outputs
        and counters as :meth:`approxtvm.CompiledModel.run` with that seed.
    """
    from approxtvm.runtime.faults.sampling import check_seed

    check_seed(seed)
    rec = VaccTrace(seed)
    token = _ACTIVE.set(rec)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)


class _Registry:
    """Layers decoded so far in this process, by (symbol, blob address): a cache, never a source
    of truth (the blob embedded in the module is)."""

    def __init__(self) -> None:
        self.layers: dict[tuple[str, int], _LoadedLayer] = {}
        self.cache = KernelCache()
        self.warned: set[str] = set()

    def load(self, symbol: str, address: int, size: int) -> _LoadedLayer:
        key = (symbol, address)
        layer = self.layers.get(key)
        if layer is None:
            layer = self.layers[key] = self._decode(ctypes.string_at(address, size))
        return layer

    def _decode(self, blob: bytes) -> _LoadedLayer:
        from approxtvm.runtime.multipliers.resolver import MultiplierResolver
        from approxtvm.targets.vacc.layer_blob import unpack_layer

        schedule, spec, weight, bias, index = unpack_layer(blob)
        mult = MultiplierResolver(spec).multiplier(schedule.config.multiplier, schedule.quant.signed)
        prog = LayerProgram(schedule, weight, bias, mult, self.cache)
        return _LoadedLayer(prog, spec, index, layer_energy(prog, spec))


_REGISTRY = _Registry()


def _address(blob: Any) -> int:
    if isinstance(blob, int):
        return blob
    value = getattr(blob, "value", None)  # ctypes.c_void_p
    return int(value or 0)


def _fault_session(rec: VaccTrace, layer: _LoadedLayer) -> Any:
    from approxtvm.runtime.faults import ModelFaults, plan_faults

    lid = layer.program.schedule.layer_id
    if lid not in rec._faults:
        mf = ModelFaults({lid: layer.program.schedule}, layer.spec)
        # the generator key is the layer's position in the compiled module, as in CompiledModel
        mf.plans[lid] = plan_faults(layer.program.schedule, layer.spec, layer.layer_index, mf.options)
        rec._faults[lid] = mf.session(rec.seed)
    return rec._faults[lid]


def execute(symbol: str, blob: Any, size: int, *tensors: Any) -> None:
    """Run one offloaded layer call: DPS tensors ``(x_q, out_0[, out_1])``."""
    layer = _REGISTRY.load(symbol, _address(blob), int(size))
    prog = layer.program
    rec = _ACTIVE.get()
    log = CallLog()
    if rec is not None:
        rec.calls.append(prog.schedule.layer_id)
        rec._energies.append(layer.energy)
        session = _fault_session(rec, layer)
        log.faults = session.apply if session is not None else None
    elif _scales_anything(prog) and symbol not in _REGISTRY.warned:
        _REGISTRY.warned.add(symbol)
        warnings.warn(
            f"layer {prog.schedule.layer_id} scales a NoC swing or buffer voltage but runs outside "
            "approxtvm.trace_vacc(seed=...): no faults injected",
            RuntimeWarning,
            stacklevel=2,
        )
    make_runner(prog, log)(*tensors)


def _scales_anything(prog: LayerProgram) -> bool:
    cfg = prog.schedule.config
    return cfg.noc_swing_v is not None or bool(cfg.sram_v_map)


def loaded_layers() -> dict[str, np.ndarray]:
    """Layer id → weight codes of every layer decoded in this process (inspection, tests)."""
    return {v.program.schedule.layer_id: v.program.weight for v in _REGISTRY.layers.values()}
