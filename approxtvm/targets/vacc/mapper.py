"""Mapper for ``vacc``: the tile sizes and loop orders of each layer, searched under buffer capacities.

The cost of a candidate is its closed-form access counts (:mod:`approxtvm.targets.vacc.closed_form`)
priced by :func:`approxtvm.targets.vacc.pricing.energy_breakdown_pj` (NoC included); the search is
vectorised over the factorisations of the layer's bounds. The counts type, the closed form and the
pricing are re-exported here for existing callers.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.closed_form import Nest, analytic_counts, closed_form, input_tile_elements, noc_tree
from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import MAPPING_OBJECTIVES, AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import LevelNest, Loop, Mapping
from approxtvm.targets.vacc.pricing import COMPONENTS, energy_breakdown_pj, objective_key, total_energy
from approxtvm.targets.vacc.uneven import SEEDS as UNEVEN_SEEDS
from approxtvm.targets.vacc.uneven import best_of, refine_uneven
from approxtvm.targets.vacc.workload import DIMS, LayerShape

__all__ = [
    "COMPONENTS",
    "OBJECTIVES",
    "AccessCounts",
    "analytic_counts",
    "clear_mapper_cache",
    "energy_breakdown_pj",
    "map_layer",
    "naive_mapping",
    "noc_tree",
]

OBJECTIVES: tuple[str, ...] = MAPPING_OBJECTIVES


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _splits(n: int, parts: int) -> list[tuple[int, ...]]:
    """Ordered ``parts``-tuples of positive integers whose product is ``n`` (first part slowest)."""
    if parts == 1:
        return [(n,)]
    return [(a, *rest) for a in _divisors(n) for rest in _splits(n // a, parts - 1)]


@functools.lru_cache(maxsize=1024)
def _factor_table(n: int, parts: int, no_outer: bool = False) -> np.ndarray:
    """:func:`_splits` as an ``(m, parts)`` array; the last (DRAM) part is 1 if ``no_outer``."""
    rows = [r for r in _splits(n, parts) if not no_outer or r[-1] == 1]
    return np.array(rows, dtype=np.int64).reshape(len(rows), parts)


def _splits3(n: int, no_outer: bool = False) -> np.ndarray:
    """Ordered triples ``(a, b, c)`` with ``a·b·c = n`` (shape ``(m, 3)``); ``c = 1`` if ``no_outer``."""
    return _factor_table(n, 3, no_outer)


def _spatial_choices(shape: LayerShape, spec: AcceleratorSpec) -> list[tuple[tuple[str, int], ...]]:
    """Spatial unrollings ``((pe_dim, n), (vmac_dim, n), (lane_dim, n))`` worth searching.

    Only divisors (no padded tiles). Keeps the choices with the best MAC utilisation, at most three,
    preferring wide lanes (fewer accumulation-buffer accesses per MAC), then more vector MACs per PE
    (more input broadcast). Groups (``G``) may take the place of ``K`` across PEs and vector MACs
    (they are independent sets of output channels); lanes stay on ``C``, so a depthwise layer
    (one input channel per group) uses one lane of each vector MAC, and the utilisation says so.
    """
    pa = spec.pe_array
    bounds = shape.bounds
    dpe0, dvm0, dln = pa.pe_spatial_dims[0], pa.vector_mac_spatial_dims[0], pa.lane_spatial_dims[0]
    dpes = (dpe0, "G") if dpe0 == "K" and bounds["G"] > 1 else (dpe0,)
    dvms = (dvm0, "G") if dvm0 == "K" and bounds["G"] > 1 else (dvm0,)
    cands = []
    for dpe in dpes:
        for dvm in dvms:
            for ln in _divisors(bounds[dln]):
                if ln > pa.lanes_per_vector_mac:
                    continue
                for vm in _divisors(bounds[dvm]):
                    if vm > pa.vector_macs_per_pe:
                        continue
                    rest_pe = bounds[dpe] // (vm if dpe == dvm else 1)
                    for pe in _divisors(rest_pe):
                        if pe > pa.num_pes:
                            continue
                        cands.append((pe * vm * ln, ln, vm, pe, dpe, dvm))
    best = max(c[0] for c in cands)
    keep = sorted((c for c in cands if 2 * c[0] >= best), key=lambda c: (-c[0], -c[1], -c[2], c[4], c[5]))[:3]
    return [((dpe, pe), (dvm, vm), (dln, ln)) for _, ln, vm, pe, dpe, dvm in keep]


_ORDER_BLOCKS: tuple[tuple[str, ...], ...] = (("K",), ("C",), ("P", "Q"))


def _level_orders() -> list[tuple[str, ...]]:
    """Loop orders tried at DRAM and GlobalBuffer: N outermost, then a permutation of K, C, (P Q)."""
    # G indexes every tensor: no loop outside it could reuse a tile across groups
    return [("N", "G", *itertools.chain.from_iterable(perm)) for perm in itertools.permutations(_ORDER_BLOCKS)]


def _search(shape: LayerShape, spec: AcceleratorSpec, objective: str, keep: int = 1) -> list[Mapping]:
    """The ``keep`` best mappings, best first, each the cheapest of its loop orders and unrolling."""
    ranked: list[tuple[tuple[float, float], Nest, int]] = []  # per priced order: its best candidate
    bounds = shape.bounds
    pa = spec.pe_array
    hier = Hierarchy.of(spec)
    # factor columns: 0 = inside the PE, then one per level above the PE, innermost first
    # (level ``li`` above the PE takes column ``pe - li``; DRAM, level 0, the last one)
    parts = hier.pe + 1
    for sp in _spatial_choices(shape, spec):
        rest = dict(bounds)
        for d, n in sp:
            rest[d] //= n
        # R and S live wholly in the PE
        dims = [d for d in ("N", "G", "K", "C", "P", "Q") if rest[d] > 1]
        table = {d: _factor_table(rest[d], parts, d == "Q") for d in dims}
        grids = np.meshgrid(*[np.arange(len(table[d])) for d in dims], indexing="ij")
        idx = [g.ravel() for g in grids]
        fac = {d: table[d][i] for d, i in zip(dims, idx, strict=True)}
        ncand = idx[0].size if idx else 1
        one = np.ones(ncand, dtype=np.int64)

        def f(d: str, col: int, fac: dict[str, np.ndarray] = fac, one: np.ndarray = one) -> np.ndarray:
            return fac[d][:, col] if d in fac else one

        # capacity filter (vectorised) on the PE tiles and the tiles of every level above
        ok = _fits(shape, spec, sp, f)
        if not ok.any():
            continue
        sel = np.nonzero(ok)[0]
        fac = {d: v[sel] for d, v in fac.items()}
        one = np.ones(sel.size, dtype=np.int64)

        def g(d: str, col: int, fac: dict[str, np.ndarray] = fac, one: np.ndarray = one) -> np.ndarray:
            return fac[d][:, col] if d in fac else one

        across_pes = [(d, n, True) for d, n in sp[:1] if n > 1]  # at the level feeding the PEs
        in_pe = [(d, n, True) for d, n in sp[1:] if n > 1]  # vector MACs and lanes
        # one loop order per level above the PEs; orders that differ only in where bound-1 dims sit
        # give identical counts (a bound-1 loop changes no tile and no reuse), so each distinct
        # order is priced once, the first of its class as before (depthwise: 1 of 36, dense: 4)
        seen: set[tuple[tuple[str, ...], ...]] = set()
        for orders in itertools.product(_level_orders(), repeat=hier.pe):
            live = tuple(tuple(d for d in order if d in fac) for order in orders)
            if live in seen:
                continue
            seen.add(live)
            nest: Nest = [
                [(d, g(d, hier.pe - li), False) for d in order] + (across_pes if li == hier.network_source else [])
                for li, order in enumerate(orders)
            ]
            nest.append(
                [(d, g(d, 0), False) for d in ("G", "K", "C")] + [(d, rest[d], False) for d in ("R", "S")] + in_pe
            )
            nest.append([(d, g(d, 0), False) for d in ("N", "P", "Q")])
            table = closed_form(nest, shape, spec)
            energy = np.broadcast_to(total_energy(table, spec), (sel.size,)).astype(float)
            lat = np.broadcast_to(table.latency_cycles, (sel.size,)).astype(float)
            primary, secondary = objective_key(objective, energy, lat)
            i = int(np.lexsort((secondary, primary))[0])
            ranked.append(((float(primary[i]), float(secondary[i])), nest, i))
    if not ranked:
        raise ScheduleError(
            f"no mapping of {shape.op} K={shape.k} C={shape.c} P={shape.p} Q={shape.q} "
            f"R={shape.r} S={shape.s} fits {spec.name}",
            expected="at least one tiling within the buffer capacities",
            found=f"{pa.num_pes} PEs, buffers {[m.capacity_bytes for m in spec.memories]} B",
            fix="use a spec with larger PE buffers, or split the layer",
        )
    ranked.sort(key=lambda r: r[0])  # stable: on a tie the first priced order wins
    out = [_mapping_from(shape, hier.names, nest, i) for _, nest, i in ranked[:keep]]
    out[0].validate(spec)
    return out


def _fits(shape: LayerShape, spec: AcceleratorSpec, sp: tuple[tuple[str, int], ...], f: Any) -> np.ndarray:
    """Capacity check of the PE tiles and of every shared level's tiles for every candidate.

    ``f(dim, col)``: factor of ``dim`` inside the PE (column 0) or at the level ``col`` steps above it.
    """
    prec = spec.precision
    hier = Hierarchy.of(spec)
    sp_pe = dict.fromkeys(DIMS, 1)
    sp_below = dict.fromkeys(DIMS, 1)
    for j, (d, n) in enumerate(sp):  # sp[0] spreads over the PEs, sp[1:] inside a PE
        sp_below[d] *= n if j > 0 else 1
        sp_pe[d] *= n
    bounds = shape.bounds
    e_pe = {d: f(d, 0) * sp_below[d] if d not in ("R", "S") else bounds[d] * sp_below[d] for d in DIMS}
    w_pe = e_pe["G"] * e_pe["K"] * e_pe["C"] * e_pe["R"] * e_pe["S"]
    ok = w_pe * prec.weight_bits <= spec.memory("weight_buffer").capacity_bits
    ok &= input_tile_elements(e_pe, shape) * prec.input_bits <= spec.memory("input_buffer").capacity_bits
    o_pe = e_pe["N"] * e_pe["G"] * e_pe["K"] * e_pe["P"] * e_pe["Q"]
    ok &= o_pe * prec.psum_bits <= spec.memory("accum_buffer").capacity_bits
    if hier.pe == 1:  # nothing between DRAM and the PEs
        return np.asarray(ok)
    # outputs above the PE are partial sums while a reduction loop runs above the PE (any level)
    reduce_above = _prod_cols(f, "C", range(1, hier.pe + 1)) > 1
    out_bits = np.where(reduce_above, prec.psum_bits, prec.output_bits)
    e = {d: e_pe[d] * (sp_pe[d] // sp_below[d]) for d in DIMS}  # the tile across the PEs
    for li in range(hier.pe - 1, 0, -1):  # shared levels, innermost first
        col = hier.pe - li
        e = {d: e[d] * f(d, col) if d not in ("R", "S") else e[d] for d in DIMS}
        for buf in hier.levels[li].buffers:
            mem = spec.memory(buf)
            need: Any = 0
            if "output" in mem.tensors:
                need = need + e["N"] * e["G"] * e["K"] * e["P"] * e["Q"] * out_bits
            if "input" in mem.tensors:
                need = need + input_tile_elements(e, shape) * prec.input_bits
            if "weight" in mem.tensors:
                need = need + e["G"] * e["K"] * e["C"] * e["R"] * e["S"] * prec.weight_bits
            ok &= need <= mem.capacity_bits
    return np.asarray(ok)


def _prod_cols(f: Any, d: str, cols: Any) -> Any:
    out: Any = 1
    for c in cols:
        out = out * f(d, c)
    return out


def _mapping_from(shape: LayerShape, names: tuple[str, ...], nest: Nest, i: int) -> Mapping:
    """Candidate ``i`` of a vectorised nest as a :class:`Mapping` (bound-1 loops dropped)."""
    levels = []
    for name, lv in zip(names, nest, strict=True):
        loops = []
        for d, b, spatial in lv:
            v = int(b[i]) if isinstance(b, np.ndarray) else int(b)
            if v > 1:
                loops.append(Loop(d, v, spatial))
        levels.append(LevelNest(name, tuple(loops)))
    return Mapping(shape, tuple(levels))


@functools.lru_cache(maxsize=4096)
def _map_layer_cached(shape: LayerShape, spec: AcceleratorSpec, objective: str) -> Mapping:
    if not spec.mapper.uneven:
        return _search(shape, spec, objective)[0]
    # uneven: refine the best even mappings of a few loop orders (a cut can favour another order)
    seeds = _search(shape, spec, objective, UNEVEN_SEEDS)
    return best_of((refine_uneven(m, spec, objective) for m in seeds), spec, objective)


def map_layer(shape: LayerShape, spec: AcceleratorSpec, objective: str = "energy") -> Mapping:
    """Best mapping of ``shape`` on ``spec`` for ``objective`` (``energy``, ``edp`` or ``latency``).

    Deterministic; cached per ``(shape, spec, objective)`` (all three are frozen and hashable).
    Searches, per spatial unrolling (K across PEs and vector MACs, C across lanes, divisors only),
    every factorisation of the remaining N, K, C, P, Q bounds into (inside the PE, each level above
    the PE: the global buffer's, any extra level, DRAM) that fits the buffers, and six loop orders
    at each level above the PE; R and S run
    inside the PE, the PE's P/Q/N loops sit at the Register level (weights stay in the register).
    The cost is :func:`analytic_counts` priced by :func:`energy_breakdown_pj` (NoC included).
    With ``spec.mapper.uneven`` the even optimum is refined into an uneven mapping
    (:func:`approxtvm.targets.vacc.uneven.refine_uneven`).
    """
    if objective not in OBJECTIVES:
        raise ScheduleError(
            f"unknown mapper objective {objective!r}",
            expected=f"one of {OBJECTIVES}",
            found=repr(objective),
            fix="pick energy, edp or latency",
        )
    return _map_layer_cached(shape, spec, objective)


def clear_mapper_cache() -> None:
    """Forget every cached :func:`map_layer` result (benchmarks measure cold searches with it)."""
    _map_layer_cached.cache_clear()


def naive_mapping(shape: LayerShape, spec: AcceleratorSpec) -> Mapping:
    """A baseline: the same spatial unrolling as the mapper's first choice, every temporal loop at
    DRAM in the fixed order N, K, C, R, S, P, Q (tiles of one element per MAC; no on-chip reuse
    beyond the spatial multicast)."""
    sp = _spatial_choices(shape, spec)[0]
    rest = dict(shape.bounds)
    for d, n in sp:
        rest[d] //= n
    hier = Hierarchy.of(spec)
    loops: list[tuple[Loop, ...]] = [() for _ in hier.levels]
    loops[0] = tuple(Loop(d, rest[d]) for d in ("N", "G", "K", "C", "R", "S", "P", "Q") if rest[d] > 1)
    loops[hier.network_source] += tuple(Loop(d, n, True) for d, n in sp[:1] if n > 1)
    loops[hier.pe] = tuple(Loop(d, n, True) for d, n in sp[1:] if n > 1)
    m = Mapping(shape, tuple(LevelNest(name, lp) for name, lp in zip(hier.names, loops, strict=True)))
    m.validate(spec)
    return m
