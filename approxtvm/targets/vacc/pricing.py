"""Energy of access counts on a spec: one price list shared by the mapper and the runtime's reports."""

from __future__ import annotations

from typing import Any

from approxtvm.targets.vacc.counts import AccessCounts, CountTable
from approxtvm.targets.vacc.hardware import AcceleratorSpec

__all__ = ["COMPONENTS", "energy_breakdown_pj", "energy_terms", "objective_key", "total_energy"]

#: Energy components, in report order.
COMPONENTS: tuple[str, ...] = (
    "mac",
    "register",
    "weight_buffer",
    "input_buffer",
    "accum_buffer",
    "global_buffer",
    "noc_link",
    "noc_router",
    "package_link",
    "package_router",
    "dram",
    "decoder",
)


def energy_terms(table: CountTable, spec: AcceleratorSpec, mul_energy_pj: float | None) -> dict[tuple[str, str], Any]:
    """pJ per ``(component, tensor)`` of a count table (arrays in, arrays out)."""
    prec = spec.precision
    mul = spec.energy.mul_energy_pj if mul_energy_pj is None else mul_energy_pj
    out: dict[tuple[str, str], Any] = {("mac", "compute"): table.macs * (mul + spec.energy.add_energy_pj)}
    for (where, tensor, field), v in table.accesses.items():
        owner = "output" if tensor == "psum" else tensor
        bits = v * prec.bits(tensor)
        if where == "package":
            pkg = spec.package
            if field == "adds":  # cross-chiplet partial-sum reduction: additions, no multiply
                key, e, bits = ("mac", "output"), spec.energy.add_energy_pj, v
            elif field in ("links", "routers") and pkg is not None:
                comp = "package_link" if field == "links" else "package_router"
                e = pkg.link_energy_pj_per_bit if field == "links" else pkg.router_energy_pj_per_bit
                key, bits = (comp, owner), v
            else:
                continue
        elif where == "noc":
            if field == "links":
                key, e = ("noc_link", owner), spec.noc.link_energy_pj_per_bit
            elif field == "routers":
                key, e = ("noc_router", owner), spec.noc.router_energy_pj_per_bit
            else:
                continue
            bits = v  # already bit-traversals
        elif where == "dram":
            key, e = ("dram", owner), spec.dram.energy_pj_per_bit
        else:
            mem = spec.memory(where)
            comp = "register" if where == "weight_register" else where
            key = (comp, owner)
            e = mem.read_energy_pj_per_bit if field == "reads" else mem.write_energy_pj_per_bit
        out[key] = out.get(key, 0) + bits * e
    return out


def energy_breakdown_pj(
    counts: AccessCounts, spec: AcceleratorSpec, *, mul_energy_pj: float | None = None
) -> dict[tuple[str, str], float]:
    """Energy (pJ) per ``(component, tensor)`` of ``counts`` on ``spec``.

    Components are :data:`COMPONENTS`; tensors ``weight``, ``input``, ``output`` (partial sums
    included) and ``compute`` for the MACs. ``mul_energy_pj`` replaces the spec's multiply energy
    (approximate multipliers); the add/accumulate energy is unchanged.
    """
    return {k: float(v) for k, v in energy_terms(counts.table(), spec, mul_energy_pj).items()}


def total_energy(table: CountTable, spec: AcceleratorSpec) -> Any:
    """Total pJ of a count table at the spec's exact multiplier."""
    return sum(energy_terms(table, spec, None).values())


def objective_key(objective: str, energy: Any, latency: Any) -> tuple[Any, Any]:
    """``(primary, secondary)`` ranking key of a mapping under a spec's mapping objective.

    ``energy`` (pJ) and ``latency`` (cycles) are scalars or numpy arrays of candidates; the
    secondary term breaks ties: latency for ``energy``, energy for ``edp`` and ``latency``.
    """
    if objective == "energy":
        return energy, latency
    if objective == "edp":
        return energy * latency, energy
    return latency, energy
