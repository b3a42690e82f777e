"""Product-table files in the TFApprox / EvoApproxLib ``.bin`` layout.

65,536 entries, row-major, no header, ``index = row·256 + col``:

* unsigned: uint16 little-endian, 131,072 bytes; row = activation ``a``, col = weight ``b``;
* signed: int32 little-endian, 262,144 bytes; row = ``a & 0xFF``, col = ``b & 0xFF``.

TorchApprox and AdaPT store the transpose, ``lut[weight][activation]``: load those with
``transposed=True``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.multiplier import Multiplier

UNSIGNED_BYTES: int = 65536 * 2
SIGNED_BYTES: int = 65536 * 4


def table_file_bytes(table: np.ndarray, signed: bool) -> bytes:
    """Bytes of ``table`` in the ``.bin`` layout (raises if an unsigned value does not fit uint16)."""
    t = np.asarray(table, dtype=np.int64)
    if signed:
        return t.astype("<i4").tobytes()
    if t.min() < 0 or t.max() > 0xFFFF:
        raise MultiplierError(
            "unsigned table values do not fit the uint16 .bin layout",
            expected="values in [0, 65535]",
            found=f"range [{t.min()}, {t.max()}]",
            fix="save it as a signed (int32) table",
        )
    return t.astype("<u2").tobytes()


def table_file_sha256(table: np.ndarray, signed: bool) -> str:
    """sha256 of the ``.bin`` bytes (the catalogue's ``lut_sha256``)."""
    return hashlib.sha256(table_file_bytes(table, signed)).hexdigest()


def decode_table(data: bytes, *, signed: bool | None, origin: str, transposed: bool = False) -> tuple[np.ndarray, bool]:
    """Decode ``.bin`` bytes into an int32 (256, 256) table; infer signedness from the size if ``None``.

    Raises
    ------
    MultiplierError
        Wrong size for the requested signedness, or a size that is neither layout.
    """
    n = len(data)
    if signed is None:
        if n == UNSIGNED_BYTES:
            signed = False
        elif n == SIGNED_BYTES:
            signed = True
    want = SIGNED_BYTES if signed else UNSIGNED_BYTES
    if signed is None or n != want:
        kind = {UNSIGNED_BYTES: "an unsigned (uint16) table", SIGNED_BYTES: "a signed (int32) table"}.get(
            n, "neither layout"
        )
        if signed is None:
            expected = f"{UNSIGNED_BYTES} bytes (unsigned, uint16 LE) or {SIGNED_BYTES} bytes (signed, int32 LE)"
            fix = "export all 256×256 products, row = activation, in one of the two layouts"
        else:
            layout = "a signed (int32 LE)" if signed else "an unsigned (uint16 LE)"
            expected = f"{want} bytes for {layout} table"
            fix = (
                "drop the signedness option to infer it from the size, or pass the other signedness"
                if n in (UNSIGNED_BYTES, SIGNED_BYTES)
                else "export all 256×256 products, row = activation, in the .bin layout"
            )
        raise MultiplierError(
            f"{origin}: wrong table file size", expected=expected, found=f"{n} bytes ({kind})", fix=fix
        )
    arr = np.frombuffer(data, dtype="<i4" if signed else "<u2").astype(np.int32).reshape(256, 256)
    if transposed:
        arr = arr.T
    return np.ascontiguousarray(arr), bool(signed)


def load_lut(
    path: str | Path, *, signed: bool | None = None, transposed: bool = False, name: str | None = None
) -> Multiplier:
    """Load a ``.bin`` product table.

    Parameters
    ----------
    path
        The file.
    signed
        Expected signedness; ``None`` infers it from the size (131,072 B unsigned, 262,144 B signed).
    transposed
        ``True`` for files indexed ``lut[weight][activation]`` (TorchApprox, AdaPT).
    name
        Multiplier name (default: the file stem, e.g. ``mul8u_2HH``).
    """
    p = Path(path)
    if not p.is_file():
        raise MultiplierError(
            f"table file {str(p)!r} not found",
            expected="an existing .bin file",
            found="no such file",
            fix="check the path",
        )
    table, sgn = decode_table(p.read_bytes(), signed=signed, origin=f"table file {str(p)!r}", transposed=transposed)
    return Multiplier(
        name=name or p.stem, table=table, signed=sgn, source=f"lut:{p}{' (transposed)' if transposed else ''}"
    )


def save_lut(mult: Multiplier, path: str | Path) -> Path:
    """Write ``mult`` in the ``.bin`` layout of its signedness; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(table_file_bytes(mult.table, mult.signed))
    return p
