"""Exact low-rank decomposition of a product table: ``T = a·b + E`` with ``E`` of small integer rank.

Many approximate multipliers have a structured error (broken-array, operand truncation, DRUM):
``E[a, b] = Σ_i u_i(a) v_i(b)`` with a few integer factors, or the table itself has rank one
(operand truncation, DRUM: ``T = f(a)·g(b)``). Then a conv with the table is an exact integer conv
plus ``r`` correction convs (:mod:`approxtvm.runtime.kernels.intconv`).

The rank is decided exactly: pivots are chosen in floating point, the factors are computed with
rational arithmetic, scaled to integers, and the reconstruction is compared with the table
**exactly**; anything that does not reconstruct bit for bit is rejected.
"""

from __future__ import annotations

from fractions import Fraction
from math import lcm

import numpy as np

from approxtvm.runtime.kernels.intconv import IntegerFactors, exact_factors
from approxtvm.runtime.multipliers.multiplier import operand_values

#: Default largest rank the low-rank path accepts.
DEFAULT_MAX_RANK: int = 8


def _greedy_independent(rows: np.ndarray, max_rank: int) -> list[int] | None:
    """Indices of rows that are linearly independent of the rows before them (float test)."""
    basis: list[np.ndarray] = []
    picked: list[int] = []
    for i, row in enumerate(rows.astype(np.float64)):
        nrm = float(np.linalg.norm(row))
        if nrm == 0.0:
            continue
        res = row.copy()
        for _ in range(2):  # re-orthogonalise once for stability
            for b in basis:
                res -= (res @ b) * b
        rn = float(np.linalg.norm(res))
        if rn > 1e-7 * nrm:
            basis.append(res / rn)
            picked.append(i)
            if len(picked) > max_rank:
                return None
    return picked


def _inverse(mat: list[list[int]]) -> list[list[Fraction]] | None:
    """Exact inverse of a small integer matrix (Gauss-Jordan on Fractions); ``None`` if singular."""
    n = len(mat)
    a = [[Fraction(v) for v in row] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(mat)]
    for col in range(n):
        piv = next((r for r in range(col, n) if a[r][col] != 0), None)
        if piv is None:
            return None
        a[col], a[piv] = a[piv], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0:
                f = a[r][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
    return [row[n:] for row in a]


def integer_factorise(m: np.ndarray, max_rank: int = DEFAULT_MAX_RANK) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Exact factorisation ``d · m = U @ V`` with integer ``U`` (rows×r), ``V`` (r×cols), ``d ≥ 1``.

    Returns ``None`` when the rank exceeds ``max_rank`` or no exact integer factorisation is found.
    A zero matrix gives ``r = 0``.
    """
    m = np.asarray(m, dtype=np.int64)
    piv_rows = _greedy_independent(m, max_rank)
    if piv_rows is None:
        return None
    r = len(piv_rows)
    if r == 0:
        return np.zeros((m.shape[0], 0), np.int64), np.zeros((0, m.shape[1]), np.int64), 1
    v = m[piv_rows]  # (r, cols) integer
    piv_cols = _greedy_independent(v.T, r)
    if piv_cols is None or len(piv_cols) != r:
        return None
    inv = _inverse([[int(v[i, j]) for j in piv_cols] for i in range(r)])
    if inv is None:
        return None
    coef = [
        [sum((Fraction(int(m[a, piv_cols[k]])) * inv[k][t] for k in range(r)), Fraction(0)) for t in range(r)]
        for a in range(m.shape[0])
    ]
    d = 1
    for row in coef:
        for c in row:
            d = lcm(d, c.denominator)
    u = np.array([[int(c * d) for c in row] for row in coef], dtype=object)
    vo = v.astype(object)
    if not np.array_equal(u @ vo, m.astype(object) * d):  # the exactness check
        return None
    umax = max(abs(int(x)) for x in u.flat) if u.size else 0
    if umax >= 2**40 or d >= 2**20:
        return None
    return u.astype(np.int64), v, d


def find_factors(
    table: np.ndarray, signed: bool, weight_bytes: np.ndarray | None = None, max_rank: int = DEFAULT_MAX_RANK
) -> IntegerFactors | None:
    """Cheapest exact integer factorisation of ``table`` over all activations and the used weights.

    Two candidates are tried: the table itself (rank-one tables such as operand truncation), and
    the exact product plus a factorisation of the error ``E = table − a·b``. The one with fewer
    uint8 product terms wins.

    Parameters
    ----------
    table
        int (256, 256) product table, row = activation byte, column = weight byte.
    signed
        Operand interpretation of the bytes.
    weight_bytes
        Weight bytes that occur (``None``: all 256). Columns of unused weights are ignored.
    max_rank
        Largest accepted rank of the error.

    Returns
    -------
    IntegerFactors or None
        ``None`` if neither candidate has rank ≤ ``max_rank``.
    """
    t = np.asarray(table, dtype=np.int64)
    cols = np.arange(256) if weight_bytes is None else np.unique(np.asarray(weight_bytes, dtype=np.int64))
    vals = operand_values(signed)
    cands: list[IntegerFactors] = []
    direct = integer_factorise(t[:, cols], max_rank)
    if direct is not None:
        cands.append(_expand(direct, cols))
    err = t[:, cols] - vals[:, None] * vals[None, cols]
    fe = integer_factorise(err, max_rank)
    if fe is not None:
        d = fe[2]
        ex = exact_factors(signed)
        e_f = _expand(fe, cols)
        cands.append(
            IntegerFactors(
                u=np.vstack([ex.u, e_f.u]),
                v=np.vstack([ex.v, e_f.v]),
                divisor=d,
                scale=np.array([d] + [1] * e_f.rank, dtype=np.int64),
            )
        )
    if not cands:
        return None
    return min((c.normalised() for c in cands), key=lambda f: f.byte_terms())


def _expand(f: tuple[np.ndarray, np.ndarray, int], cols: np.ndarray) -> IntegerFactors:
    u, v, d = f
    vfull = np.zeros((v.shape[0], 256), dtype=np.int64)
    vfull[:, cols] = v
    # unused weight columns take an in-range value so the offsets stay tight
    if len(cols) < 256 and v.shape[0]:
        unused = np.setdiff1d(np.arange(256), cols)
        vfull[:, unused] = v.min(axis=1, keepdims=True)
    return IntegerFactors(u=u.T.copy(), v=vfull, divisor=d)
