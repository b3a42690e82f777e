"""Lossless weight-tile codecs: dense, zero bitmask, zero run-length, codebook (DESIGN §6).

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

FORMAT_VERSION = 1
#: Encodings in id order.
ENCODINGS: tuple[str, ...] = ("dense", "bitmask", "rle", "codebook", "codebook_bitmask")
#: Largest tile the codecs accept (bounds what a corrupted header can make the decoder allocate).
MAX_TILE_WEIGHTS = 1 << 27
#: Default width of the zero-run field of ``rle`` (runs of up to 15 zero codes per pair).
DEFAULT_RUN_BITS = 4

Mode = Literal["auto", "dense", "bitmask", "rle", "codebook", "codebook_bitmask"]
TileSpec = Sequence[tuple[slice, ...]] | tuple[int, ...]

_ID = {name: i for i, name in enumerate(ENCODINGS)}
_PARAMS = {
    "dense": (),
    "bitmask": ("zero_code",),
    "rle": ("zero_code", "run_bits"),
    "codebook": ("bits",),
    "codebook_bitmask": ("zero_code", "bits"),
}
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
# Helpers
# ---------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _check_tile(tile: np.ndarray, zero_code: int) -> tuple[np.ndarray, np.ndarray]:
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


def _pack(values: np.ndarray, width: int) -> np.ndarray:
    """Pack 8-bit values as ``width``-bit fields (MSB first) into bytes."""
    if width == 8:
        return values.astype(np.uint8, copy=False)
    bits = np.unpackbits(values.astype(np.uint8, copy=False)[:, None], axis=1)[:, 8 - width :]
    return np.packbits(bits.reshape(-1))


def _unpack(body: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`_pack` for ``count`` fields (body length already checked)."""
    if width == 8:
        return body[:count]
    bits = np.unpackbits(body)[: count * width].reshape(count, width)
    return np.packbits(np.pad(bits, ((0, 0), (8 - width, 0))), axis=1).reshape(-1)


def _table_bits(n_values: int) -> int:
    """Smallest index width b ≥ 1 with 2^b ≥ n_values."""
    return max(1, math.ceil(math.log2(max(n_values, 1))))


def _distinct(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct values (as stored bytes, uint8) via a 256-bin histogram."""
    return np.flatnonzero(np.bincount(codes.view(np.uint8), minlength=256)).astype(np.uint8)


def _rle_pairs(nonzero: np.ndarray, run_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(runs, index of the stored code or −1 for filler) of the RLE pairs, vectorised."""
    pos = np.flatnonzero(nonzero)
    gaps = np.diff(pos, prepend=-1) - 1
    period = 1 << run_bits  # a filler pair covers max_run zeros + one explicit zero
    fillers = gaps // period
    ends = np.cumsum(fillers + 1)
    runs = np.full(int(ends[-1]) if len(ends) else 0, period - 1, dtype=np.uint8)
    src = np.full(len(runs), -1, dtype=np.int64)
    runs[ends - 1] = gaps % period
    src[ends - 1] = pos
    return runs, src


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
    flat, nz = _check_tile(tile, zero_code)
    _check_run_bits(run_bits)
    n = flat.size
    nnz = int(np.count_nonzero(nz))
    head = 1 + _varint_len(n)
    mask = (n + 7) // 8
    b_all = _table_bits(len(_distinct(flat)))
    b_nz = _table_bits(len(_distinct(flat[nz])))
    pairs = len(_rle_pairs(nz, run_bits)[0])
    return {
        "dense": head + n,
        "bitmask": head + 1 + mask + nnz,
        "rle": head + 2 + _varint_len(pairs) + (pairs * (run_bits + 8) + 7) // 8,
        "codebook": head + 1 + (1 << b_all) + (n * b_all + 7) // 8,
        "codebook_bitmask": head + 2 + mask + (1 << b_nz) + (nnz * b_nz + 7) // 8,
    }


def _codebook_body(values: np.ndarray, bits: int | None, what: str) -> tuple[int, bytes, bytes]:
    """(bits, table bytes, packed index bytes) of ``values`` (stored bytes, uint8)."""
    table = _distinct(values)
    need = _table_bits(len(table))
    if bits is None:
        bits = need
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise CompressionError(
            "codebook index width out of range",
            expected="1..8 bits",
            found=repr(bits),
            fix="pass codebook_bits between 1 and 8 or None",
        )
    if len(table) > 1 << bits:
        raise CompressionError(
            f"{what} has too many distinct values for a {bits}-bit codebook",
            expected=f"at most {1 << bits} distinct codes",
            found=f"{len(table)}",
            fix="cluster the weights (ClusterWeights), or use codebook_bits=None or mode='auto'",
        )
    lut = np.zeros(256, dtype=np.uint8)
    lut[table] = np.arange(len(table), dtype=np.uint8)
    fill = table[-1] if len(table) else np.uint8(0)
    padded = np.concatenate([table, np.full((1 << bits) - len(table), fill, dtype=np.uint8)])
    return bits, padded.tobytes(), _pack(lut[values], bits).tobytes()


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
    flat, nz = _check_tile(tile, zero_code)
    _check_run_bits(run_bits)
    if name == "auto":
        if codebook_bits is not None:
            return best_encoding(tile, zero_code, run_bits=run_bits, codebook_bits=codebook_bits)
        sizes = encoded_sizes(flat, zero_code, run_bits=run_bits)
        name = min(ENCODINGS, key=lambda e: sizes[e])
    signed = flat.dtype == np.int8
    raw = flat.view(np.uint8)
    zc = int(np.array(zero_code, dtype=flat.dtype).view(np.uint8))
    n = raw.size
    head = bytes([(FORMAT_VERSION << 4) | (int(signed) << 3) | _ID[name]]) + _varint(n)
    if name == "dense":
        params, meta, payload = b"", b"", raw.tobytes()
    elif name == "bitmask":
        params, meta, payload = bytes([zc]), np.packbits(nz).tobytes(), raw[nz].tobytes()
    elif name == "rle":
        runs, src = _rle_pairs(nz, run_bits)
        codes = np.full(len(runs), zc, dtype=np.uint8)
        codes[src >= 0] = raw[src[src >= 0]]
        run_field = np.unpackbits(runs[:, None], axis=1)[:, 8 - run_bits :]
        code_field = np.unpackbits(codes[:, None], axis=1)
        body = np.packbits(np.hstack([run_field, code_field]).reshape(-1)).tobytes()
        params = bytes([zc, run_bits]) + _varint(len(runs))
        meta, payload = body[: len(body) - len(runs)], body[len(body) - len(runs) :]
    elif name == "codebook":
        bits, table, payload = _codebook_body(raw, codebook_bits, "tile")
        params, meta = bytes([bits]), table
    else:  # codebook_bitmask
        bits, table, payload = _codebook_body(raw[nz], codebook_bits, "tile's non-zero codes")
        params, meta = bytes([zc, bits]), np.packbits(nz).tobytes() + table
    blob = head + params + meta + payload
    return TileEncoding(name, blob, n, len(payload), len(blob) - len(payload))


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


def _corrupt(what: str, expected: str, found: str) -> CompressionError:
    return CompressionError(
        f"corrupted weight blob: {what}",
        expected=expected,
        found=found,
        fix="re-encode the tile; the blob was truncated or overwritten",
    )


class _Reader:
    """Bounds-checked cursor over a blob."""

    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos = blob, 0

    def byte(self, field: str) -> int:
        if self.pos >= len(self.blob):
            raise _corrupt(
                f"blob ends before the {field} field",
                f"a {field} byte at offset {self.pos}",
                f"a {len(self.blob)}-byte blob",
            )
        self.pos += 1
        return self.blob[self.pos - 1]

    def varint(self, field: str) -> int:
        value = 0
        for shift in range(0, 35, 7):
            b = self.byte(field)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise _corrupt(f"{field} varint is longer than 5 bytes", "a count below 2^35", "an endless varint")


def _mask(body: np.ndarray, n: int, what: str) -> np.ndarray:
    bits = np.unpackbits(body[: (n + 7) // 8])
    if bits[n:].any():
        raise _corrupt(
            f"{what} padding bits are set", "zero bits after the last weight", f"{int(bits[n:].sum())} set bit(s)"
        )
    return bits[:n].astype(bool)


def _need(body: np.ndarray, expected: int, n: int, detail: str) -> None:
    if len(body) != expected:
        raise _corrupt(
            f"header says {n} weights, payload has {len(body)} bytes, expected {expected}",
            f"{expected} body bytes ({detail})",
            f"{len(body)} bytes",
        )


def describe(blob: bytes) -> dict[str, int | str | bool]:
    """Parse a blob's header: encoding, signedness, element count and parameters (no decoding)."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CompressionError(
            "weight blob is not bytes",
            expected="bytes",
            found=type(blob).__name__,
            fix="pass the blob returned by encode()",
        )
    r = _Reader(bytes(blob))
    first = r.byte("header")
    version, signed, enc_id = first >> 4, bool(first & 0x08), first & 0x07
    if version != FORMAT_VERSION:
        raise _corrupt("unknown format version", f"version {FORMAT_VERSION}", f"version {version}")
    if enc_id >= len(ENCODINGS):
        raise _corrupt("unknown encoding id", f"an id in 0..{len(ENCODINGS) - 1}", f"id {enc_id}")
    name = ENCODINGS[enc_id]
    info: dict[str, int | str | bool] = {"encoding": name, "signed": signed, "num_weights": r.varint("count")}
    if int(info["num_weights"]) > MAX_TILE_WEIGHTS:
        raise _corrupt(
            "element count too large", f"at most {MAX_TILE_WEIGHTS} weights per tile", f"{info['num_weights']}"
        )
    for p in _PARAMS[name]:
        info[p] = r.byte(p)
    if name == "rle":
        info["pairs"] = r.varint("pair count")
    if "run_bits" in info and not 1 <= int(info["run_bits"]) <= 8:
        raise _corrupt("rle run field width out of range", "1..8", str(info["run_bits"]))
    if "bits" in info and not 1 <= int(info["bits"]) <= 8:
        raise _corrupt("codebook index width out of range", "1..8", str(info["bits"]))
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
    name, n = str(info["encoding"]), int(info["num_weights"])
    if shape is not None and math.prod(shape) != n:
        raise CompressionError(
            "weight blob does not hold a tile of the requested shape",
            expected=f"{math.prod(shape)} weights for shape {tuple(shape)}",
            found=f"{n} weights (header)",
            fix="decode with the tile's own shape",
        )
    body = np.frombuffer(bytes(blob), dtype=np.uint8)[int(info["header_bytes"]) :]
    zc = np.uint8(int(info.get("zero_code", 0)))
    mask_bytes = (n + 7) // 8
    if name == "dense":
        _need(body, n, n, "one byte per weight")
        out = body.copy()
    elif name == "bitmask":
        if len(body) < mask_bytes:
            _need(body, mask_bytes, n, "at least the bitmask")
        nz = _mask(body, n, "bitmask")
        nnz = int(nz.sum())
        _need(body, mask_bytes + nnz, n, f"{mask_bytes} mask + {nnz} non-zero codes")
        out = np.full(n, zc, dtype=np.uint8)
        out[nz] = body[mask_bytes:]
    elif name == "rle":
        width = int(info["run_bits"]) + 8
        pairs = int(info["pairs"])
        _need(body, (pairs * width + 7) // 8, n, f"{pairs} pairs of {width} bits")
        bits = np.unpackbits(body)
        if bits[pairs * width :].any():
            raise _corrupt("rle padding bits are set", "zero bits after the last pair", "set bits")
        fields = bits[: pairs * width].reshape(pairs, width)
        runs = np.packbits(np.pad(fields[:, :-8], ((0, 0), (8 - (width - 8), 0))), axis=1).reshape(-1)
        pos = np.cumsum(runs.astype(np.int64) + 1) - 1
        if pairs and pos[-1] >= n:
            raise _corrupt(
                f"rle pairs describe {int(pos[-1]) + 1} weights, header says {n}",
                f"at most {n} weights",
                f"{int(pos[-1]) + 1}",
            )
        out = np.full(n, zc, dtype=np.uint8)
        out[pos] = np.packbits(fields[:, -8:], axis=1).reshape(-1)
    else:
        bits = int(info["bits"])
        table_bytes = 1 << bits
        if name == "codebook":
            _need(body, table_bytes + (n * bits + 7) // 8, n, f"{table_bytes}-entry table + {n}×{bits}-bit indices")
            out = body[:table_bytes][_unpack(body[table_bytes:], n, bits)]
        else:
            if len(body) < mask_bytes:
                _need(body, mask_bytes, n, "at least the bitmask")
            nz = _mask(body, n, "bitmask")
            nnz = int(nz.sum())
            _need(
                body,
                mask_bytes + table_bytes + (nnz * bits + 7) // 8,
                n,
                f"{mask_bytes} mask + {table_bytes}-entry table + {nnz}×{bits}-bit indices",
            )
            table = body[mask_bytes : mask_bytes + table_bytes]
            out = np.full(n, zc, dtype=np.uint8)
            out[nz] = table[_unpack(body[mask_bytes + table_bytes :], nnz, bits)]
        used = (n if name == "codebook" else nnz) * bits
        packed = body[len(body) - (used + 7) // 8 :]
        if np.unpackbits(packed)[used:].any():
            raise _corrupt("codebook index padding bits are set", "zero bits after the last index", "set bits")
    out = out.view(out_dtype)
    return out if shape is None else out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


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
    _check_tile(arr.reshape(-1)[:0], zero_code)
    norm = _normalise_tiles(arr.shape, tiles)
    encs = tuple(encode_tile(arr[sl], zero_code, mode, run_bits=run_bits, codebook_bits=codebook_bits) for sl in norm)
    return CompressedWeights(tuple(arr.shape), str(arr.dtype), int(zero_code), norm, encs)


def decompress_layer(compressed: CompressedWeights) -> np.ndarray:
    """Rebuild the exact weight array from :func:`compress_layer`'s output."""
    out = np.empty(compressed.shape, dtype=compressed.dtype)
    for sl, enc in zip(compressed.tiles, compressed.encodings, strict=True):
        out[sl] = decode(enc.blob, compressed.dtype, shape=out[sl].shape)
    return out
