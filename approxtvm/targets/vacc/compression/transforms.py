"""Weight transforms that create compressible weights: magnitude pruning and weight clustering.

Both act on 8-bit weight *codes* (uint8 / int8) and their quantization parameters, return a new
array (the input is never modified) and are lossy: they change the model. The Relax passes
:class:`~approxtvm.passes.prune_weights.PruneWeights` and
:class:`~approxtvm.passes.cluster_weights.ClusterWeights` apply them to a model's constants.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from approxtvm.errors import PolicyError

#: Upper bound on Lloyd iterations of :func:`cluster_codes` (it converges in a few on 256 bins).
MAX_LLOYD_ITERATIONS = 100


def _codes(codes: np.ndarray) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype not in (np.uint8, np.int8):
        raise PolicyError(
            "weights are not 8-bit codes",
            expected="a uint8 or int8 array",
            found=str(arr.dtype),
            fix="quantize the model (QDQ) before pruning or clustering",
        )
    return arr


def _per_axis(value: float | np.ndarray, shape: tuple[int, ...], axis: int, what: str) -> np.ndarray:
    """Broadcast a scalar or a per-channel vector along ``axis`` to ``shape`` (float64)."""
    v = np.asarray(value, dtype=np.float64)
    if v.size == 1:
        return v.reshape(())
    ax = axis % len(shape) if shape else 0
    if v.ndim != 1 or not shape or v.size != shape[ax]:
        raise PolicyError(
            f"{what} has the wrong shape",
            expected=f"a scalar or {shape[ax] if shape else 1} values along axis {axis} of a {shape} weight",
            found=f"shape {v.shape}",
            fix="pass per-tensor or per-output-channel quantization parameters",
        )
    view = [1] * len(shape)
    view[ax] = v.size
    return v.reshape(view)


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s <= 1.0:
        raise PolicyError(
            "sparsity out of range",
            expected="a fraction in [0, 1]",
            found=repr(sparsity),
            fix="e.g. 0.5 prunes half of the weights",
        )
    return s


def _magnitude(
    codes: np.ndarray, zero_code: int | np.ndarray, scales: float | np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """(|code − zero_point| · |scale| as float64, is-zero-code mask), both flat in C order."""
    zp = _per_axis(zero_code, codes.shape, axis, "zero_code")
    sc = _per_axis(scales, codes.shape, axis, "scales")
    diff = codes.astype(np.float64) - zp
    return (np.abs(diff) * np.abs(sc)).reshape(-1), (diff == 0).reshape(-1)


def _prune_order(mag: np.ndarray, is_zero: np.ndarray) -> np.ndarray:
    """Flat indices, smallest magnitude first; zero codes before equal magnitudes, then by index."""
    return np.lexsort((~is_zero, mag))


def _num_pruned(sparsity: float, size: int) -> int:
    return int(np.floor(sparsity * size + 0.5))


def prune_codes(
    codes: np.ndarray, zero_code: int | np.ndarray, scales: float | np.ndarray, sparsity: float, *, axis: int = 0
) -> np.ndarray:
    """Set the smallest-magnitude weights to the zero-point code.

    Magnitude is ``|code − zero_code| · |scale|`` (per-channel ``zero_code`` / ``scales`` lie along
    ``axis``, as the ``axis`` of ``R.dequantize``).

    Parameters
    ----------
    codes
        uint8 / int8 weight codes (not modified).
    zero_code
        Weight zero point: a scalar or one value per channel along ``axis``.
    scales
        Weight scale: a scalar or one value per channel along ``axis``.
    sparsity
        Target fraction of zero-code weights, in [0, 1].
    axis
        Channel axis of per-channel parameters.

    Returns
    -------
    np.ndarray
        New codes with exactly ``max(k, z)`` weights at the zero code, where
        ``k = floor(sparsity · N + 0.5)`` and ``z`` the zero codes already present. The ``k``
        weights of smallest magnitude are pruned; ties are broken by pruning codes already at
        the zero point first, then by lower flat (C-order) index. Kept weights are unchanged.
    """
    arr = _codes(codes)
    return prune_codes_global([(arr, zero_code, scales, axis)], sparsity)[0]


def prune_codes_global(
    layers: Sequence[tuple[np.ndarray, int | np.ndarray, float | np.ndarray, int]], sparsity: float
) -> list[np.ndarray]:
    """Prune several layers together to one global sparsity (magnitudes compared across layers).

    Parameters
    ----------
    layers
        ``(codes, zero_code, scales, axis)`` per layer, as for :func:`prune_codes`.
    sparsity
        Target fraction of zero-code weights over all layers together.

    Returns
    -------
    list[np.ndarray]
        New codes per layer. Exactly ``max(k, z)`` weights in total are at their zero code
        (``k = floor(sparsity · N_total + 0.5)``); ties as in :func:`prune_codes`, the flat index
        running over the layers in the order given.
    """
    s = _check_sparsity(sparsity)
    arrs = [_codes(c) for c, *_ in layers]
    mags, zeros = (
        zip(*(_magnitude(a, zp, sc, ax) for a, (_, zp, sc, ax) in zip(arrs, layers, strict=True)), strict=True)
        if arrs
        else ((), ())
    )
    mag = np.concatenate(mags) if mags else np.zeros(0)
    is_zero = np.concatenate(zeros) if zeros else np.zeros(0, dtype=bool)
    prune = np.zeros(mag.size, dtype=bool)
    prune[_prune_order(mag, is_zero)[: _num_pruned(s, mag.size)]] = True
    out: list[np.ndarray] = []
    start = 0
    for a, (_, zp, _, ax) in zip(arrs, layers, strict=True):
        zero = np.broadcast_to(_per_axis(zp, a.shape, ax, "zero_code"), a.shape).astype(a.dtype)
        mask = prune[start : start + a.size].reshape(a.shape)
        out.append(np.where(mask, zero, a))
        start += a.size
    return out


def _scalar_zero(zero_code: int | np.ndarray, dtype: np.dtype) -> int:
    zp = np.unique(np.asarray(zero_code))
    info = np.iinfo(dtype)
    if zp.size != 1 or not info.min <= int(zp[0]) <= info.max:
        raise PolicyError(
            "clustering needs one zero point per layer",
            expected=f"one zero code in [{info.min}, {info.max}]",
            found=f"{zp.tolist()}",
            fix="quantize this layer's weights per tensor, or per channel symmetrically",
        )
    return int(zp[0])


def cluster_codes(codes: np.ndarray, bits: int, zero_code: int | np.ndarray) -> np.ndarray:
    """Replace the codes by at most ``2^bits`` shared values (1-D k-means), keeping zeros.

    The zero code is a fixed centroid, so pruned weights stay exactly zero (and weights close to
    it may join it); the ``2^bits − 1`` other centroids start at the count-weighted quantiles of
    the non-zero codes and follow Lloyd iterations on the 256-bin histogram until the assignment
    is stable, then are rounded to integer codes. Every code maps to its nearest centroid (ties:
    the zero code, then the lower centroid). A layer with at most ``2^bits`` distinct codes is
    returned unchanged. Deterministic.

    Parameters
    ----------
    codes
        uint8 / int8 weight codes (not modified).
    bits
        Index width b, 1..8.
    zero_code
        Weight zero point (one value; a per-channel vector must hold a single value).

    Returns
    -------
    np.ndarray
        New codes with at most ``2^bits`` distinct values, the zero code among them if present.
    """
    arr = _codes(codes)
    if not isinstance(bits, int | np.integer) or not 1 <= int(bits) <= 8:
        raise PolicyError(
            "clustering width out of range",
            expected="1..8 bits",
            found=repr(bits),
            fix="e.g. bits=4 keeps 16 shared values",
        )
    zc = _scalar_zero(zero_code, arr.dtype)
    lo = int(np.iinfo(arr.dtype).min)
    counts = np.bincount((arr.reshape(-1).astype(np.int64) - lo), minlength=256).astype(np.float64)
    values = np.arange(lo, lo + 256, dtype=np.float64)
    if np.count_nonzero(counts) <= 1 << int(bits):
        return arr.copy()
    weights = counts.copy()
    weights[zc - lo] = 0.0  # the zero centroid is fixed; free centroids fit the other codes
    k = (1 << int(bits)) - 1
    cdf = np.cumsum(weights) / weights.sum()
    free = np.unique(values[np.searchsorted(cdf, (np.arange(k) + 0.5) / k)])
    assign = None
    for _ in range(MAX_LLOYD_ITERATIONS):
        cents = np.concatenate([[float(zc)], free])
        new_assign = np.argmin(np.abs(values[:, None] - cents[None, :]), axis=1)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        mass = np.bincount(assign, weights=counts, minlength=len(cents))[1:]
        total = np.bincount(assign, weights=counts * values, minlength=len(cents))[1:]
        free = np.where(mass > 0, total / np.maximum(mass, 1e-300), free)
    final = np.concatenate([[zc], np.unique(np.clip(np.rint(free), lo, lo + 255))]).astype(np.float64)
    lut = final[np.argmin(np.abs(values[:, None] - final[None, :]), axis=1)].astype(np.int64)
    return lut[arr.astype(np.int64) - lo].astype(arr.dtype)
