"""Lossless weight-tile codecs: dense, zero bitmask, zero run-length, codebook (DESIGN §6).

This module holds the blob format and the entry points; each encoding (its header fields,
analytic size, encoder and decoder) is one entry of :data:`~.encodings.CODECS`.

A *tile* is a block of 8-bit weight codes (uint8 or int8, any shape, read in C order) plus the
layer's weight zero point ``zero_code``: the code that means the real value 0.0 (for uint8
asymmetric weights the zero point, not 0). "Zero" below always means ``code == zero_code``.

Every encoded tile is a self-describing ``bytes`` blob::

    byte 0      (format version << 4) | (signed << 3) | encoding id
    varint      element count n (unsigned LEB128)
    params      per encoding (below)
    body        per encoding (below)

=====================  ==============================  ================================================
encoding (id)          params                          body
=====================  ==============================  ================================================
``dense`` (0)          —                               n codes
``bitmask`` (1)        zero_code                       ceil(n/8) mask bytes (MSB first, 1 = non-zero),
                                                       then the nnz non-zero codes
``rle`` (2)            zero_code, run_bits,            pairs (run, code) packed as run_bits + 8 bits:
                       varint pair count               ``run`` zero codes, then ``code``; a zero run
                                                       longer than 2^run_bits − 1 emits filler pairs
                                                       (max run, zero_code); trailing zeros are implied
``codebook`` (3)       bits b                          2^b-entry table, then n b-bit indices
``codebook_bitmask``   zero_code, bits b               mask, 2^b-entry table of non-zero codes, then
(4)                                                    nnz b-bit indices
=====================  ==============================  ================================================

Padding bits at the end of a bit field are zero; the decoder checks every length and the padding,
so a truncated or corrupted blob raises :class:`~approxtvm.errors.CompressionError` (a corrupted
code byte that keeps the blob well formed decodes to another tile: there is no checksum, as there
is none in the accelerator's DRAM image). Metadata = header + masks + run fields + tables; payload
= the stored weight values (codes or indices, filler codes included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from approxtvm.errors import CompressionError
from approxtvm.targets.vacc.compression.bits import Reader, corrupt, distinct, varint, varint_len
from approxtvm.targets.vacc.compression.encodings import CODECS, Tile, TileStats, rle_pairs

FORMAT_VERSION = 1
#: Encodings in id order.
ENCODINGS: tuple[str, ...] = tuple(c.name for c in CODECS)
#: Largest tile the codecs accept (bounds what a corrupted header can make the decoder allocate).
MAX_TILE_WEIGHTS = 1 << 27
#: Default width of the zero-run field of ``rle`` (runs of up to 15 zero codes per pair).
DEFAULT_RUN_BITS = 4

Mode = Literal["auto", "dense", "bitmask", "rle", "codebook", "codebook_bitmask"]
TileSpec = Sequence[tuple[slice, ...]] | tuple[int, ...]

_ID = {c.name: i for i, c in enumerate(CODECS)}
_DTYPES = {False: np.dtype(np.uint8), True: np.dtype(np.int8)}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TileEncoding:
    """One encoded tile.

    Attributes
    ----------
    encoding
        Encoding name (one of :data:`ENCODINGS`).
    blob
        The self-describing encoded tile (what is stored in DRAM and moved on the NoC).
    num_weights
        Weights in the tile.
    payload_bytes
        Bytes of stored weight values (codes or packed indices).
    metadata_bytes
        Header, masks, run fields and codebook tables, in bytes.
    """

    encoding: str
    blob: bytes
    num_weights: int
    payload_bytes: int
    metadata_bytes: int

    @property
    def total_bytes(self) -> int:
        """Size of the blob, metadata included."""
        return len(self.blob)

    @property
    def dense_bytes(self) -> int:
        """Size of the tile stored raw (one byte per weight, no header)."""
        return self.num_weights


@dataclass(frozen=True, slots=True)
class CompressedWeights:
    """A layer's weight array cut into tiles, each tile encoded.

    Attributes
    ----------
    shape
        Shape of the weight array (OIHW or (K, C)).
    dtype
        ``"uint8"`` or ``"int8"``.
    zero_code
        The weight zero point.
    tiles
        The index slices of each tile, normalised (explicit start/stop, step 1, one per axis).
    encodings
        The encoded tiles, in the order of ``tiles``.
    """

    shape: tuple[int, ...]
    dtype: str
    zero_code: int
    tiles: tuple[tuple[slice, ...], ...]
    encodings: tuple[TileEncoding, ...]

    @property
    def total_bytes(self) -> int:
        """Sum of the encoded tile sizes, metadata included."""
        return sum(e.total_bytes for e in self.encodings)

    @property
    def payload_bytes(self) -> int:
        """Sum of the tiles' stored weight values, in bytes."""
        return sum(e.payload_bytes for e in self.encodings)

    @property
    def metadata_bytes(self) -> int:
        """Sum of the tiles' headers, masks, run fields and tables, in bytes."""
        return sum(e.metadata_bytes for e in self.encodings)

    @property
    def dense_bytes(self) -> int:
        """Size of the uncompressed array (one byte per weight)."""
        return math.prod(self.shape)

    @property
    def footprint_ratio(self) -> float:
        """``total_bytes / dense_bytes`` (below 1 means smaller than dense)."""
        return self.total_bytes / max(self.dense_bytes, 1)

    @property
    def tile_bytes(self) -> tuple[int, ...]:
        """Encoded size of each tile."""
        return tuple(e.total_bytes for e in self.encodings)

    @property
    def tile_encodings(self) -> tuple[str, ...]:
        """Encoding name of each tile."""
        return tuple(e.encoding for e in self.encodings)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def check_tile(tile: np.ndarray, zero_code: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (flat codes as stored, flat non-zero mask); validate dtype and zero_code."""
    arr = np.asarray(tile)
    if arr.dtype not in (np.uint8, np.int8):
        raise CompressionError(
            "weight tile has the wrong element type",
            expected="uint8 or int8 codes",
            found=str(arr.dtype),
            fix="quantize the weights to 8-bit codes first",
        )
    info = np.iinfo(arr.dtype)
    if not isinstance(zero_code, int | np.integer) or not info.min <= int(zero_code) <= info.max:
        raise CompressionError(
            "zero_code is not a code of the tile's type",
            expected=f"an integer in [{info.min}, {info.max}] ({arr.dtype})",
            found=repr(zero_code),
            fix="pass the layer's weight zero point",
        )
    flat = arr.reshape(-1)
    if flat.size > MAX_TILE_WEIGHTS:
        raise CompressionError(
            "weight tile too large",
            expected=f"at most {MAX_TILE_WEIGHTS} weights",
            found=f"{flat.size}",
            fix="cut the layer into smaller tiles",
        )
    return flat, flat != arr.dtype.type(zero_code)


def _resolve_mode(mode: str) -> str:
    if mode != "auto" and mode not in _ID:
        raise CompressionError(
            f"unknown encoding {mode!r}",
            expected=f"'auto' or one of {', '.join(ENCODINGS)}",
            found=repr(mode),
            fix="pick an encoding name from ENCODINGS",
        )
    return mode


def _check_run_bits(run_bits: int) -> None:
    if not isinstance(run_bits, int) or not 1 <= run_bits <= 8:
        raise CompressionError(
            "rle run field width out of range",
            expected="1..8 bits",
            found=repr(run_bits),
            fix="use run_bits between 1 and 8 (default 4)",
        )


# ---------------------------------------------------------------------------------------------
# Sizes (analytic, used by auto) and encoding
# ---------------------------------------------------------------------------------------------


def encoded_sizes(tile: np.ndarray, zero_code: int, *, run_bits: int = DEFAULT_RUN_BITS) -> dict[str, int]:
    """Total blob size in bytes of every encoding that can represent ``tile`` (no blob is built).

    Parameters
    ----------
    tile
        uint8 / int8 weight codes, any shape.
    zero_code
        The code meaning 0.0.
    run_bits
        Width of the ``rle`` run field.

    Returns
    -------
    dict[str, int]
        Encoding name → total bytes (header included); every encoding is always representable,
        since the codebook width adapts to the number of distinct values.
    """
    flat, nz = check_tile(tile, zero_code)
    _check_run_bits(run_bits)
    stats = TileStats(
        n=flat.size,
        nnz=int(np.count_nonzero(nz)),
        distinct_all=len(distinct(flat)),
        distinct_nonzero=len(distinct(flat[nz])),
        rle_pairs=len(rle_pairs(nz, run_bits)[0]),
        run_bits=run_bits,
    )
    head = 1 + varint_len(stats.n)
    return {c.name: head + c.size(stats) for c in CODECS}


def encode_tile(
    tile: np.ndarray,
    zero_code: int,
    mode: Mode | str = "auto",
    *,
    run_bits: int = DEFAULT_RUN_BITS,
    codebook_bits: int | None = None,
) -> TileEncoding:
    """Encode one weight tile.

    Parameters
    ----------
    tile
        uint8 / int8 weight codes, any shape (flattened in C order).
    zero_code
        The code meaning 0.0 (the weight zero point).
    mode
        ``"auto"`` (smallest total, metadata included; ties go to the earlier entry of
        :data:`ENCODINGS`) or an encoding name.
    run_bits
        Width of the ``rle`` run field (1..8).
    codebook_bits
        Index width of the codebook encodings; ``None`` = the smallest that fits. A forced width
        too small for the tile's distinct values raises :class:`CompressionError`.

    Returns
    -------
    TileEncoding
    """
    name = _resolve_mode(mode)
    flat, nz = check_tile(tile, zero_code)
    _check_run_bits(run_bits)
    if name == "auto":
        if codebook_bits is not None:
            return best_encoding(tile, zero_code, run_bits=run_bits, codebook_bits=codebook_bits)
        sizes = encoded_sizes(flat, zero_code, run_bits=run_bits)
        name = min(ENCODINGS, key=lambda e: sizes[e])
    signed = flat.dtype == np.int8
    raw = flat.view(np.uint8)
    zc = int(np.array(zero_code, dtype=flat.dtype).view(np.uint8))
    head = bytes([(FORMAT_VERSION << 4) | (int(signed) << 3) | _ID[name]]) + varint(raw.size)
    params, meta, payload = CODECS[_ID[name]].encode(Tile(raw, nz, zc, run_bits, codebook_bits))
    blob = head + params + meta + payload
    return TileEncoding(name, blob, raw.size, len(payload), len(blob) - len(payload))


def best_encoding(
    tile: np.ndarray, zero_code: int, *, run_bits: int = DEFAULT_RUN_BITS, codebook_bits: int | None = None
) -> TileEncoding:
    """The encoding of ``tile`` with the fewest total bytes (metadata included).

    With ``codebook_bits`` given, codebook encodings that cannot represent the tile at that width
    are skipped (dense always can). Ties go to the earlier entry of :data:`ENCODINGS`.
    """
    if codebook_bits is None:
        return encode_tile(tile, zero_code, "auto", run_bits=run_bits)
    best: TileEncoding | None = None
    for name in ENCODINGS:
        try:
            enc = encode_tile(tile, zero_code, name, run_bits=run_bits, codebook_bits=codebook_bits)
        except CompressionError:
            if name.startswith("codebook"):
                continue
            raise
        if best is None or enc.total_bytes < best.total_bytes:
            best = enc
    assert best is not None
    return best


def encode(
    tile: np.ndarray,
    zero_code: int,
    mode: Mode | str = "auto",
    *,
    run_bits: int = DEFAULT_RUN_BITS,
    codebook_bits: int | None = None,
) -> bytes:
    """Encode one weight tile and return its blob (see :func:`encode_tile`)."""
    return encode_tile(tile, zero_code, mode, run_bits=run_bits, codebook_bits=codebook_bits).blob


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def describe(blob: bytes) -> dict[str, int | str | bool]:
    """Parse a blob's header: encoding, signedness, element count and parameters (no decoding)."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CompressionError(
            "weight blob is not bytes",
            expected="bytes",
            found=type(blob).__name__,
            fix="pass the blob returned by encode()",
        )
    r = Reader(bytes(blob))
    first = r.byte("header")
    version, signed, enc_id = first >> 4, bool(first & 0x08), first & 0x07
    if version != FORMAT_VERSION:
        raise corrupt("unknown format version", f"version {FORMAT_VERSION}", f"version {version}")
    if enc_id >= len(CODECS):
        raise corrupt("unknown encoding id", f"an id in 0..{len(CODECS) - 1}", f"id {enc_id}")
    codec = CODECS[enc_id]
    info: dict[str, int | str | bool] = {"encoding": codec.name, "signed": signed, "num_weights": r.varint("count")}
    if int(info["num_weights"]) > MAX_TILE_WEIGHTS:
        raise corrupt(
            "element count too large", f"at most {MAX_TILE_WEIGHTS} weights per tile", f"{info['num_weights']}"
        )
    for f in codec.header:
        info[f.name] = r.varint(f.label) if f.varint else r.byte(f.label)
    for f in codec.header:
        if f.limits is not None and not f.limits[0] <= int(info[f.name]) <= f.limits[1]:
            raise corrupt(f"{f.what} out of range", f"{f.limits[0]}..{f.limits[1]}", str(info[f.name]))
    info["header_bytes"] = r.pos
    return info


def decode(
    blob: bytes, dtype: np.dtype | type | str | None = None, *, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Decode a blob back to the tile of codes, exactly.

    Parameters
    ----------
    blob
        A blob from :func:`encode`.
    dtype
        Expected element type (``uint8`` / ``int8``); ``None`` takes it from the header. A
        mismatch with the header raises :class:`CompressionError`.
    shape
        Tile shape to restore (its size must equal the header's count); ``None`` gives 1-D.

    Returns
    -------
    np.ndarray
        The ``num_weights`` codes, flat or shaped as ``shape``.
    """
    info = describe(blob)
    out_dtype = _DTYPES[bool(info["signed"])]
    if dtype is not None and np.dtype(dtype) != out_dtype:
        raise CompressionError(
            "weight blob holds codes of another type",
            expected=str(np.dtype(dtype)),
            found=f"{out_dtype} (header)",
            fix="decode with the layer's weight dtype",
        )
    n = int(info["num_weights"])
    if shape is not None and math.prod(shape) != n:
        raise CompressionError(
            "weight blob does not hold a tile of the requested shape",
            expected=f"{math.prod(shape)} weights for shape {tuple(shape)}",
            found=f"{n} weights (header)",
            fix="decode with the tile's own shape",
        )
    body = np.frombuffer(bytes(blob), dtype=np.uint8)[int(info["header_bytes"]) :]
    header = {k: int(v) for k, v in info.items() if k not in ("encoding", "signed")}
    out = CODECS[_ID[str(info["encoding"])]].decode(body, n, header).view(out_dtype)
    return out if shape is None else out.reshape(shape)
