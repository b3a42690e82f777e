"""Access counts of a layer: the typed result of the closed form and of the counting walk."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from approxtvm.errors import ScheduleError
from approxtvm.schema import FieldHook, Schema

__all__ = ["AccessCounts", "CountKey", "CountTable"]

#: ``(buffer, tensor, "reads" | "writes")``, ``("noc", tensor, "bits" | "links" | "routers")``,
#: ``("package", tensor, "bits" | "links" | "routers")`` or ``("package", "output", "adds")`` (the
#: partial-sum additions of a cross-chiplet reduction); tensor ``psum`` is the partial-sum traffic.
CountKey = tuple[str, str, str]


@dataclass(frozen=True, eq=False)
class CountTable:
    """Counts of one mapping, or of many candidates at once (numpy arrays, one entry per candidate).

    Attributes
    ----------
    macs, compute_cycles, latency_cycles
        MACs executed, cycles of compute, estimated cycles (int or int64 array).
    accesses
        Count per :data:`CountKey` (int or int64 array).
    """

    macs: Any
    compute_cycles: Any
    latency_cycles: Any
    accesses: dict[CountKey, Any]


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
    package_traffic
        The same for the network-on-package between chiplets (empty on one chiplet).
    reduction_adds
        Partial-sum additions of cross-chiplet reductions (0 on one chiplet).
    """

    macs: int = 0
    compute_cycles: int = 0
    latency_cycles: int = 0
    mac_slots: int = 0
    buffer_accesses: tuple[tuple[str, str, int, int], ...] = ()
    noc_traffic: tuple[tuple[str, int, int, int], ...] = ()
    package_traffic: tuple[tuple[str, int, int, int], ...] = ()
    reduction_adds: int = 0

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

    def package(self, tensor: str) -> tuple[int, int, int]:
        """``(payload_bits, link_bit_traversals, router_bit_traversals)`` of ``tensor`` on the package."""
        for t, bits, links, routers in self.package_traffic:
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

        def merged(a: tuple[tuple[str, int, int, int], ...], b: tuple[tuple[str, int, int, int], ...]) -> Any:
            out: dict[str, list[int]] = {}
            for t, *vals in (*a, *b):
                acc = out.setdefault(t, [0, 0, 0])
                for i, v in enumerate(vals):
                    acc[i] += v
            return tuple(sorted((t, *v) for t, v in out.items()))

        return AccessCounts(
            macs=self.macs + other.macs,
            compute_cycles=self.compute_cycles + other.compute_cycles,
            latency_cycles=self.latency_cycles + other.latency_cycles,
            mac_slots=self.mac_slots + other.mac_slots,
            buffer_accesses=tuple(sorted((b, t, r, w) for (b, t), (r, w) in buf.items())),
            noc_traffic=merged(self.noc_traffic, other.noc_traffic),
            package_traffic=merged(self.package_traffic, other.package_traffic),
            reduction_adds=self.reduction_adds + other.reduction_adds,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`COUNTS_SCHEMA`; the package keys only when there is package traffic)."""
        return COUNTS_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "access counts") -> AccessCounts:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return COUNTS_SCHEMA.structure(d, AccessCounts, source=source)

    def table(self) -> CountTable:
        """The same counts as a :class:`CountTable`."""
        return CountTable(self.macs, self.compute_cycles, self.latency_cycles, self.as_flat())

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
        for t, p, lk, rt in self.package_traffic:
            out[("package", t, "bits")] = p
            out[("package", t, "links")] = lk
            out[("package", t, "routers")] = rt
        if self.reduction_adds:
            out[("package", "output", "adds")] = self.reduction_adds
        return out


@dataclass(frozen=True, slots=True)
class _BufferAccess:
    """One entry of :attr:`AccessCounts.buffer_accesses` in its JSON form."""

    buffer: str
    tensor: str
    reads: int
    writes: int


@dataclass(frozen=True, slots=True)
class _Traffic:
    """One entry of :attr:`AccessCounts.noc_traffic` / ``package_traffic`` in its JSON form."""

    tensor: str
    payload_bits: int
    link_bit_traversals: int
    router_bit_traversals: int


def _rows(cls: type) -> tuple[Any, Any]:
    """Structure / unstructure a tuple of plain tuples as a sorted list of ``cls`` objects."""

    def structure(value: Any, schema: Schema) -> tuple[tuple[Any, ...], ...]:
        rows = schema.convert(value, tuple[cls, ...])  # type: ignore[valid-type]
        return tuple(sorted(tuple(getattr(r, f.name) for f in fields(cls)) for r in rows))

    def unstructure(value: tuple[tuple[Any, ...], ...], schema: Schema) -> Any:
        return [schema.unstructure(cls(*row)) for row in value]

    return structure, unstructure


def _one_chiplet(c: AccessCounts) -> bool:
    return not c.package_traffic and not c.reduction_adds


#: Access counts ↔ plain JSON (the ``predicted`` counts of a schedule): entries are objects with
#: named fields; the package's traffic and reduction additions are written only when there are any.
COUNTS_SCHEMA = Schema(
    ScheduleError,
    hooks=(
        FieldHook(AccessCounts, "buffer_accesses", *_rows(_BufferAccess)),
        FieldHook(AccessCounts, "noc_traffic", *_rows(_Traffic)),
        FieldHook(AccessCounts, "package_traffic", *_rows(_Traffic), omit=_one_chiplet),
        FieldHook(AccessCounts, "reduction_adds", lambda v, schema: schema.convert(v, int), omit=_one_chiplet),
    ),
)
