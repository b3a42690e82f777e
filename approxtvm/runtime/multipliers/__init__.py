"""Approximate 8×8 multipliers: the :class:`Multiplier` value object, families, LUT/C-model import,
the EvoApproxLib catalogue and :func:`resolve_multiplier`."""

from approxtvm.runtime.multipliers.multiplier import ErrorMetrics, Multiplier, exact_table, operand_values

__all__ = ["ErrorMetrics", "Multiplier", "exact_table", "operand_values"]
