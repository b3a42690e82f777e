"""EvoApproxLib's 8×8 product tables shipped with the package, compact and checked on load.

Every table of the catalogue (55 unsigned and 13 signed circuits of the v1 and v2022 Pareto sets,
66 distinct tables behind 103 catalogue names) is stored as its **error table**
``e(a, b) = M(a, b) − a·b`` (int32, row = activation byte, column = weight byte, signed operands
indexed by ``byte & 0xFF``), split into its four little-endian byte planes and compressed with lzma
(``evoapprox_tables/<first 16 hex digits of the catalogue sha256>.xz``). Error tables are mostly
small numbers, so the high byte planes are nearly constant and compress to almost nothing: the 66
files take about 1 MB against 10.6 MB for the raw ``.bin`` tables.

On load a table is checked twice: its ``.bin`` bytes must hash to the catalogue's ``lut_sha256``, and
its error metrics must reproduce the published figures of the catalogue at their printed precision.
The tables were generated from EvoApproxLib's C models (MIT licence, © 2018 EHW@FIT, Brno University
of Technology) by ``scripts/build_evoapprox_tables.py``, which regenerates and verifies them bit for
bit; no C code of the library is shipped.
"""

from __future__ import annotations

import lzma
import math
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.lutio import table_file_sha256
from approxtvm.runtime.multipliers.multiplier import ErrorMetrics, exact_table

#: Package folder (under ``approxtvm.runtime.multipliers``) holding the compressed error tables.
TABLES_DIR: str = "evoapprox_tables"

#: Published metric columns checked on load (all are error figures computed from the table).
CHECKED_METRICS: tuple[str, ...] = ("mae_pct", "wce_pct", "ep_pct", "mre_pct", "wcre_pct", "mse")

_PLANES = 4
_ENTRIES = 65536


def table_file_name(lut_sha256: str) -> str:
    """File name of a table in :data:`TABLES_DIR`: content-addressed, so aliases share one file."""
    return f"{lut_sha256[:16]}.xz"


def encode_error_table(table: np.ndarray, signed: bool) -> bytes:
    """Compress a product table as its lzma-compressed, byte-plane-split error table.

    Parameters
    ----------
    table
        int (256, 256) product table, row = activation byte, column = weight byte.
    signed
        Operand signedness (the exact product is taken over int8 values when ``True``).
    """
    err = np.asarray(table, dtype=np.int64) - exact_table(signed).astype(np.int64)
    planes = err.astype("<i4").reshape(-1).view(np.uint8).reshape(_ENTRIES, _PLANES).T
    return lzma.compress(np.ascontiguousarray(planes).tobytes(), preset=9 | lzma.PRESET_EXTREME)


def decode_error_table(blob: bytes, signed: bool, *, origin: str) -> np.ndarray:
    """Inverse of :func:`encode_error_table`: the int32 (256, 256) product table.

    Raises
    ------
    MultiplierError
        The data is not an lzma stream of 4 × 65536 bytes.
    """
    try:
        raw = lzma.decompress(blob)
    except lzma.LZMAError as exc:
        raise MultiplierError(
            f"{origin}: the packaged table is not a valid lzma stream",
            expected="an xz/lzma stream written by scripts/build_evoapprox_tables.py",
            found=str(exc),
            fix="reinstall approxtvm or regenerate the tables with scripts/build_evoapprox_tables.py",
        ) from None
    if len(raw) != _PLANES * _ENTRIES:
        raise MultiplierError(
            f"{origin}: the packaged table has the wrong size",
            expected=f"{_PLANES * _ENTRIES} bytes (4 byte planes of 65536 int32 errors)",
            found=f"{len(raw)} bytes",
            fix="regenerate the tables with scripts/build_evoapprox_tables.py",
        )
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(_PLANES, _ENTRIES)
    err = np.ascontiguousarray(planes.T).view("<i4").reshape(256, 256)
    return (err.astype(np.int64) + exact_table(signed)).astype(np.int32)


def _tables_root() -> Traversable:
    return resources.files("approxtvm.runtime.multipliers").joinpath(TABLES_DIR)


def packaged_table_available(lut_sha256: str) -> bool:
    """``True`` when the package ships the table with this catalogue hash."""
    return _tables_root().joinpath(table_file_name(lut_sha256)).is_file()


def _half_unit(printed: str) -> float:
    """Half a unit of the last printed digit (``"0.057"`` → 5e-4, ``"47164.981e4"`` → 5)."""
    mant, _, exp = printed.lower().partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (int(exp or 0) - decimals)


def _slip_mae_pct(mae: float) -> float:
    """MAE% as the library derived it for its known slips: from the MAE printed at one decimal."""
    return 100.0 * round(mae, 1) / 65536


def metric_mismatches(metrics: ErrorMetrics, printed: dict[str, str], slips: frozenset[str]) -> list[str]:
    """Published figures that ``metrics`` does not reproduce at their printed precision.

    Parameters
    ----------
    metrics
        Metrics computed from the table.
    printed
        Published figures as printed (column → text); empty texts are not checked.
    slips
        Columns the library is known to have printed from a rounded intermediate (``mae_pct`` of
        three signed circuits: MAE% computed from the MAE printed at one decimal); for those the
        published figure must equal that derivation instead.
    """
    bad = []
    for col in CHECKED_METRICS:
        text = printed.get(col, "")
        if not text:
            continue
        ours = _slip_mae_pct(metrics.mae) if col in slips else float(getattr(metrics, col))
        tol = _half_unit(text) * (1 + 1e-9) + 1e-12
        if not math.isclose(ours, float(text), abs_tol=tol, rel_tol=0.0):
            bad.append(f"{col}: published {text}, table gives {ours:.6g}")
    return bad


def load_packaged_table(
    lut_sha256: str, *, signed: bool, key: str, printed: dict[str, str], slips: frozenset[str]
) -> np.ndarray:
    """The shipped product table of one catalogue entry, checked against its hash and figures.

    Parameters
    ----------
    lut_sha256
        Catalogue hash of the table's ``.bin`` bytes.
    signed
        Operand signedness.
    key
        ``release/name`` (for messages).
    printed, slips
        Published figures and known slips (see :func:`metric_mismatches`).

    Raises
    ------
    MultiplierError
        The file is missing or corrupt, its hash differs from the catalogue, or its metrics do not
        reproduce the published figures.
    """
    f = _tables_root().joinpath(table_file_name(lut_sha256))
    if not f.is_file():
        raise MultiplierError(
            f"the packaged table of {key} is missing",
            expected=f"{TABLES_DIR}/{table_file_name(lut_sha256)} in the approxtvm package",
            found="no such file",
            fix="reinstall approxtvm or run scripts/build_evoapprox_tables.py",
        )
    table = decode_error_table(f.read_bytes(), signed, origin=f"packaged table of {key}")
    got = table_file_sha256(table, signed)
    if got != lut_sha256:
        raise MultiplierError(
            f"the packaged table of {key} does not match the catalogue",
            expected=f"sha256 {lut_sha256[:16]}…",
            found=f"sha256 {got[:16]}…",
            fix="the package data is corrupted: reinstall or run scripts/build_evoapprox_tables.py",
        )
    bad = metric_mismatches(ErrorMetrics.of_table(table, signed), printed, slips)
    if bad:
        raise MultiplierError(
            f"the packaged table of {key} does not reproduce its published figures",
            expected="the catalogue's MAE%, WCE%, EP%, MRE%, WCRE% and MSE at their printed precision",
            found="; ".join(bad),
            fix="the catalogue or the table is wrong: run scripts/build_evoapprox_tables.py --check",
        )
    return table


__all__ = [
    "CHECKED_METRICS",
    "TABLES_DIR",
    "decode_error_table",
    "encode_error_table",
    "load_packaged_table",
    "metric_mismatches",
    "packaged_table_available",
    "table_file_name",
]
