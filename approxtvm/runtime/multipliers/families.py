"""Parametric families of approximate multipliers implemented by the project.

Spec syntax: ``family`` or ``family:key=value,key=value`` (``exact``, ``trunc:k=6``,
``optrunc:ka=2,kb=3``, ``bam:h=4,v=0``, ``drum:k=4``, ``mitchell``, ``kulkarni``).

Signed variants (int8 × int8) are built **sign-magnitude**: ``M(a, b) = sgn(a)·sgn(b)·M_u(|a|, |b|)``
(|−128| = 128 fits the unsigned 8-bit datapath), as DRUM and the logarithmic multipliers do,
except the two truncation families, which act on two's-complement values (arithmetic shifts), as
truncating a Baugh-Wooley array does.

Power: none of these circuits has a published 45 nm figure comparable to EvoApproxLib's, so every
family carries an **estimate** (``power_is_estimate=True``) from :mod:`.energy`:
``P = P(exact) · surviving partial-product bits / 64``, with the family-specific count documented
on each builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.energy import estimate_area_um2, estimate_power_mw
from approxtvm.runtime.multipliers.multiplier import Multiplier, operand_values


def _sign_magnitude(unsigned_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], signed: bool) -> np.ndarray:
    """Table from an unsigned function of magnitudes (broadcast arrays), sign restored if signed."""
    vals = operand_values(signed)
    a = np.abs(vals)[:, None]
    b = np.abs(vals)[None, :]
    t = unsigned_fn(a, b).astype(np.int64)
    if signed:
        t = np.sign(vals)[:, None] * np.sign(vals)[None, :] * t
    return t


# --------------------------------------------------------------------------- families
def exact_fn(signed: bool) -> tuple[np.ndarray, float]:
    """``a·b``; 64 partial-product bits."""
    v = operand_values(signed)
    return v[:, None] * v[None, :], 64.0


def trunc_fn(signed: bool, k: int) -> tuple[np.ndarray, float]:
    """Product truncation: the exact product with its ``k`` least significant bits cleared.

    Two's complement: ``(a·b >> k) << k`` (floor). Estimate: the partial-product bits in columns
    ``≥ k`` survive, ``#{(i, j): i + j ≥ k}``.
    """
    _check_range("trunc", "k", k, 0, 16)
    v = operand_values(signed)
    t = ((v[:, None] * v[None, :]) >> k) << k
    return t, float(sum(1 for i in range(8) for j in range(8) if i + j >= k))


def optrunc_fn(signed: bool, ka: int, kb: int) -> tuple[np.ndarray, float]:
    """Operand truncation: ``ka`` LSBs of the activation and ``kb`` of the weight cleared first.

    Two's complement (floor). Estimate: ``(8 − ka)·(8 − kb)`` partial-product bits.
    """
    _check_range("optrunc", "ka", ka, 0, 8)
    _check_range("optrunc", "kb", kb, 0, 8)
    v = operand_values(signed)
    a = (v >> ka) << ka
    b = (v >> kb) << kb
    return a[:, None] * b[None, :], float((8 - ka) * (8 - kb))


def bam_fn(signed: bool, h: int, v: int) -> tuple[np.ndarray, float]:
    """Broken-array multiplier (Mahdiani et al., IEEE TCAS-I 57(4), 2010), on magnitudes.

    The carry-save array omits the partial-product bits ``a_i·b_j`` with ``i + j < h`` (the cells
    right of the vertical break line, ``h`` columns) and those of the ``v`` lowest weight rows
    (``j < v``, above the horizontal break line). ``bam:h=0,v=0`` is exact. Estimate: the
    surviving ``a_i·b_j``.
    """
    _check_range("bam", "h", h, 0, 15)
    _check_range("bam", "v", v, 0, 8)
    keep = [(i, j) for i in range(8) for j in range(8) if i + j >= h and j >= v]

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.int64)
        for i, j in keep:
            out += (((a >> i) & 1) * ((b >> j) & 1)) << (i + j)
        return out

    return _sign_magnitude(fn, signed), float(len(keep))


def _drum_operand(x: np.ndarray, k: int) -> np.ndarray:
    """DRUM operand: ``k`` bits from the leading one, LSB of the kept segment forced to 1."""
    x = np.asarray(x, dtype=np.int64)
    msb = np.where(x > 0, np.floor(np.log2(np.maximum(x, 1))).astype(np.int64), 0)
    sh = np.maximum(msb - (k - 1), 0)
    kept = (x >> sh) | (sh > 0).astype(np.int64)
    return kept << sh


def drum_fn(signed: bool, k: int) -> tuple[np.ndarray, float]:
    """DRUM (Hashemi, Bahar, Reda, ICCAD 2015): dynamic range unbiased multiplier.

    Each magnitude keeps ``k`` bits from its leading one, the lowest kept bit is set to 1
    (unbiasing), and the ``k×k`` product is shifted back. Operands below ``2^k`` are exact.
    Estimate: ``k²`` partial-product bits (the leading-one detectors and shifters are not counted).
    """
    _check_range("drum", "k", k, 2, 8)
    return _sign_magnitude(lambda a, b: _drum_operand(a, k) * _drum_operand(b, k), signed), float(k * k)


def mitchell_fn(signed: bool) -> tuple[np.ndarray, float]:
    """Mitchell's logarithmic multiplier (Mitchell, IRE Trans. Electronic Computers, 1962).

    With ``a = 2^k1 + m1`` and ``b = 2^k2 + m2`` (``m < 2^k``), ``log2`` is approximated by
    ``k + m/2^k``; the antilogarithm gives, exactly in integers,
    ``2^(k1+k2) + m1·2^k2 + m2·2^k1`` when ``m1·2^k2 + m2·2^k1 < 2^(k1+k2)``, else
    ``2·(m1·2^k2 + m2·2^k1)``; zero operands give 0. Always ≤ the exact product (max −11.1 %).
    Estimate: 40 partial-product-bit equivalents (two 8-bit leading-one detectors and barrel
    shifters and one adder instead of the 64-bit array; a rough rule, flagged as an estimate).
    """

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(a, b)
        k1 = np.where(a > 0, np.floor(np.log2(np.maximum(a, 1))).astype(np.int64), 0)
        k2 = np.where(b > 0, np.floor(np.log2(np.maximum(b, 1))).astype(np.int64), 0)
        m1 = a - (1 << k1)
        m2 = b - (1 << k2)
        s = (m1 << k2) + (m2 << k1)
        base = np.int64(1) << (k1 + k2)
        out = np.where(s < base, base + s, 2 * s)
        return np.where((a == 0) | (b == 0), 0, out)

    return _sign_magnitude(fn, signed), 40.0


def kulkarni_fn(signed: bool) -> tuple[np.ndarray, float]:
    """Kulkarni, Gupta, Ercegovac (VLSI Design 2011): underdesigned 2×2 block, 3×3 = 7.

    The 8×8 multiplier is built from sixteen 2×2 blocks whose partial products are added exactly;
    a block gives 7 instead of 9 when both 2-bit digits are 3. Estimate: the 2×2 block has 3
    output bits instead of 4; counted as 3/4 of the partial-product bits, 48.
    """

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.int64)
        for i in range(4):
            for j in range(4):
                da = (a >> (2 * i)) & 3
                db = (b >> (2 * j)) & 3
                p = np.where((da == 3) & (db == 3), 7, da * db)
                out += p << (2 * (i + j))
        return out

    return _sign_magnitude(fn, signed), 48.0


@dataclass(frozen=True)
class Family:
    """A parametric family: its name, parameters (with defaults) and table builder.

    Attributes
    ----------
    name
        Spec prefix.
    params
        Parameter names and defaults (``None``: required).
    build
        ``build(signed, **params) -> (table, surviving_pp_bits)``.
    citation
        Paper describing the circuit ("" for textbook designs).
    """

    name: str
    params: tuple[tuple[str, int | None], ...]
    build: Callable[..., tuple[np.ndarray, float]]
    citation: str = ""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("exact", (), exact_fn),
        Family("trunc", (("k", None),), trunc_fn),
        Family("optrunc", (("ka", None), ("kb", None)), optrunc_fn),
        Family(
            "bam",
            (("h", None), ("v", 0)),
            bam_fn,
            'H. R. Mahdiani, A. Ahmadi, S. M. Fakhraie, C. Lucas, "Bio-inspired imprecise computational '
            'blocks for efficient VLSI implementation of soft-computing applications", IEEE TCAS-I '
            "57(4), 2010, doi:10.1109/TCSI.2009.2027626",
        ),
        Family(
            "drum",
            (("k", None),),
            drum_fn,
            'S. Hashemi, R. I. Bahar, S. Reda, "DRUM: A dynamic range unbiased multiplier for '
            'approximate applications", ICCAD 2015, doi:10.1109/ICCAD.2015.7372600',
        ),
        Family(
            "mitchell",
            (),
            mitchell_fn,
            'J. N. Mitchell, "Computer multiplication and division using binary logarithms", IRE '
            "Trans. Electronic Computers EC-11(4), 1962, doi:10.1109/TEC.1962.5219391",
        ),
        Family(
            "kulkarni",
            (),
            kulkarni_fn,
            'P. Kulkarni, P. Gupta, M. Ercegovac, "Trading accuracy for power with an underdesigned '
            'multiplier architecture", VLSI Design 2011, doi:10.1109/VLSID.2011.51',
        ),
    )
}


def _check_range(fam: str, key: str, val: int, lo: int, hi: int) -> None:
    if not lo <= val <= hi:
        raise MultiplierError(
            f"family {fam!r}: parameter {key}={val} out of range",
            expected=f"{lo} ≤ {key} ≤ {hi}",
            found=str(val),
        )


def parse_spec(spec: str) -> tuple[Family, dict[str, int]] | None:
    """Parse ``family[:k=v,...]``; ``None`` if ``spec`` does not name a family.

    Raises
    ------
    MultiplierError
        Unknown or missing parameters, or non-integer values.
    """
    head, _, tail = spec.strip().partition(":")
    fam = FAMILIES.get(head.strip().lower())
    if fam is None:
        return None
    given: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in tail.split(","))):
        key, eq, val = part.partition("=")
        key = key.strip()
        allowed = [p for p, _ in fam.params]
        if not eq or key not in allowed:
            raise MultiplierError(
                f"multiplier spec {spec!r}: bad parameter {part!r}",
                expected=f"{fam.name}:{','.join(f'{p}=<int>' for p in allowed) or '(no parameters)'}",
                found=part,
            )
        try:
            given[key] = int(val)
        except ValueError:
            raise MultiplierError(
                f"multiplier spec {spec!r}: parameter {key} is not an integer",
                expected="an integer",
                found=val,
            ) from None
    params: dict[str, int] = {}
    for p, default in fam.params:
        if p in given:
            params[p] = given[p]
        elif default is None:
            raise MultiplierError(
                f"multiplier spec {spec!r}: missing parameter {p}",
                expected=f"{fam.name}:{','.join(f'{q}=<int>' for q, _ in fam.params)}",
                found=spec,
                fix=f"e.g. {example_spec(fam)}",
            )
        else:
            params[p] = default
    return fam, params


def example_spec(fam: Family) -> str:
    """An example spec of the family."""
    ex = {"trunc": "trunc:k=6", "optrunc": "optrunc:ka=2,kb=2", "bam": "bam:h=4,v=0", "drum": "drum:k=4"}
    return ex.get(fam.name, fam.name)


def canonical_spec(fam: Family, params: dict[str, int]) -> str:
    """``family:k=v,...`` with every parameter in declaration order."""
    if not fam.params:
        return fam.name
    return fam.name + ":" + ",".join(f"{p}={params[p]}" for p, _ in fam.params)


def family_multiplier(spec: str, signed: bool = False) -> Multiplier:
    """Build the multiplier of a family spec (see module docstring).

    Raises
    ------
    MultiplierError
        ``spec`` is not a family spec, or its parameters are invalid.
    """
    parsed = parse_spec(spec)
    if parsed is None:
        raise MultiplierError(
            f"{spec!r} is not a multiplier family",
            expected=f"one of {', '.join(FAMILIES)}",
            found=spec,
        )
    fam, params = parsed
    table, pp_bits = fam.build(signed, **params)
    return Multiplier(
        name=canonical_spec(fam, params),
        table=table.astype(np.int32),
        signed=signed,
        source="family",
        power_mw=round(estimate_power_mw(pp_bits, signed), 6),
        area_um2=round(estimate_area_um2(pp_bits, signed), 3),
        citation=fam.citation,
        power_is_estimate=fam.name != "exact",
    )
