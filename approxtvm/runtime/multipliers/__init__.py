"""Approximate 8×8 multipliers: the :class:`Multiplier` value object, parametric families, LUT and
C-model import, the EvoApproxLib catalogue, and :func:`resolve_multiplier`.

Nothing here touches the network or the disk on import.
"""

from approxtvm.runtime.multipliers.cmodel import default_cache_dir, load_c_model
from approxtvm.runtime.multipliers.energy import estimate_power_mw, exact_power_mw
from approxtvm.runtime.multipliers.evoapprox import (
    CatalogEntry,
    EvoApproxLibrary,
    find_entry,
    load_catalog,
    pareto_set,
    select,
)
from approxtvm.runtime.multipliers.families import FAMILIES, family_multiplier
from approxtvm.runtime.multipliers.lutio import load_lut, save_lut
from approxtvm.runtime.multipliers.multiplier import ErrorMetrics, Multiplier, exact_table, operand_values
from approxtvm.runtime.multipliers.resolve import resolve_multiplier

__all__ = [
    "FAMILIES",
    "CatalogEntry",
    "ErrorMetrics",
    "EvoApproxLibrary",
    "Multiplier",
    "default_cache_dir",
    "estimate_power_mw",
    "exact_power_mw",
    "exact_table",
    "family_multiplier",
    "find_entry",
    "load_c_model",
    "load_catalog",
    "load_lut",
    "operand_values",
    "pareto_set",
    "resolve_multiplier",
    "save_lut",
    "select",
]
