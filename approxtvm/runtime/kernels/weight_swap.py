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
) -> Callable[[np.ndarray], np.ndarray] | None:
    """:func:`~.dispatch.conv2d_products` of ``x`` as a function of weight bytes (``w``'s shape, uint8) used
    in place of ``w``'s, through the layer's prepared register-LUT kernel (``store``: the layer's,
    prepared by an earlier call of this shape with ``w``); ``None`` where the layer has no such
    kernel prepared (before its first call; other kernels, whose prepared data are specific to ``w``)."""
    if path not in ("table", "table_perm"):
        return None
    g = conv_geometry(x, w, strides, dilations, pads)
    prepared = store.entries.get(prepared_key(path, mult, g.unpadded()))
    if not isinstance(prepared, PermConv):
        return None
    return lambda wb: prepared.run_with_weights(pad_input(x, g, pad_value).view(np.uint8), wb)
