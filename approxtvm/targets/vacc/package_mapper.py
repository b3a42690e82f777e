"""The package level of the mapper: the partition of each layer across chiplets, per objective.

For each candidate :class:`~approxtvm.targets.vacc.package.Partition`
(:func:`~approxtvm.targets.vacc.package.partition_candidates`), the chiplet mapper
(:func:`~approxtvm.targets.vacc.mapper.map_layer`, cached per sub-layer shape) maps the sub-layer;
the package counts (:func:`~approxtvm.targets.vacc.package_counts.combine`) priced by
:func:`~approxtvm.targets.vacc.pricing.energy_breakdown_pj` give the energy and the latency of
the whole layer, and the objective picks the partition (ties: fewer busy chiplets).
"""

from __future__ import annotations

import functools

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapper import OBJECTIVES, map_layer
from approxtvm.targets.vacc.package import PackageMapping, partition_candidates, sub_shape
from approxtvm.targets.vacc.package_counts import combine
from approxtvm.targets.vacc.pricing import energy_breakdown_pj
from approxtvm.targets.vacc.workload import LayerShape

__all__ = ["clear_package_cache", "map_package"]


def _key(objective: str, energy: float, latency: float, chiplets: int) -> tuple[float, float, int]:
    if objective == "energy":
        return energy, latency, chiplets
    if objective == "edp":
        return energy * latency, energy, chiplets
    return latency, energy, chiplets


@functools.lru_cache(maxsize=4096)
def _map_package_cached(shape: LayerShape, spec: AcceleratorSpec, objective: str) -> PackageMapping:
    best: tuple[tuple[float, float, int], PackageMapping] | None = None
    for part in partition_candidates(shape, Hierarchy.of(spec).chiplets):
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


def map_package(shape: LayerShape, spec: AcceleratorSpec, objective: str = "energy") -> PackageMapping:
    """Best :class:`PackageMapping` of ``shape`` on ``spec``'s package for ``objective``.

    Without a package (or with one chiplet) the partition is empty and the chiplet mapping is
    :func:`~approxtvm.targets.vacc.mapper.map_layer`'s. Deterministic; cached per
    ``(shape, spec, objective)``.
    """
    if objective not in OBJECTIVES:
        raise ScheduleError(
            f"unknown mapper objective {objective!r}",
            expected=f"one of {OBJECTIVES}",
            found=repr(objective),
            fix="pick energy, edp or latency",
        )
    return _map_package_cached(shape, spec, objective)


def clear_package_cache() -> None:
    """Forget every cached :func:`map_package` result (benchmarks measure cold searches with it)."""
    _map_package_cached.cache_clear()
