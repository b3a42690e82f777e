"""Energy of executed layers: per component, per tensor, per layer, all in pJ.

The price list is the accelerator spec; the access counts come from
:func:`approxtvm.runtime.counting.simulate_counts` (or the mapper's identical closed forms). The
pricing itself is :func:`approxtvm.targets.vacc.pricing.energy_breakdown_pj`, shared with the mapper
so that the schedule the mapper picked and the energy the runtime reports can never disagree.

Components (:data:`COMPONENTS`): ``mac``, ``register``, ``weight_buffer``, ``input_buffer``,
``accum_buffer``, ``global_buffer``, ``noc_link``, ``noc_router``, ``dram``. Tensors: ``weight``,
``input``, ``output`` (partial sums included) and ``compute`` (the MACs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from approxtvm.errors import DataError, PolicyError
from approxtvm.schema import FieldHook, Schema
from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.pricing import COMPONENTS, energy_breakdown_pj

if TYPE_CHECKING:  # the executor does not import this module: no cycle either way
    from approxtvm.runtime.executor import LayerProgram

__all__ = [
    "COMPONENTS",
    "EnergyReport",
    "LayerEnergy",
    "UncoveredLayer",
    "energy_of",
    "energy_swing_v",
    "layer_energy",
    "nop_energy_swing_v",
]

_SCALABLE_SRAM = ("weight_buffer", "input_buffer", "accum_buffer", "global_buffer")
_WORD_BITS = 8  # bits of one operand word on the NoC
#: Components that move weights as stored (compressed weights stay compressed there).
_WEIGHT_TRANSPORT = ("dram", "noc_link", "noc_router", "package_link", "package_router")


def energy_swing_v(spec: AcceleratorSpec, swing_v: float | None, protected_msbs: int) -> float | None:
    """The swing to price NoC links at when ``protected_msbs`` of every 8 bits travel at full swing.

    Link energy per bit is ``f · 1 + (1 − f) · scale(V_sw)`` with ``f = protected_msbs / 8``;
    returned as the swing whose :meth:`~approxtvm.targets.vacc.hardware.NoC.link_energy_scale`
    equals that mix, so :func:`energy_of` prices it exactly.

    Raises
    ------
    PolicyError
        If the swing is not in ``(0, nominal_vdd_v]``.
    """
    if swing_v is None:
        return None
    nom = spec.noc.nominal_vdd_v
    if not 0 < swing_v <= nom:
        raise PolicyError(
            "NoC swing outside the link model's range",
            expected=f"0 < swing <= {nom} V",
            found=f"{swing_v} V",
            fix=f"choose a swing at or below the NoC supply of {spec.name}",
        )
    f = protected_msbs / _WORD_BITS
    mixed = f + (1.0 - f) * spec.noc.link_energy_scale(swing_v)
    ratio = mixed if spec.noc.swing_model == "linear" else math.sqrt(mixed)
    return min(nom, nom * ratio)


def nop_energy_swing_v(spec: AcceleratorSpec, swing_v: float | None, protected_msbs: int) -> float | None:
    """:func:`energy_swing_v` for the package links (``spec.package``'s swing model and full swing).

    Raises
    ------
    PolicyError
        If the spec has no package, or the swing is not in ``(0, nominal_swing_v]``.
    """
    if swing_v is None:
        return None
    pkg = spec.package
    if pkg is None or not 0 < swing_v <= pkg.nominal_swing_v:
        raise PolicyError(
            "package link swing outside the link model's range",
            expected="a spec with a package, and 0 < swing <= its package.nominal_swing_v"
            + (f" ({pkg.nominal_swing_v} V)" if pkg is not None else ""),
            found=f"{swing_v} V on {spec.name}" + ("" if pkg is not None else " (no package)"),
            fix="use a package spec (simba_package_6x6) and a swing at or below its nominal swing",
        )
    f = protected_msbs / _WORD_BITS
    mixed = f + (1.0 - f) * pkg.link_energy_scale(swing_v)
    ratio = mixed if pkg.swing_model == "linear" else math.sqrt(mixed)
    return min(pkg.nominal_swing_v, pkg.nominal_swing_v * ratio)


@dataclass(frozen=True, slots=True)
class LayerEnergy:
    """Energy of one layer execution.

    Attributes
    ----------
    layer_id
        The layer.
    macs
        MACs executed.
    entries
        ``(component, tensor, pJ)``, components in :data:`COMPONENTS` order, every component present.
    latency_cycles
        Estimated cycles of the layer.
    """

    layer_id: str
    macs: int
    entries: tuple[tuple[str, str, float], ...]
    latency_cycles: int = 0

    def by_component(self) -> dict[str, float]:
        """pJ per component, in :data:`COMPONENTS` order (zeros included)."""
        out = dict.fromkeys(COMPONENTS, 0.0)
        for comp, _, pj in self.entries:  # a spec's extra buffers come after the fixed components
            out[comp] = out.get(comp, 0.0) + pj
        return out

    def by_tensor(self) -> dict[str, float]:
        """pJ per tensor (``weight``, ``input``, ``output``, ``compute``)."""
        out = dict.fromkeys(("weight", "input", "output", "compute"), 0.0)
        for _, t, pj in self.entries:
            out[t] += pj
        return out

    @property
    def total_pj(self) -> float:
        """Total pJ: exactly ``sum(by_component().values())``."""
        return sum(self.by_component().values())

    @property
    def pj_per_mac(self) -> float:
        """Total energy per MAC (0 for an empty layer)."""
        return self.total_pj / self.macs if self.macs else 0.0

    def __add__(self, other: LayerEnergy | EnergyReport) -> EnergyReport:
        return EnergyReport((self,)) + other

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`ENERGY_SCHEMA`; each entry ``{component, tensor, pj}``)."""
        return ENERGY_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "layer energy") -> LayerEnergy:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return ENERGY_SCHEMA.structure(d, LayerEnergy, source=source)


@dataclass(frozen=True, slots=True)
class UncoveredLayer:
    """A layer whose MACs run on the host CPU, so no accelerator energy is counted for them.

    Attributes
    ----------
    node
        ONNX node name.
    op
        ONNX op type (``Conv``, ``MatMul``...).
    macs
        Multiply-accumulates of one execution (``None``: a shape is unknown even after inference).
    reason
        Why the layer is not offloaded.
    """

    node: str
    op: str
    macs: int | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`ENERGY_SCHEMA`)."""
        return ENERGY_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "host layer") -> UncoveredLayer:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return ENERGY_SCHEMA.structure(d, UncoveredLayer, source=source)


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """Energy of a sequence of layer executions (a model run, a batch, a sum of runs).

    The report prices the offloaded layers only; the layers that ran on the host are listed in
    :attr:`uncovered` with their MACs, so every report can say what share of the work it leaves out.

    Attributes
    ----------
    layers
        One :class:`LayerEnergy` per execution, in execution order (a layer run twice appears twice).
    uncovered
        One :class:`UncoveredLayer` per execution of a host layer (per batch, like :attr:`layers`).
    """

    layers: tuple[LayerEnergy, ...] = ()
    uncovered: tuple[UncoveredLayer, ...] = ()

    def by_component(self) -> dict[str, float]:
        """pJ per component over all layers, in :data:`COMPONENTS` order."""
        out = dict.fromkeys(COMPONENTS, 0.0)
        for layer in self.layers:
            for comp, pj in layer.by_component().items():
                out[comp] = out.get(comp, 0.0) + pj
        return out

    def by_layer(self) -> dict[str, float]:
        """pJ per layer id (executions of the same layer summed), in first-execution order."""
        out: dict[str, float] = {}
        for layer in self.layers:
            out[layer.layer_id] = out.get(layer.layer_id, 0.0) + layer.total_pj
        return out

    def by_tensor(self) -> dict[str, float]:
        """pJ per tensor (``weight``, ``input``, ``output``, ``compute``)."""
        out = dict.fromkeys(("weight", "input", "output", "compute"), 0.0)
        for layer in self.layers:
            for t, pj in layer.by_tensor().items():
                out[t] += pj
        return out

    @property
    def total_pj(self) -> float:
        """Total pJ: exactly ``sum(by_component().values())``."""
        return sum(self.by_component().values())

    @property
    def macs(self) -> int:
        """MACs over all layers."""
        return sum(layer.macs for layer in self.layers)

    @property
    def host_macs(self) -> int:
        """MACs of the layers that ran on the host (not priced; unknown shapes count 0)."""
        return sum(u.macs or 0 for u in self.uncovered)

    @property
    def host_mac_share(self) -> float:
        """Share of all layer MACs that ran on the host: ``host_macs / (macs + host_macs)``."""
        total = self.macs + self.host_macs
        return self.host_macs / total if total else 0.0

    def host_macs_by_layer(self) -> dict[str, int | None]:
        """MACs per host layer (executions summed; ``None`` when unknown), in first-execution order."""
        out: dict[str, int | None] = {}
        for u in self.uncovered:
            prev = out.get(u.node, 0)
            out[u.node] = None if prev is None or u.macs is None else prev + u.macs
        return out

    def coverage_note(self) -> str:
        """One sentence on what the report leaves out (empty when every layer was offloaded)."""
        if not self.uncovered:
            return ""
        n = len({u.node for u in self.uncovered})
        unknown = sum(1 for u in self.uncovered if u.macs is None)
        note = (
            f"not counted: {n} host layer(s), {self.host_macs:,} MACs = {100 * self.host_mac_share:.1f} % "
            "of all layer MACs (energy covers the offloaded layers only)"
        )
        return note + (f"; {unknown} with unknown shape" if unknown else "")

    @property
    def latency_cycles(self) -> int:
        """Estimated cycles over all layers (run one after the other)."""
        return sum(layer.latency_cycles for layer in self.layers)

    @property
    def pj_per_mac(self) -> float:
        """Total energy per MAC (0 for an empty report)."""
        return self.total_pj / self.macs if self.macs else 0.0

    def __add__(self, other: LayerEnergy | EnergyReport) -> EnergyReport:
        if isinstance(other, LayerEnergy):
            return EnergyReport((*self.layers, other), self.uncovered)
        if isinstance(other, EnergyReport):
            return EnergyReport((*self.layers, *other.layers), (*self.uncovered, *other.uncovered))
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`ENERGY_SCHEMA`: per-layer entries; totals are derived)."""
        return ENERGY_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "energy report") -> EnergyReport:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return ENERGY_SCHEMA.structure(d, EnergyReport, source=source)


def _entries_from(value: Any, schema: Schema) -> tuple[tuple[str, str, float], ...]:
    rows = schema.convert(value, tuple[_Entry, ...])
    return tuple((e.component, e.tensor, e.pj) for e in rows)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One ``(component, tensor, pJ)`` of :attr:`LayerEnergy.entries` in its JSON form."""

    component: str
    tensor: str
    pj: float


#: Energy reports ↔ plain JSON (a layer's entries are ``{component, tensor, pj}`` objects).
ENERGY_SCHEMA = Schema(
    DataError,
    hooks=(
        FieldHook(
            LayerEnergy,
            "entries",
            _entries_from,
            lambda v, schema: [schema.unstructure(_Entry(c, t, pj)) for c, t, pj in v],
        ),
    ),
)


def energy_of(
    layer_id: str,
    counts: AccessCounts,
    spec: AcceleratorSpec,
    *,
    mul_energy_pj: float | None = None,
    noc_swing_v: float | None = None,
    sram_v: MappingABC[str, float] | None = None,
    nop_swing_v: float | None = None,
    weight_bytes_ratio: float = 1.0,
) -> LayerEnergy:
    """Price ``counts`` on ``spec``.

    Parameters
    ----------
    layer_id
        Name recorded in the result.
    counts
        Access counts of the layer.
    spec
        Accelerator (energy per access, per bit, per MAC).
    mul_energy_pj
        Energy of one multiply; ``None`` = the spec's exact multiplier. Approximate multipliers
        pass ``spec.energy.mul_energy_pj × P(m) / P(exact)``; only the multiply share changes.
    noc_swing_v
        Link voltage swing; scales ``noc_link`` by ``spec.noc.link_energy_scale`` (routers unchanged).
    nop_swing_v
        Package link swing; scales ``package_link`` by ``spec.package.link_energy_scale``.
    sram_v
        Supply per SRAM buffer (``weight_buffer``, ``input_buffer``, ``accum_buffer``,
        ``global_buffer``); that buffer's dynamic energy scales by ``(V / nominal)²``.
    weight_bytes_ratio
        Compressed ÷ dense bytes of the layer's weight tiles (metadata included). Weights stay
        compressed in DRAM and on the NoC, so their DRAM and NoC energy scale by this ratio (every
        tile is fetched the same number of times, so the ratio of sums is exact); each weight
        written into a PE weight buffer is decoded there first (``decoder`` component). 1.0 =
        uncompressed, no decoder energy.
    """
    scale: dict[str, float] = {}
    if noc_swing_v is not None:
        if not 0 < noc_swing_v <= spec.noc.nominal_vdd_v:
            raise PolicyError(
                f"layer {layer_id}: NoC swing out of range",
                expected=f"0 < swing <= {spec.noc.nominal_vdd_v} V",
                found=f"{noc_swing_v} V",
                fix="choose a swing at or below the supply",
            )
        scale["noc_link"] = spec.noc.link_energy_scale(noc_swing_v)
    if nop_swing_v is not None:
        pkg = spec.package
        if pkg is None or not 0 < nop_swing_v <= pkg.nominal_swing_v:
            raise PolicyError(
                f"layer {layer_id}: package link swing out of range",
                expected="a package spec and 0 < swing <= package.nominal_swing_v",
                found=f"{nop_swing_v} V on {spec.name}",
                fix="choose a swing at or below the package links' nominal swing",
            )
        scale["package_link"] = pkg.link_energy_scale(nop_swing_v)
    for buf, v in (sram_v or {}).items():
        if buf not in _SCALABLE_SRAM or not 0 < v <= spec.sram.nominal_vdd_v:
            raise PolicyError(
                f"layer {layer_id}: bad SRAM voltage for {buf!r}",
                expected=f"a buffer in {_SCALABLE_SRAM} and 0 < V <= {spec.sram.nominal_vdd_v} V",
                found=f"{buf}: {v} V",
                fix="name a PE or global buffer and a voltage at or below nominal",
            )
        scale[buf] = (v / spec.sram.nominal_vdd_v) ** 2
    terms = energy_breakdown_pj(counts, spec, mul_energy_pj=mul_energy_pj)
    if weight_bytes_ratio != 1.0:
        if not 0 < weight_bytes_ratio < 2:
            raise PolicyError(
                f"layer {layer_id}: impossible compressed weight size",
                expected="0 < compressed/dense < 2",
                found=f"{weight_bytes_ratio}",
                fix="check the weight layout of the schedule",
            )
        terms = {
            k: (pj * weight_bytes_ratio if k[1] == "weight" and k[0] in _WEIGHT_TRANSPORT else pj)
            for k, pj in terms.items()
        }
        decoded = counts.writes("weight_buffer", "weight")
        terms[("decoder", "weight")] = decoded * spec.energy.decoder_energy_pj_per_weight
    order = {c: i for i, c in enumerate(COMPONENTS)}
    tensor_order = {"compute": 0, "weight": 1, "input": 2, "output": 3}
    entries = tuple(
        (comp, t, pj * scale.get(comp, 1.0))
        for (comp, t), pj in sorted(
            # an extra buffer of the spec (not in COMPONENTS) sorts after the global buffer
            terms.items(),
            key=lambda kv: (order.get(kv[0][0], order["global_buffer"] + 0.5), kv[0][0], tensor_order[kv[0][1]]),
        )
    )
    return LayerEnergy(layer_id, counts.macs, entries, counts.latency_cycles)


def layer_energy(
    prog: LayerProgram, spec: AcceleratorSpec, counts_cache: dict[object, object] | None = None
) -> LayerEnergy:
    """Energy of one execution of a layer: counts simulated over its loop nest, priced with its
    multiplier, NoC swing, SRAM voltages and the real (compressed) size of its weight tiles.

    ``counts_cache`` (mapping → counts) shares the simulation between layers with the same
    mapping (ResNet-50: 54 layers, 24 distinct mappings); counts depend on the mapping only.
    """
    sched = prog.schedule
    key = sched.mapping if sched.package is None else sched.package
    counts = counts_cache.get(key) if counts_cache is not None else None
    if counts is None:
        from approxtvm.runtime.counting import simulate_counts

        if sched.package is None:
            counts = simulate_counts(sched.mapping, spec)
        else:  # every busy chiplet walks its part's nest; the package adds its traffic
            from approxtvm.targets.vacc.package_counts import combine

            counts = combine(sched.package.partition, simulate_counts(sched.package.chiplet, spec), spec)
        if counts_cache is not None:
            counts_cache[key] = counts
    cfg = sched.config
    dense_bytes = prog.weight.size * spec.precision.bits("weight") // 8
    ratio = 1.0 if cfg.compression == "none" else sched.weight_layout.total_bytes / dense_bytes
    return energy_of(
        sched.layer_id,
        counts,  # type: ignore[arg-type]
        spec,
        mul_energy_pj=sched.intrinsic.mul_energy_pj,
        noc_swing_v=energy_swing_v(spec, cfg.noc_swing_v, cfg.noc_protected_msbs),
        sram_v=cfg.sram_v_map or None,
        nop_swing_v=nop_energy_swing_v(spec, cfg.nop_swing_v, cfg.nop_protected_msbs),
        weight_bytes_ratio=ratio,
    )
