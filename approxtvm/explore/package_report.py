"""Where the energy goes on 1, 4 and 36 chiplets: a network's layers mapped across each package.

Every conv/dense layer of a reference network (:func:`~approxtvm.models.layer_shapes.resnet_layer_shapes`)
is split across the package by :func:`~approxtvm.targets.vacc.package_mapper.map_package` and
priced by :func:`~approxtvm.runtime.energy.energy_of` (analytic counts, no compilation: energy does
not depend on the data). :func:`package_rows` gives one row per spec; :func:`package_markdown`
writes them as the report ``docs/package.md`` (``scripts/package_report.py``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.runtime.energy import COMPONENTS, EnergyReport, energy_of, energy_swing_v, nop_energy_swing_v
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.package_counts import package_counts
from approxtvm.targets.vacc.package_mapper import map_package

__all__ = ["COMMUNICATION", "PackageRow", "package_markdown", "package_rows"]

#: Components that move data between units (on chip and between chiplets).
COMMUNICATION = ("noc_link", "noc_router", "package_link", "package_router")


@dataclass(frozen=True, slots=True)
class PackageRow:
    """One network on one accelerator.

    Attributes
    ----------
    label
        Row name.
    spec_name, chiplets
        The accelerator and its chiplet count.
    macs
        MACs of the network (batch 1).
    pj_per_mac
        Total energy per MAC.
    by_component_pj_per_mac
        pJ per MAC per component (:data:`~approxtvm.runtime.energy.COMPONENTS`).
    latency_cycles
        Layers one after the other.
    utilisation
        Busy MAC-cycles over all MAC-cycles of every chiplet in that time.
    partitions
        ``(partition label, layers)`` most common first.
    """

    label: str
    spec_name: str
    chiplets: int
    macs: int
    pj_per_mac: float
    by_component_pj_per_mac: tuple[tuple[str, float], ...]
    latency_cycles: int
    utilisation: float
    partitions: tuple[tuple[str, int], ...]

    @property
    def communication_share(self) -> float:
        """Share of the energy spent moving data over the NoC and the package."""
        comp = dict(self.by_component_pj_per_mac)
        return sum(comp[c] for c in COMMUNICATION) / self.pj_per_mac

    @property
    def package_share(self) -> float:
        """Share of the energy spent on the package links and routers."""
        comp = dict(self.by_component_pj_per_mac)
        return (comp["package_link"] + comp["package_router"]) / self.pj_per_mac

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "by_component_pj_per_mac": dict(self.by_component_pj_per_mac),
            "partitions": dict(self.partitions),
            "communication_share": self.communication_share,
            "package_share": self.package_share,
        }


def package_rows(
    specs: Sequence[tuple[str, AcceleratorSpec]],
    net: str = "resnet50",
    objective: str = "edp",
    *,
    noc_swing_v: float | None = None,
    nop_swing_v: float | None = None,
    protected_msbs: int = 0,
) -> list[PackageRow]:
    """Map and price ``net`` on every ``(label, spec)`` (same objective for all: a fair comparison).

    ``noc_swing_v`` / ``nop_swing_v`` price the on-chip / package links at that swing (energy only),
    with ``protected_msbs`` of every 8 bits at full swing on both.
    """
    layers = resnet_layer_shapes(net)
    rows = []
    for label, spec in specs:
        noc_v = energy_swing_v(spec, noc_swing_v, protected_msbs)
        nop_v = nop_energy_swing_v(spec, nop_swing_v, protected_msbs) if spec.package is not None else None
        parts: Counter[str] = Counter()
        energies = []
        for name, shape in layers:
            pm = map_package(shape, spec, objective)
            parts[pm.partition.label()] += 1
            energies.append(energy_of(name, package_counts(pm, spec), spec, noc_swing_v=noc_v, nop_swing_v=nop_v))
        rep = EnergyReport(tuple(energies))
        chiplets = Hierarchy.of(spec).chiplets
        lat = rep.latency_cycles
        rows.append(
            PackageRow(
                label,
                spec.name,
                chiplets,
                rep.macs,
                rep.pj_per_mac,
                tuple((c, v / rep.macs) for c, v in rep.by_component().items()),
                lat,
                rep.macs / (lat * spec.pe_array.num_macs * chiplets) if lat else 0.0,
                tuple(parts.most_common()),
            )
        )
    return rows


def _table(rows: Sequence[PackageRow]) -> list[str]:
    shown = [c for c in COMPONENTS if any(dict(r.by_component_pj_per_mac)[c] for r in rows)]
    head = ["accelerator", "chiplets", "pJ/MAC", *shown, "comm. share", "package share", "latency (cycles)", "util."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        comp = dict(r.by_component_pj_per_mac)
        cells = [r.label, str(r.chiplets), f"{r.pj_per_mac:.3f}", *(f"{comp[c]:.3f}" for c in shown)]
        cells += [f"{100 * r.communication_share:.1f} %", f"{100 * r.package_share:.1f} %"]
        cells += [f"{r.latency_cycles:,}", f"{100 * r.utilisation:.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def package_markdown(sections: Sequence[tuple[str, str, Sequence[PackageRow]]], intro: str) -> str:
    """The report: ``intro``, then per ``(title, text, rows)`` a paragraph, the table and the partitions."""
    out = [intro, ""]
    for title, text, rows in sections:
        out += [f"## {title}", "", text, "", *_table(rows), ""]
        for r in rows:
            if r.chiplets > 1:
                top = ", ".join(f"{p} ×{n}" for p, n in r.partitions[:6])
                out.append(f"- {r.label}: layer partitions {top}")
        out.append("")
    return "\n".join(out)
