"""Weight compression (DESIGN §6): lossless tile codecs and the numpy weight transforms.

* :mod:`.codecs` — the blob format and :func:`encode_tile` / :func:`decode`; each encoding
  (dense / bitmask / rle / codebook / codebook_bitmask) is one (header, size, encode, decode)
  entry of :data:`.encodings.CODECS`, built from the bit-level pieces of :mod:`.bits`.
* :mod:`.layers` — per-layer :func:`compress_layer` / :func:`decompress_layer`.
* :mod:`.transforms` — :func:`prune_codes` (magnitude pruning to the zero point) and
  :func:`cluster_codes` (1-D k-means weight sharing), used by the ``PruneWeights`` and
  ``ClusterWeights`` passes; numpy only, no TVM.
"""

from approxtvm.targets.vacc.compression.codecs import (
    DEFAULT_RUN_BITS,
    ENCODINGS,
    CompressedWeights,
    TileEncoding,
    best_encoding,
    decode,
    describe,
    encode,
    encode_tile,
    encoded_sizes,
)
from approxtvm.targets.vacc.compression.layers import compress_layer, decompress_layer, tile_slices
from approxtvm.targets.vacc.compression.transforms import (
    cluster_codes,
    prune_codes,
    prune_codes_global,
)

__all__ = [
    "DEFAULT_RUN_BITS",
    "ENCODINGS",
    "CompressedWeights",
    "TileEncoding",
    "best_encoding",
    "cluster_codes",
    "compress_layer",
    "decode",
    "decompress_layer",
    "describe",
    "encode",
    "encode_tile",
    "encoded_sizes",
    "prune_codes",
    "prune_codes_global",
    "tile_slices",
]
