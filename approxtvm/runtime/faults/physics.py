"""Bit error rates of the approximate components: low-swing NoC links and voltage-scaled SRAM (DESIGN §5).

Per bit and per link traversal ``BER_noc = Q(V_sw / (2σ))`` with σ from ``spec.noc``; per bit of a
scaled buffer ``BER_sram = spec.sram.ber_at(V)`` (log-linear in the spec's table). Energy scaling of
the same knobs lives in :mod:`approxtvm.runtime.energy`; this module only says how often bits flip.
"""

from __future__ import annotations

import math

from approxtvm.errors import PolicyError
from approxtvm.targets.vacc.hardware import AcceleratorSpec

__all__ = ["WORD_BITS", "noc_ber", "nop_ber", "sram_ber"]

#: Bits of one stored or transported operand word (8-bit activations and weights).
WORD_BITS = 8


def noc_ber(spec: AcceleratorSpec, swing_v: float | None) -> float:
    """Bit error rate of one link traversal at swing ``swing_v``: ``Q(V_sw / (2σ))``.

    ``None`` or a swing at/above the nominal supply is the unscaled link: 0 (no fault model).

    Raises
    ------
    PolicyError
        If the swing is not in ``(0, nominal_vdd_v]``.
    """
    if swing_v is None:
        return 0.0
    nom = spec.noc.nominal_vdd_v
    if not 0 < swing_v <= nom:
        raise PolicyError(
            "NoC swing outside the link model's range",
            expected=f"0 < swing <= {nom} V",
            found=f"{swing_v} V",
            fix=f"choose a swing at or below the NoC supply of {spec.name}",
        )
    if swing_v >= nom:
        return 0.0
    return 0.5 * math.erfc(swing_v / (2.0 * spec.noc.sigma_v) / math.sqrt(2.0))


def nop_ber(spec: AcceleratorSpec, swing_v: float | None) -> float:
    """Bit error rate of one package (chiplet-to-chiplet) link traversal: ``Q(V_sw / (2σ))``.

    The NoC's Gaussian-noise model with the package links' own ``sigma_v`` and full swing
    (``spec.package``). ``None`` or the nominal swing is the unscaled link: 0.

    Raises
    ------
    PolicyError
        If the spec has no package or the swing is not in ``(0, nominal_swing_v]``.
    """
    if swing_v is None:
        return 0.0
    pkg = spec.package
    if pkg is None or not 0 < swing_v <= pkg.nominal_swing_v:
        raise PolicyError(
            "package link swing outside the link model's range",
            expected="a package spec and 0 < swing <= package.nominal_swing_v"
            + (f" ({pkg.nominal_swing_v} V)" if pkg is not None else ""),
            found=f"{swing_v} V on {spec.name}",
            fix="choose a swing at or below the package links' nominal swing",
        )
    if swing_v >= pkg.nominal_swing_v:
        return 0.0
    return 0.5 * math.erfc(swing_v / (2.0 * pkg.sigma_v) / math.sqrt(2.0))


def sram_ber(spec: AcceleratorSpec, voltage_v: float | None) -> float:
    """Bit-cell failure probability of a buffer supplied at ``voltage_v`` (``spec.sram`` table).

    ``None`` or the nominal supply is the unscaled buffer: 0 (no fault model).

    Raises
    ------
    PolicyError
        If the voltage is outside ``[lowest table voltage, nominal_vdd_v]`` (the table is not
        extrapolated).
    """
    if voltage_v is None:
        return 0.0
    sm = spec.sram
    lo = min(v for v, _ in sm.ber_table)
    if not lo <= voltage_v <= sm.nominal_vdd_v:
        raise PolicyError(
            "SRAM voltage outside the BER table's range",
            expected=f"{lo}–{sm.nominal_vdd_v} V (the sram.ber_table of {spec.name})",
            found=f"{voltage_v} V",
            fix="choose a voltage the table covers, or extend the table",
        )
    if voltage_v >= sm.nominal_vdd_v:
        return 0.0
    return sm.ber_at(voltage_v)
