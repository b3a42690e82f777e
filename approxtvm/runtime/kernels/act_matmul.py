"""Activation × activation MatMul through a multiplier (attention ``QKᵀ`` and ``AV``), bit-exact.

``y[..., m, k] = Σ_c M(a[..., m, c], b[..., c, k])``: both operands are runtime activations,
batched over the leading dimensions (images × heads). The **first operand is the table row** (it
plays the activation's role), the second the column (the weight's role), as in DESIGN §3.

Paths (the names of :mod:`.dispatch`):

``exact``
    ``a·b`` by onnxruntime's batched ``MatMulInteger`` on uint8 × uint8 (signed operands shifted by
    128, the shift undone exactly by the zero points).
``lowrank``
    ``Σ_t scale_t · U_t(a) @ V_t(b) / divisor`` with the multiplier's factorisation over all 256
    column bytes (the second operand is not known in advance), each term an exact float64 matmul.
``table`` / ``table_gather``
    per batch slice, TVM's direct table-gather kernel (the second operand changes every call, so
    weight-stationary tables would be rebuilt for every image and head).
``table_numpy``
    numpy gathers, one input channel at a time.
``reference``
    product by product over ``c`` (the specification).
"""

from __future__ import annotations

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels.dispatch import KernelCache, _check_path, dense_products, tvm_available
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.ort_session import integer_op_session
from approxtvm.runtime.multipliers.multiplier import Multiplier

_F64_EXACT = 2**53


def _check(a: np.ndarray, b: np.ndarray, mult: Multiplier) -> None:
    if a.ndim < 2 or b.ndim != a.ndim or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise MultiplierError(
            "matmul_products: operands have incompatible shapes",
            expected="a (..., M, C) and b (..., C, K) with the same leading (batch) dimensions",
            found=f"a {a.shape}, b {b.shape}",
            fix="broadcast the operands to one batch shape first",
        )
    want = np.dtype(np.int8 if mult.signed else np.uint8)
    if a.dtype != want or b.dtype != want:
        raise MultiplierError(
            "matmul_products: operand dtype does not match the multiplier's signedness",
            expected=f"a and b of dtype {want}",
            found=f"a {a.dtype}, b {b.dtype}",
            fix="quantize both operands to the multiplier's signedness",
        )


def matmul_products(
    a: np.ndarray,
    b: np.ndarray,
    mult: Multiplier,
    *,
    path: str | None = None,
    cache: KernelCache | None = None,
) -> np.ndarray:
    """``Σ_c M(a[..., m, c], b[..., c, k])`` as int32 (..., M, K) (wrapping like an int32 accumulator).

    Parameters
    ----------
    a
        First operand codes (table rows), ``(..., M, C)``.
    b
        Second operand codes (table columns), ``(..., C, K)``, same leading dimensions.
    mult
        The multiplier.
    path
        One of :data:`approxtvm.runtime.kernels.PATHS`; ``None`` picks exact / low-rank / table.
    cache
        Factorisations, compiled kernels and sessions to reuse.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    _check(a, b, mult)
    cache = cache or KernelCache()
    if path is None:
        path = choose_matmul_path(mult, cache)
    _check_path(path)
    c = a.shape[-1]
    if path == "reference":
        return _reference(a, b, mult)
    if path == "exact":
        if not mult.is_exact:
            raise MultiplierError(
                f"path='exact' requested for the approximate multiplier {mult.name!r}",
                expected="a multiplier whose table equals a·b",
                found=f"MAE {mult.metrics.mae:g}",
                fix="use path=None (automatic), 'lowrank' or 'table'",
            )
        return _exact_ort(a, b, mult.signed, cache)
    if path == "lowrank":
        f = cache.factors(mult, None)
        if f is None:
            raise MultiplierError(
                f"path='lowrank' requested but {mult.name!r} has no exact factorisation of rank ≤ {cache.max_rank}",
                expected=f"error rank ≤ {cache.max_rank} over all operand bytes",
                found="higher rank",
                fix="use path=None (automatic) or 'table'",
            )
    if path == "lowrank" and not _column_kernel_ok(mult):
        ab, bb = a.view(np.uint8), b.view(np.uint8)
        total = np.zeros((*a.shape[:-1], b.shape[-1]), np.int64)
        for t in range(f.rank):
            u, v = f.u[t], f.v[t]
            if int(np.abs(u).max()) * int(np.abs(v).max()) * c >= _F64_EXACT:
                part = np.matmul(np.take(u, ab), np.take(v, bb))  # int64, exact
            else:
                part = np.rint(np.matmul(np.take(u.astype(np.float64), ab), np.take(v.astype(np.float64), bb)))
                part = part.astype(np.int64)
            total += part * f.term_scale(t)
        if f.divisor != 1:
            total, rem = np.divmod(total, f.divisor)
            if rem.any():  # cannot happen for a verified factorisation
                raise MultiplierError(
                    "matmul low-rank kernel: the factor sum is not divisible by its divisor",
                    expected="an exact factorisation",
                    found=f"divisor {f.divisor}",
                    fix="report this bug; use path='table' meanwhile",
                )
        return total.astype(np.int32)
    lead = a.shape[:-2]
    a3 = a.reshape(-1, *a.shape[-2:])
    b3 = b.reshape(-1, *b.shape[-2:])
    # table paths, and the low-rank path where the column kernel runs (the factorisation is exact,
    # so the table gives the same sums in one pass instead of r float64 matmuls)
    if path == "table_numpy" or not tvm_available():
        tab = mult.table.astype(np.int32, copy=False)
        ab, bb = a3.view(np.uint8), b3.view(np.uint8)
        acc = np.zeros((a3.shape[0], a3.shape[1], b3.shape[2]), np.int32)
        for ci in range(c):
            acc += tab[ab[:, :, ci, None], bb[:, None, ci, :]]
        return acc.reshape(*lead, a.shape[-2], b.shape[-1])
    from approxtvm.runtime.kernels.table_perm import grouped_table_tvm

    if _column_kernel_ok(mult):
        # all slices in one grouped 1×1 conv: slice i = group i, a's rows = pixels, b's columns =
        # output channels (weight-stationary columns, no per-call weight tables)
        nb, m, k = a3.shape[0], a3.shape[1], b3.shape[2]
        xg = np.ascontiguousarray(a3.view(np.uint8).transpose(0, 2, 1)).reshape(1, nb * c, m, 1)
        wg = np.ascontiguousarray(b3.view(np.uint8).transpose(0, 2, 1)).reshape(nb * k, c, 1, 1)
        g = ConvGeometry(1, nb * c, m, 1, nb * k, 1, 1)
        y = grouped_table_tvm(xg, wg, mult.table, nb, g, cache.tvm_kernels(), mult.table_hash)
        return np.ascontiguousarray(y.reshape(nb, k, m).transpose(0, 2, 1)).reshape(*lead, m, k)
    out = np.empty((a3.shape[0], a3.shape[1], b3.shape[2]), np.int32)
    for i in range(a3.shape[0]):
        # the second operand plays the weight: dense_products takes it as (K, C)
        out[i] = dense_products(a3[i], np.ascontiguousarray(b3[i].T), mult, path="table_gather", cache=cache)
    return out.reshape(*lead, a.shape[-2], b.shape[-1])


def _column_kernel_ok(mult: Multiplier) -> bool:
    """TVM is present and the table fits the 16-bit column kernel."""
    if not tvm_available():
        return False
    from approxtvm.runtime.kernels.table_perm import perm_dtype

    return perm_dtype(mult.table) is not None


def _exact_ort(a: np.ndarray, b: np.ndarray, signed: bool, cache: KernelCache) -> np.ndarray:
    """``Σ a·b`` by onnxruntime ``MatMulInteger`` on u8×u8 (batched; signed: bytes + 128, zero points 128).

    u8×u8 is exact on every CPU (DESIGN §2); int32 sums wrap like the accumulator.
    """
    if signed:
        au = (a.astype(np.int16) + 128).astype(np.uint8)
        bu = (b.astype(np.int16) + 128).astype(np.uint8)
        zp = 128
    else:
        au, bu, zp = np.ascontiguousarray(a), np.ascontiguousarray(b), 0
    key = ("act_matmul", au.shape, bu.shape, zp)
    store = cache.sessions
    with store.lock:
        sess = store.sessions.get(key)
        if sess is None:
            sess = store.sessions[key] = integer_op_session("MatMulInteger", au.shape, bu.shape, None, zero_point=zp)
    return sess.run(None, {"x": au, "w": bu})[0]  # type: ignore[attr-defined]


def choose_matmul_path(mult: Multiplier, cache: KernelCache) -> str:
    """``exact`` for ``a·b``, ``lowrank`` when the table factorises over all bytes, else a table path."""
    if mult.is_exact:
        return "exact"
    if cache.factors(mult, None) is not None:
        return "lowrank"
    return "table" if tvm_available() else "table_numpy"


def _reference(a: np.ndarray, b: np.ndarray, mult: Multiplier) -> np.ndarray:
    ab, bb = a.view(np.uint8), b.view(np.uint8)
    acc = np.zeros((*a.shape[:-1], b.shape[-1]), np.int64)
    for ci in range(a.shape[-1]):
        acc += mult.table[ab[..., :, ci, None], bb[..., None, ci, :]]
    return acc.astype(np.int32)


__all__ = ["choose_matmul_path", "matmul_products"]
