"""The :class:`Multiplier` value object: a 256×256 product table plus metadata and error metrics.

Conventions (DESIGN §3): the table row is the **activation** byte (first operand of the C model),
the column is the **weight** byte (second operand). For signed multipliers both operands are int8
and the table is indexed by ``byte & 0xFF`` (the two's-complement byte).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from approxtvm.errors import MultiplierError

#: EvoApproxLib normalises MAE% and WCE% by 2^(2n) = 65536 for n = 8, signed and unsigned alike.
EVOAPPROX_NORMALISER: int = 1 << 16


def operand_values(signed: bool) -> np.ndarray:
    """Integer value of each operand byte 0..255 (int64).

    Parameters
    ----------
    signed
        ``True``: byte ``i`` is the int8 ``i - 256`` for ``i >= 128``; ``False``: byte ``i`` is ``i``.
    """
    v = np.arange(256, dtype=np.int64)
    if signed:
        v = np.where(v >= 128, v - 256, v)
    return v


def exact_table(signed: bool) -> np.ndarray:
    """The exact product table (int32, 256×256), row = activation byte, column = weight byte."""
    v = operand_values(signed)
    return (v[:, None] * v[None, :]).astype(np.int32)


@dataclass(frozen=True)
class ErrorMetrics:
    """Error metrics of a multiplier over all 65,536 operand pairs (EvoApproxLib definitions).

    ``e(a, b) = M(a, b) - a·b``; relative errors are taken over the pairs with ``a·b != 0``;
    percentages of MAE/WCE are normalised by 2^16 as EvoApproxLib does.

    Attributes
    ----------
    mae, wce, mse, bias
        Mean absolute error, worst-case absolute error, mean squared error, mean signed error
        (all in product units).
    mae_pct, wce_pct
        ``100 · MAE / 2^16`` and ``100 · WCE / 2^16``.
    mre_pct, wcre_pct
        Mean and worst-case relative error in percent (over ``a·b != 0``).
    ep_pct
        Error probability: percentage of pairs with ``e != 0``.
    """

    mae: float
    wce: int
    mse: float
    bias: float
    mae_pct: float
    wce_pct: float
    mre_pct: float
    wcre_pct: float
    ep_pct: float

    @staticmethod
    def of_table(table: np.ndarray, signed: bool) -> ErrorMetrics:
        """Compute the metrics of ``table`` (int 256×256) against the exact product."""
        t = np.asarray(table, dtype=np.int64)
        exact = exact_table(signed).astype(np.int64)
        e = t - exact
        ae = np.abs(e)
        nz = exact != 0
        rel = ae[nz] / np.abs(exact[nz])
        n = e.size
        return ErrorMetrics(
            mae=float(ae.mean()),
            wce=int(ae.max()),
            mse=float((e.astype(np.float64) ** 2).mean()),
            bias=float(e.mean()),
            mae_pct=float(100.0 * ae.mean() / EVOAPPROX_NORMALISER),
            wce_pct=float(100.0 * ae.max() / EVOAPPROX_NORMALISER),
            mre_pct=float(100.0 * rel.mean()),
            wcre_pct=float(100.0 * rel.max()),
            ep_pct=float(100.0 * np.count_nonzero(e) / n),
        )


def _check_table(name: str, table: np.ndarray) -> np.ndarray:
    arr = np.asarray(table)
    if arr.shape != (256, 256):
        raise MultiplierError(
            f"multiplier {name!r}: the product table has the wrong shape",
            expected="a 256×256 table (row = activation byte, column = weight byte)",
            found=f"shape {arr.shape}",
            fix="build the table for all 256×256 operand bytes",
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise MultiplierError(
            f"multiplier {name!r}: the product table is not integer",
            expected="an integer dtype",
            found=str(arr.dtype),
            fix="round the table to integers before building a Multiplier",
        )
    a64 = arr.astype(np.int64)
    if a64.min() < -(2**31) or a64.max() >= 2**31:
        raise MultiplierError(
            f"multiplier {name!r}: table values do not fit int32",
            expected="values in the int32 range",
            found=f"range [{a64.min()}, {a64.max()}]",
        )
    out = np.ascontiguousarray(arr, dtype=np.int32).copy()
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Multiplier:
    """An 8×8-bit (approximate) multiplier given by its full product table.

    Attributes
    ----------
    name
        Identifier (catalogue name such as ``mul8u_2HH`` or a family spec such as ``bam:h=4,v=0``).
    table
        int32 array (256, 256), read-only; ``table[a_byte, w_byte]`` is the product of activation
        ``a`` and weight ``w`` (bytes are ``value & 0xFF`` in signed mode).
    signed
        ``True`` for int8 × int8 operands, ``False`` for uint8 × uint8.
    source
        Where the table came from (``family``, ``lut:<path>``, ``c:<path>``, ``evoapprox``, ...).
    power_mw
        Power of the circuit in mW (45 nm, EvoApproxLib's synthesis) or an estimate; ``None`` if
        unknown. See :attr:`power_is_estimate`.
    area_um2
        Area in µm², ``None`` if unknown.
    citation
        Paper to cite for the circuit ("" if none).
    power_is_estimate
        ``True`` when ``power_mw`` comes from the project's estimate rule, not a publication.
    """

    name: str
    table: np.ndarray = field(repr=False)
    signed: bool
    source: str = "user"
    power_mw: float | None = None
    area_um2: float | None = None
    citation: str = ""
    power_is_estimate: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _check_table(self.name, self.table))

    # ------------------------------------------------------------------ identity
    @cached_property
    def table_hash(self) -> str:
        """sha256 (hex) of the little-endian int32 table bytes followed by ``b"s"``/``b"u"``."""
        h = hashlib.sha256(self.table.astype("<i4").tobytes())
        h.update(b"s" if self.signed else b"u")
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Multiplier):
            return NotImplemented
        return self.table_hash == other.table_hash and self.name == other.name

    def __hash__(self) -> int:
        return hash((self.name, self.table_hash))

    # ------------------------------------------------------------------ semantics
    @cached_property
    def metrics(self) -> ErrorMetrics:
        """Error metrics against the exact product (EvoApproxLib definitions)."""
        return ErrorMetrics.of_table(self.table, self.signed)

    @cached_property
    def is_exact(self) -> bool:
        """``True`` when the table equals ``a·b`` for all 65,536 pairs."""
        return bool(np.array_equal(self.table, exact_table(self.signed)))

    @cached_property
    def is_commutative(self) -> bool:
        """``True`` when ``M(a, b) == M(b, a)`` for all pairs."""
        return bool(np.array_equal(self.table, self.table.T))

    @property
    def operand_dtype(self) -> np.dtype:
        """numpy dtype of the operands: int8 (signed) or uint8."""
        return np.dtype(np.int8 if self.signed else np.uint8)

    def __call__(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Products ``M(a, b)`` (int32), broadcasting; ``a`` = activation, ``b`` = weight.

        Values must lie in the operand range (0..255 unsigned, -128..127 signed).
        """
        lo, hi = (-128, 127) if self.signed else (0, 255)
        aa = np.asarray(a)
        bb = np.asarray(b)
        for label, v in (("activation", aa), ("weight", bb)):
            if v.size and (int(v.min()) < lo or int(v.max()) > hi):
                raise MultiplierError(
                    f"multiplier {self.name!r}: {label} operand out of range",
                    expected=f"values in [{lo}, {hi}] ({'signed' if self.signed else 'unsigned'} 8-bit)",
                    found=f"range [{int(v.min())}, {int(v.max())}]",
                    fix="quantize the operands to 8 bits first",
                )
        ia = aa.astype(np.int64) & 0xFF
        ib = bb.astype(np.int64) & 0xFF
        return self.table[ia, ib]

    def energy_ratio(self, reference: Multiplier | None = None) -> float | None:
        """``power_mw / reference.power_mw`` (reference: the exact multiplier of the same signedness).

        Returns ``None`` when a power figure is missing.
        """
        from approxtvm.runtime.multipliers.energy import exact_power_mw

        ref = reference.power_mw if reference is not None else exact_power_mw(self.signed)
        if self.power_mw is None or not ref:
            return None
        return self.power_mw / ref

    def transposed(self, name: str | None = None) -> Multiplier:
        """The same circuit with operands swapped (``table.T``)."""
        return Multiplier(
            name=name or f"{self.name}^T",
            table=self.table.T,
            signed=self.signed,
            source=self.source,
            power_mw=self.power_mw,
            area_um2=self.area_um2,
            citation=self.citation,
            power_is_estimate=self.power_is_estimate,
        )
