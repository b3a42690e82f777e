"""Grouped and depthwise convolutions through a multiplier, bit-exact (DESIGN §3).

``y[n, g·Kg + k, p, q] = Σ_{c < Cg, r, s} M(x_pad[n, g·Cg + c, p·sh + r·dh, q·sw + s·dw], w[g·Kg + k, c, r, s])``
with ``G`` groups, ``Cg = C / G`` input and ``Kg = K / G`` output channels per group (depthwise:
``Cg = 1``). Padded taps hold ``pad_value`` and go through ``M`` like any other tap.

Paths (the same names as :mod:`.dispatch`):

``exact``
    one onnxruntime ``ConvInteger`` with ``group = G`` on uint8 × uint8 (signed operands are
    shifted by 128 and the shift is undone exactly by the operator's zero points).
``lowrank``
    with TVM and a 16-bit table: the column kernel below (the factorisation is exact, so the table
    gives the same sums in one pass). Otherwise the multiplier's exact integer factorisation
    ``Σ_t U_t(x)·V_t(w)``, each term a grouped convolution of the byte maps in float64 (exact: the
    bound ``Σ|U||V|·taps < 2^53`` is checked, int64 otherwise).
``table`` / ``table_perm`` / ``table_gather``
    with TVM and a 16-bit table: the weight-stationary column kernel of :mod:`.table_perm` (one
    256-entry column per weight, looked up by 32 activations at a time; register permutes on
    AVX-512 BW). Otherwise, like ``table_numpy``:
``table_numpy``
    a table gather per tap and per input channel of the group (``M`` applied product by product);
    groups with enough channels run one ordinary table convolution per group instead.
``reference``
    the ungrouped reference, one group at a time.
"""

from __future__ import annotations

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels import reference
from approxtvm.runtime.kernels.dispatch import (
    KernelCache,
    LayerStore,
    _check_path,
    _factors_for,
    choose_path,
    conv2d_products,
)
from approxtvm.runtime.kernels.geometry import ConvGeometry, check_operands, pad_input, tap_view
from approxtvm.runtime.kernels.intconv import IntegerFactors
from approxtvm.runtime.kernels.ort_session import integer_op_session
from approxtvm.runtime.multipliers.multiplier import Multiplier

#: Per-group ordinary convolutions are used for the table paths when each group has at least
#: this many products per output pixel (``Cg · Kg``) and there are at most this many groups;
#: below that the per-call overhead outweighs the wide-row table kernels.
PER_GROUP_MIN_WORK: int = 64
PER_GROUP_MAX_GROUPS: int = 64

#: Largest magnitude a float64 sum represents exactly.
_F64_EXACT = 2**53


def grouped_geometry(
    x: np.ndarray,
    w: np.ndarray,
    groups: int,
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> ConvGeometry:
    """Check grouped NCHW/OIHW operands; the geometry's ``c`` is the total input channels."""
    if x.ndim != 4 or w.ndim != 4:
        raise MultiplierError(
            "grouped_conv2d_products: operands have the wrong rank",
            expected="x NCHW (4-D) and w (K, C/groups, R, S)",
            found=f"x {x.shape}, w {w.shape}",
        )
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups or w.shape[1] * groups != x.shape[1]:
        raise MultiplierError(
            "grouped_conv2d_products: channels do not split into the groups",
            expected=f"C = {x.shape[1]} and K = {w.shape[0]} divisible by groups = {groups}, w.shape[1] = C/groups",
            found=f"x {x.shape}, w {w.shape}, groups {groups}",
            fix="pass the convolution's group attribute and its (K, C/groups, R, S) weights",
        )
    g = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3])
    g = ConvGeometry(
        g.n, g.c, g.h, g.w, g.k, g.r, g.s, *map(int, strides), *map(int, dilations), *map(int, pads)
    )  # fmt: skip
    if min(g.strides + g.dilations) < 1 or min(g.pads) < 0 or g.p < 1 or g.q < 1:
        raise MultiplierError(
            "grouped_conv2d_products: invalid strides, dilations or pads",
            expected="strides, dilations >= 1, pads >= 0 and a positive output size",
            found=f"strides {strides}, dilations {dilations}, pads {pads} for x {x.shape}, w {w.shape}",
        )
    return g


def grouped_conv2d_products(
    x: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    *,
    groups: int,
    strides: tuple[int, int] = (1, 1),
    dilations: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    pad_value: int = 0,
    threads: int | None = None,
    path: str | None = None,
    cache: KernelCache | None = None,
    store: LayerStore | None = None,
) -> np.ndarray:
    """Raw products ``Σ M(x, w)`` of a grouped convolution (int32 (N, K, P, Q), wrapping).

    Parameters
    ----------
    x
        Activation codes, NCHW.
    w
        Weight codes, ``(K, C / groups, R, S)``.
    mult
        The multiplier; activation = table row, weight = column.
    groups
        Number of groups ``G`` (``C`` for a depthwise convolution).
    strides, dilations, pads, pad_value, threads, path, cache, store
        As in :func:`approxtvm.runtime.kernels.conv2d_products` (``store`` keeps the layer's
        prepared column kernel when its weights never change).
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if groups == 1:
        return conv2d_products(
            x,
            w,
            mult,
            strides=strides,
            dilations=dilations,
            pads=pads,
            pad_value=pad_value,
            threads=threads,
            path=path,
            cache=cache,
            store=store,
        )
    g = grouped_geometry(x, w, groups, strides, dilations, pads)
    check_operands(x, w, mult.signed, pad_value, "grouped_conv2d_products")
    cache = cache or KernelCache()
    if path is None:
        path = choose_path(mult, g, weights=w, cache=cache).path
    _check_path(path)
    kw = dict(strides=g.strides, dilations=g.dilations, pads=g.pads, pad_value=pad_value)
    cg, kg = g.c // groups, g.k // groups
    if path == "reference":
        return np.concatenate(
            [
                reference.conv2d_products_reference(
                    np.ascontiguousarray(x[:, i * cg : (i + 1) * cg]), w[i * kg : (i + 1) * kg], mult, **kw
                )
                for i in range(groups)
            ],
            axis=1,
        )
    if path == "exact":
        _factors_for(mult, w.view(np.uint8), cache, path)  # raises for an approximate multiplier
        return _exact_ort(pad_input(x, g, pad_value), w, groups, g, mult.signed, cache, threads)
    if path == "lowrank":
        f = _factors_for(mult, np.ascontiguousarray(w).view(np.uint8), cache, path)
        xb = pad_input(x, g, pad_value).view(np.uint8)
        if _column_kernel_ok(mult, cache):
            # the factorisation is exact, so its sum equals the table's: one column-kernel pass
            # costs less than r grouped convolutions of byte maps
            return _column(xb, w, mult, groups, g, cache, threads, store)
        return _factor_grouped(xb, np.ascontiguousarray(w).view(np.uint8), f, groups, g)
    # table paths
    if path in ("table", "table_perm", "table_gather") and _column_kernel_ok(mult, cache):
        return _column(pad_input(x, g, pad_value).view(np.uint8), w, mult, groups, g, cache, threads, store)
    if groups <= PER_GROUP_MAX_GROUPS and cg * kg >= PER_GROUP_MIN_WORK:
        xp = pad_input(x, g, pad_value)
        parts = [
            conv2d_products(
                np.ascontiguousarray(xp[:, i * cg : (i + 1) * cg]),
                np.ascontiguousarray(w[i * kg : (i + 1) * kg]),
                mult,
                strides=g.strides,
                dilations=g.dilations,
                threads=threads,
                path=path,
                cache=cache,
            )
            for i in range(groups)
        ]
        return np.concatenate(parts, axis=1)
    xb = pad_input(x, g, pad_value).view(np.uint8)
    return _table_grouped(xb, np.ascontiguousarray(w).view(np.uint8), mult.table, groups, g)


def _column_kernel_ok(mult: Multiplier, cache: KernelCache) -> bool:
    """Whether the TVM weight-stationary column kernel runs ``mult`` (TVM present, 16-bit table)."""
    from approxtvm.runtime.kernels.dispatch import tvm_available

    if not tvm_available():
        return False
    from approxtvm.runtime.kernels.table_perm import perm_dtype

    return perm_dtype(mult.table) is not None


def _column(
    xb: np.ndarray,
    w: np.ndarray,
    mult: Multiplier,
    groups: int,
    g: ConvGeometry,
    cache: KernelCache,
    threads: int | None,
    store: LayerStore | None = None,
) -> np.ndarray:
    """The grouped table kernel of :mod:`.table_perm` on padded bytes ``xb`` (prepared once per
    layer in ``store`` when given)."""
    from approxtvm.runtime.kernels.table_perm import ColumnConv

    gp = _padded(g)
    key = ("column", f"{mult.table_hash}:{groups}:{gp}")
    conv = store.entries.get(key) if store is not None else None
    if conv is None:
        wb = np.ascontiguousarray(w).view(np.uint8)
        conv = ColumnConv(wb, mult.table, groups, gp, cache.tvm_kernels(), mult.table_hash)
        if store is not None:
            store.entries[key] = conv
    return conv(xb, threads)  # type: ignore[operator]


def _padded(g: ConvGeometry) -> ConvGeometry:
    """Geometry of the already padded input (pads zero)."""
    return ConvGeometry(
        g.n, g.c, g.hp, g.wp, g.k, g.r, g.s, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w
    )  # fmt: skip


def _exact_ort(
    xp: np.ndarray,
    w: np.ndarray,
    groups: int,
    g: ConvGeometry,
    signed: bool,
    cache: KernelCache,
    threads: int | None,
) -> np.ndarray:
    """``Σ x·w`` by onnxruntime ``ConvInteger(group=G)`` on u8×u8 (signed: bytes + 128, zero points 128)."""
    if signed:
        xu = (xp.astype(np.int16) + 128).astype(np.uint8)
        wu = (w.astype(np.int16) + 128).astype(np.uint8)
        zp = 128
    else:
        xu, wu, zp = np.ascontiguousarray(xp), np.ascontiguousarray(w), 0
    key = ("gconv", xu.shape, wu.shape, g.strides, g.dilations, groups, zp, threads)
    store = cache.sessions
    with store.lock:
        sess = store.sessions.get(key)
        if sess is None:
            sess = store.sessions[key] = integer_op_session(
                "ConvInteger",
                xu.shape,
                wu.shape,
                threads,
                zero_point=zp,
                group=int(groups),
                strides=list(g.strides),
                dilations=list(g.dilations),
            )
    return sess.run(None, {"x": xu, "w": wu})[0]  # type: ignore[attr-defined]


def _grouped_int_conv(u: np.ndarray, v: np.ndarray, groups: int, g: ConvGeometry, dtype: type) -> np.ndarray:
    """Grouped convolution of integer-valued maps ``u`` (padded NCHW) and ``v`` (K, Cg, R, S), in ``dtype``.

    Exact when ``dtype`` is int64, or float64 under the caller's ``2^53`` bound.
    """
    gp = _padded(g)
    cg, kg = g.c // groups, g.k // groups
    acc = np.zeros((g.n, groups, kg, gp.p * gp.q), dtype=dtype)
    uu = u.astype(dtype, copy=False)
    vv = v.astype(dtype, copy=False)
    for r in range(g.r):
        for s in range(g.s):
            xt = tap_view(uu, gp, r, s).reshape(g.n, groups, cg, gp.p * gp.q)
            wt = vv[:, :, r, s].reshape(groups, kg, cg)
            if cg == 1:  # depthwise: a broadcast multiply, no reduction
                acc += wt[None, :, :, 0, None] * xt
            else:
                acc += np.matmul(wt[None], xt)
    return acc.reshape(g.n, g.k, gp.p, gp.q)


def _factor_grouped(xb: np.ndarray, wb: np.ndarray, f: IntegerFactors, groups: int, g: ConvGeometry) -> np.ndarray:
    """``Σ_t scale_t · U_t(x) ⊛ V_t(w) / divisor`` over padded bytes, exactly; int32 (wrapped)."""
    taps = (g.c // groups) * g.r * g.s
    bound = sum(
        abs(f.term_scale(t)) * int(np.abs(f.u[t]).max()) * int(np.abs(f.v[t]).max()) * taps for t in range(f.rank)
    )
    exact_float = bound < _F64_EXACT
    dtype = np.float64 if exact_float else np.int64
    total = np.zeros((g.n, g.k, _padded(g).p, _padded(g).q), dtype=np.int64)
    for t in range(f.rank):
        part = _grouped_int_conv(np.take(f.u[t], xb), np.take(f.v[t], wb), groups, g, dtype)
        sc = f.term_scale(t)
        total += (np.rint(part).astype(np.int64) if exact_float else part) * sc
    if f.divisor != 1:
        q, rem = np.divmod(total, f.divisor)
        if rem.any():  # cannot happen for a verified factorisation
            raise MultiplierError(
                "grouped low-rank kernel: the factor sum is not divisible by its divisor",
                expected="an exact factorisation",
                found=f"divisor {f.divisor}",
                fix="report this bug; use path='table' meanwhile",
            )
        total = q
    return total.astype(np.int32)


def _table_grouped(xb: np.ndarray, wb: np.ndarray, table: np.ndarray, groups: int, g: ConvGeometry) -> np.ndarray:
    """``Σ table[x, w]`` gathered product by product (int32, wrapping)."""
    gp = _padded(g)
    cg, kg = g.c // groups, g.k // groups
    acc = np.zeros((g.n, groups, kg, gp.p, gp.q), dtype=np.int32)
    tab = table.astype(np.int32, copy=False)
    wv = wb.reshape(groups, kg, cg, g.r, g.s)
    for r in range(g.r):
        for s in range(g.s):
            xt = tap_view(xb, gp, r, s).reshape(g.n, groups, cg, gp.p, gp.q)
            for c in range(cg):
                # rows of the activations, columns of this tap's weight per (group, output channel)
                acc += tab[xt[:, :, None, c], wv[None, :, :, c, r, s, None, None]]
    return acc.reshape(g.n, g.k, gp.p, gp.q)


__all__ = ["grouped_conv2d_products", "grouped_geometry"]
