"""Where the PE-level tiles of a mapping sit and when they are (re)filled: the residencies faults live in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from approxtvm.errors import ScheduleError
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.faults.plan import TENSORS, fault_buffers
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.tilewalk import TileWalk
from approxtvm.targets.vacc.workload import DIMS, LayerShape

__all__ = ["DIM_INDEX", "FAULT_DIMS", "TileGeometry", "tile_geometry"]

#: Dimensions of the geometry's packed arrays (7 columns, as the compiled fault kernels index
#: them): the ungrouped ones. ``G`` is last in :data:`DIMS`, so dropping it keeps the columns;
#: grouped layers and activation × activation matmuls are not fault-injected (see :func:`tile_geometry`).
FAULT_DIMS = tuple(d for d in DIMS if d != "G")
#: Column of each dimension of :data:`FAULT_DIMS` in the geometry's arrays.
DIM_INDEX = {d: i for i, d in enumerate(FAULT_DIMS)}
_D = DIM_INDEX


@dataclass(frozen=True, eq=False)
class TileGeometry:
    """Where every PE-level tile sits and when it is (re)filled.

    Attributes
    ----------
    steps
        Temporal steps above the PE level (execution order).
    step_start
        ``(steps, 7)`` start of the tile in each dimension of :data:`DIMS`, instance 0.
    inst_off
        ``(instances, 7)`` offset of each PE instance (PE number = instance index).
    ext
        ``(7,)`` tile extent per dimension.
    hops
        ``(instances,)`` links on the XY route from the global-buffer router to each PE.
    fills
        Per tensor: steps at which its tile is (re)loaded, ascending, starting at 0. Fill ``j`` is
        resident during steps ``[fills[j], fills[j+1])``; residency ``r = j · instances + i``.
    words
        Per tensor: elements of one tile (the input tile in padded coordinates, halo included).
    reads_per_word
        Per tensor: reads of each stored word during one residency (read-mode SRAM faults).
    ends
        Per tensor: end step (exclusive) of every fill.
    """

    steps: int
    step_start: np.ndarray
    inst_off: np.ndarray
    ext: np.ndarray
    hops: np.ndarray
    fills: dict[str, np.ndarray]
    words: dict[str, int]
    reads_per_word: dict[str, int]
    ends: dict[str, np.ndarray]

    @property
    def instances(self) -> int:
        """PE instances holding tiles."""
        return len(self.inst_off)

    def residency_ends(self, tensor: str) -> np.ndarray:
        """End step (exclusive) of every fill of ``tensor``."""
        return self.ends[tensor]

    def tile_dims(self, tensor: str, mapping: Mapping) -> tuple[int, ...]:
        """Extent of ``tensor``'s tile per axis (weights KCRS, inputs NCHW padded)."""
        e = mapping.tile_extent("PE", tensor)
        return tuple(e.values())


def fault_injectable(shape: LayerShape) -> bool:
    """Whether NoC / SRAM faults are injected into a layer of this shape (ungrouped conv2d and dense).

    The experiments' knob-reach report asks this too, so it states what :func:`tile_geometry` accepts.
    """
    return shape.groups == 1 and shape.op != "matmul"


def tile_geometry(mapping: Mapping, spec: AcceleratorSpec) -> TileGeometry:
    """The PE-level residencies of ``mapping`` (from its :class:`~approxtvm.targets.vacc.tilewalk.TileWalk`)."""
    if not fault_injectable(mapping.shape):
        raise ScheduleError(
            f"fault injection on a {mapping.shape.op} layer with {mapping.shape.groups} groups",
            expected="NoC / SRAM faults on ungrouped conv2d and dense layers",
            found=f"a scaled NoC swing or buffer voltage on {mapping.shape.op} (groups = {mapping.shape.groups})",
            fix="keep nominal NoC swing and buffer voltages on grouped convs and attention matmuls in the policy",
        )
    w = TileWalk.of(mapping, "PE")
    cols = [DIMS.index(d) for d in FAULT_DIMS]
    gx, gy = spec.noc.global_buffer_node
    pa = spec.pe_array
    hops = np.array(
        [abs(x - gx) + abs(y - gy) for x, y in (pa.pe_xy(i % pa.num_pes) for i in range(w.instances))], np.int64
    )
    fills = {t: w.fills(t) for t in TENSORS}
    ends = {t: w.ends(t) for t in TENSORS}
    words = {t: mapping.tile_size("PE", t) for t in TENSORS}
    counts = simulate_counts(mapping, spec)
    rpw = {}
    buffers = fault_buffers(spec)
    for t in TENSORS:
        buf = buffers[t]
        rw = [(r, wr) for b, tt, r, wr in counts.buffer_accesses if b == buf and tt == t]
        reads, writes = rw[0] if rw else (0, 0)
        rpw[t] = max(1, round(reads / writes)) if writes else 1
    return TileGeometry(w.steps, w.step_start[:, cols], w.inst_off[:, cols], w.ext[cols], hops, fills, words, rpw, ends)
