"""Access counts by walking a mapping's loop nest: the executable check of the mapper's closed forms.

:func:`simulate_counts` does not use the mapper's formulas. For every buffer that holds a tensor it
enumerates the iterations of all temporal loops above that buffer (vectorised with numpy, at tile
granularity: one step per tile residency, never per MAC), works out which tile of the tensor is
resident at each step, and counts a fill whenever the resident tile changes; for outputs it also
tracks which tiles were visited before (a revisit needs its partial sums back) and which visit is a
tile's last (its write-back carries finished, requantized outputs). Spatial fan-out is enumerated
instance by instance: instances that need the same tile share one parent read (multicast), and the
NoC cost of each such group is the size of its XY-routing tree, recomputed here from the mesh.
The MACs' own accesses (weight register, input buffer, accumulation buffer read-modify-write) are
one per cycle per distinct operand, counted from the number of temporal steps.

:func:`iter_tiles` exposes the same walk to the runtime: for a chosen level, every tile residency
in execution order with its index ranges and the tensors (re)loaded at that step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import AccessCounts
from approxtvm.targets.vacc.mapping import LEVELS, Loop, Mapping
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS

__all__ = ["TileStep", "iter_tiles", "simulate_counts"]

_BUFFER_LEVEL = {
    "dram": "DRAM",
    "global_buffer": "GlobalBuffer",
    "weight_buffer": "PE",
    "input_buffer": "PE",
    "accum_buffer": "PE",
    "weight_register": "Register",
}


@dataclass(frozen=True, slots=True)
class TileStep:
    """One tile residency at a level, for one instance of that level.

    Attributes
    ----------
    step
        Index of the temporal iteration above the level (execution order).
    instance
        Which instance of the level (mixed-radix over the spatial loops above it, outermost most
        significant; for ``"PE"`` this is the PE number).
    ranges
        ``{dim: (start, stop)}`` of the tile, for every dimension in :data:`DIMS`.
    filled
        Tensors (``weight``, ``input``, ``output``) whose tile changed at this step and is loaded
        (for outputs: allocated, see ``output_first_visit``).
    output_first_visit
        The output tile is visited for the first time (starts from zero, nothing to fill).
    """

    step: int
    instance: int
    ranges: dict[str, tuple[int, int]]
    filled: frozenset[str]
    output_first_visit: bool


# ---------------------------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------------------------


def _strides(mapping: Mapping) -> list[list[int]]:
    """Per level, per loop: the distance in its dimension between two consecutive iterations."""
    flat = [(li, j, lp) for li, nest in enumerate(mapping.levels) for j, lp in enumerate(nest.loops)]
    out = [[0] * len(n.loops) for n in mapping.levels]
    for pos, (li, j, lp) in enumerate(flat):
        out[li][j] = math.prod(x.bound for _, _, x in flat[pos + 1 :] if x.dim == lp.dim)
    return out


@dataclass(frozen=True, slots=True)
class _Walk:
    """Temporal steps above a level: per loop its index array, the loop and its dimension stride."""

    steps: int
    idx: list[np.ndarray]
    loops: list[Loop]
    strides: list[int]


def _walk(mapping: Mapping, level_index: int) -> _Walk:
    strides = _strides(mapping)
    loops: list[Loop] = []
    dstr: list[int] = []
    for li in range(level_index):
        for j, lp in enumerate(mapping.levels[li].loops):
            if not lp.spatial:
                loops.append(lp)
                dstr.append(strides[li][j])
    steps = math.prod(lp.bound for lp in loops)
    ar = np.arange(steps, dtype=np.int64)
    idx = []
    inner = steps
    for lp in loops:
        inner //= lp.bound
        idx.append((ar // inner) % lp.bound)
    return _Walk(steps, idx, loops, dstr)


def _tile_ids(walk: _Walk, tensor: str, bounds: dict[str, int]) -> np.ndarray:
    """Identity of the resident tile of ``tensor`` at every step.

    The identity is the tile's start offset in every dimension that indexes the tensor, packed
    mixed-radix by the layer's bounds (offsets are below the bounds, so packing is injective).
    """
    rel = TENSOR_DIMS[tensor]
    weight = {}
    w = 1
    for d in DIMS:
        weight[d] = w
        w *= bounds[d]
    ident = np.zeros(walk.steps, dtype=np.int64)
    for lp, ix, st in zip(walk.loops, walk.idx, walk.strides, strict=True):
        if lp.dim in rel:
            ident = ident + ix * (st * weight[lp.dim])
    return ident


@dataclass(frozen=True, slots=True)
class _Residency:
    visits: int  # tile changes (incl. the first), per instance
    fresh: int  # distinct tiles, per instance (first visits)


def _residency(ids: np.ndarray) -> _Residency:
    if ids.size == 0:
        return _Residency(1, 1)
    changes = 1 + int(np.count_nonzero(ids[1:] != ids[:-1]))
    return _Residency(changes, int(np.unique(ids).size))


def _instances(mapping: Mapping, upto: int) -> list[dict[str, int]]:
    """Spatial coordinates (``{dim: offset}``) of every instance of level ``upto``."""
    loops = [lp for nest in mapping.levels[:upto] for lp in nest.spatial]
    strides = _strides(mapping)
    st = [strides[li][j] for li in range(upto) for j, lp in enumerate(mapping.levels[li].loops) if lp.spatial]
    out = []
    for coords in itertools.product(*(range(lp.bound) for lp in loops)):
        off = dict.fromkeys(DIMS, 0)
        for lp, c, s in zip(loops, coords, st, strict=True):
            off[lp.dim] += c * s
        out.append(off)
    return out


# ---------------------------------------------------------------------------------------------
# NoC geometry (recomputed here, independently of the mapper)
# ---------------------------------------------------------------------------------------------


def _xy_tree(spec: AcceleratorSpec, pes: list[int]) -> tuple[int, int]:
    """(links, routers) of the XY multicast tree (or summed unicasts) from the GB router to ``pes``."""
    sx, sy = spec.noc.global_buffer_node
    cols = spec.pe_array.mesh_cols
    routes = []
    for pe in pes:
        dx, dy = pe % cols, pe // cols
        nodes = [(x, sy) for x in range(sx, dx + (1 if dx >= sx else -1), 1 if dx >= sx else -1)]
        nodes += [(dx, y) for y in range(sy, dy + (1 if dy >= sy else -1), 1 if dy >= sy else -1)][1:]
        routes.append(nodes)
    if spec.noc.multicast:
        links = {(a, b) for r in routes for a, b in itertools.pairwise(r)}
        routers = {n for r in routes for n in r}
        return len(links), len(routers)
    return sum(len(r) - 1 for r in routes), sum(len(r) for r in routes)


def _pe_groups(mapping: Mapping, spec: AcceleratorSpec, tensor: str) -> tuple[int, int, int]:
    """(groups, Σ links, Σ routers) delivering one tile of ``tensor`` to every busy PE."""
    gb_spatial = mapping.levels[1].spatial
    groups: dict[tuple[int, ...], list[int]] = {}
    for pe, coords in enumerate(itertools.product(*(range(lp.bound) for lp in gb_spatial))):
        key = tuple(c for lp, c in zip(gb_spatial, coords, strict=True) if lp.dim in TENSOR_DIMS[tensor])
        groups.setdefault(key, []).append(pe)
    links = routers = 0
    for members in groups.values():
        lk, rt = _xy_tree(spec, members)
        links += lk
        routers += rt
    return len(groups), links, routers


# ---------------------------------------------------------------------------------------------
# simulate_counts
# ---------------------------------------------------------------------------------------------


def simulate_counts(mapping: Mapping, spec: AcceleratorSpec) -> AccessCounts:
    """Access counts of ``mapping`` on ``spec`` by walking its loop nest (see the module docstring).

    Must equal :func:`approxtvm.targets.vacc.mapper.analytic_counts` exactly; tests hold it to that.
    """
    mapping.validate(spec)
    prec = spec.precision
    buf: dict[tuple[str, str], list[int]] = {}
    noc: dict[str, list[int]] = {}

    def add(b: str, t: str, reads: int = 0, writes: int = 0) -> None:
        e = buf.setdefault((b, t), [0, 0])
        e[0] += reads
        e[1] += writes

    def add_noc(t: str, bits: int, links: int, routers: int) -> None:
        e = noc.setdefault(t, [0, 0, 0])
        e[0] += bits
        e[1] += links
        e[2] += routers

    bounds = mapping.shape.bounds
    level_of = {name: LEVELS.index(lv) for name, lv in _BUFFER_LEVEL.items()}
    n_levels = len(LEVELS)
    walks: dict[int, _Walk] = {}
    inst_cache: dict[int, list[dict[str, int]]] = {}

    def walk(i: int) -> _Walk:
        if i not in walks:
            walks[i] = _walk(mapping, i)
        return walks[i]

    def insts(i: int) -> list[dict[str, int]]:
        if i not in inst_cache:
            inst_cache[i] = _instances(mapping, i)
        return inst_cache[i]

    cycles = walk(n_levels).steps
    macs = cycles * len(insts(n_levels))
    fresh_accum = 0
    for t in ("weight", "input", "output"):
        chain = list(spec.storage_chain(t))
        for parent, child in itertools.pairwise([*chain, "mac"]):
            a = level_of[parent]
            if child == "mac":
                # one access per cycle per distinct operand among the MACs (lanes share an input
                # word across vector MACs; lanes reduce outputs in the adder tree)
                distinct = len(
                    {(tuple(o[d] for d in sorted(TENSOR_DIMS[t])), _above(o, mapping, a)) for o in insts(n_levels)}
                )
                n = cycles * distinct
                if t == "output":
                    add(parent, "psum", reads=n - fresh_accum, writes=n)
                else:
                    add(parent, t, reads=n)
                continue
            b = level_of[child]
            res = _residency(_tile_ids(walk(b), t, bounds))
            tile = mapping.tile_size(LEVELS[b], t)
            n_child = len(insts(b))
            crosses = a <= 1 < b
            if t != "output":
                shared = len({(tuple(o[d] for d in sorted(TENSOR_DIMS[t])), _above(o, mapping, a)) for o in insts(b)})
                add(child, t, writes=res.visits * tile * n_child)
                add(parent, t, reads=res.visits * tile * shared)
                if crosses:
                    groups, links, routers = _pe_groups(mapping, spec, t)
                    per = res.visits * tile * prec.bits(t)
                    add_noc(t, per * groups, per * links, per * routers)
                continue
            ids = _tile_ids(walk(b), t, bounds)
            final_visits, refills = _output_visits(ids)
            final = final_visits * tile * n_child
            partial = refills * tile * n_child
            if child == "accum_buffer":
                fresh_accum = final
            add(parent, "output", writes=final)
            add(parent, "psum", reads=partial, writes=partial)
            add(child, "psum", writes=partial, reads=partial)
            add(child, "psum" if child == "accum_buffer" else "output", reads=final)
            if crosses:
                groups, links, routers = _pe_groups(mapping, spec, t)
                for label, n_vis in (("output", final_visits), ("psum", 2 * refills)):
                    per = n_vis * tile * prec.bits(label)
                    add_noc(label, per * groups, per * links, per * routers)

    # latency: the roofline of compute, DRAM bandwidth and global-buffer width
    dram_bits = sum((r + w) * prec.bits(t) for (b, t), (r, w) in buf.items() if b == "dram")
    gb = spec.memory("global_buffer")
    gb_r = sum(r * prec.bits(t) for (b, t), (r, _) in buf.items() if b == "global_buffer")
    gb_w = sum(w * prec.bits(t) for (b, t), (_, w) in buf.items() if b == "global_buffer")
    latency = max(
        cycles,
        -(-dram_bits // spec.dram.bandwidth_bits_per_cycle),
        -(-gb_r // gb.width_bits),
        -(-gb_w // gb.width_bits),
    )
    return AccessCounts(
        macs=macs,
        compute_cycles=cycles,
        latency_cycles=latency,
        mac_slots=latency * spec.pe_array.num_macs,
        buffer_accesses=tuple(sorted((b, t, r, w) for (b, t), (r, w) in buf.items())),
        noc_traffic=tuple(sorted((t, v[0], v[1], v[2]) for t, v in noc.items())),
    )


def _above(offsets: dict[str, int], mapping: Mapping, level_index: int) -> tuple[int, ...]:
    """Coordinates of the parent instance an instance belongs to (spatial offsets above the parent)."""
    parent_loops = [lp for nest in mapping.levels[:level_index] for lp in nest.spatial]
    if not parent_loops:
        return ()
    # the parent's own instances differ in every spatial loop above it: identify the parent by the
    # offsets those loops contribute (the loops below it contribute smaller strides, removed here)
    strides = _strides(mapping)
    out = []
    for li in range(level_index):
        for j, lp in enumerate(mapping.levels[li].loops):
            if lp.spatial:
                out.append((offsets[lp.dim] // strides[li][j]) % lp.bound)
    return tuple(out)


def _output_visits(ids: np.ndarray) -> tuple[int, int]:
    """(last visits, refills) per instance for an output tile sequence ``ids``.

    A visit is a run of equal ids. The last run of each id writes back finished outputs; every run
    of an id after its first needs its partial sums filled back.
    """
    if ids.size == 0:
        return 1, 0
    starts = np.concatenate(([True], ids[1:] != ids[:-1]))
    runs = ids[starts]
    distinct = int(np.unique(runs).size)
    return distinct, int(runs.size) - distinct


# ---------------------------------------------------------------------------------------------
# iter_tiles
# ---------------------------------------------------------------------------------------------


def iter_tiles(mapping: Mapping, level: str) -> Iterator[TileStep]:
    """Every tile residency at ``level`` in execution order, instance by instance within a step.

    Parameters
    ----------
    mapping
        The layer's mapping.
    level
        One of :data:`~approxtvm.targets.vacc.mapping.LEVELS`; ``"PE"`` yields, per temporal step
        above the PEs, one :class:`TileStep` per busy PE with the ranges its buffers hold.

    Yields
    ------
    TileStep
        Ranges per dimension, which tensors were (re)loaded, and whether the output tile is new.
    """
    li = mapping.level_index(level)
    w = _walk(mapping, li)
    ext = mapping.dim_extents(level)
    insts = _instances(mapping, li)
    ids = {t: _tile_ids(w, t, mapping.shape.bounds) for t in ("weight", "input", "output")}
    seen_out: set[tuple[int, int]] = set()
    for s in range(w.steps):
        start = dict.fromkeys(DIMS, 0)
        for lp, ix, st in zip(w.loops, w.idx, w.strides, strict=True):
            start[lp.dim] += int(ix[s]) * st
        changed = frozenset(t for t in ids if s == 0 or ids[t][s] != ids[t][s - 1])
        out_id = int(ids["output"][s])
        for i, off in enumerate(insts):
            ranges = {d: (start[d] + off[d], start[d] + off[d] + ext[d]) for d in DIMS}
            first = (i, out_id) not in seen_out
            seen_out.add((i, out_id))
            yield TileStep(s, i, ranges, changed, first)
