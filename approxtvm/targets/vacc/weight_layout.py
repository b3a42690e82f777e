"""Weight layout: the weight tiles a mapping moves into the PE weight buffers, in send order."""

from __future__ import annotations

import numpy as np

from approxtvm.targets.vacc.compression import CompressedWeights, compress_layer, tile_slices
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.schedule import WeightLayout
from approxtvm.targets.vacc.workload import TENSOR_DIMS


def weight_tile_dims(mapping: Mapping) -> tuple[str, ...]:
    """Weight-indexing dims of the loops above the PE weight buffer, outermost first (the tile order)."""
    seen: list[str] = []
    for lp in mapping.tensor_view("weight").loops_above("PE"):
        if lp.dim in TENSOR_DIMS["weight"] and lp.bound > 1 and lp.dim not in seen:
            seen.append(lp.dim)
    return tuple(seen)


def dense_layout(mapping: Mapping, spec: AcceleratorSpec) -> WeightLayout:
    """Uncompressed layout: one tile per PE-level weight tile, ``bits/8`` bytes per weight.

    The tile is the block of weights one PE's weight buffer holds (``tile_size("PE", "weight")``);
    the layer's weights are cut into ``K·(C/G)·R·S / tile`` such tiles (for an activation ×
    activation matmul, the second operand's slices as they stream into the weight buffers).
    """
    s = mapping.shape
    tile = mapping.tile_size("PE", "weight")
    total = s.k * s.c_per_group * s.r * s.s
    n_tiles = total // tile
    tile_bytes = tile * spec.precision.bits("weight") // 8
    return WeightLayout(weight_tile_dims(mapping), ("dense",) * n_tiles, (tile_bytes,) * n_tiles)


def weight_tile_shape(mapping: Mapping, weight: np.ndarray) -> tuple[int, ...]:
    """Extents of one PE weight tile along the weight array's axes (OIHW, or (K, C) for dense;
    a grouped layer's weights are viewed as (G, K/G, C/G, R, S), see :func:`grouped_view`)."""
    e = mapping.tile_extent("PE", "weight")
    if mapping.shape.groups > 1:
        return (e["G"], e["K"], e["C"], e["R"], e["S"])
    return (e["K"], e["C"]) if weight.ndim == 2 else (e["K"], e["C"], e["R"], e["S"])


def grouped_view(mapping: Mapping, weight: np.ndarray) -> np.ndarray:
    """The weights with the group axis split out, (G, K/G, C/G, R, S), when the layer is grouped."""
    s = mapping.shape
    if s.groups == 1:
        return weight
    return weight.reshape(s.groups, s.k_per_group, s.c_per_group, s.r, s.s)


def compressed_layout(
    mapping: Mapping, weight: np.ndarray, zero_code: int, mode: str
) -> tuple[WeightLayout, CompressedWeights]:
    """Compressed layout: the same PE weight tiles, each encoded (``mode`` or the smallest).

    Returns the layout recorded in the schedule and the encoded tiles (real byte blobs) the
    runtime decodes at the PE.
    """
    weight = grouped_view(mapping, weight)
    tiles = tile_slices(weight.shape, weight_tile_shape(mapping, weight))
    comp = compress_layer(weight, tiles, zero_code, mode)
    return (WeightLayout(weight_tile_dims(mapping), comp.tile_encodings, comp.tile_bytes), comp)
