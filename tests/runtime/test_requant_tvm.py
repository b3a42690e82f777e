"""The compiled requantization pass against the numpy requantizer (itself checked against
onnxruntime's QuantizeLinear in test_requantize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.runtime.exact_layer import RowsAccumulators
from approxtvm.runtime.executor import Requantizer
from approxtvm.runtime.requant_tvm import compiled_requantize, compiled_requantize_rows


def _rq(k: int, rank: int, dtype: str, zp: int, bias: bool, scale: np.ndarray) -> Requantizer:
    bshape = (1, -1, 1, 1) if rank == 4 else (1, -1)
    info = np.iinfo(dtype)
    b = np.arange(k, dtype=np.int32) * 7 - 100 if bias else None
    return Requantizer(
        scale.astype(np.float32).reshape(bshape),
        None if b is None else b.reshape(bshape),
        np.float32(info.min - zp),
        np.float32(info.max - zp),
        np.float32(zp),
        np.dtype(dtype),
    )


@pytest.mark.parametrize("dtype, zp", [("uint8", 0), ("uint8", 131), ("int8", 0), ("int8", -7)])
@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (6, 40)])
@pytest.mark.parametrize("bias", [True, False])
def test_compiled_requantization_equals_numpy(dtype: str, zp: int, shape: tuple[int, ...], bias: bool) -> None:
    rng = np.random.default_rng(sum(shape) + zp)
    k = shape[1]
    acc = rng.integers(-(2**31), 2**31, shape, dtype=np.int64).astype(np.int32)  # far out of range: clamped
    acc.reshape(-1)[: acc.size // 2] = rng.integers(-400, 400, acc.size // 2)  # inside the range
    # 0.5 · odd: exact halves, rounded to even; a per-tensor scale (one float32 for all channels)
    for scale in (rng.random(k) * 0.7, np.full(k, 0.5), np.array([0.37])):
        rq = _rq(k, len(shape), dtype, zp, bias, scale)
        before = acc.copy()
        got = compiled_requantize(rq, acc)
        if got is None:
            pytest.skip("TVM cannot build the kernel here (the numpy requantizer is used)")
        want = rq(acc.copy())
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(acc, before)  # the accumulators are left as they were
        assert len(np.unique(got)) > 3  # not all clamped


def test_unsupported_layouts_fall_back_to_numpy() -> None:
    rq = _rq(4, 4, "uint8", 3, True, np.full(4, 0.1))
    acc = np.zeros((2, 4, 3, 3), np.int32)
    assert compiled_requantize(rq, acc[:, :, ::2]) is None  # not C-contiguous
    assert compiled_requantize(rq, acc.astype(np.int64)) is None
    assert compiled_requantize(rq, acc.reshape(2, 4, 9, 1, 1)) is None


@pytest.mark.parametrize("dtype, zp", [("uint8", 0), ("uint8", 131), ("int8", -7)])
@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (2, 24, 4, 4), (1, 64, 7, 7), (2, 5, 6, 6), (6, 40)])
@pytest.mark.parametrize("bias", [True, False])
def test_rows_requantization_equals_numpy_on_the_standard_layout(
    dtype: str, zp: int, shape: tuple[int, ...], bias: bool
) -> None:
    """Accumulators in the GEMM's ``(N·P·Q, K)`` rows with an extra per-channel term: transposed,
    the term and the layer bias added (int32 wrap-around, values near the int32 limits included)
    and requantized in one pass, equal to numpy's requantizer on the standard layout."""
    rng = np.random.default_rng(len(shape) * 7 + zp)
    n, k = shape[0], shape[1]
    p, q = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
    rows = rng.integers(-(2**31), 2**31, (n * p * q, k), dtype=np.int64).astype(np.int32)
    rows[::3] //= 1 << 16  # most values in the requantizer's range, some far outside
    extra = rng.integers(-3000, 3000, k).astype(np.int32)
    extra[0] = 2**31 - 5  # wraps around with most accumulators of channel 0
    acc = RowsAccumulators(rows, extra, (n, k, p, q), len(shape) == 2)
    for scale in (rng.uniform(1e-3, 1e-2, k), rng.uniform(1e-3, 1e-2, 1)):  # per channel, per tensor
        rq = _rq(k, len(shape), dtype, zp, bias, scale)
        want = rq(acc.standard())
        got = compiled_requantize_rows(rq, acc)
        assert got is not None
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(got)) > 3  # not all clamped
    # the standard layout itself, by hand: transpose, then the int32 sum of the term
    by_hand = rows.reshape(n, p * q, k).transpose(0, 2, 1).reshape(n, k, p, q) if len(shape) == 4 else rows
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(acc.standard(), by_hand + extra.reshape((1, k) + (1,) * (len(shape) - 2)))
