"""The specification: plain numpy, product by product, one table gather per tap.

Slow (≈0.3 G MAC/s) and obviously right; every fast kernel is tested bit for bit against it.
Sums are taken in int64 and wrapped to int32 at the end, as an int32 accumulator would.
"""

from __future__ import annotations

import numpy as np

from approxtvm.runtime.kernels.geometry import check_operands, conv_geometry, pad_input, tap_view
from approxtvm.runtime.multipliers.multiplier import Multiplier


def conv2d_products_reference(
    x: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    *,
    strides: tuple[int, int] = (1, 1),
    dilations: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    pad_value: int = 0,
) -> np.ndarray:
    """``y[n,k,p,q] = Σ_{c,r,s} M(x_pad[n,c,p·sh+r·dh,q·sw+s·dw], w[k,c,r,s])`` (int32, NKPQ).

    Parameters
    ----------
    x, w
        NCHW activations and OIHW weights, both uint8 (unsigned multiplier) or int8 (signed).
    mult
        The multiplier; ``mult.table[activation_byte, weight_byte]``.
    strides, dilations
        ``(h, w)``.
    pads
        ``(top, left, bottom, right)``; padded positions hold ``pad_value`` and go through ``M``.
    pad_value
        The activation zero point (a code in the operand range).
    """
    g = conv_geometry(x, w, strides, dilations, pads)
    check_operands(x, w, mult.signed, pad_value, "conv2d_products_reference")
    xp = pad_input(x, g, pad_value).view(np.uint8)
    wb = w.view(np.uint8)
    table = mult.table
    acc = np.zeros((g.n, g.k, g.p, g.q), dtype=np.int64)
    for r in range(g.r):
        for s in range(g.s):
            xt = tap_view(xp, g, r, s)  # (N, C, P, Q)
            for c in range(g.c):
                # products (N, K, P, Q) of every activation with every weight of this tap
                acc += table[xt[:, c][:, None, :, :], wb[:, c, r, s][None, :, None, None]]
    return acc.astype(np.int32)


def dense_products_reference(x: np.ndarray, w: np.ndarray, mult: Multiplier) -> np.ndarray:
    """``y[n, k] = Σ_c M(x[n, c], w[k, c])`` (int32), x (N, C), w (K, C)."""
    check_operands(x, w, mult.signed, 0, "dense_products_reference")
    xb = x.view(np.uint8)
    wb = w.view(np.uint8)
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    for c in range(x.shape[1]):
        acc += mult.table[xb[:, c][:, None], wb[:, c][None, :]]
    return acc.astype(np.int32)
