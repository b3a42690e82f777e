"""A layer's mapping onto ``vacc``: one loop nest per storage level, Timeloop style.

A :class:`Mapping` has one level per level of the spec's
:class:`~approxtvm.targets.vacc.hierarchy.Hierarchy`, outermost first; on the shipped specs four:
``DRAM``, ``GlobalBuffer``, ``PE`` (the per-PE weight, input and accumulation buffers) and
``Register`` (the per-MAC weight register). Each level
lists its loops outermost first; spatial loops sit at the end of a level's nest and distribute
that level's tile to its children:

* ``GlobalBuffer`` spatial loops fan out across the PEs (``K`` for Simba: weight-stationary),
* ``PE`` spatial loops fan out across vector MACs (``K``) and lanes (``C``, reduced by the adder
  tree); the order of the two does not matter, the lane loop is printed last.

The tile of a tensor held at a level covers the loops of that level and of every level below.

**Uneven mappings** (ZigZag's term). By default every buffer of a level cuts the loop nest at the
same point: the level's boundary. A :class:`Boundary` moves one tensor's cut at one level to another
place in the sequence of temporal loops (outermost first), so that, e.g., the accumulation buffer
holds its outputs across a reduction loop the weight and input buffers sit below. The loops still run
in the one order the levels list; only what each buffer keeps changes. :meth:`Mapping.tensor_view`
is the even mapping one tensor sees (its temporal loops redistributed by its cuts); tile sizes,
counts, capacities and walks of that tensor follow it. A cut may not make a tile non-contiguous
(a loop over a dimension of the tensor kept outside the tile while an outer loop over the same
dimension is inside it), and the cuts along a tensor's storage chain nest.

**Partial tiles.** Loop bounds must divide the layer's dimensions exactly: the mapper only uses
divisors, so there is no padding and no ragged edge. A layer whose ``K`` or ``C`` is not a multiple
of the array size (``C = 3`` in conv1) runs with idle MACs; :meth:`Mapping.spatial_utilisation`
reports the fraction used. Dense layers are 1×1 convolutions on a 1×1 image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from approxtvm.errors import ScheduleError
from approxtvm.schema import OMIT, FieldHook, Schema
from approxtvm.targets.vacc.hierarchy import Hierarchy
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS, LayerShape

if TYPE_CHECKING:
    from approxtvm.targets.vacc.hardware import AcceleratorSpec

__all__ = ["LEVELS", "MAPPING_HOOKS", "MAPPING_SCHEMA", "TENSORS", "Boundary", "LevelNest", "Loop", "Mapping"]

#: Mapping levels, outermost first.
#: Levels of a spec with a global buffer (the shipped ones); see :class:`~approxtvm.targets.vacc.hierarchy.Hierarchy`.
LEVELS: tuple[str, ...] = ("DRAM", "GlobalBuffer", "PE", "Register")
#: The tensors of a layer.
TENSORS: tuple[str, ...] = ("weight", "input", "output")


@dataclass(frozen=True, slots=True)
class Loop:
    """One loop: ``for dim in [0:bound)``, temporal or spatial."""

    dim: str
    bound: int
    spatial: bool = False

    def __post_init__(self) -> None:
        if self.dim not in DIMS:
            raise ScheduleError(
                f"loop over unknown dimension {self.dim!r}",
                expected=f"one of {DIMS}",
                found=repr(self.dim),
                fix="use Timeloop dimension names",
            )
        if not isinstance(self.bound, int) or self.bound < 1:
            raise ScheduleError(
                f"loop over {self.dim} has an impossible bound",
                expected="an integer >= 1",
                found=repr(self.bound),
                fix="use a positive divisor of the layer dimension",
            )


@dataclass(frozen=True, slots=True)
class LevelNest:
    """The loops of one storage level, outermost first."""

    level: str
    loops: tuple[Loop, ...] = ()

    @property
    def temporal(self) -> tuple[Loop, ...]:
        """Temporal loops, outermost first."""
        return tuple(lp for lp in self.loops if not lp.spatial)

    @property
    def spatial(self) -> tuple[Loop, ...]:
        """Spatial loops, outermost first."""
        return tuple(lp for lp in self.loops if lp.spatial)


@dataclass(frozen=True, slots=True)
class Boundary:
    """Where one tensor's buffer at one level cuts the loop nest, when not at the level's boundary.

    Attributes
    ----------
    tensor
        ``weight``, ``input`` or ``output``.
    level
        The level whose buffer holding ``tensor`` this cut belongs to (not ``DRAM``).
    temporal_loops_above
        Temporal loops of the whole nest (all levels, outermost first) above the cut: the buffer's
        tile covers the temporal loops after them and the spatial loops of its level and below.
    """

    tensor: str
    level: str
    temporal_loops_above: int


def _prod(xs: Iterator[int] | list[int] | tuple[int, ...]) -> int:
    return math.prod(xs)


@dataclass(frozen=True, slots=True)
class Mapping:
    """Loop nest of one layer on ``vacc``.

    Attributes
    ----------
    shape
        The layer.
    levels
        One :class:`LevelNest` per level of the spec's hierarchy, outermost first.
    boundaries
        Per-tensor cuts that differ from the level boundaries (empty: an even mapping).
    """

    shape: LayerShape
    levels: tuple[LevelNest, ...]
    boundaries: tuple[Boundary, ...] = ()

    # -- structure -----------------------------------------------------------------------------

    def level(self, name: str) -> LevelNest:
        """The nest of level ``name``."""
        for nest in self.levels:
            if nest.level == name:
                return nest
        raise ScheduleError(
            f"mapping has no level {name!r}",
            expected=f"one of {tuple(n.level for n in self.levels)}",
            found=repr(name),
            fix="use a level name of the mapping",
        )

    def level_index(self, name: str) -> int:
        """Position of level ``name`` (0 = DRAM)."""
        return [n.level for n in self.levels].index(name)

    def dim_extents(self, level: str) -> dict[str, int]:
        """Per-dimension extent of the tile at ``level`` (loops of this level and all below)."""
        i = self.level_index(level)
        out = dict.fromkeys(DIMS, 1)
        for nest in self.levels[i:]:
            for lp in nest.loops:
                out[lp.dim] *= lp.bound
        return out

    # -- uneven mappings -------------------------------------------------------------------------

    @property
    def temporal_loops(self) -> tuple[Loop, ...]:
        """Every temporal loop, outermost first (the sequence :class:`Boundary` cuts index)."""
        return tuple(lp for nest in self.levels for lp in nest.temporal)

    def even_cut(self, level: str) -> int:
        """Temporal loops above ``level``'s boundary (the cut of every buffer of an even mapping)."""
        return sum(len(nest.temporal) for nest in self.levels[: self.level_index(level)])

    def cut(self, level: str, tensor: str) -> int:
        """Temporal loops above the cut of ``tensor``'s buffer at ``level``."""
        for b in self.boundaries:
            if b.tensor == tensor and b.level == level:
                return b.temporal_loops_above
        return self.even_cut(level)

    @property
    def is_even(self) -> bool:
        """Whether every buffer cuts the nest at its level's boundary."""
        return all(b.temporal_loops_above == self.even_cut(b.level) for b in self.boundaries)

    def tensor_view(self, tensor: str) -> Mapping:
        """The even mapping ``tensor`` sees: the temporal loops redistributed over the levels by its cuts.

        Levels whose buffers do not hold ``tensor`` get the cut nearest their own boundary that keeps
        the cuts nested (what sits there does not change the tensor's tiles). Spatial loops stay at
        their levels; loop order, bounds and hence execution are those of this mapping.
        """
        if not self.boundaries:
            return self
        temporal = self.temporal_loops
        cuts = self.view_cuts({b.level: b.temporal_loops_above for b in self.boundaries if b.tensor == tensor})
        levels = tuple(
            LevelNest(nest.level, (*temporal[cuts[i] : max(cuts[i], cuts[i + 1])], *nest.spatial))
            for i, nest in enumerate(self.levels)
        )
        return Mapping(self.shape, levels)

    def view_cuts(self, own: dict[str, int]) -> list[int]:
        """Per level, the temporal loops above it in the view of a tensor cut at ``own`` (level → cut),
        then the number of temporal loops (see :meth:`tensor_view`)."""
        names = [n.level for n in self.levels]
        n_temporal = len(self.temporal_loops)
        cuts: list[int] = []
        even = 0
        for i, nest in enumerate(self.levels):
            name = names[i]
            if i == 0:
                cuts.append(0)
            elif name in own:
                cuts.append(own[name])
            else:
                upper = min((own[n] for n in names[i + 1 :] if n in own), default=n_temporal)
                cuts.append(min(max(even, cuts[-1]), upper))
            even += len(nest.temporal)
        return [*cuts, n_temporal]

    def tile_is_contiguous(self, level: str, tensor: str, cut: int) -> bool:
        """Whether ``tensor``'s buffer at ``level`` cut after ``cut`` temporal loops holds one block:
        over each of the tensor's dimensions every loop outside the tile comes before every loop inside."""
        li = self.level_index(level)
        rel = TENSOR_DIMS[tensor]
        last_out: dict[str, int] = {}
        first_in: dict[str, int] = {}
        rank = pos = 0
        for lv, nest in enumerate(self.levels):
            for lp in nest.loops:
                if lp.bound > 1 and lp.dim in rel:
                    if lv >= li if lp.spatial else rank >= cut:
                        first_in.setdefault(lp.dim, pos)
                    else:
                        last_out[lp.dim] = pos
                rank += 0 if lp.spatial else 1
                pos += 1
        return all(last_out.get(d, -1) < p for d, p in first_in.items())

    def tile_extent(self, level: str, tensor: str) -> dict[str, int]:
        """Extent of ``tensor``'s tile at ``level``, per tensor axis.

        Weights: ``K, C, R, S``; outputs: ``N, K, P, Q``; inputs: ``N, C, H, W`` with
        ``H = (P-1)·stride + (R-1)·dilation + 1`` (padded coordinates, halo included); a grouped
        layer's tiles lead with ``G`` (groups in the tile). An uneven mapping's tile follows the
        tensor's own cut (:meth:`tensor_view`).
        """
        if self.boundaries and tensor in TENSORS:
            return self.tensor_view(tensor)._tile_extent(level, tensor)
        return self._tile_extent(level, tensor)

    def _tile_extent(self, level: str, tensor: str) -> dict[str, int]:
        e = self.dim_extents(level)
        sh = self.shape
        lead = {"G": e["G"]} if sh.groups > 1 else {}
        if tensor == "weight":
            return lead | {d: e[d] for d in ("K", "C", "R", "S")}
        if tensor == "output":
            return {"N": e["N"]} | lead | {d: e[d] for d in ("K", "P", "Q")}
        if tensor == "input":
            return {
                "N": e["N"],
                **lead,
                "C": e["C"],
                "H": sh.input_extent(e["P"], e["R"], sh.stride_h, sh.dilation_h),
                "W": sh.input_extent(e["Q"], e["S"], sh.stride_w, sh.dilation_w),
            }
        raise ScheduleError(
            f"unknown tensor {tensor!r}",
            expected="weight, input or output",
            found=repr(tensor),
            fix="pick one of the three",
        )

    def tile_size(self, level: str, tensor: str) -> int:
        """Elements of ``tensor``'s tile at ``level`` (per instance of that level)."""
        return _prod(list(self.tile_extent(level, tensor).values()))

    def instances(self, level: str) -> int:
        """Instances of ``level`` that hold a tile (product of spatial loops of the levels above)."""
        i = self.level_index(level)
        return _prod([lp.bound for nest in self.levels[:i] for lp in nest.spatial])

    def spatial_macs(self) -> int:
        """MAC units busy in each cycle (product of all spatial loops)."""
        return _prod([lp.bound for nest in self.levels for lp in nest.spatial])

    def spatial_utilisation(self, spec: AcceleratorSpec) -> float:
        """Fraction of the array's MACs this mapping keeps busy."""
        return self.spatial_macs() / spec.pe_array.num_macs

    def compute_cycles(self) -> int:
        """Cycles of compute (product of all temporal loops)."""
        return _prod([lp.bound for nest in self.levels for lp in nest.temporal])

    def loops_above(self, level: str) -> tuple[Loop, ...]:
        """All loops of the levels above ``level``, outermost first."""
        i = self.level_index(level)
        return tuple(lp for nest in self.levels[:i] for lp in nest.loops)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, spec: AcceleratorSpec) -> None:
        """Raise :class:`ScheduleError` unless the mapping is legal on ``spec``.

        Checks: the spec's levels in order; per dimension the product of bounds equals the layer
        bound; spatial loops only where the PE array allows them and within its fan-outs; every
        tile fits its buffer.
        """
        hier = Hierarchy.of(spec)
        names = tuple(n.level for n in self.levels)
        if names != hier.names:
            raise ScheduleError(
                "mapping levels are wrong",
                expected=f"{hier.names} (the levels of {spec.name})",
                found=str(names),
                fix="give one LevelNest per level, DRAM first",
            )
        bounds = self.shape.bounds
        got = self.dim_extents("DRAM")
        for d in DIMS:
            if got[d] != bounds[d]:
                raise ScheduleError(
                    f"loops over {d} do not cover the layer",
                    expected=f"product {bounds[d]}",
                    found=f"product {got[d]}",
                    fix=f"make the {d} bounds multiply to {bounds[d]}",
                )
        for nest in self.levels:
            seen_spatial = False
            for lp in nest.loops:
                if lp.spatial:
                    seen_spatial = True
                elif seen_spatial:
                    raise ScheduleError(
                        f"{nest.level}: temporal loop over {lp.dim} after a spatial loop",
                        expected="spatial loops last in a level",
                        found=str(nest.loops),
                        fix="move spatial loops to the end of the level",
                    )
        for lv in hier.levels:
            self._check_spatial(lv.name, {f.unit: f.count for f in lv.fanout}, tuple(f.dims for f in lv.fanout))
        if self.boundaries:
            self.check_boundaries(spec)
        self._check_capacity(spec, hier)

    def check_boundaries(self, spec: AcceleratorSpec, tensors: tuple[str, ...] = TENSORS) -> None:
        """Raise :class:`ScheduleError` unless the per-tensor cuts are legal (capacities aside).

        Each names an on-chip buffer of its tensor once and lies in the nest; a tensor's cuts nest
        along its storage chain; no tile is non-contiguous. ``tensors``: whose chains to check.
        """
        hier = Hierarchy.of(spec)
        n_temporal = len(self.temporal_loops)
        seen: set[tuple[str, str]] = set()
        for b in self.boundaries:
            where = f"boundary of the {b.tensor} at {b.level}"
            if b.tensor not in TENSORS or b.level not in hier.names[1:] or hier.buffer_of(b.level, b.tensor) is None:
                raise ScheduleError(
                    f"{where}: no such buffer",
                    expected="a tensor and an on-chip level whose buffer holds it",
                    found=f"{b.tensor!r} at {b.level!r}",
                    fix=f"use levels of {hier.names[1:]} that hold the tensor",
                )
            if (b.tensor, b.level) in seen:
                raise ScheduleError(
                    f"{where} is given twice", expected="one", found="two", fix="keep one per tensor and level"
                )
            seen.add((b.tensor, b.level))
            if not isinstance(b.temporal_loops_above, int) or not 0 <= b.temporal_loops_above <= n_temporal:
                raise ScheduleError(
                    f"{where} is outside the loop nest",
                    expected=f"0 … {n_temporal} temporal loops above it",
                    found=repr(b.temporal_loops_above),
                    fix="count the temporal loops of all levels, outermost first",
                )
        even = [self.even_cut(n.level) for n in self.levels]
        own = {(b.tensor, b.level): b.temporal_loops_above for b in self.boundaries}
        for t in tensors:
            chain = [i for i, lv in enumerate(hier.levels) if i and hier.buffer_of(lv.name, t) is not None]
            cuts = [own.get((t, hier.names[li]), even[li]) for li in chain]
            if any(a > b for a, b in itertools.pairwise(cuts)):
                raise ScheduleError(
                    f"the {t}'s cuts do not nest",
                    expected="an inner buffer's cut at or below the outer buffer's",
                    found=f"{dict(zip((hier.names[li] for li in chain), cuts, strict=True))}",
                    fix="keep each tile inside the tile of the buffer above it",
                )
            for li, c in zip(chain, cuts, strict=True):
                if not self.tile_is_contiguous(hier.names[li], t, c):
                    raise ScheduleError(
                        f"the {t}'s cut at {hier.names[li]} makes its tile non-contiguous",
                        expected="over each dimension, the loops the tile spans nested inside those it does not",
                        found=f"cut after {c} temporal loops",
                        fix="move the cut so it does not cross a loop over one of the tensor's dimensions",
                    )

    def _check_spatial(self, level: str, fanouts: dict[str, int], dims: tuple[tuple[str, ...], ...]) -> None:
        spatial = self.level(level).spatial
        if not fanouts:
            if spatial:
                raise ScheduleError(
                    f"{level} has spatial loops",
                    expected="none",
                    found=str(spatial),
                    fix="unroll only above the PEs (across PEs) and at PE (vector MACs, lanes)",
                )
            return
        used = dict.fromkeys(fanouts, 1)
        # groups are placed like output channels: wherever K may be unrolled, G may too
        dims = tuple((*ds, "G") if "K" in ds else ds for ds in dims)
        for lp in spatial:
            for unit, allowed in zip(fanouts, dims, strict=True):
                if lp.dim in allowed:
                    used[unit] *= lp.bound
                    break
            else:
                allowed_all = sorted({d for ds in dims for d in ds})
                raise ScheduleError(
                    f"{level}: spatial loop over {lp.dim} is not supported",
                    expected=f"one of {allowed_all}",
                    found=lp.dim,
                    fix="change the spatial dimension",
                )
        for unit, cap in fanouts.items():
            if used[unit] > cap:
                raise ScheduleError(
                    f"{level}: spatial loops need {used[unit]} {unit}s",
                    expected=f"<= {cap}",
                    found=str(used[unit]),
                    fix="reduce the spatial bounds",
                )

    def output_tile_bits(self, level: str, spec: AcceleratorSpec) -> int:
        """Bits per output element held at ``level``: partial-sum width unless no reduction is left above.

        The accumulation buffer always holds partial sums. A higher level holds finished (requantized)
        outputs only if no temporal reduction loop (C, R, S) with bound > 1 runs above the PE level.
        """
        if self.level_index(level) >= self.level_index("PE"):
            return spec.precision.psum_bits
        reduce_above = any(
            lp.dim not in TENSOR_DIMS["output"] and lp.bound > 1
            for lp in self.temporal_loops[: self.cut("PE", "output")]
        )
        return spec.precision.psum_bits if reduce_above else spec.precision.output_bits

    def _check_capacity(self, spec: AcceleratorSpec, hier: Hierarchy) -> None:
        prec = spec.precision
        for buf, level in hier.on_chip_buffers:
            mem = spec.memory(buf)
            bits = 0
            for t in mem.tensors:
                width = self.output_tile_bits(level, spec) if t == "output" else prec.bits(t)
                bits += self.tile_size(level, t) * width
            if bits > mem.capacity_bits:
                raise ScheduleError(
                    f"tile at {level} does not fit the {buf}",
                    expected=f"<= {mem.capacity_bits} bits ({mem.capacity_bytes} B)",
                    found=f"{bits} bits for {', '.join(mem.tensors)}",
                    fix="move loops from this level to the level above (smaller tile)",
                )

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (:data:`MAPPING_SCHEMA`; ``boundaries`` only when the mapping has some)."""
        return MAPPING_SCHEMA.unstructure(self)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "mapping") -> Mapping:
        """Inverse of :meth:`to_dict` (strict: errors name ``source`` and the key)."""
        return MAPPING_SCHEMA.structure(d, Mapping, source=source)

    def to_text(self, spec: AcceleratorSpec | None = None) -> str:
        """Timeloop-style loop-nest view, outermost level first.

        With a ``spec`` the header of each level lists the tensors its buffers keep and their tile
        sizes; without, it lists all three tiles.
        """
        keeps: dict[str, tuple[str, ...]] = {
            "DRAM": ("weight", "input", "output"),
            "GlobalBuffer": ("input", "output"),
            "PE": ("weight", "input", "output"),
            "Register": ("weight",),
        }
        if spec is not None:
            hier = Hierarchy.of(spec)
            held = {lv.name: {t for b in lv.buffers for t in hier.tensors(b)} for lv in hier.levels}
            keeps = {name: tuple(t for t in ("weight", "input", "output") if t in ts) for name, ts in held.items()}
        labels = {"weight": "Weights", "input": "Inputs", "output": "Outputs"}
        lines: list[str] = []
        depth = 0
        for nest in self.levels:
            held = keeps.get(nest.level, ("weight", "input", "output"))
            tiles = " ".join(f"{labels[t]}:{self.tile_size(nest.level, t)}" for t in held)
            header = f"{nest.level} [ {tiles} ]"
            lines += [header, "-" * len(header)]
            for lp in nest.loops:
                tag = ""
                if lp.spatial:
                    tag = (
                        " (Spatial-Y)" if nest.level == "PE" and lp.dim in ("G", "K", "N", "P", "Q") else " (Spatial-X)"
                    )
                lines.append(f"|{'  ' * depth} for {lp.dim} in [0:{lp.bound}){tag}")
                depth += 1
            lines.append("")
        lines.append(f"|{'  ' * depth} << Compute >>")
        for b in self.boundaries:  # uneven: where each moved buffer cuts instead
            lines.append(
                f"uneven: {labels[b.tensor]} at {b.level} below {b.temporal_loops_above} temporal loops "
                f"(level boundary {self.even_cut(b.level)}), tile {self.tile_size(b.level, b.tensor)}"
            )
        return "\n".join(lines)


#: Field conversions of a mapping's JSON form, shared by every schema that nests a mapping: an even
#: mapping has no ``boundaries`` key (its form is the one it had before uneven mappings).
MAPPING_HOOKS = (
    FieldHook(
        Mapping,
        "boundaries",
        lambda v, schema: schema.convert(v, tuple[Boundary, ...]),
        lambda v, schema: schema.unstructure(v) if v else OMIT,
    ),
)
#: Mappings ↔ plain JSON.
MAPPING_SCHEMA = Schema(ScheduleError, hooks=MAPPING_HOOKS)
