"""A layer's weights as encoded tiles: cut the array into tiles, encode each, and back."""

from __future__ import annotations

import numpy as np

from approxtvm.errors import CompressionError
from approxtvm.targets.vacc.compression.codecs import (
    DEFAULT_RUN_BITS,
    CompressedWeights,
    Mode,
    TileSpec,
    check_tile,
    decode,
    encode_tile,
)

__all__ = ["compress_layer", "decompress_layer", "tile_slices"]


def tile_slices(shape: tuple[int, ...], tile_shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Regular blocking of ``shape`` by ``tile_shape`` (edge tiles are smaller), in C order."""
    if len(tile_shape) != len(shape) or any(t < 1 for t in tile_shape):
        raise CompressionError(
            "tile shape does not match the weight array",
            expected=f"{len(shape)} positive extents",
            found=str(tile_shape),
            fix="give one extent per weight axis, e.g. (64, C, R, S)",
        )
    grids = [[slice(s, min(s + t, d)) for s in range(0, d, t)] for d, t in zip(shape, tile_shape, strict=True)]
    out: list[tuple[slice, ...]] = [()]
    for axis in grids:
        out = [(*prefix, s) for prefix in out for s in axis]
    return out


def _normalise_tiles(shape: tuple[int, ...], tiles: TileSpec) -> tuple[tuple[slice, ...], ...]:
    if isinstance(tiles, tuple) and all(isinstance(t, int | np.integer) for t in tiles):
        return tuple(tile_slices(shape, tuple(int(t) for t in tiles)))  # type: ignore[arg-type]
    norm: list[tuple[slice, ...]] = []
    cover = np.zeros(shape, dtype=np.int32)
    for i, sl in enumerate(tiles):
        sl_t = tuple(sl) if isinstance(sl, tuple) else (sl,)  # type: ignore[arg-type]
        if len(sl_t) > len(shape) or not all(isinstance(s, slice) for s in sl_t):
            raise CompressionError(
                f"tile {i} is not a tuple of at most {len(shape)} slices",
                expected="tuple[slice, ...]",
                found=repr(sl),
                fix="pass index slices",
            )
        sl_t = sl_t + (slice(None),) * (len(shape) - len(sl_t))
        ranges = [s.indices(d) for s, d in zip(sl_t, shape, strict=True)]
        if any(step != 1 or stop <= start for start, stop, step in ranges):
            raise CompressionError(
                f"tile {i} is empty or strided",
                expected="contiguous non-empty slices",
                found=repr(sl),
                fix="use slices with step 1 and stop > start",
            )
        norm_sl = tuple(slice(a, b) for a, b, _ in ranges)
        cover[norm_sl] += 1
        norm.append(norm_sl)
    if cover.size and (cover.min() != 1 or cover.max() != 1):
        gaps, overlaps = int((cover == 0).sum()), int((cover > 1).sum())
        raise CompressionError(
            "tiles do not cover the weight array exactly once",
            expected="every weight in exactly one tile",
            found=f"{gaps} weight(s) in no tile, {overlaps} in several",
            fix="pass the tiles the mapping moves, a partition of the array",
        )
    return tuple(norm)


def compress_layer(
    weight: np.ndarray,
    tiles: TileSpec,
    zero_code: int,
    mode: Mode | str = "auto",
    *,
    run_bits: int = DEFAULT_RUN_BITS,
    codebook_bits: int | None = None,
) -> CompressedWeights:
    """Encode a layer's weight codes tile by tile.

    Parameters
    ----------
    weight
        uint8 / int8 codes, OIHW or (K, C).
    tiles
        Either a list of index-slice tuples that partition ``weight`` (each tile is the sub-array
        ``weight[slices]`` in C order, in the order given) or a tile shape (regular blocking).
    zero_code
        The layer's (per-tensor) weight zero point.
    mode, run_bits, codebook_bits
        See :func:`encode_tile`; one mode for every tile (``"auto"`` picks per tile).

    Returns
    -------
    CompressedWeights
    """
    arr = np.asarray(weight)
    check_tile(arr.reshape(-1)[:0], zero_code)
    norm = _normalise_tiles(arr.shape, tiles)
    encs = tuple(encode_tile(arr[sl], zero_code, mode, run_bits=run_bits, codebook_bits=codebook_bits) for sl in norm)
    return CompressedWeights(tuple(arr.shape), str(arr.dtype), int(zero_code), norm, encs)


def decompress_layer(compressed: CompressedWeights) -> np.ndarray:
    """Rebuild the exact weight array from :func:`compress_layer`'s output."""
    out = np.empty(compressed.shape, dtype=compressed.dtype)
    for sl, enc in zip(compressed.tiles, compressed.encodings, strict=True):
        out[sl] = decode(enc.blob, compressed.dtype, shape=out[sl].shape)
    return out
