"""What can go wrong in one layer and how likely it is: run-wide options and per-layer plans."""

from __future__ import annotations

import math
from dataclasses import dataclass

from approxtvm.errors import PolicyError
from approxtvm.runtime.faults.physics import noc_ber, nop_ber, sram_ber
from approxtvm.targets.vacc.components import SRAM_FAILURE_MODES
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.schedule import LayerSchedule

__all__ = [
    "FAULT_BUFFERS",
    "SRAM_FAULT_MODES",
    "TENSORS",
    "FaultOptions",
    "FaultPlan",
    "fault_buffers",
    "plan_faults",
]

#: When SRAM bit-cell faults happen: on the write of a tile, on every read of a word, or both.
SRAM_FAULT_MODES = SRAM_FAILURE_MODES
#: Tensors with a fault model and the PE buffer each one lives in on the shipped specs (a spec's own
#: PE buffers come from its hierarchy: :func:`fault_buffers`).
FAULT_BUFFERS: dict[str, str] = {"weight": "weight_buffer", "input": "input_buffer"}


def fault_buffers(spec: AcceleratorSpec) -> dict[str, str]:
    """Per tensor with a fault model: the buffer of the ``PE`` level of ``spec`` that holds it."""
    hier = Hierarchy.of(spec)
    return {t: b for t in TENSORS if (b := hier.buffer_of("PE", t)) is not None}


#: Tensors with a fault model, in sampling order.
TENSORS = ("weight", "input")


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """Run-wide fault-model options (the per-layer knobs are in the schedule's config).

    Attributes
    ----------
    sram_fault_mode
        One of :data:`SRAM_FAULT_MODES`, or ``None`` (default): the spec's own
        ``sram.failure_mode``, i.e. what its technology's source describes.
    ber_scale
        Multiplies every bit error rate (1 = the models; 0 = the scaled energy without any fault,
        e.g. to separate the energy effect of a voltage from its accuracy effect).
    """

    sram_fault_mode: str | None = None
    ber_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.sram_fault_mode is not None and self.sram_fault_mode not in SRAM_FAULT_MODES:
            raise PolicyError(
                "unknown SRAM fault mode",
                expected=f"one of {', '.join(SRAM_FAULT_MODES)}",
                found=repr(self.sram_fault_mode),
                fix="use write, read or both (or None: the spec's sram.failure_mode)",
            )
        if not (math.isfinite(self.ber_scale) and self.ber_scale >= 0):
            raise PolicyError(
                "ber_scale must be a finite number >= 0",
                expected=">= 0",
                found=repr(self.ber_scale),
                fix="use 1 for the models' rates, 0 for no faults",
            )


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What can go wrong in one layer, and how likely it is (per bit).

    Attributes
    ----------
    layer_id
        The layer.
    layer_index
        Position of the layer in the model (part of the generator key).
    noc_ber
        Bit error rate per link traversal (0: links at full swing).
    noc_protected_msbs
        Top bits of each 8-bit word sent at full swing (never flipped on the NoC).
    sram_ber
        ``(tensor, BER)`` of the PE buffer holding ``weight`` / ``input`` (0: nominal supply).
    sram_fault_mode
        See :data:`SRAM_FAULT_MODES`.
    energy_only_buffers
        Scaled buffers without a fault model (``global_buffer``, ``accum_buffer``).
    nop_ber
        Bit error rate per package link traversal (0: package links at full swing, or no package;
        :mod:`.package_faults`).
    nop_protected_msbs
        Top bits of each 8-bit word sent at full swing on the package links.
    """

    layer_id: str
    layer_index: int
    noc_ber: float = 0.0
    noc_protected_msbs: int = 0
    sram_ber: tuple[tuple[str, float], ...] = (("weight", 0.0), ("input", 0.0))
    sram_fault_mode: str = "write"
    energy_only_buffers: tuple[str, ...] = ()
    nop_ber: float = 0.0
    nop_protected_msbs: int = 0

    @property
    def sram_ber_map(self) -> dict[str, float]:
        """``sram_ber`` as a dict."""
        return dict(self.sram_ber)

    @property
    def trivial(self) -> bool:
        """No scaled component with a fault model: the fault-free fast path runs unchanged."""
        return self.onchip_trivial and self.nop_ber == 0.0

    @property
    def onchip_trivial(self) -> bool:
        """No on-chip fault (NoC, PE buffers): only package faults, if any."""
        return self.noc_ber == 0.0 and all(b == 0.0 for _, b in self.sram_ber)


def plan_faults(
    schedule: LayerSchedule, spec: AcceleratorSpec, layer_index: int, options: FaultOptions = FaultOptions()
) -> FaultPlan:
    """The fault plan of one layer from its config (range-checked against ``spec``'s models)."""
    cfg = schedule.config
    where = f"layer {schedule.layer_id}"
    try:
        nb = noc_ber(spec, cfg.noc_swing_v)
        sv = cfg.sram_v_map
        for v in sv.values():
            sram_ber(spec, v)  # range check of every scaled buffer, modelled or not
        fb = fault_buffers(spec)
        sb = tuple((t, sram_ber(spec, sv.get(fb[t]))) for t in TENSORS)
        # package faults where the layer crosses the package (its schedule has a package level)
        pb = nop_ber(spec, cfg.nop_swing_v) if schedule.package is not None and spec.package is not None else 0.0
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc.what}", expected=exc.expected, found=exc.found, fix=exc.fix) from None
    energy_only = tuple(sorted(b for b, v in sv.items() if b not in fb.values() and v < spec.sram.nominal_vdd_v))
    k = options.ber_scale
    return FaultPlan(
        schedule.layer_id,
        layer_index,
        min(1.0, nb * k),
        cfg.noc_protected_msbs,
        tuple((t, min(1.0, b * k)) for t, b in sb),
        options.sram_fault_mode or spec.sram.failure_mode,
        energy_only,
        min(1.0, pb * k),
        cfg.nop_protected_msbs,
    )
