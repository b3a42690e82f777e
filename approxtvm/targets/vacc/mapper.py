"""Mapper for ``vacc``: tile sizes and loop orders per layer, and closed-form access counts.

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
  (broadcast to the PE's vector MACs), the weight register once per MAC.
* NoC: every transfer into or out of a PE buffer crosses the 4×4 mesh from the global-buffer router
  (weights too: they bypass the global buffer but enter the mesh at its router). XY routing; a
  multicast follows the union of the XY paths; cost = bits × (links × link energy + routers ×
  router energy), a unicast over ``d`` links visiting ``d + 1`` routers.
* Latency = max(compute cycles, DRAM bits / DRAM bandwidth, global-buffer bits / its width).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import LevelNest, Loop, Mapping
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS, LayerShape

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
    "resnet_layer_shapes",
]

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
    "dram",
    "decoder",
)
OBJECTIVES: tuple[str, ...] = ("energy", "edp", "latency")
_REDUCTION = frozenset(DIMS) - TENSOR_DIMS["output"]


# ---------------------------------------------------------------------------------------------
# AccessCounts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessCounts:
    """Access counts of one layer (or a sum of layers). Frozen, hashable, JSON-able, additive.

    Attributes
    ----------
    macs
        Multiply-accumulates executed (padded taps included).
    compute_cycles
        Cycles of compute if memory never stalls.
    latency_cycles
        Estimated cycles including DRAM and global-buffer bandwidth limits.
    mac_slots
        ``latency_cycles × MAC units``; utilisation = ``macs / mac_slots``.
    buffer_accesses
        ``(buffer, tensor, reads, writes)`` sorted; counts are elements of the tensor, whose width
        is given by the spec's precision: ``weight``, ``input``, ``output`` (finished, 8 bit) and
        ``psum`` (partial sum, 24 bit).
    noc_traffic
        ``(tensor, payload_bits, link_bit_traversals, router_bit_traversals)`` sorted.
    """

    macs: int = 0
    compute_cycles: int = 0
    latency_cycles: int = 0
    mac_slots: int = 0
    buffer_accesses: tuple[tuple[str, str, int, int], ...] = ()
    noc_traffic: tuple[tuple[str, int, int, int], ...] = ()

    # -- queries -------------------------------------------------------------------------------

    def reads(self, buffer: str, tensor: str) -> int:
        """Elements of ``tensor`` read from ``buffer``."""
        return sum(r for b, t, r, _ in self.buffer_accesses if b == buffer and t == tensor)

    def writes(self, buffer: str, tensor: str) -> int:
        """Elements of ``tensor`` written into ``buffer``."""
        return sum(w for b, t, _, w in self.buffer_accesses if b == buffer and t == tensor)

    def noc(self, tensor: str) -> tuple[int, int, int]:
        """``(payload_bits, link_bit_traversals, router_bit_traversals)`` of ``tensor`` on the NoC."""
        for t, bits, links, routers in self.noc_traffic:
            if t == tensor:
                return bits, links, routers
        return 0, 0, 0

    def noc_flits(self, tensor: str, flit_bits: int) -> int:
        """Flits of ``tensor`` injected into the NoC, tiles packed back to back (``ceil(bits / flit)``)."""
        return -(-self.noc(tensor)[0] // flit_bits)

    @property
    def utilisation(self) -> float:
        """Busy MAC-cycles over available MAC-cycles (0 when nothing ran)."""
        return self.macs / self.mac_slots if self.mac_slots else 0.0

    # -- algebra and serialisation -------------------------------------------------------------

    def __add__(self, other: AccessCounts) -> AccessCounts:
        if not isinstance(other, AccessCounts):
            return NotImplemented
        buf: dict[tuple[str, str], list[int]] = {}
        for b, t, r, w in (*self.buffer_accesses, *other.buffer_accesses):
            acc = buf.setdefault((b, t), [0, 0])
            acc[0] += r
            acc[1] += w
        noc: dict[str, list[int]] = {}
        for t, *vals in (*self.noc_traffic, *other.noc_traffic):
            acc = noc.setdefault(t, [0, 0, 0])
            for i, v in enumerate(vals):
                acc[i] += v
        return AccessCounts(
            macs=self.macs + other.macs,
            compute_cycles=self.compute_cycles + other.compute_cycles,
            latency_cycles=self.latency_cycles + other.latency_cycles,
            mac_slots=self.mac_slots + other.mac_slots,
            buffer_accesses=tuple(sorted((b, t, r, w) for (b, t), (r, w) in buf.items())),
            noc_traffic=tuple(sorted((t, *v) for t, v in noc.items())),  # type: ignore[misc]
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "macs": self.macs,
            "compute_cycles": self.compute_cycles,
            "latency_cycles": self.latency_cycles,
            "mac_slots": self.mac_slots,
            "buffer_accesses": [
                {"buffer": b, "tensor": t, "reads": r, "writes": w} for b, t, r, w in self.buffer_accesses
            ],
            "noc_traffic": [
                {"tensor": t, "payload_bits": p, "link_bit_traversals": lk, "router_bit_traversals": rt}
                for t, p, lk, rt in self.noc_traffic
            ],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> AccessCounts:
        """Inverse of :meth:`to_dict`."""
        return AccessCounts(
            macs=int(d["macs"]),
            compute_cycles=int(d["compute_cycles"]),
            latency_cycles=int(d["latency_cycles"]),
            mac_slots=int(d["mac_slots"]),
            buffer_accesses=tuple(
                sorted((e["buffer"], e["tensor"], int(e["reads"]), int(e["writes"])) for e in d["buffer_accesses"])
            ),
            noc_traffic=tuple(
                sorted(
                    (
                        e["tensor"],
                        int(e["payload_bits"]),
                        int(e["link_bit_traversals"]),
                        int(e["router_bit_traversals"]),
                    )
                    for e in d["noc_traffic"]
                )
            ),
        )

    def as_flat(self) -> dict[tuple[str, str, str], int]:
        """``{(buffer, tensor, 'reads'|'writes'): n}`` plus ``('noc', tensor, field)`` entries."""
        out: dict[tuple[str, str, str], int] = {}
        for b, t, r, w in self.buffer_accesses:
            out[(b, t, "reads")] = r
            out[(b, t, "writes")] = w
        for t, p, lk, rt in self.noc_traffic:
            out[("noc", t, "bits")] = p
            out[("noc", t, "links")] = lk
            out[("noc", t, "routers")] = rt
        return out


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

_Nest = list[list[tuple[str, Any, bool]]]  # per level: (dim, bound (int or int64 array), spatial)


def _prod(xs: Iterable[Any]) -> Any:
    out: Any = 1
    for x in xs:
        out = out * x
    return out


def _input_tile(e: dict[str, Any], shape: LayerShape) -> Any:
    h = (e["P"] - 1) * shape.stride_h + (e["R"] - 1) * shape.dilation_h + 1
    w = (e["Q"] - 1) * shape.stride_w + (e["S"] - 1) * shape.dilation_w + 1
    return e["N"] * e["G"] * e["C"] * h * w


def _core(nest: _Nest, shape: LayerShape, spec: AcceleratorSpec) -> dict[Any, Any]:
    """Closed-form counts of ``nest``; bounds may be numpy arrays (one entry per candidate)."""
    prec = spec.precision
    hier = Hierarchy.of(spec)
    compute, src = hier.compute, hier.network_source
    temporal = [[(d, b) for d, b, sp in lv if not sp] for lv in nest]
    spatial = [[(d, b) for d, b, sp in lv if sp] for lv in nest]

    def extents(i: int) -> dict[str, Any]:
        e: dict[str, Any] = dict.fromkeys(DIMS, 1)
        for lv in nest[i:]:
            for d, b, _ in lv:
                e[d] = e[d] * b
        return e

    def tile(i: int, t: str) -> Any:
        if i == compute:
            return 1
        e = extents(i)
        if t == "input":
            return _input_tile(e, shape)
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
        loops = [lp for lv in temporal[:i] for lp in lv]
        total = _prod(b for _, b in loops)
        trailing: Any = 1
        stopped: Any = False
        for d, b in reversed(loops):
            if d in rel:
                stopped = np.logical_or(stopped, np.asarray(b) > 1)
            else:
                trailing = trailing * np.where(stopped, 1, b)
        return total // trailing, _prod(b for d, b in loops if d in rel)

    out: dict[Any, Any] = {}

    def add(key: tuple[str, str, str], v: Any) -> None:
        out[key] = out.get(key, 0) + v

    cycles = _prod(b for lv in temporal for _, b in lv)
    out["compute_cycles"] = cycles
    out["macs"] = cycles * _prod(b for lv in spatial for _, b in lv)
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
    dram_bits = sum(v * prec.bits(k[1]) for k, v in out.items() if isinstance(k, tuple) and k[0] == "dram")
    bw = spec.dram.bandwidth_bits_per_cycle
    lat = np.maximum(cycles, -(-dram_bits // bw))
    if "global_buffer" in dict(hier.buffer_tensors):
        gb = spec.memory("global_buffer")
        gb_r = sum(
            v * prec.bits(k[1])
            for k, v in out.items()
            if isinstance(k, tuple) and k[0] == "global_buffer" and k[2] == "reads"
        )
        gb_w = sum(
            v * prec.bits(k[1])
            for k, v in out.items()
            if isinstance(k, tuple) and k[0] == "global_buffer" and k[2] == "writes"
        )
        lat = np.maximum(lat, np.maximum(-(-gb_r // gb.width_bits), -(-gb_w // gb.width_bits)))
    out["latency_cycles"] = lat
    return out


def _nest_of(mapping: Mapping) -> _Nest:
    return [[(lp.dim, lp.bound, lp.spatial) for lp in n.loops] for n in mapping.levels]


def analytic_counts(mapping: Mapping, spec: AcceleratorSpec) -> AccessCounts:
    """Closed-form access counts of ``mapping`` on ``spec`` (see the module docstring for the model).

    Raises
    ------
    ScheduleError
        If the mapping is not valid on ``spec``.
    """
    mapping.validate(spec)
    flat = _core(_nest_of(mapping), mapping.shape, spec)
    return _to_counts(flat, spec)


def _to_counts(flat: dict[Any, Any], spec: AcceleratorSpec) -> AccessCounts:
    buf: dict[tuple[str, str], list[int]] = {}
    noc: dict[str, list[int]] = {}
    for k, v in flat.items():
        if not isinstance(k, tuple):
            continue
        if k[0] == "noc":
            noc.setdefault(k[1], [0, 0, 0])[("bits", "links", "routers").index(k[2])] += int(v)
        else:
            buf.setdefault((k[0], k[1]), [0, 0])[0 if k[2] == "reads" else 1] += int(v)
    lat = int(flat["latency_cycles"])
    return AccessCounts(
        macs=int(flat["macs"]),
        compute_cycles=int(flat["compute_cycles"]),
        latency_cycles=lat,
        mac_slots=lat * spec.pe_array.num_macs,
        buffer_accesses=tuple(sorted((b, t, r, w) for (b, t), (r, w) in buf.items())),
        noc_traffic=tuple(sorted((t, *v) for t, v in noc.items())),  # type: ignore[misc]
    )


# ---------------------------------------------------------------------------------------------
# Energy of counts (shared with runtime.energy so that the mapper and the report agree)
# ---------------------------------------------------------------------------------------------


def _energy_terms(
    flat: dict[Any, Any], spec: AcceleratorSpec, mul_energy_pj: float | None
) -> dict[tuple[str, str], Any]:
    prec = spec.precision
    mul = spec.energy.mul_energy_pj if mul_energy_pj is None else mul_energy_pj
    out: dict[tuple[str, str], Any] = {("mac", "compute"): flat["macs"] * (mul + spec.energy.add_energy_pj)}
    for k, v in flat.items():
        if not isinstance(k, tuple):
            continue
        where, tensor, field = k
        owner = "output" if tensor == "psum" else tensor
        bits = v * prec.bits(tensor)
        if where == "noc":
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
    flat: dict[Any, Any] = dict(counts.as_flat())
    flat["macs"] = counts.macs
    return {k: float(v) for k, v in _energy_terms(flat, spec, mul_energy_pj).items()}


def _total_energy(flat: dict[Any, Any], spec: AcceleratorSpec) -> Any:
    return sum(_energy_terms(flat, spec, None).values())


# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@functools.lru_cache(maxsize=1024)
def _splits3(n: int, no_outer: bool = False) -> np.ndarray:
    """Ordered triples ``(a, b, c)`` with ``a·b·c = n`` (shape ``(m, 3)``); ``c = 1`` if ``no_outer``."""
    rows = [(a, b, n // (a * b)) for a in _divisors(n) for b in _divisors(n // a) if not no_outer or a * b == n]
    return np.array(rows, dtype=np.int64)


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
    """Loop orders tried at DRAM and GlobalBuffer: N and G outermost, then a permutation of K, C, (P Q).

    ``G`` indexes every tensor, so no loop outside it could reuse a tile across groups.
    """
    return [("N", "G", *itertools.chain.from_iterable(perm)) for perm in itertools.permutations(_ORDER_BLOCKS)]


def _search(shape: LayerShape, spec: AcceleratorSpec, objective: str) -> Mapping:
    best_key: tuple[float, float] | None = None
    best: Mapping | None = None
    bounds = shape.bounds
    pa = spec.pe_array
    hier = Hierarchy.of(spec)
    has_gb = "GlobalBuffer" in hier.names
    for sp in _spatial_choices(shape, spec):
        rest = dict(bounds)
        for d, n in sp:
            rest[d] //= n
        # per dim: (in-PE, GB, DRAM) factor triples; R and S live wholly in the PE.
        dims = [d for d in ("N", "G", "K", "C", "P", "Q") if rest[d] > 1]
        table = {d: _splits3(rest[d], d == "Q") for d in dims}
        if not has_gb:  # nothing between DRAM and the PEs: no GlobalBuffer factor
            table = {d: t[t[:, 1] == 1] for d, t in table.items()}
        grids = np.meshgrid(*[np.arange(len(table[d])) for d in dims], indexing="ij")
        idx = [g.ravel() for g in grids]
        fac = {d: table[d][i] for d, i in zip(dims, idx, strict=True)}
        ncand = idx[0].size if idx else 1
        one = np.ones(ncand, dtype=np.int64)

        def f(d: str, col: int, fac: dict[str, np.ndarray] = fac, one: np.ndarray = one) -> np.ndarray:
            return fac[d][:, col] if d in fac else one

        # capacity filter (vectorised) on the PE and GB tiles
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
        # one loop order per level above the PEs: DRAM takes the outer factor, GlobalBuffer the middle
        for orders in itertools.product(_level_orders(), repeat=hier.pe):
            nest: _Nest = [
                [(d, g(d, 2 if li == 0 else 1), False) for d in order]
                + (across_pes if li == hier.network_source else [])
                for li, order in enumerate(orders)
            ]
            nest.append(
                [(d, g(d, 0), False) for d in ("G", "K", "C")] + [(d, rest[d], False) for d in ("R", "S")] + in_pe
            )
            nest.append([(d, g(d, 0), False) for d in ("N", "P", "Q")])
            flat = _core(nest, shape, spec)
            energy = np.broadcast_to(_total_energy(flat, spec), (sel.size,)).astype(float)
            lat = np.broadcast_to(flat["latency_cycles"], (sel.size,)).astype(float)
            if objective == "energy":
                primary, secondary = energy, lat
            elif objective == "edp":
                primary, secondary = energy * lat, energy
            else:
                primary, secondary = lat, energy
            i = int(np.lexsort((secondary, primary))[0])
            key = (float(primary[i]), float(secondary[i]))
            if best_key is None or key < best_key:
                best_key = key
                best = _mapping_from(shape, hier.names, nest, i)
    if best is None:
        raise ScheduleError(
            f"no mapping of {shape.op} K={shape.k} C={shape.c} P={shape.p} Q={shape.q} "
            f"R={shape.r} S={shape.s} fits {spec.name}",
            expected="at least one tiling within the buffer capacities",
            found=f"{pa.num_pes} PEs, buffers {[m.capacity_bytes for m in spec.memories]} B",
            fix="use a spec with larger PE buffers, or split the layer",
        )
    best.validate(spec)
    return best


def _fits(shape: LayerShape, spec: AcceleratorSpec, sp: tuple[tuple[str, int], ...], f: Any) -> np.ndarray:
    """Capacity check of PE and GB tiles for every candidate (``f(dim, col)``: 0 = in-PE, 1 = GB)."""
    prec = spec.precision
    sp_pe = dict.fromkeys(DIMS, 1)
    sp_below = dict.fromkeys(DIMS, 1)
    for j, (d, n) in enumerate(sp):  # sp[0] spreads over the PEs, sp[1:] inside a PE
        sp_below[d] *= n if j > 0 else 1
        sp_pe[d] *= n
    bounds = shape.bounds
    e_pe = {d: f(d, 0) * sp_below[d] if d not in ("R", "S") else bounds[d] * sp_below[d] for d in DIMS}
    e_gb = {d: e_pe[d] * f(d, 1) * (sp_pe[d] // sp_below[d]) if d not in ("R", "S") else e_pe[d] for d in DIMS}
    w_pe = e_pe["G"] * e_pe["K"] * e_pe["C"] * e_pe["R"] * e_pe["S"]
    ok = w_pe * prec.weight_bits <= spec.memory("weight_buffer").capacity_bits
    ok &= _input_tile(e_pe, shape) * prec.input_bits <= spec.memory("input_buffer").capacity_bits
    o_pe = e_pe["N"] * e_pe["G"] * e_pe["K"] * e_pe["P"] * e_pe["Q"]
    ok &= o_pe * prec.psum_bits <= spec.memory("accum_buffer").capacity_bits
    if "GlobalBuffer" not in Hierarchy.of(spec).names:
        return np.asarray(ok)
    gb = spec.memory("global_buffer")
    reduce_above = (f("C", 1) * f("C", 2)) > 1
    out_bits = np.where(reduce_above, prec.psum_bits, prec.output_bits)
    need = e_gb["N"] * e_gb["G"] * e_gb["K"] * e_gb["P"] * e_gb["Q"] * out_bits if "output" in gb.tensors else 0
    if "input" in gb.tensors:
        need = need + _input_tile(e_gb, shape) * prec.input_bits
    if "weight" in gb.tensors:
        need = need + e_gb["G"] * e_gb["K"] * e_gb["C"] * e_gb["R"] * e_gb["S"] * prec.weight_bits
    ok &= need <= gb.capacity_bits
    return np.asarray(ok)


def _mapping_from(shape: LayerShape, names: tuple[str, ...], nest: _Nest, i: int) -> Mapping:
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
    return _search(shape, spec, objective)


def map_layer(shape: LayerShape, spec: AcceleratorSpec, objective: str = "energy") -> Mapping:
    """Best mapping of ``shape`` on ``spec`` for ``objective`` (``energy``, ``edp`` or ``latency``).

    Deterministic; cached per ``(shape, spec, objective)`` (all three are frozen and hashable).
    Searches, per spatial unrolling (K across PEs and vector MACs, C across lanes, divisors only),
    every factorisation of the remaining N, K, C, P, Q bounds into (inside the PE, GlobalBuffer,
    DRAM) that fits the buffers, and six loop orders at each of DRAM and GlobalBuffer; R and S run
    inside the PE, the PE's P/Q/N loops sit at the Register level (weights stay in the register).
    The cost is :func:`analytic_counts` priced by :func:`energy_breakdown_pj` (NoC included).
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


# ---------------------------------------------------------------------------------------------
# Reference workloads
# ---------------------------------------------------------------------------------------------


def resnet_layer_shapes(name: str) -> list[tuple[str, LayerShape]]:
    """Conv/dense layers of torchvision ResNet-18 or ResNet-50 at 224×224, batch 1, in order.

    Names follow torchvision (``layer2.0.downsample``); the stride of a bottleneck sits on its 3×3.
    """
    conv = LayerShape.conv2d
    layers: list[tuple[str, LayerShape]] = [
        ("conv1", conv(1, 64, 3, 224, 224, 7, 7, strides=(2, 2), pads=(3, 3, 3, 3)))
    ]
    if name == "resnet18":
        blocks, bottleneck, widths = (2, 2, 2, 2), False, (64, 128, 256, 512)
    elif name == "resnet50":
        blocks, bottleneck, widths = (3, 4, 6, 3), True, (64, 128, 256, 512)
    else:
        raise ScheduleError(
            f"unknown network {name!r}",
            expected="resnet18 or resnet50",
            found=name,
            fix="pick one of the two",
        )
    c_in, hw = 64, 56
    for stage, (nb, width) in enumerate(zip(blocks, widths, strict=True), start=1):
        for blk in range(nb):
            stride = 2 if stage > 1 and blk == 0 else 1
            out_hw = hw // stride
            pre = f"layer{stage}.{blk}"
            c_out = width * 4 if bottleneck else width
            if bottleneck:
                layers.append((f"{pre}.conv1", conv(1, width, c_in, hw, hw, 1, 1)))
                layers.append(
                    (
                        f"{pre}.conv2",
                        conv(1, width, width, hw, hw, 3, 3, strides=(stride, stride), pads=(1, 1, 1, 1)),
                    )
                )
                layers.append((f"{pre}.conv3", conv(1, c_out, width, out_hw, out_hw, 1, 1)))
            else:
                layers.append(
                    (
                        f"{pre}.conv1",
                        conv(1, width, c_in, hw, hw, 3, 3, strides=(stride, stride), pads=(1, 1, 1, 1)),
                    )
                )
                layers.append((f"{pre}.conv2", conv(1, width, width, out_hw, out_hw, 3, 3, pads=(1, 1, 1, 1))))
            if blk == 0 and (stride != 1 or c_in != c_out):
                layers.append((f"{pre}.downsample", conv(1, c_out, c_in, hw, hw, 1, 1, strides=(stride, stride))))
            c_in, hw = c_out, out_hw
    layers.append(("fc", LayerShape.dense(1, 1000, c_in)))
    return layers
