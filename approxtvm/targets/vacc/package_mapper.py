"""The package level of the mapper: the partition of each layer across chiplets, per objective.

For each candidate :class:`~approxtvm.targets.vacc.package.Partition`
(:func:`~approxtvm.targets.vacc.package.partition_candidates`), the chiplet mapper
(:func:`~approxtvm.targets.vacc.mapper.map_layer`, cached per sub-layer shape) maps the sub-layer;
the package counts (:func:`~approxtvm.targets.vacc.package_counts.combine`) priced by
:func:`~approxtvm.targets.vacc.pricing.energy_breakdown_pj` give the energy and the latency of
the whole layer, and the objective picks the partition (ties: fewer busy chiplets).

Mapping every candidate's sub-layer would cost one chiplet search each (~0.1–0.4 s), so the
search is a branch and bound: candidates are ranked by a lower bound that needs no chiplet mapping
(:func:`_bound`), mapped exactly in that order, and the search stops at the first candidate whose
bound cannot beat the best exact cost found (or after ``keep`` exact mappings).
"""

from __future__ import annotations

import functools

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapper import OBJECTIVES, map_layer
from approxtvm.targets.vacc.package import PackageMapping, Partition, partition_candidates, sub_shape
from approxtvm.targets.vacc.package_counts import combine, memory_bandwidth, package_traffic
from approxtvm.targets.vacc.pricing import energy_breakdown_pj, objective_key
from approxtvm.targets.vacc.workload import LayerShape

__all__ = ["clear_package_cache", "map_package"]


def _key(objective: str, energy: float, latency: float, chiplets: int) -> tuple[float, float, int]:
    return (*objective_key(objective, energy, latency), chiplets)


def _bound(shape: LayerShape, part: Partition, spec: AcceleratorSpec) -> tuple[float, float]:
    """Lower bounds of ``(energy pJ, latency cycles)`` of the layer under ``part``, for any chiplet mapping.

    Energy: the MACs; the accumulation buffer's read-modify-write per busy vector MAC and cycle
    (at least ``MACs / lanes`` writes and that minus the outputs reads, per the closed form's
    model); each chiplet reading its sub-layer's weights and inputs and writing its outputs once
    from memory, with the package traffic that takes. Latency: the ideal compute cycles, the
    busiest package link and the memory interface under that same traffic. Every term only
    grows with a real mapping, so a candidate whose bound loses to an exact cost is pruned safely.
    """
    sub = sub_shape(shape, part)
    e = {"N": sub.n, "G": sub.groups, "K": sub.k // sub.groups, "C": sub.c // sub.groups}
    e |= {"P": sub.p, "Q": sub.q, "R": sub.r, "S": sub.s}
    rows = (sub.p - 1) * sub.stride_h + (sub.r - 1) * sub.dilation_h + 1
    cols = (sub.q - 1) * sub.stride_w + (sub.s - 1) * sub.dilation_w + 1
    weights = e["G"] * e["K"] * e["C"] * e["R"] * e["S"]
    inputs = e["N"] * e["G"] * e["C"] * rows * cols
    outputs = e["N"] * e["G"] * e["K"] * e["P"] * e["Q"]
    once = AccessCounts(
        macs=sub.macs,
        buffer_accesses=(("dram", "input", inputs, 0), ("dram", "output", 0, outputs), ("dram", "weight", weights, 0)),
    )
    tr = package_traffic(part, once, spec)
    prec = spec.precision
    mem_bits = sum(v * prec.bits(t) for t, v in (*tr.memory_reads, *tr.memory_writes))
    pkg = spec.package
    link_pj = (pkg.link_energy_pj_per_bit + pkg.router_energy_pj_per_bit) if pkg is not None else 0.0
    acc = spec.memory("accum_buffer")
    acc_writes = -(-shape.macs // spec.pe_array.lanes_per_vector_mac)
    acc_reads = max(0, acc_writes - outputs * part.chiplets)
    energy = (
        shape.macs * (spec.energy.mul_energy_pj + spec.energy.add_energy_pj)
        + prec.psum_bits * (acc_writes * acc.write_energy_pj_per_bit + acc_reads * acc.read_energy_pj_per_bit)
        + tr.reduction_adds * spec.energy.add_energy_pj
        + mem_bits * spec.dram.energy_pj_per_bit
        + sum(lk for _, _, lk, _ in tr.entries) * link_pj
    )
    bw = pkg.bandwidth_bits_per_cycle if pkg is not None else 1
    latency = max(
        -(-sub.macs // spec.pe_array.num_macs),
        -(-tr.busiest_link_bits // bw),
        -(-mem_bits // memory_bandwidth(spec)),
    )
    return energy, float(latency)


@functools.lru_cache(maxsize=4096)
def _map_package_cached(shape: LayerShape, spec: AcceleratorSpec, objective: str, keep: int) -> PackageMapping:
    best: tuple[tuple[float, float, int], PackageMapping] | None = None
    cands = partition_candidates(shape, Hierarchy.of(spec).chiplets)
    bounds = {p: _key(objective, *_bound(shape, p, spec), p.chiplets) for p in cands}
    ranked = sorted(cands, key=bounds.__getitem__)
    for part in ranked[:keep]:
        if best is not None and bounds[part][0] >= best[0][0]:
            break  # sorted by bound: no later candidate can beat the best exact cost either
        try:
            chiplet = map_layer(sub_shape(shape, part), spec, objective)
        except ScheduleError:  # this sub-layer does not fit a chiplet: another partition may
            continue
        counts = combine(part, analytic_counts(chiplet, spec), spec)
        energy = sum(energy_breakdown_pj(counts, spec).values())
        key = _key(objective, energy, float(counts.latency_cycles), part.chiplets)
        if best is None or key < best[0]:
            best = (key, PackageMapping(shape, part, chiplet))
    if best is None:
        raise ScheduleError(
            f"no partition of {shape.op} K={shape.k} C={shape.c} P={shape.p} Q={shape.q} fits {spec.name}",
            expected="a sub-layer that fits one chiplet's buffers",
            found=f"{Hierarchy.of(spec).chiplets} chiplets",
            fix="use a spec with larger buffers or more chiplets",
        )
    return best[1]


def map_package(
    shape: LayerShape, spec: AcceleratorSpec, objective: str = "energy", *, keep: int = 3
) -> PackageMapping:
    """Best :class:`PackageMapping` of ``shape`` on ``spec``'s package for ``objective``.

    Without a package (or with one chiplet) the partition is empty and the chiplet mapping is
    :func:`~approxtvm.targets.vacc.mapper.map_layer`'s. ``keep``: at most how many partitions are
    mapped exactly (best lower bound first, see the module docstring). Deterministic; cached per
    ``(shape, spec, objective, keep)``.
    """
    if objective not in OBJECTIVES:
        raise ScheduleError(
            f"unknown mapper objective {objective!r}",
            expected=f"one of {OBJECTIVES}",
            found=repr(objective),
            fix="pick energy, edp or latency",
        )
    return _map_package_cached(shape, spec, objective, keep)


def clear_package_cache() -> None:
    """Forget every cached :func:`map_package` result (benchmarks measure cold searches with it)."""
    _map_package_cached.cache_clear()
