"""Pure-numpy arbitrary-table kernel (fallback when TVM is unavailable): weight-stationary rows.

For every tap ``(c, r, s)`` the table is sliced to the columns of that tap's weights,
``T_j[x, k] = M(x, w[k, c, r, s])`` (256 × K), and gathered by the activation bytes: contiguous
row reads, ≈2.5 G MAC/s on AVX-512. Accumulates in int32 (wrapping, like the reference's final cast).
"""

from __future__ import annotations

import numpy as np

from approxtvm.runtime.kernels.geometry import ConvGeometry, tap_view


def conv2d_table_numpy(xp: np.ndarray, wb: np.ndarray, table: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``Σ_taps table[x, w]`` over padded activation bytes ``xp`` (NCHW uint8), weights ``wb`` (OIHW uint8).

    ``g`` is the geometry of the padded conv. Returns int32 (N, K, P, Q).
    """
    acc = np.zeros((g.n, g.p, g.q, g.k), dtype=np.int32)
    for r in range(g.r):
        for s in range(g.s):
            xt = tap_view(xp, g, r, s)  # (N, C, P, Q)
            tabs = table[:, wb[:, :, r, s].T]  # (256, C, K)
            for c in range(g.c):
                acc += tabs[:, c, :][xt[:, c]]
    return np.ascontiguousarray(acc.transpose(0, 3, 1, 2))


def dense_table_numpy(xb: np.ndarray, wb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``y[n, k] = Σ_c table[x[n, c], w[k, c]]`` over bytes (uint8). Returns int32 (N, K)."""
    acc = np.zeros((xb.shape[0], wb.shape[0]), dtype=np.int32)
    tabs = table[:, wb.T]  # (256, C, K)
    for c in range(xb.shape[1]):
        acc += tabs[:, c, :][xb[:, c]]
    return acc
