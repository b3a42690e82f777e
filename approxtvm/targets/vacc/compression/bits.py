"""Bit-level pieces shared by the tile codecs: varints, packed bit fields, bounds-checked reads.

Every read checks lengths and padding so that a truncated or corrupted blob raises
:class:`~approxtvm.errors.CompressionError` naming the field, never an ``IndexError``.
"""

from __future__ import annotations

import math

import numpy as np

from approxtvm.errors import CompressionError


def varint(n: int) -> bytes:
    """``n`` as an unsigned LEB128 varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def varint_len(n: int) -> int:
    """Bytes of :func:`varint` ``(n)``."""
    return max(1, (n.bit_length() + 6) // 7)


def pack(values: np.ndarray, width: int) -> np.ndarray:
    """Pack 8-bit values as ``width``-bit fields (MSB first) into bytes."""
    if width == 8:
        return values.astype(np.uint8, copy=False)
    bits = np.unpackbits(values.astype(np.uint8, copy=False)[:, None], axis=1)[:, 8 - width :]
    return np.packbits(bits.reshape(-1))


def unpack(body: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack` for ``count`` fields (body length already checked)."""
    if width == 8:
        return body[:count]
    bits = np.unpackbits(body)[: count * width].reshape(count, width)
    return np.packbits(np.pad(bits, ((0, 0), (8 - width, 0))), axis=1).reshape(-1)


def table_bits(n_values: int) -> int:
    """Smallest index width b ≥ 1 with 2^b ≥ n_values."""
    return max(1, math.ceil(math.log2(max(n_values, 1))))


def distinct(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct values (as stored bytes, uint8) via a 256-bin histogram."""
    return np.flatnonzero(np.bincount(codes.view(np.uint8), minlength=256)).astype(np.uint8)


def corrupt(what: str, expected: str, found: str) -> CompressionError:
    """The error of a blob that does not parse."""
    return CompressionError(
        f"corrupted weight blob: {what}",
        expected=expected,
        found=found,
        fix="re-encode the tile; the blob was truncated or overwritten",
    )


class Reader:
    """Bounds-checked cursor over a blob."""

    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos = blob, 0

    def byte(self, field: str) -> int:
        """The next byte (``field`` names it in the error if the blob ends)."""
        if self.pos >= len(self.blob):
            raise corrupt(
                f"blob ends before the {field} field",
                f"a {field} byte at offset {self.pos}",
                f"a {len(self.blob)}-byte blob",
            )
        self.pos += 1
        return self.blob[self.pos - 1]

    def varint(self, field: str) -> int:
        """The next varint (at most 5 bytes)."""
        value = 0
        for shift in range(0, 35, 7):
            b = self.byte(field)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise corrupt(f"{field} varint is longer than 5 bytes", "a count below 2^35", "an endless varint")


def read_mask(body: np.ndarray, n: int, what: str) -> np.ndarray:
    """The ``n``-bit mask at the start of ``body``; set padding bits are corruption."""
    bits = np.unpackbits(body[: (n + 7) // 8])
    if bits[n:].any():
        raise corrupt(
            f"{what} padding bits are set", "zero bits after the last weight", f"{int(bits[n:].sum())} set bit(s)"
        )
    return bits[:n].astype(bool)


def need(body: np.ndarray, expected: int, n: int, detail: str) -> None:
    """``body`` must be exactly ``expected`` bytes long."""
    if len(body) != expected:
        raise corrupt(
            f"header says {n} weights, payload has {len(body)} bytes, expected {expected}",
            f"{expected} body bytes ({detail})",
            f"{len(body)} bytes",
        )
