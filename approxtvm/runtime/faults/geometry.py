"""Where the PE-level tiles of a mapping sit and when they are (re)filled: the residencies faults live in.

In an uneven mapping the weight and input buffers cut the loop nest at different places, so a
buffer's tile may span several of the boxes the PE computes one after the other. Faults are sampled
over the buffers' own residencies (:func:`tile_geometry`); the deltas run on the boxes
(:attr:`TileGeometry.compute`), and :func:`approxtvm.runtime.faults.boxes.for_deltas` re-expresses
every corrupted stored word as the same corruption in each box that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.faults.plan import TENSORS, fault_buffers
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.tilewalk import TileWalk
from approxtvm.targets.vacc.workload import DIMS

__all__ = ["DIM_INDEX", "FAULT_DIMS", "TileGeometry", "tile_geometry"]

#: Dimensions of the geometry's packed arrays (8 columns, as the compiled fault kernels index them):
#: every loop dimension, ``G`` last (1 for an ungrouped layer).
FAULT_DIMS = DIMS
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
        ``(steps, 8)`` start of the tile in each dimension of :data:`FAULT_DIMS`, instance 0.
    inst_off
        ``(instances, 8)`` offset of each PE instance (PE number = instance index).
    ext
        ``(8,)`` tile extent per dimension.
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
    tensor_ext
        Per tensor, ``(8,)`` extent of its tile when it is not ``ext`` (uneven mappings).
    compute
        Uneven mappings: the geometry of the boxes the PE computes step by step (one fill per box
        change), on which the deltas run (see :mod:`approxtvm.runtime.faults.boxes`); ``None`` when tiles are boxes.
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
    tensor_ext: dict[str, np.ndarray] = field(default_factory=dict)
    compute: TileGeometry | None = None

    @property
    def instances(self) -> int:
        """PE instances holding tiles."""
        return len(self.inst_off)

    def residency_ends(self, tensor: str) -> np.ndarray:
        """End step (exclusive) of every fill of ``tensor``."""
        return self.ends[tensor]

    def tile_dims(self, tensor: str, mapping: Mapping) -> tuple[int, ...]:
        """Extent of ``tensor``'s tile per axis: weights ``(G, K, C, R, S)``, inputs ``(N, G, C, H, W)``
        (padded, halo included). ``G`` is always there (1 when ungrouped): the words' C-order index
        over these axes is the same as over the tile's own axes (:meth:`Mapping.tile_extent`)."""
        ext = self.tensor_ext.get(tensor, self.ext)
        e = {d: int(ext[DIM_INDEX[d]]) for d in FAULT_DIMS}
        if tensor == "weight":
            return (e["G"], e["K"], e["C"], e["R"], e["S"])
        sh = mapping.shape
        h = sh.input_extent(e["P"], e["R"], sh.stride_h, sh.dilation_h)
        w = sh.input_extent(e["Q"], e["S"], sh.stride_w, sh.dilation_w)
        return (e["N"], e["G"], e["C"], h, w)


def tile_geometry(mapping: Mapping, spec: AcceleratorSpec) -> TileGeometry:
    """The PE-level residencies of ``mapping`` (from its :class:`~approxtvm.targets.vacc.tilewalk.TileWalk`).

    Steps are those of the finer of the weight and input buffers' cuts; each buffer's fills are at
    its own residencies (in an even mapping both cut at the PE level's boundary).
    """
    cuts = {t: mapping.cut("PE", t) for t in TENSORS}
    w = TileWalk.of(mapping, "PE", cut=max(cuts.values()))
    gx, gy = spec.noc.global_buffer_node
    pa = spec.pe_array
    hops = np.array(
        [abs(x - gx) + abs(y - gy) for x, y in (pa.pe_xy(i % pa.num_pes) for i in range(w.instances))], np.int64
    )
    own = {t: TileWalk.of(mapping, "PE", t) for t in TENSORS}
    # a buffer's own steps are a prefix of the loops stepped here: its step s is step s·ratio here
    ratio = {t: w.steps // own[t].steps for t in TENSORS}
    fills = {t: own[t].fills(t) * ratio[t] for t in TENSORS}
    ends = {t: own[t].ends(t) * ratio[t] for t in TENSORS}
    words = {t: mapping.tile_size("PE", t) for t in TENSORS}
    counts = simulate_counts(mapping, spec)
    rpw = {}
    buffers = fault_buffers(spec)
    for t in TENSORS:
        buf = buffers[t]
        rw = [(r, wr) for b, tt, r, wr in counts.buffer_accesses if b == buf and tt == t]
        reads, writes = rw[0] if rw else (0, 0)
        rpw[t] = max(1, round(reads / writes)) if writes else 1
    geom = TileGeometry(w.steps, w.step_start, w.inst_off, w.ext, hops, fills, words, rpw, ends)
    if all(np.array_equal(own[t].ext, w.ext) for t in TENSORS):
        return geom
    boxes = TileGeometry(
        w.steps,
        w.step_start,
        w.inst_off,
        w.ext,
        hops,
        {t: w.fills(t) for t in TENSORS},
        {},
        dict.fromkeys(TENSORS, 1),
        {t: w.ends(t) for t in TENSORS},
    )
    boxes = replace(boxes, words={t: int(np.prod(boxes.tile_dims(t, mapping))) for t in TENSORS})
    return replace(geom, tensor_ext={t: own[t].ext for t in TENSORS}, compute=boxes)
