"""The compiled requantization pass against the numpy requantizer (itself checked against
onnxruntime's QuantizeLinear in test_requantize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.runtime.executor import Requantizer
from approxtvm.runtime.requant_tvm import compiled_requantize


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
    for scale in (rng.random(k) * 0.7, np.full(k, 0.5)):  # 0.5 · odd: exact halves, rounded to even
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
