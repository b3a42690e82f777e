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
one per cycle per distinct operand, counted from the number of temporal steps. In an uneven
mapping each buffer walks the loops above its own cut. The walk itself is
:class:`~approxtvm.targets.vacc.tilewalk.TileWalk`, shared with the fault model.
"""

from __future__ import annotations

import itertools

from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.tilewalk import TileWalk, loop_strides
from approxtvm.targets.vacc.workload import TENSOR_DIMS

__all__ = ["simulate_counts"]


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
    gb_spatial = mapping.levels[Hierarchy.of(spec).network_source].spatial
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

    Must equal :func:`approxtvm.targets.vacc.closed_form.analytic_counts` exactly; tests hold it to that.
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

    hier = Hierarchy.of(spec)
    n_levels = hier.compute
    walks: dict[tuple[int, str | None], TileWalk] = {}
    inst_cache: dict[int, list[dict[str, int]]] = {}

    def walk(i: int, tensor: str | None = None) -> TileWalk:
        # each tensor's buffer walks the loops above its own cut (they differ in uneven mappings)
        if (i, tensor) not in walks:
            walks[(i, tensor)] = TileWalk.of(mapping, i, tensor)
        return walks[(i, tensor)]

    def insts(i: int) -> list[dict[str, int]]:
        if i not in inst_cache:
            inst_cache[i] = walk(i).instance_offsets()
        return inst_cache[i]

    cycles = walk(n_levels).steps
    macs = cycles * len(insts(n_levels))
    fresh_accum = 0
    for t in ("weight", "input", "output"):
        chain = list(hier.storage_chain(t))
        for parent, child in itertools.pairwise([*chain, "mac"]):
            a = hier.level_of(parent)
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
            b = hier.level_of(child)
            visits = len(walk(b, t).fills(t))
            tile = mapping.tile_size(hier.names[b], t)
            n_child = len(insts(b))
            crosses = hier.crosses_network(a, b)
            if t != "output":
                shared = len({(tuple(o[d] for d in sorted(TENSOR_DIMS[t])), _above(o, mapping, a)) for o in insts(b)})
                add(child, t, writes=visits * tile * n_child)
                add(parent, t, reads=visits * tile * shared)
                if crosses:
                    groups, links, routers = _pe_groups(mapping, spec, t)
                    per = visits * tile * prec.bits(t)
                    add_noc(t, per * groups, per * links, per * routers)
                continue
            final_visits, refills = walk(b, t).output_visits()
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

    # latency: the roofline of compute, DRAM bandwidth and the width of every shared on-chip buffer
    dram_bits = sum((r + w) * prec.bits(t) for (b, t), (r, w) in buf.items() if b == "dram")
    latency = max(cycles, -(-dram_bits // spec.dram.bandwidth_bits_per_cycle))
    for name in hier.shared_buffers:
        width = spec.memory(name).width_bits
        rd = sum(r * prec.bits(t) for (b, t), (r, _) in buf.items() if b == name)
        wr = sum(w * prec.bits(t) for (b, t), (_, w) in buf.items() if b == name)
        latency = max(latency, -(-rd // width), -(-wr // width))
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
    strides = loop_strides(mapping)
    out = []
    for li in range(level_index):
        for j, lp in enumerate(mapping.levels[li].loops):
            if lp.spatial:
                out.append((offsets[lp.dim] // strides[li][j]) % lp.bound)
    return tuple(out)
