"""A layer's prepared conv kernel run on other weights (fault injection's corrupted weights).

The register-LUT kernel (:class:`~.table_perm.PermConv`) holds the layer's weights only as its
int16 index operand: a call with other weights costs one relayout of them, the compiled kernel and
the table stay. Kernels whose prepared data are specific to the weights (weight-stationary tables,
low-rank factor plans) are not offered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from approxtvm.runtime.kernels.dispatch import LayerStore, prepared_key
from approxtvm.runtime.kernels.geometry import conv_geometry, pad_input
from approxtvm.runtime.kernels.table_perm import PermConv
from approxtvm.runtime.multipliers.multiplier import Multiplier

__all__ = ["conv2d_weight_kernel"]


def conv2d_weight_kernel(
    x: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    *,
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, int, int, int],
    pad_value: int,
    path: str,
    store: LayerStore,
) -> Callable[[np.ndarray, slice | None], np.ndarray] | None:
    """:func:`~.dispatch.conv2d_products` of ``x`` as a function of weight bytes (``w``'s shape,
    uint8) used in place of ``w``'s and of a range of batch rows (``None``: all; else those rows'
    products), through the layer's prepared register-LUT kernel (``store``: the layer's, prepared
    by an earlier call of this shape with ``w``); ``None`` where the layer has no such kernel
    prepared (before its first call; other kernels, whose prepared data are specific to ``w``).

    A row range runs a kernel compiled for its number of rows (once per shape, kept by the
    kernel cache)."""
    if path not in ("table", "table_perm"):
        return None
    g = conv_geometry(x, w, strides, dilations, pads)
    prepared = store.entries.get(prepared_key(path, mult, g.unpadded()))
    if not isinstance(prepared, PermConv):
        return None

    def run(wb: np.ndarray, rows: slice | None) -> np.ndarray:
        if rows is None or range(len(x))[rows] == range(len(x)):
            return prepared.run_with_weights(pad_input(x, g, pad_value).view(np.uint8), wb)
        xs = x[rows]
        gs = conv_geometry(xs, w, strides, dilations, pads)
        sub = PermConv(wb, mult.table, gs.unpadded(), prepared.cache, mult.table_hash)
        return sub(pad_input(xs, gs, pad_value).view(np.uint8))

    return run
