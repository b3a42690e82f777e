"""Multipliers of one accelerator: resolved once per spec and priced for it.

Used by the compiler (codegen) and by the runtime that decodes layers embedded in a TVM module
(:mod:`approxtvm.runtime.vacc_calls`), so it lives below both.
"""

from __future__ import annotations

from approxtvm.errors import PolicyError
from approxtvm.runtime.multipliers.energy import exact_power_mw
from approxtvm.runtime.multipliers.multiplier import Multiplier
from approxtvm.runtime.multipliers.resolve import resolve_multiplier
from approxtvm.targets.vacc.codegen import MultiplierInfo
from approxtvm.targets.vacc.hardware import AcceleratorSpec

__all__ = ["MultiplierResolver", "mul_energy_pj"]


class MultiplierResolver:
    """Resolves multiplier specs once per compilation and prices them for the accelerator."""

    def __init__(self, spec: AcceleratorSpec) -> None:
        self.spec = spec
        self.cache: dict[tuple[str, bool], Multiplier] = {}

    def multiplier(self, name: str, signed: bool) -> Multiplier:
        """The :class:`Multiplier` for a policy spec."""
        key = (name, signed)
        if key not in self.cache:
            m = resolve_multiplier(name, signed=signed)
            if m.signed != signed:
                raise PolicyError(
                    f"multiplier {name!r} is {'signed' if m.signed else 'unsigned'}",
                    expected=f"a {'signed (mul8s_*)' if signed else 'unsigned (mul8u_*)'} multiplier "
                    "for this model's operands",
                    found=m.name,
                    fix="pick a multiplier of the model's signedness or re-quantize the model",
                )
            self.cache[key] = m
        return self.cache[key]

    def info(self, name: str, signed: bool) -> MultiplierInfo:
        """Codegen view: name, table hash and energy per multiply."""
        m = self.multiplier(name, signed)
        return MultiplierInfo(m.name, m.table_hash, mul_energy_pj(m, self.spec), m.signed, m.is_exact)


def mul_energy_pj(m: Multiplier, spec: AcceleratorSpec) -> float:
    """``E_mul = E_exact × P(m) / P(exact)`` (DESIGN §4): approximation scales only the multiply."""
    if m.power_mw is None:  # unknown power: priced as the exact multiplier, never as free
        return spec.energy.mul_energy_pj
    return spec.energy.mul_energy_pj * m.power_mw / exact_power_mw(m.signed)
