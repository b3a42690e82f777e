"""The tile encodings, one table entry each: header fields, analytic size, encoder, decoder.

Each encoding's whole logic sits in one section below and ends in its :class:`Codec` entry;
:data:`CODECS` lists them in id order (the id is stored in the blob's first byte, see
:mod:`.codecs` for the blob layout). The blob layout of each encoding is in :mod:`.codecs`'
docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from approxtvm.errors import CompressionError
from approxtvm.targets.vacc.compression.bits import (
    corrupt,
    distinct,
    need,
    pack,
    read_mask,
    table_bits,
    unpack,
    varint,
    varint_len,
)

__all__ = ["CODECS", "Codec", "HeaderField", "Tile", "TileStats", "rle_pairs"]


@dataclass(frozen=True, slots=True)
class HeaderField:
    """A parameter stored after the element count.

    Attributes
    ----------
    name
        Key in :func:`~approxtvm.targets.vacc.compression.describe`'s result.
    label
        Name of the field in a truncation error.
    varint
        Stored as a varint (else one byte).
    limits
        Inclusive valid range, checked when a blob is parsed (``None``: any value).
    what
        What the field is, for the out-of-range error.
    """

    name: str
    label: str = ""
    varint: bool = False
    limits: tuple[int, int] | None = None
    what: str = ""


@dataclass(frozen=True, slots=True)
class TileStats:
    """What the analytic sizes need, counted once per tile (all counts in weights or pairs)."""

    n: int
    nnz: int
    distinct_all: int
    distinct_nonzero: int
    rle_pairs: int
    run_bits: int


@dataclass(frozen=True, slots=True)
class Tile:
    """The operands of an encoder.

    Attributes
    ----------
    raw
        The codes as stored bytes (uint8 view), flat.
    nonzero
        ``raw != zero``.
    zero
        The zero code as a stored byte.
    run_bits
        Width of the ``rle`` run field.
    codebook_bits
        Forced codebook index width, ``None`` = the smallest that fits.
    """

    raw: np.ndarray
    nonzero: np.ndarray
    zero: int
    run_bits: int
    codebook_bits: int | None


#: ``encode(tile) -> (params, metadata, payload)``: the header parameters, then the body split
#: into metadata (masks, run fields, tables) and payload (stored weight values).
Encoder = Callable[[Tile], tuple[bytes, bytes, bytes]]
#: ``decode(body, n, header) -> n stored bytes``; raises :class:`CompressionError` on a bad body.
Decoder = Callable[[np.ndarray, int, Mapping[str, int]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Codec:
    """One encoding.

    Attributes
    ----------
    name
        Encoding name.
    header
        Parameters stored after the element count, in order.
    size
        Blob bytes after the common header (version byte + count), computed without encoding.
    encode, decode
        See :data:`Encoder` and :data:`Decoder`.
    """

    name: str
    header: tuple[HeaderField, ...]
    size: Callable[[TileStats], int]
    encode: Encoder
    decode: Decoder


_ZERO = HeaderField("zero_code", "zero_code")
_BITS = HeaderField("bits", "bits", limits=(1, 8), what="codebook index width")


def _mask_bytes(n: int) -> int:
    return (n + 7) // 8


def _zero_filled(n: int, header: Mapping[str, int]) -> np.ndarray:
    return np.full(n, np.uint8(int(header.get("zero_code", 0))), dtype=np.uint8)


def _leading_mask(body: np.ndarray, n: int) -> np.ndarray:
    if len(body) < _mask_bytes(n):
        need(body, _mask_bytes(n), n, "at least the bitmask")
    return read_mask(body, n, "bitmask")


# ------------------------------------------------------------------------------------ dense
def _dense_encode(t: Tile) -> tuple[bytes, bytes, bytes]:
    return b"", b"", t.raw.tobytes()


def _dense_decode(body: np.ndarray, n: int, _: Mapping[str, int]) -> np.ndarray:
    need(body, n, n, "one byte per weight")
    return body.copy()


DENSE = Codec("dense", (), lambda s: s.n, _dense_encode, _dense_decode)


# ---------------------------------------------------------------------------------- bitmask
def _bitmask_encode(t: Tile) -> tuple[bytes, bytes, bytes]:
    return bytes([t.zero]), np.packbits(t.nonzero).tobytes(), t.raw[t.nonzero].tobytes()


def _bitmask_decode(body: np.ndarray, n: int, header: Mapping[str, int]) -> np.ndarray:
    nz = _leading_mask(body, n)
    nnz = int(nz.sum())
    need(body, _mask_bytes(n) + nnz, n, f"{_mask_bytes(n)} mask + {nnz} non-zero codes")
    out = _zero_filled(n, header)
    out[nz] = body[_mask_bytes(n) :]
    return out


BITMASK = Codec("bitmask", (_ZERO,), lambda s: 1 + _mask_bytes(s.n) + s.nnz, _bitmask_encode, _bitmask_decode)


# -------------------------------------------------------------------------------------- rle
def rle_pairs(nonzero: np.ndarray, run_bits: int) -> tuple[np.ndarray, np.ndarray]:
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


def _rle_size(s: TileStats) -> int:
    return 2 + varint_len(s.rle_pairs) + (s.rle_pairs * (s.run_bits + 8) + 7) // 8


def _rle_encode(t: Tile) -> tuple[bytes, bytes, bytes]:
    runs, src = rle_pairs(t.nonzero, t.run_bits)
    codes = np.full(len(runs), t.zero, dtype=np.uint8)
    codes[src >= 0] = t.raw[src[src >= 0]]
    run_field = np.unpackbits(runs[:, None], axis=1)[:, 8 - t.run_bits :]
    code_field = np.unpackbits(codes[:, None], axis=1)
    body = np.packbits(np.hstack([run_field, code_field]).reshape(-1)).tobytes()
    params = bytes([t.zero, t.run_bits]) + varint(len(runs))
    return params, body[: len(body) - len(runs)], body[len(body) - len(runs) :]


def _rle_decode(body: np.ndarray, n: int, header: Mapping[str, int]) -> np.ndarray:
    width = int(header["run_bits"]) + 8
    pairs = int(header["pairs"])
    need(body, (pairs * width + 7) // 8, n, f"{pairs} pairs of {width} bits")
    bits = np.unpackbits(body)
    if bits[pairs * width :].any():
        raise corrupt("rle padding bits are set", "zero bits after the last pair", "set bits")
    fields = bits[: pairs * width].reshape(pairs, width)
    runs = np.packbits(np.pad(fields[:, :-8], ((0, 0), (8 - (width - 8), 0))), axis=1).reshape(-1)
    pos = np.cumsum(runs.astype(np.int64) + 1) - 1
    if pairs and pos[-1] >= n:
        raise corrupt(
            f"rle pairs describe {int(pos[-1]) + 1} weights, header says {n}",
            f"at most {n} weights",
            f"{int(pos[-1]) + 1}",
        )
    out = _zero_filled(n, header)
    out[pos] = np.packbits(fields[:, -8:], axis=1).reshape(-1)
    return out


RLE = Codec(
    "rle",
    (
        _ZERO,
        HeaderField("run_bits", "run_bits", limits=(1, 8), what="rle run field width"),
        HeaderField("pairs", "pair count", varint=True),
    ),
    _rle_size,
    _rle_encode,
    _rle_decode,
)


# --------------------------------------------------------------------- codebook (both kinds)
def _codebook_body(values: np.ndarray, bits: int | None, what: str) -> tuple[int, bytes, bytes]:
    """(bits, table bytes, packed index bytes) of ``values`` (stored bytes, uint8)."""
    table = distinct(values)
    fits = table_bits(len(table))
    if bits is None:
        bits = fits
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
    return bits, padded.tobytes(), pack(lut[values], bits).tobytes()


def _check_index_padding(body: np.ndarray, indices: int, bits: int) -> None:
    used = indices * bits
    packed = body[len(body) - (used + 7) // 8 :]
    if np.unpackbits(packed)[used:].any():
        raise corrupt("codebook index padding bits are set", "zero bits after the last index", "set bits")


def _codebook_size(s: TileStats) -> int:
    b = table_bits(s.distinct_all)
    return 1 + (1 << b) + (s.n * b + 7) // 8


def _codebook_encode(t: Tile) -> tuple[bytes, bytes, bytes]:
    bits, table, payload = _codebook_body(t.raw, t.codebook_bits, "tile")
    return bytes([bits]), table, payload


def _codebook_decode(body: np.ndarray, n: int, header: Mapping[str, int]) -> np.ndarray:
    bits = int(header["bits"])
    table_bytes = 1 << bits
    need(body, table_bytes + (n * bits + 7) // 8, n, f"{table_bytes}-entry table + {n}×{bits}-bit indices")
    out = body[:table_bytes][unpack(body[table_bytes:], n, bits)]
    _check_index_padding(body, n, bits)
    return out


CODEBOOK = Codec("codebook", (_BITS,), _codebook_size, _codebook_encode, _codebook_decode)


def _codebook_bitmask_size(s: TileStats) -> int:
    b = table_bits(s.distinct_nonzero)
    return 2 + _mask_bytes(s.n) + (1 << b) + (s.nnz * b + 7) // 8


def _codebook_bitmask_encode(t: Tile) -> tuple[bytes, bytes, bytes]:
    bits, table, payload = _codebook_body(t.raw[t.nonzero], t.codebook_bits, "tile's non-zero codes")
    return bytes([t.zero, bits]), np.packbits(t.nonzero).tobytes() + table, payload


def _codebook_bitmask_decode(body: np.ndarray, n: int, header: Mapping[str, int]) -> np.ndarray:
    bits = int(header["bits"])
    table_bytes = 1 << bits
    mask_bytes = _mask_bytes(n)
    nz = _leading_mask(body, n)
    nnz = int(nz.sum())
    need(
        body,
        mask_bytes + table_bytes + (nnz * bits + 7) // 8,
        n,
        f"{mask_bytes} mask + {table_bytes}-entry table + {nnz}×{bits}-bit indices",
    )
    table = body[mask_bytes : mask_bytes + table_bytes]
    out = _zero_filled(n, header)
    out[nz] = table[unpack(body[mask_bytes + table_bytes :], nnz, bits)]
    _check_index_padding(body, nnz, bits)
    return out


CODEBOOK_BITMASK = Codec(
    "codebook_bitmask", (_ZERO, _BITS), _codebook_bitmask_size, _codebook_bitmask_encode, _codebook_bitmask_decode
)

#: Every encoding, in id order (the id is the position; stored in the blob's first byte).
CODECS: tuple[Codec, ...] = (DENSE, BITMASK, RLE, CODEBOOK, CODEBOOK_BITMASK)
