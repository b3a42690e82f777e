"""One walk over a mapping's tiles: which tile each level holds at every step, with fills and evictions.

A level's tile changes only when a temporal loop above it advances. :class:`TileWalk` enumerates
those steps in execution order (outermost loop slowest, vectorised with numpy, one step per tile
residency, never per MAC) and, for every instance of the level (mixed radix over the spatial loops
above it, outermost most significant; for ``"PE"`` the instance is the PE number), the tile's
start in every dimension of :data:`~approxtvm.targets.vacc.workload.DIMS`. A tensor's tile is
*filled* at a step where the part of the start that indexes the tensor changes and *evicted* at
the next fill. In an uneven mapping each tensor's buffer cuts the nest at its own place: the walk
of one tensor (``TileWalk.of(mapping, level, tensor)``) steps over the temporal loops above that
tensor's cut, with the strides of the mapping's real loop order. Counting
(:mod:`approxtvm.runtime.counting`), fault residencies (:mod:`approxtvm.runtime.faults`) and the
tile views of the runtime read this one walk; the tests hold it to a naive loop nest and the
emulator (:mod:`approxtvm.runtime.emulator`) walks on its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS

__all__ = ["COMPUTE", "TENSORS", "TileStep", "TileWalk", "loop_strides"]

#: Pseudo-level name of the MACs themselves (below the innermost storage level).
COMPUTE = "MAC"
#: Every tensor of a layer.
TENSORS = ("weight", "input", "output")
_D = {d: i for i, d in enumerate(DIMS)}


def loop_strides(mapping: Mapping) -> list[list[int]]:
    """Per level, per loop: the distance in its dimension between two consecutive iterations.

    A loop steps by the product of the bounds of every loop on the same dimension nested inside it
    (at its own level or below).
    """
    flat = [(li, j, lp) for li, nest in enumerate(mapping.levels) for j, lp in enumerate(nest.loops)]
    out = [[0] * len(n.loops) for n in mapping.levels]
    for pos, (li, j, lp) in enumerate(flat):
        out[li][j] = math.prod(x.bound for _, _, x in flat[pos + 1 :] if x.dim == lp.dim)
    return out


@dataclass(frozen=True, slots=True)
class TileStep:
    """One tile residency at a level, for one instance of that level.

    Attributes
    ----------
    step
        Index of the temporal iteration above the level (execution order).
    instance
        Which instance of the level (for ``"PE"`` the PE number).
    ranges
        ``{dim: (start, stop)}`` of the tile, for every dimension in :data:`DIMS`.
    filled
        Tensors whose tile changed at this step and is loaded (for outputs: allocated, see
        ``output_first_visit``).
    output_first_visit
        The output tile is visited for the first time by this instance (starts from zero).
    """

    step: int
    instance: int
    ranges: dict[str, tuple[int, int]]
    filled: frozenset[str]
    output_first_visit: bool


@dataclass(frozen=True, eq=False)
class TileWalk:
    """The tiles one level of a mapping holds, step by step (build with :meth:`of`).

    Attributes
    ----------
    mapping
        The layer's mapping.
    level_index
        Position of the level in ``mapping.levels``; ``len(mapping.levels)`` is the MACs
        (:data:`COMPUTE`), whose "tiles" are single operands.
    loops
        Temporal loops above the level, outermost first (their iterations are the steps).
    strides
        Per temporal loop: the distance in its dimension between consecutive iterations.
    spatial
        Spatial loops above the level, outermost first (their iterations are the instances).
    spatial_strides
        Per spatial loop: the same distance.
    extent
        ``(7,)`` extent of the tile per dimension (the loops below the cut).
    """

    mapping: Mapping
    level_index: int
    loops: tuple[Loop, ...]
    strides: tuple[int, ...]
    spatial: tuple[Loop, ...]
    spatial_strides: tuple[int, ...]
    extent: tuple[int, ...]

    @staticmethod
    def of(mapping: Mapping, level: str | int, tensor: str | None = None, cut: int | None = None) -> TileWalk:
        """The walk of ``level`` (a name of :data:`LEVELS`, :data:`COMPUTE`, or a level index).

        ``tensor``: walk that tensor's buffer at ``level`` (its own cut in an uneven mapping).
        ``cut``: step over the first ``cut`` temporal loops instead (the finest cut of several buffers).
        """
        if isinstance(level, int):
            li = level
        elif level == COMPUTE:
            li = len(mapping.levels)
        else:
            li = mapping.level_index(mapping.level(level).level)  # mapping.level names a bad level
        if cut is None:
            even = sum(len(n.temporal) for n in mapping.levels[:li])
            cut = even if tensor is None or li == len(mapping.levels) else mapping.cut(mapping.levels[li].level, tensor)
        st = loop_strides(mapping)
        temporal, spatial = [], []
        ext = np.ones(len(DIMS), np.int64)
        rank = 0
        for i, nest in enumerate(mapping.levels):
            for j, lp in enumerate(nest.loops):
                above = i < li if lp.spatial else rank < cut
                rank += 0 if lp.spatial else 1
                if not above:
                    ext[_D[lp.dim]] *= lp.bound
                elif lp.spatial:
                    spatial.append((lp, st[i][j]))
                else:
                    temporal.append((lp, st[i][j]))
        return TileWalk(
            mapping,
            li,
            tuple(lp for lp, _ in temporal),
            tuple(s for _, s in temporal),
            tuple(lp for lp, _ in spatial),
            tuple(s for _, s in spatial),
            tuple(int(v) for v in ext),
        )

    # -- the steps ---------------------------------------------------------------------------------

    @property
    def level(self) -> str:
        """Name of the level (:data:`COMPUTE` below the innermost storage level)."""
        levels = self.mapping.levels
        return levels[self.level_index].level if self.level_index < len(levels) else COMPUTE

    @property
    def steps(self) -> int:
        """Temporal steps above the level (tile residencies per instance)."""
        return math.prod(lp.bound for lp in self.loops)

    @cached_property
    def index(self) -> tuple[np.ndarray, ...]:
        """Per temporal loop: its iteration index at every step (outermost loop slowest)."""
        ar = np.arange(self.steps, dtype=np.int64)
        out = []
        inner = self.steps
        for lp in self.loops:
            inner //= lp.bound
            out.append((ar // inner) % lp.bound)
        return tuple(out)

    @cached_property
    def step_start(self) -> np.ndarray:
        """``(steps, 7)`` start of instance 0's tile in each dimension of :data:`DIMS`."""
        start = np.zeros((self.steps, len(DIMS)), np.int64)
        for lp, ix, st in zip(self.loops, self.index, self.strides, strict=True):
            start[:, _D[lp.dim]] += ix * st
        return start

    # -- the instances -----------------------------------------------------------------------------

    @property
    def instances(self) -> int:
        """Instances of the level holding tiles."""
        return math.prod(lp.bound for lp in self.spatial)

    @cached_property
    def inst_off(self) -> np.ndarray:
        """``(instances, 7)`` offset of each instance's tile from instance 0's."""
        coords = itertools.product(*(range(lp.bound) for lp in self.spatial))
        off = np.zeros((self.instances, len(DIMS)), np.int64)
        for i, cs in enumerate(coords):
            for lp, c, st in zip(self.spatial, cs, self.spatial_strides, strict=True):
                off[i, _D[lp.dim]] += c * st
        return off

    def instance_offsets(self) -> list[dict[str, int]]:
        """:attr:`inst_off` as ``{dim: offset}`` per instance."""
        return [dict(zip(DIMS, (int(v) for v in row), strict=True)) for row in self.inst_off]

    @cached_property
    def ext(self) -> np.ndarray:
        """``(7,)`` extent of the walked tile per dimension (the loops below the cut)."""
        return np.array(self.extent, np.int64)

    # -- residencies ---------------------------------------------------------------------------

    @cached_property
    def _ids(self) -> dict[str, np.ndarray]:
        bounds = self.mapping.shape.bounds
        weight, w = {}, 1
        for d in DIMS:  # mixed radix by the layer's bounds: offsets are below them, so injective
            weight[d] = w
            w *= bounds[d]
        out = {}
        for t in TENSORS:
            ident = np.zeros(self.steps, np.int64)
            for lp, ix, st in zip(self.loops, self.index, self.strides, strict=True):
                if lp.dim in TENSOR_DIMS[t]:
                    ident = ident + ix * (st * weight[lp.dim])
            out[t] = ident
        return out

    def tile_ids(self, tensor: str) -> np.ndarray:
        """Identity of ``tensor``'s resident tile at every step (its start in the dims indexing it)."""
        return self._ids[tensor]

    def fills(self, tensor: str) -> np.ndarray:
        """Steps at which ``tensor``'s tile is (re)loaded, ascending, starting at 0."""
        ids = self.tile_ids(tensor)
        return np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))).astype(np.int64)

    def ends(self, tensor: str) -> np.ndarray:
        """Step (exclusive) at which each fill of ``tensor`` is evicted."""
        f = self.fills(tensor)
        return np.append(f[1:], self.steps).astype(np.int64)

    def distinct_tiles(self, tensor: str) -> int:
        """Distinct tiles of ``tensor`` per instance (first visits)."""
        return int(np.unique(self.tile_ids(tensor)).size)

    def output_visits(self) -> tuple[int, int]:
        """(last visits, refills) of the output tiles per instance.

        A visit is a run of steps holding the same output tile. The last visit of each tile writes
        back finished outputs; every visit after a tile's first needs its partial sums back.
        """
        fills = self.fills("output")
        distinct = self.distinct_tiles("output")
        return distinct, len(fills) - distinct

    # -- views --------------------------------------------------------------------------------------

    def ranges(self, step: int, instance: int) -> dict[str, tuple[int, int]]:
        """``{dim: (start, stop)}`` of the tile of ``instance`` at ``step``."""
        start = self.step_start[step] + self.inst_off[instance]
        return {d: (int(start[i]), int(start[i] + self.ext[i])) for i, d in enumerate(DIMS)}

    def tiles(self) -> Iterator[TileStep]:
        """Every tile residency in execution order, instance by instance within a step."""
        ids = {t: self.tile_ids(t) for t in TENSORS}
        seen_out: set[tuple[int, int]] = set()
        for s in range(self.steps):
            changed = frozenset(t for t in TENSORS if s == 0 or ids[t][s] != ids[t][s - 1])
            out_id = int(ids["output"][s])
            for i in range(self.instances):
                first = (i, out_id) not in seen_out
                seen_out.add((i, out_id))
                yield TileStep(s, i, self.ranges(s, i), changed, first)
