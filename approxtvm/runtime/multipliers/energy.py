"""Energy per multiply: published power where known, otherwise a documented estimate rule.

Estimate rule (used by the parametric families): the power of an 8×8 array multiplier scales with
the number of partial-product bits it keeps. ``P(m) = P(exact) · surviving_pp_bits / 64``, with
``P(exact)`` the published power of EvoApproxLib's exact 8×8 multiplier (mul8u_1JFF: 0.391 mW,
mul8s_1KV8: 0.425 mW, 45 nm, Mrazek et al. DATE 2017). Logarithmic and other non-array designs use
their own documented rule (see :mod:`approxtvm.runtime.multipliers.families`).
"""

from __future__ import annotations

#: Published power of the exact 8×8 multipliers of EvoApproxLib (45 nm PDK), in mW.
EXACT_POWER_UNSIGNED_MW: float = 0.391
EXACT_POWER_SIGNED_MW: float = 0.425
#: Published area of the same circuits, in µm².
EXACT_AREA_UNSIGNED_UM2: float = 709.6
EXACT_AREA_SIGNED_UM2: float = 729.8

#: Partial-product bits of an 8×8 array multiplier.
FULL_PP_BITS: int = 64


def exact_power_mw(signed: bool) -> float:
    """Published power (mW) of the exact 8×8 multiplier of the given signedness."""
    return EXACT_POWER_SIGNED_MW if signed else EXACT_POWER_UNSIGNED_MW


def exact_area_um2(signed: bool) -> float:
    """Published area (µm²) of the exact 8×8 multiplier of the given signedness."""
    return EXACT_AREA_SIGNED_UM2 if signed else EXACT_AREA_UNSIGNED_UM2


def estimate_power_mw(surviving_pp_bits: float, signed: bool) -> float:
    """Estimated power: ``P(exact) · surviving_pp_bits / 64`` (mW)."""
    return exact_power_mw(signed) * surviving_pp_bits / FULL_PP_BITS


def estimate_area_um2(surviving_pp_bits: float, signed: bool) -> float:
    """Estimated area, same rule as :func:`estimate_power_mw` (µm²)."""
    return exact_area_um2(signed) * surviving_pp_bits / FULL_PP_BITS
