"""Access counts and latency of a layer split across a package of chiplets (closed form).

Model (Simba-like network-on-package, see :class:`~approxtvm.targets.vacc.hardware.PackageNetwork`):

* Every chiplet runs its sub-layer with the chiplet mapping; its on-chip counts (buffers, NoC,
  MACs) are those of the chiplet mapping, once per busy chiplet.
* The chiplet's ``dram`` accesses are the package's off-package memory, reached through the
  package router of ``memory_node``: every bit a chiplet reads from or writes to ``dram`` crosses
  the package mesh between the memory node and the chiplet (XY routing; a hop = one link + the
  router it enters; the chiplet at the memory node needs no hop).
* Weights and inputs: chiplets whose parts agree on every split dimension that indexes the tensor
  read the same data in the same order (same sub-layer, same mapping), so the memory reads it once
  and multicasts it along the union of the XY routes (``K`` splits share inputs, ``N``/``P``/``Q``
  splits share weights). Without multicast each chiplet gets its own copy (one memory read).
* Partial-sum spills of a chiplet mapping go to memory and back, per chiplet (unicast).
* Outputs: without a ``C`` split each chiplet writes its own outputs (unicast). With a ``C``
  split the chiplets of a group (same part on every other dimension) hold partial sums of the same
  outputs: each sends its partial sums (``psum`` width) to the group's root (the member nearest the
  memory node, lowest index on ties), which adds them (``(ways − 1)`` adds per output, priced at
  the spec's add energy) and writes the finished outputs to memory once.
* Latency = max(chiplet latency, busiest directed package link's bits / link bandwidth, the
  package's memory bits / :func:`memory_bandwidth`).

The counts are an :class:`~approxtvm.targets.vacc.counts.AccessCounts` whose ``package_traffic``
holds ``(tensor, payload bits, link-bit traversals, router-bit traversals)``; a package of one
chiplet at the memory node has none and equals the chiplet mapping's counts exactly.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from approxtvm.targets.vacc.closed_form import analytic_counts
from approxtvm.targets.vacc.counts import AccessCounts
from approxtvm.targets.vacc.hardware import AcceleratorSpec, PackageNetwork
from approxtvm.targets.vacc.package import PackageMapping, Partition
from approxtvm.targets.vacc.workload import TENSOR_DIMS

__all__ = ["PackageTraffic", "memory_bandwidth", "package_counts", "package_traffic", "xy_route"]

Link = tuple[tuple[int, int], tuple[int, int]]


def xy_route(src: tuple[int, int], dst: tuple[int, int]) -> tuple[Link, ...]:
    """Directed links of the XY route ``src → dst`` on the package mesh (X first, then Y)."""
    links: list[Link] = []
    x, y = src
    while x != dst[0]:
        nx = x + (1 if dst[0] > x else -1)
        links.append(((x, y), (nx, y)))
        x = nx
    while y != dst[1]:
        ny = y + (1 if dst[1] > y else -1)
        links.append(((x, y), (x, ny)))
        y = ny
    return tuple(links)


@dataclass(frozen=True, slots=True)
class PackageTraffic:
    """Package transfers of one layer.

    Attributes
    ----------
    entries
        ``(tensor, payload_bits, link_bit_traversals, router_bit_traversals)`` sorted by tensor.
    link_bits
        Bits per directed package link (for the bandwidth term of the latency).
    memory_reads, memory_writes
        ``(tensor, elements)`` the package reads from / writes to memory (``psum`` = spills).
    reduction_adds
        Partial-sum additions of cross-chiplet reductions.
    """

    entries: tuple[tuple[str, int, int, int], ...]
    link_bits: tuple[tuple[Link, int], ...]
    memory_reads: tuple[tuple[str, int], ...]
    memory_writes: tuple[tuple[str, int], ...]
    reduction_adds: int

    @property
    def busiest_link_bits(self) -> int:
        """Bits over the most loaded directed link (0 without package traffic)."""
        return max((b for _, b in self.link_bits), default=0)


def _groups(partition: Partition, tensor: str) -> dict[tuple[int, ...], list[int]]:
    """Busy chiplets grouped by their part along the split dimensions that index ``tensor``."""
    rel = TENSOR_DIMS[tensor]
    out: dict[tuple[int, ...], list[int]] = {}
    for i in range(partition.chiplets):
        co = partition.coords(i)
        out.setdefault(tuple(co[d] for d, _ in partition.splits if d in rel), []).append(i)
    return out


def _hops(pkg: PackageNetwork, a: int, b: int) -> int:
    (ax, ay), (bx, by) = pkg.chiplet_xy(a), pkg.chiplet_xy(b)
    return abs(ax - bx) + abs(ay - by)


def _mem_hops(pkg: PackageNetwork, i: int) -> int:
    (x, y), (mx, my) = pkg.chiplet_xy(i), pkg.memory_node
    return abs(x - mx) + abs(y - my)


@functools.lru_cache(maxsize=4096)
def package_traffic(partition: Partition, sub: AccessCounts, spec: AcceleratorSpec) -> PackageTraffic:
    """Package transfers when every busy chiplet of ``partition`` does the accesses ``sub``."""
    pkg = spec.package
    if pkg is None:
        pkg = PackageNetwork(1, 1, 0.0, 0.0)
    prec = spec.precision
    mem = pkg.memory_node
    xy = pkg.chiplet_xy
    traffic: dict[str, list[int]] = {}
    loads: Counter[Link] = Counter()
    reads: Counter[str] = Counter()
    writes: Counter[str] = Counter()

    def send(tensor: str, bits: int, links: list[Link]) -> None:
        if not bits or not links:  # the chiplet at the memory node: nothing crosses the package
            return
        t = traffic.setdefault(tensor, [0, 0, 0])
        t[0] += bits
        t[1] += bits * len(links)
        t[2] += bits * len(links)  # a hop enters one router
        for lk in links:
            loads[lk] += bits

    n = partition.chiplets
    for t in ("weight", "input"):
        elems = sub.reads("dram", t)
        for members in _groups(partition, t).values():
            reads[t] += elems
            routes = [xy_route(mem, xy(i)) for i in members]
            if pkg.multicast:
                send(t, elems * prec.bits(t), sorted({lk for r in routes for lk in r}))
            else:
                for r in routes:
                    send(t, elems * prec.bits(t), list(r))
    for i in range(n):  # partial-sum spills, each chiplet its own
        spill_w, spill_r = sub.writes("dram", "psum"), sub.reads("dram", "psum")
        writes["psum"] += spill_w
        reads["psum"] += spill_r
        send("psum", spill_w * prec.psum_bits, list(xy_route(xy(i), mem)))
        send("psum", spill_r * prec.psum_bits, list(xy_route(mem, xy(i))))
    out = sub.writes("dram", "output")
    adds = 0
    for members in _groups(partition, "output").values():
        root = min(members, key=lambda i: (_mem_hops(pkg, i), i))
        for i in members:
            if i != root:
                send("psum", out * prec.psum_bits, list(xy_route(xy(i), xy(root))))
        adds += (len(members) - 1) * out
        writes["output"] += out
        send("output", out * prec.output_bits, list(xy_route(xy(root), mem)))
    return PackageTraffic(
        entries=tuple(sorted((t, *v) for t, v in traffic.items())),  # type: ignore[misc]
        link_bits=tuple(sorted(loads.items())),
        memory_reads=tuple(sorted(reads.items())),
        memory_writes=tuple(sorted(writes.items())),
        reduction_adds=adds,
    )


def memory_bandwidth(spec: AcceleratorSpec) -> int:
    """Bits per cycle of the package's memory interface (one DRAM channel unless the package says)."""
    pkg = spec.package
    if pkg is not None and pkg.memory_bandwidth_bits_per_cycle is not None:
        return pkg.memory_bandwidth_bits_per_cycle
    return spec.dram.bandwidth_bits_per_cycle


def package_counts(pm: PackageMapping, spec: AcceleratorSpec) -> AccessCounts:
    """Counts of the whole layer on the package (all chiplets, the package network, the memory).

    Raises
    ------
    ScheduleError
        If the package mapping is not valid on ``spec``.
    """
    pm.validate(spec)
    return combine(pm.partition, analytic_counts(pm.chiplet, spec), spec)


def combine(partition: Partition, sub: AccessCounts, spec: AcceleratorSpec) -> AccessCounts:
    """Package counts from one chiplet's counts ``sub`` (every busy chiplet does the same)."""
    n = partition.chiplets
    tr = package_traffic(partition, sub, spec)
    mem_r, mem_w = dict(tr.memory_reads), dict(tr.memory_writes)
    buf = []
    for b, t, r, w in sub.buffer_accesses:
        if b == "dram":
            r, w = mem_r.get(t, 0), mem_w.get(t, 0)
        else:
            r, w = r * n, w * n
        buf.append((b, t, r, w))
    prec = spec.precision
    mem_bits = sum(v * prec.bits(t) for t, v in (*tr.memory_reads, *tr.memory_writes))
    pkg = spec.package
    bw = pkg.bandwidth_bits_per_cycle if pkg is not None else 1
    lat = max(
        sub.latency_cycles,
        -(-tr.busiest_link_bits // bw),
        -(-mem_bits // memory_bandwidth(spec)),
    )
    chiplets = pkg.num_chiplets if pkg is not None else 1
    return AccessCounts(
        macs=sub.macs * n,
        compute_cycles=sub.compute_cycles,
        latency_cycles=lat,
        mac_slots=lat * spec.pe_array.num_macs * chiplets,
        buffer_accesses=tuple(sorted(buf)),
        noc_traffic=tuple((t, p * n, lk * n, rt * n) for t, p, lk, rt in sub.noc_traffic),
        package_traffic=tr.entries,
        reduction_adds=tr.reduction_adds,
    )
