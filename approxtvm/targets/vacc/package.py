"""Layers across the chiplets of a package (Simba's multi-chip module), as data.

A :class:`Partition` splits a layer over the chiplet mesh along some of its loop dimensions,
Simba's three ways (Shao et al., MICRO 2019) and the batch:

* ``K`` (or ``G`` for a grouped layer): output channels across chiplets, the inputs multicast
  to all of them and each chiplet's weights unicast;
* ``C``: input channels across chiplets, each chiplet producing partial sums of every output that
  are reduced across the package (sent to one chiplet of the group, added there);
* ``P`` / ``Q``: output rows / columns, each chiplet reading its input rows with the halo the
  filter needs (overlapping halos are fetched by each chiplet that needs them); weights multicast;
* ``N``: the batch, weights multicast.

Every busy chiplet runs the same sub-layer (the partition uses divisors only, as the chiplet
mapper does), so one chiplet :class:`~approxtvm.targets.vacc.mapping.Mapping` of the sub-layer,
found by the existing chiplet mapper, describes them all and they run in lockstep. Busy chiplets
are numbered mixed-radix over the partition's splits (first split most significant) and placed
row-major on the mesh (:meth:`~approxtvm.targets.vacc.hardware.PackageNetwork.chiplet_xy`).

:class:`PackageMapping` is the package level of a layer's mapping: the partition plus the chiplet
mapping. Its counts and latency are in :mod:`approxtvm.targets.vacc.package_counts`;
:func:`map_package` chooses the partition per layer for the mapper objective.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from approxtvm.errors import ScheduleError
from approxtvm.schema import FieldHook, Schema
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.mapping import MAPPING_HOOKS, Mapping
from approxtvm.targets.vacc.workload import LayerShape

__all__ = ["PARTITION_DIMS", "PackageMapping", "Partition", "partition_candidates", "sub_shape"]

#: Dimensions a layer may be split along across chiplets, in placement order (outermost first:
#: ``C`` last keeps the chiplets of one partial-sum reduction next to each other on the mesh).
PARTITION_DIMS: tuple[str, ...] = ("N", "G", "K", "P", "Q", "C")


@dataclass(frozen=True, slots=True)
class Partition:
    """How a layer is split across chiplets.

    Attributes
    ----------
    splits
        ``(dim, ways)`` per split dimension, in :data:`PARTITION_DIMS` order, every ``ways > 1``;
        empty = the whole layer on one chiplet.
    """

    splits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        dims = [d for d, _ in self.splits]
        if any(d not in PARTITION_DIMS for d in dims) or dims != sorted(dims, key=PARTITION_DIMS.index):
            raise ScheduleError(
                "bad package partition",
                expected=f"distinct dimensions from {PARTITION_DIMS}, in that order",
                found=str(self.splits),
                fix="split along N, G, K, P, Q or C, each once",
            )
        if any(not isinstance(n, int) or n < 2 for _, n in self.splits) or len(set(dims)) != len(dims):
            raise ScheduleError(
                "bad package partition",
                expected="each dimension once, split at least 2 ways",
                found=str(self.splits),
                fix="drop 1-way splits",
            )

    @property
    def chiplets(self) -> int:
        """Busy chiplets (product of the ways)."""
        return math.prod(n for _, n in self.splits)

    def ways(self, dim: str) -> int:
        """Ways ``dim`` is split (1 if not split)."""
        return dict(self.splits).get(dim, 1)

    def coords(self, chiplet: int) -> dict[str, int]:
        """Index of ``chiplet``'s part along every split dimension (mixed radix, first split outermost)."""
        out: dict[str, int] = {}
        for d, n in reversed(self.splits):
            out[d] = chiplet % n
            chiplet //= n
        return out

    def label(self) -> str:
        """Short text: ``K4×C2`` (``1`` for one chiplet)."""
        return "×".join(f"{d}{n}" for d, n in self.splits) or "1"

    def to_dict(self) -> list[list[Any]]:
        """Plain-JSON form: ``[[dim, ways], ...]`` (the ``partition`` of :data:`PACKAGE_SCHEMA`)."""
        return PACKAGE_SCHEMA.unstructure(self.splits)

    @staticmethod
    def from_dict(d: list[list[Any]], source: str = "partition") -> Partition:
        """Inverse of :meth:`to_dict`."""
        return Partition(PACKAGE_SCHEMA.structure(d, tuple[tuple[str, int], ...], source=source))


def sub_shape(shape: LayerShape, partition: Partition) -> LayerShape:
    """The layer one chiplet computes under ``partition``.

    Splitting rows (``P``) or columns (``Q``) gives each chiplet its output rows and the input rows
    they read, halo included, in padded coordinates (a chiplet at the edge receives the padding as
    zeros, as the tile model counts it): ``h = (P/n - 1)·stride + (R - 1)·dilation + 1``, no padding.

    Raises
    ------
    ScheduleError
        If a split does not divide its dimension, or splits K/C of a grouped layer (split G).
    """
    b = shape.bounds
    for d, n in partition.splits:
        if d in ("K", "C") and shape.groups > 1:
            raise ScheduleError(
                f"partition {partition.label()} splits {d} of a grouped layer",
                expected="G splits for grouped layers",
                found=f"groups = {shape.groups}",
                fix="split G instead",
            )
        if b[d] % n:
            raise ScheduleError(
                f"partition {partition.label()} does not divide the layer",
                expected=f"{d} = {b[d]} divisible by {n}",
                found=f"{b[d]} % {n} = {b[d] % n}",
                fix="split along divisors only",
            )
    if not partition.splits:
        return shape
    w = partition.ways
    g = shape.groups // w("G")
    kw: dict[str, Any] = {"n": shape.n // w("N"), "groups": g}
    kw["k"] = shape.k // w("K") // w("G")
    kw["c"] = shape.c // w("C") // w("G")
    if w("P") > 1:
        p = shape.p // w("P")
        kw |= {"p": p, "h": (p - 1) * shape.stride_h + (shape.r - 1) * shape.dilation_h + 1}
        kw |= {"pad_top": 0, "pad_bottom": 0}
    if w("Q") > 1:
        q = shape.q // w("Q")
        kw |= {"q": q, "w": (q - 1) * shape.stride_w + (shape.s - 1) * shape.dilation_w + 1}
        kw |= {"pad_left": 0, "pad_right": 0}
    return dataclasses.replace(shape, **kw)


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


@functools.lru_cache(maxsize=4096)
def partition_candidates(shape: LayerShape, chiplets: int, per_family: int = 2) -> tuple[Partition, ...]:
    """Partitions worth mapping for ``shape`` on ``chiplets`` chiplets.

    One or two split dimensions (a *family*: ``{K}``, ``{C}``, ``{K, P}``...), divisors only, at most
    ``chiplets`` busy. Per family the ``per_family`` splits that keep the most chiplets busy
    (ties: the most balanced); families whose best keeps fewer than half as many chiplets busy as
    the best family are dropped. The one-chiplet mapping is always a candidate.
    """
    b = shape.bounds
    allowed = [d for d in PARTITION_DIMS if b[d] > 1 and not (shape.groups > 1 and d in ("K", "C"))]
    if shape.groups == 1:
        allowed = [d for d in allowed if d != "G"]
    fams: dict[tuple[str, ...], list[tuple[int, float, Partition]]] = {}
    for i, d1 in enumerate(allowed):
        for n1 in _divisors(b[d1]):
            if n1 > chiplets:
                break
            fams.setdefault((d1,), []).append((n1, 0.0, Partition(((d1, n1),))))
            for d2 in allowed[i + 1 :]:
                for n2 in _divisors(b[d2]):
                    if n1 * n2 > chiplets:
                        break
                    balance = -abs(math.log(n1 / n2))
                    fams.setdefault((d1, d2), []).append((n1 * n2, balance, Partition(((d1, n1), (d2, n2)))))
    out = [Partition()]
    if not fams:
        return tuple(out)
    best = max(n for opts in fams.values() for n, _, _ in opts)
    for opts in fams.values():
        opts.sort(key=lambda o: (-o[0], -o[1]))
        out += [p for n, _, p in opts[:per_family] if 2 * n >= best]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PackageMapping:
    """The package level of a layer's mapping: its partition and the chiplet mapping of each part.

    Attributes
    ----------
    shape
        The whole layer.
    partition
        How it is split across chiplets.
    chiplet
        Mapping of :func:`sub_shape` onto one chiplet (the same on every busy chiplet).
    """

    shape: LayerShape
    partition: Partition
    chiplet: Mapping

    def validate(self, spec: AcceleratorSpec) -> None:
        """Raise :class:`ScheduleError` unless the partition fits the package and the chiplet mapping is legal."""
        hier = Hierarchy.of(spec)
        if self.partition.chiplets > hier.chiplets:
            raise ScheduleError(
                f"partition {self.partition.label()} needs {self.partition.chiplets} chiplets",
                expected=f"<= {hier.chiplets} (the package of {spec.name})",
                found=str(self.partition.chiplets),
                fix="split fewer ways",
            )
        expected = sub_shape(self.shape, self.partition)
        if self.chiplet.shape != expected:
            raise ScheduleError(
                "the chiplet mapping is not of the partition's sub-layer",
                expected=str(expected),
                found=str(self.chiplet.shape),
                fix="map sub_shape(shape, partition)",
            )
        self.chiplet.validate(spec)

    def to_text(self, spec: AcceleratorSpec | None = None) -> str:
        """Loop-nest view: the package level (one spatial loop per split) above the chiplet's nest."""
        total = f" of {Hierarchy.of(spec).chiplets}" if spec is not None else ""
        header = f"Package [ chiplets {self.partition.chiplets}{total} ]"
        lines = [header, "-" * len(header)]
        for depth, (d, n) in enumerate(self.partition.splits):
            lines.append(f"|{'  ' * depth} for {d} in [0:{n}) (Spatial-Chiplet)")
        lines.append("")
        depth = len(self.partition.splits)
        lines += [("  " * depth + ln) if ln else ln for ln in self.chiplet.to_text(spec).splitlines()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`PACKAGE_SCHEMA`)."""
        return PACKAGE_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "package mapping") -> PackageMapping:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return PACKAGE_SCHEMA.structure(d, PackageMapping, source=source)


#: Field conversions of a package mapping's JSON form (the partition is a list of ``[dim, ways]``),
#: shared by every schema that nests one.
PACKAGE_HOOKS = (
    *MAPPING_HOOKS,
    FieldHook(
        PackageMapping,
        "partition",
        lambda v, schema: Partition(schema.convert(v, tuple[tuple[str, int], ...])),
        lambda v, schema: schema.unstructure(v.splits),
    ),
)
#: Package mappings ↔ plain JSON.
PACKAGE_SCHEMA = Schema(ScheduleError, hooks=PACKAGE_HOOKS)
