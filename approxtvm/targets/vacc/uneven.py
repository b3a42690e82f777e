"""Uneven refinement of a mapping: each tensor's buffers cut the loop nest where it suits that tensor.

Opt-in (``mapper: {uneven: true}`` in the spec). Starting from the mapper's even optimum, every
tensor's cuts at its on-chip buffers (:class:`~approxtvm.targets.vacc.mapping.Boundary`) may move up
to :data:`REACH` temporal loops from its level's boundary, in either direction. A tensor's counts
depend only on its own cuts, so each tensor's cut combinations are priced in one vectorised closed
form (the loops a cut moves become bound-1 loops where they no longer sit); the combinations of the
three tensors are then joined under the shared buffers' capacities and the objective, whose latency
(DRAM and shared-buffer bandwidth) adds the tensors' traffic. Ties keep the even mapping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from approxtvm.targets.vacc.closed_form import Nest, _nest_of, closed_form, input_tile_elements, views_of
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import TENSORS, Boundary, Mapping
from approxtvm.targets.vacc.pricing import energy_terms, objective_key, total_energy
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS

__all__ = ["REACH", "SEEDS", "best_of", "refine_uneven"]

#: How many temporal loops a tensor's cut may move away from its level's boundary.
REACH = 3
#: How many even mappings (the best of as many loop orders) the mapper refines.
SEEDS = 4


@dataclass(frozen=True, eq=False)
class _Options:
    """The priced cut combinations of one tensor (arrays over combinations)."""

    cuts: list[dict[str, int]]  # level -> temporal loops above the tensor's cut
    energy: np.ndarray  # pJ owned by the tensor
    dram_bits: np.ndarray
    reads: dict[str, np.ndarray]  # shared buffer -> bits read
    writes: dict[str, np.ndarray]
    footprint: dict[str, np.ndarray]  # on-chip buffer -> bits of the tensor's tile
    moved: np.ndarray  # cuts away from their level's boundary


def _owner(tensor: str) -> str:
    return "output" if tensor == "psum" else tensor


def _superset_nest(m: Mapping, cuts: list[list[int]]) -> Nest:
    """One nest for many cut combinations: every temporal loop at every level, bound 1 where it is not.

    ``cuts[c][i]``: combination ``c``'s temporal loops above level ``i`` (level 0 = DRAM: 0).
    """
    temporal = m.temporal_loops
    cut = np.array(cuts, np.int64)  # (combos, levels)
    end = np.concatenate([cut[:, 1:], np.full((len(cuts), 1), len(temporal))], axis=1)
    nest: Nest = []
    for i, lv in enumerate(m.levels):
        loops: list[tuple[str, Any, bool]] = []
        for k, lp in enumerate(temporal):
            here = (cut[:, i] <= k) & (k < end[:, i])
            loops.append((lp.dim, np.where(here, lp.bound, 1).astype(np.int64), False))
        loops += [(lp.dim, lp.bound, True) for lp in lv.spatial]
        nest.append(loops)
    return nest


def _options(m: Mapping, spec: AcceleratorSpec, tensor: str) -> _Options | None:
    hier = Hierarchy.of(spec)
    prec = spec.precision
    temporal = m.temporal_loops
    chain = [lv.name for lv in hier.levels[1:] if hier.buffer_of(lv.name, tensor) is not None]
    # a cut's contiguity depends on that cut alone: the legal cuts per level, then their nested combinations
    allowed = []
    for lv in chain:
        even = m.even_cut(lv)
        span = range(max(0, even - REACH), min(len(temporal), even + REACH) + 1)
        allowed.append([c for c in span if m.tile_is_contiguous(lv, tensor, c)])
    combos = [
        dict(zip(chain, cs, strict=True))
        for cs in itertools.product(*allowed)
        if all(a <= b for a, b in itertools.pairwise(cs))
    ]
    if not combos:
        return None
    level_cuts = [m.view_cuts(c)[:-1] for c in combos]
    view = _superset_nest(m, level_cuts)
    table = closed_form(_nest_of(m), m.shape, spec, {tensor: view})
    n = len(combos)

    def arr(v: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v), (n,)).astype(np.int64)

    energy = sum(
        (
            np.broadcast_to(np.asarray(v, float), (n,))
            for (_, t), v in energy_terms(table, spec, None).items()
            if t == tensor
        ),
        np.zeros(n),
    )
    own = {k: arr(v) for k, v in table.accesses.items() if k[0] not in ("noc", "package") and _owner(k[1]) == tensor}
    dram = sum((v * prec.bits(k[1]) for k, v in own.items() if k[0] == "dram"), np.zeros(n, np.int64))
    reads = {
        b: sum((v * prec.bits(k[1]) for k, v in own.items() if k[0] == b and k[2] == "reads"), np.zeros(n, np.int64))
        for b in hier.shared_buffers
    }
    writes = {
        b: sum((v * prec.bits(k[1]) for k, v in own.items() if k[0] == b and k[2] == "writes"), np.zeros(n, np.int64))
        for b in hier.shared_buffers
    }
    # tile footprints from the same nest: the loops at and below each buffer's level in the view
    if tensor == "output":
        pe_cut = np.array([c["PE"] for c in combos], np.int64)
        reduces = np.array([lp.bound > 1 and lp.dim not in TENSOR_DIMS["output"] for lp in temporal], bool)
        first_reduction = np.flatnonzero(reduces)[0] if reduces.any() else len(temporal)
        psum_above = pe_cut > first_reduction  # a reduction loop runs above the accumulation buffer
    footprint: dict[str, np.ndarray] = {}
    pe = hier.pe
    for buf, level in hier.on_chip_buffers:
        if tensor not in spec.memory(buf).tensors:
            continue
        li = hier.index(level)
        e: dict[str, Any] = dict.fromkeys(DIMS, 1)
        for lv in view[li:]:
            for d, b, _ in lv:
                e[d] = e[d] * b
        if tensor == "input":
            words = input_tile_elements(e, m.shape)
        elif tensor == "weight":
            words = e["G"] * e["K"] * e["C"] * e["R"] * e["S"]
        else:
            words = e["N"] * e["G"] * e["K"] * e["P"] * e["Q"]
        if tensor != "output":
            bits: Any = prec.bits(tensor)
        elif li >= pe:
            bits = prec.psum_bits
        else:
            bits = np.where(psum_above, prec.psum_bits, prec.output_bits)
        footprint[buf] = arr(words * bits)
    moved = np.array([sum(c != m.even_cut(lv) for lv, c in combo.items()) for combo in combos], np.int64)
    return _Options(combos, np.asarray(energy, float), dram, reads, writes, footprint, moved)


def refine_uneven(m: Mapping, spec: AcceleratorSpec, objective: str) -> Mapping:
    """The best uneven variant of the even mapping ``m`` for ``objective`` (``m`` itself on a tie).

    Every tensor's cut at each of its on-chip buffers moves at most :data:`REACH` temporal loops;
    tiles stay contiguous, the cuts along a storage chain nest and every buffer keeps its capacity.
    """
    hier = Hierarchy.of(spec)
    opts = {t: _options(m, spec, t) for t in TENSORS}
    if any(o is None for o in opts.values()):
        return m
    ow, oi, oo = opts["weight"], opts["input"], opts["output"]
    assert ow is not None and oi is not None and oo is not None
    grid = np.ix_(np.arange(len(ow.cuts)), np.arange(len(oi.cuts)), np.arange(len(oo.cuts)))

    def join(get: Any) -> np.ndarray:
        return get(ow)[grid[0]] + get(oi)[grid[1]] + get(oo)[grid[2]]

    ok = np.ones((len(ow.cuts), len(oi.cuts), len(oo.cuts)), bool)
    for buf, _ in hier.on_chip_buffers:
        need = sum(
            (o.footprint[buf][g] for o, g in zip((ow, oi, oo), grid, strict=True) if buf in o.footprint),
            np.zeros((1, 1, 1), np.int64),
        )
        ok &= need <= spec.memory(buf).capacity_bits
    macs_pj = float(
        sum(
            v
            for (_, t), v in energy_terms(closed_form(_nest_of(m), m.shape, spec), spec, None).items()
            if t == "compute"
        )
    )
    energy = join(lambda o: o.energy) + macs_pj
    lat = np.maximum(m.compute_cycles(), -(-join(lambda o: o.dram_bits) // spec.dram.bandwidth_bits_per_cycle))
    for buf in hier.shared_buffers:
        width = spec.memory(buf).width_bits
        rd = join(lambda o, b=buf: o.reads[b])
        wr = join(lambda o, b=buf: o.writes[b])
        lat = np.maximum(lat, np.maximum(-(-rd // width), -(-wr // width)))
    lat = lat.astype(float)
    primary, secondary = objective_key(objective, energy, lat)
    primary, secondary = np.where(ok, primary, np.inf), np.where(ok, secondary, np.inf)
    even = tuple(
        next(j for j, c in enumerate(o.cuts) if all(v == m.even_cut(lv) for lv, v in c.items())) for o in (ow, oi, oo)
    )
    best = even
    # on a tie, the fewest moved cuts (a cut that saves nothing stays at its level's boundary)
    flat = np.lexsort((join(lambda o: o.moved).ravel(), secondary.ravel(), primary.ravel()))[0]
    cand = np.unravel_index(flat, primary.shape)
    if (primary[cand], secondary[cand]) < (primary[even], secondary[even]):
        best = tuple(int(c) for c in cand)
    if best == even:
        return m
    bounds = tuple(
        Boundary(t, lv, c)
        for t, o, j in zip(TENSORS, (ow, oi, oo), best, strict=True)
        for lv, c in o.cuts[j].items()
        if c != m.even_cut(lv)
    )
    out = replace(m, boundaries=bounds)
    out.validate(spec)
    return out


def _key(m: Mapping, spec: AcceleratorSpec, objective: str) -> tuple[float, float]:
    table = closed_form(_nest_of(m), m.shape, spec, views_of(m))
    return objective_key(objective, float(total_energy(table, spec)), float(table.latency_cycles))


def best_of(mappings: Iterable[Mapping], spec: AcceleratorSpec, objective: str) -> Mapping:
    """The mapping of ``mappings`` with the lowest ``objective`` (the first one on a tie)."""
    best: tuple[tuple[float, float], Mapping] | None = None
    for m in mappings:
        key = _key(m, spec, objective)
        if best is None or key < best[0]:
            best = (key, m)
    assert best is not None, "best_of needs at least one mapping"
    return best[1]
