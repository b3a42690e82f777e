"""Closed-form access counts of a mapping on ``vacc`` (the model the mapper optimises).

Access-count model (the same one :mod:`approxtvm.runtime.counting` re-derives by walking the nest):

* A tensor's tile at a buffer changes when a loop above the buffer that indexes the tensor
  advances. Loops above the buffer that do not index it and sit *inside* the innermost indexing
  loop leave the tile resident (stationarity); loops outside it force a re-fetch. A change moves
  the whole tile (no sliding-window delta), from the next buffer up that holds the tensor.
* Spatial loops between a parent and its children multicast the parent's tile when they do not
  index the tensor (one parent read, many child writes) and split it when they do.
* Outputs: a tile's first visit starts from zero (no fill); each later visit is filled with the
  partial sums (``psum``, 24 bit) written back at the end of the previous one. The last visit writes
  back finished outputs (``output``, 8 bit, requantized by the PE); earlier ones write ``psum``.
  The accumulation buffer holds partial sums only; there is no output register, so every cycle each
  busy vector MAC does one read-modify-write (the first update of a fresh output skips the read).
* Inputs and weights are read by the MACs every cycle: the input buffer once per cycle per lane
  (broadcast to the PE's vector MACs), the weight register once per MAC (counted; the shipped
  specs price these reads at 0 pJ: the register drives the multiplier, only its fills cost energy).
* NoC: every transfer into or out of a PE buffer crosses the 4×4 mesh from the global-buffer router
  (weights too: they bypass the global buffer but enter the mesh at its router). XY routing; a
  multicast follows the union of the XY paths; cost = bits × (links × link energy + routers ×
  router energy), a unicast over ``d`` links visiting ``d + 1`` routers.
* Latency = max(compute cycles, DRAM bits / DRAM bandwidth, and for every shared on-chip buffer
  (the global buffer, any extra level) its read bits and its write bits / its width).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from approxtvm.targets.vacc.counts import AccessCounts, CountKey, CountTable
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS, LayerShape

__all__ = ["Nest", "analytic_counts", "closed_form", "input_tile_elements", "noc_tree", "to_counts", "views_of"]


# ---------------------------------------------------------------------------------------------
# NoC geometry
# ---------------------------------------------------------------------------------------------


def _xy_path(
    src: tuple[int, int], dst: tuple[int, int]
) -> tuple[set[tuple[tuple[int, int], tuple[int, int]]], set[tuple[int, int]]]:
    """Links and routers of the XY route ``src → dst`` (X first, then Y)."""
    links: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    routers = {src}
    x, y = src
    while x != dst[0]:
        nx = x + (1 if dst[0] > x else -1)
        links.add(((x, y), (nx, y)))
        x = nx
        routers.add((x, y))
    while y != dst[1]:
        ny = y + (1 if dst[1] > y else -1)
        links.add(((x, y), (x, ny)))
        y = ny
        routers.add((x, y))
    return links, routers


@functools.lru_cache(maxsize=4096)
def noc_tree(spec: AcceleratorSpec, pes: tuple[int, ...]) -> tuple[int, int]:
    """``(links, routers)`` traversed to deliver one bit from the global buffer to PEs ``pes``.

    With multicast, the union of the XY routes (a tree); without, the sum of the unicast routes.
    The same counts apply to the reverse direction (PE → global buffer) of a unicast.
    """
    src = spec.noc.global_buffer_node
    if spec.noc.multicast:
        links: set[tuple[tuple[int, int], tuple[int, int]]] = set()
        routers: set[tuple[int, int]] = set()
        for pe in pes:
            lk, rt = _xy_path(src, spec.pe_array.pe_xy(pe))
            links |= lk
            routers |= rt
        return len(links), len(routers)
    n_links = n_routers = 0
    for pe in pes:
        lk, rt = _xy_path(src, spec.pe_array.pe_xy(pe))
        n_links += len(lk)
        n_routers += len(rt)
    return n_links, n_routers


@functools.lru_cache(maxsize=4096)
def _noc_groups(spec: AcceleratorSpec, pe_loops: tuple[tuple[str, int], ...], tensor: str) -> tuple[int, int, int]:
    """``(groups, Σ links, Σ routers)`` for one tile transfer of ``tensor`` to every busy PE.

    PEs are numbered mixed-radix over the global-buffer spatial loops (outermost = most significant);
    PEs whose coordinates agree on the loops indexing ``tensor`` receive the same data (one group).
    """
    rel = TENSOR_DIMS[tensor]
    groups: dict[tuple[int, ...], list[int]] = {}
    for coords in itertools.product(*(range(b) for _, b in pe_loops)):
        pe = 0
        for (_, b), c in zip(pe_loops, coords, strict=True):
            pe = pe * b + c
        key = tuple(c for (d, _), c in zip(pe_loops, coords, strict=True) if d in rel)
        groups.setdefault(key, []).append(pe)
    links = routers = 0
    for members in groups.values():
        lk, rt = noc_tree(spec, tuple(members))
        links += lk
        routers += rt
    return len(groups), links, routers


# ---------------------------------------------------------------------------------------------
# The closed-form counting core (scalar or vectorised over candidate bounds)
# ---------------------------------------------------------------------------------------------

Nest = list[list[tuple[str, Any, bool]]]  # per level: (dim, bound (int or int64 array), spatial)


def _prod(xs: Iterable[Any]) -> Any:
    out: Any = 1
    for x in xs:
        out = out * x
    return out


def input_tile_elements(e: dict[str, Any], shape: LayerShape) -> Any:
    h = (e["P"] - 1) * shape.stride_h + (e["R"] - 1) * shape.dilation_h + 1
    w = (e["Q"] - 1) * shape.stride_w + (e["S"] - 1) * shape.dilation_w + 1
    return e["N"] * e["G"] * e["C"] * h * w


def closed_form(
    nest: Nest, shape: LayerShape, spec: AcceleratorSpec, views: dict[str, Nest] | None = None
) -> CountTable:
    """Closed-form counts of ``nest``; bounds may be numpy arrays (one entry per candidate).

    ``views``: per tensor of an uneven mapping, the nest that tensor sees
    (:meth:`~approxtvm.targets.vacc.mapping.Mapping.tensor_view`); its counts follow that nest. The
    loops, and hence cycles, MACs and fan-out, are the same in every view.
    """
    prec = spec.precision
    hier = Hierarchy.of(spec)
    compute, src = hier.compute, hier.network_source
    views = views or {}

    def split(nt: Nest) -> tuple[list[list[tuple[str, Any]]], list[list[tuple[str, Any]]]]:
        return [[(d, b) for d, b, sp in lv if not sp] for lv in nt], [[(d, b) for d, b, sp in lv if sp] for lv in nt]

    temporal, spatial = split(nest)
    temporal_of = {t: split(views[t])[0] if t in views else temporal for t in ("weight", "input", "output")}
    nest_of = {t: views.get(t, nest) for t in ("weight", "input", "output")}

    def extents(i: int, nt: Nest) -> dict[str, Any]:
        e: dict[str, Any] = dict.fromkeys(DIMS, 1)
        for lv in nt[i:]:
            for d, b, _ in lv:
                e[d] = e[d] * b
        return e

    def tile(i: int, t: str) -> Any:
        if i == compute:
            return 1
        e = extents(i, nest_of[t])
        if t == "input":
            return input_tile_elements(e, shape)
        if t == "weight":
            return e["G"] * e["K"] * e["C"] * e["R"] * e["S"]
        return e["N"] * e["G"] * e["K"] * e["P"] * e["Q"]

    def inst(i: int) -> Any:
        return _prod(b for lv in spatial[:i] for _, b in lv)

    def rel_spatial(a: int, b: int, t: str) -> Any:
        rel = TENSOR_DIMS[t]
        return _prod(bd for lv in spatial[a:b] for d, bd in lv if d in rel)

    def changes_first(i: int, t: str) -> tuple[Any, Any]:
        rel = TENSOR_DIMS[t]
        loops = [lp for lv in temporal_of[t][:i] for lp in lv]
        total = _prod(b for _, b in loops)
        trailing: Any = 1
        stopped: Any = False
        for d, b in reversed(loops):
            if d in rel:
                stopped = np.logical_or(stopped, np.asarray(b) > 1)
            else:
                trailing = trailing * np.where(stopped, 1, b)
        return total // trailing, _prod(b for d, b in loops if d in rel)

    out: dict[CountKey, Any] = {}

    def add(key: tuple[str, str, str], v: Any) -> None:
        out[key] = out.get(key, 0) + v

    cycles = _prod(b for lv in temporal for _, b in lv)
    macs = cycles * _prod(b for lv in spatial for _, b in lv)
    pe_fanout = tuple((d, int(b)) for d, b in spatial[src])  # fixed per candidate set
    fresh_accum: Any = 0
    for t in ("weight", "input", "output"):
        chain = [hier.level_of(b) for b in hier.storage_chain(t)] + [compute]
        names = [*hier.storage_chain(t), "mac"]
        for (a, an), (b, bn) in itertools.pairwise(zip(chain, names, strict=True)):
            crosses_noc = hier.crosses_network(a, b)
            if b == compute:
                n_acc = cycles * inst(a) * rel_spatial(a, b, t)
                if t == "output":
                    add((an, "psum", "writes"), n_acc)
                    add((an, "psum", "reads"), n_acc - fresh_accum)
                else:
                    add((an, t, "reads"), n_acc)
                continue
            ch, first = changes_first(b, t)
            tl = tile(b, t)
            n_b = inst(b)
            if t != "output":
                add((bn, t, "writes"), ch * tl * n_b)
                add((an, t, "reads"), ch * tl * inst(a) * rel_spatial(a, b, t))
                if crosses_noc:
                    groups, links, routers = _noc_groups(spec, pe_fanout, t)
                    per = ch * tl * inst(src) * prec.bits(t)
                    add(("noc", t, "bits"), per * groups)
                    add(("noc", t, "links"), per * links)
                    add(("noc", t, "routers"), per * routers)
                continue
            partial = (ch - first) * tl * n_b
            final = first * tl * n_b
            if bn == "accum_buffer":
                fresh_accum = final
            add((an, "output", "writes"), final)
            add((an, "psum", "writes"), partial)
            add((an, "psum", "reads"), partial)
            add((bn, "psum", "writes"), partial)
            add((bn, "psum" if bn == "accum_buffer" else "output", "reads"), final)
            add((bn, "psum", "reads"), partial)
            if crosses_noc:  # outputs differ per PE: one unicast per PE (groups = busy PEs)
                groups, links, routers = _noc_groups(spec, pe_fanout, t)
                for label, n in (("output", first), ("psum", 2 * (ch - first))):  # psum: up, later back
                    per = n * tl * inst(src) * prec.bits(label)
                    add(("noc", label, "bits"), per * groups)
                    add(("noc", label, "links"), per * links)
                    add(("noc", label, "routers"), per * routers)
    # latency
    dram_bits = sum(v * prec.bits(k[1]) for k, v in out.items() if k[0] == "dram")
    bw = spec.dram.bandwidth_bits_per_cycle
    lat = np.maximum(cycles, -(-dram_bits // bw))
    for buf in hier.shared_buffers:  # one port of width_bits each way per cycle
        mem = spec.memory(buf)
        rd = sum(v * prec.bits(k[1]) for k, v in out.items() if k[0] == buf and k[2] == "reads")
        wr = sum(v * prec.bits(k[1]) for k, v in out.items() if k[0] == buf and k[2] == "writes")
        lat = np.maximum(lat, np.maximum(-(-rd // mem.width_bits), -(-wr // mem.width_bits)))
    return CountTable(macs, cycles, lat, out)


def _nest_of(mapping: Mapping) -> Nest:
    return [[(lp.dim, lp.bound, lp.spatial) for lp in n.loops] for n in mapping.levels]


def views_of(mapping: Mapping) -> dict[str, Nest] | None:
    """The per-tensor nests of an uneven mapping for :func:`closed_form` (``None`` if even)."""
    if not mapping.boundaries:
        return None
    return {t: _nest_of(mapping.tensor_view(t)) for t in ("weight", "input", "output")}


def analytic_counts(mapping: Mapping, spec: AcceleratorSpec) -> AccessCounts:
    """Closed-form access counts of ``mapping`` on ``spec`` (see the module docstring for the model).

    Raises
    ------
    ScheduleError
        If the mapping is not valid on ``spec``.
    """
    mapping.validate(spec)
    table = closed_form(_nest_of(mapping), mapping.shape, spec, views_of(mapping))
    return to_counts(table, spec)


def to_counts(table: CountTable, spec: AcceleratorSpec) -> AccessCounts:
    """The :class:`AccessCounts` of one mapping's (scalar) count table."""
    buf: dict[tuple[str, str], list[int]] = {}
    noc: dict[str, list[int]] = {}
    for k, v in table.accesses.items():
        if k[0] == "noc":
            noc.setdefault(k[1], [0, 0, 0])[("bits", "links", "routers").index(k[2])] += int(v)
        else:
            buf.setdefault((k[0], k[1]), [0, 0])[0 if k[2] == "reads" else 1] += int(v)
    lat = int(table.latency_cycles)
    return AccessCounts(
        macs=int(table.macs),
        compute_cycles=int(table.compute_cycles),
        latency_cycles=lat,
        mac_slots=lat * spec.pe_array.num_macs,
        buffer_accesses=tuple(sorted((b, t, r, w) for (b, t), (r, w) in buf.items())),
        noc_traffic=tuple(sorted((t, *v) for t, v in noc.items())),  # type: ignore[misc]
    )
