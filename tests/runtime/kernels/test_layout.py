"""The compiled output layout pass equals numpy's slice-and-transpose; staging arrays are reused
by one caller and never shared by two at once; the table kernels stay exact across repeated calls
that reuse their staging arrays (a stale buffer would leak one call's data into the next)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.runtime.kernels import KernelCache, conv2d_products, tvm_available
from approxtvm.runtime.kernels.layout import Scratch, aligned_empty, to_nchw
from approxtvm.runtime.multipliers.multiplier import Multiplier

needs_tvm = pytest.mark.skipif(not tvm_available(), reason="the layout pass is a TVM kernel")


@pytest.fixture(scope="module")
def tvm_cache() -> KernelCache:
    return KernelCache()


@needs_tvm
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 3),
    p=st.integers(1, 9),
    qp=st.integers(1, 12),
    kp=st.integers(1, 70),
    data=st.data(),
)
def test_to_nchw_equals_numpy_transpose(tvm_cache, n, p, qp, kp, data):
    q = data.draw(st.integers(1, qp))
    k = data.draw(st.integers(1, kp))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    y = aligned_empty((n, p, qp, kp), "int32")
    y[...] = rng.integers(-(2**31), 2**31, y.shape, dtype=np.int64)
    got = to_nchw(y, k, q, tvm_cache.tvm_kernels())
    want = y[:, :, :q, :k].transpose(0, 3, 1, 2)
    assert got.flags.c_contiguous and got.shape == (n, k, p, q)
    assert np.array_equal(got, want)


@needs_tvm
def test_to_nchw_rejects_impossible_slices(tvm_cache):
    y = aligned_empty((1, 2, 3, 4), "int32")
    with pytest.raises(ValueError, match="cannot keep"):
        to_nchw(y, 5, 3, tvm_cache.tvm_kernels())
    with pytest.raises(ValueError, match="cannot keep"):
        to_nchw(y.astype(np.int64), 4, 3, tvm_cache.tvm_kernels())


def test_scratch_reuses_one_array_and_lends_it_once():
    s = Scratch()
    with s.borrow("a", (4, 5), "int32") as a1:
        a1[...] = 7
        with s.borrow("a", (4, 5), "int32") as a2:  # lent: a fresh array, not a1
            assert a2 is not a1 and not np.shares_memory(a1, a2)
    with s.borrow("a", (4, 5), "int32") as a3:
        assert a3 is a1  # returned and kept
        assert a3.ctypes.data % 64 == 0 and a3.dtype == np.int32
    with s.borrow("a", (4, 6), "int32") as b:
        assert not np.shares_memory(a1, b)


def test_scratch_keeps_at_most_its_budget_dropping_the_least_recently_used():
    s = Scratch(max_bytes=3000)
    with s.borrow("a", (1000,), "uint8") as a:
        pass
    with s.borrow("b", (1000,), "uint8"):
        pass
    with s.borrow("a", (1000,), "uint8"):  # a used again: b is now the least recent
        pass
    with s.borrow("c", (1500,), "uint8"):
        pass
    assert s.kept_bytes <= 3000
    with s.borrow("a", (1000,), "uint8") as again:
        assert again is a  # kept
    with s.borrow("big", (5000,), "uint8") as big:  # above the budget on its own: not kept
        assert big.nbytes == 5000
    assert s.kept_bytes <= 3000 and ("big", (5000,), "uint8") not in s.arrays


def test_scratch_threads_never_share():
    s = Scratch()
    seen: list[int] = []
    barrier = threading.Barrier(2)

    def work():
        with s.borrow("x", (64,), "uint8") as arr:
            barrier.wait()  # both hold a buffer at the same time
            seen.append(arr.ctypes.data)

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(set(seen)) == 2


@needs_tvm
@pytest.mark.parametrize("path", ["table", "table_perm", "table_gather"])
def test_repeated_calls_with_reused_staging_stay_exact(path):
    """Two layers of different widths and pad codes, called alternately: every call equals the
    product-by-product sum (a stale pad channel or column from the previous call would not)."""
    cache = KernelCache()
    if path == "table_perm" and not cache.cpu.avx512:
        pytest.skip("vpermi2w needs an AVX-512 BW host; this CPU lacks it")
    rng = np.random.default_rng(3)
    table = rng.integers(0, 30000, (256, 256)).astype(np.int32)  # not symmetric: operand order matters
    mult = Multiplier("rand_layout", table, False)
    cases = []
    for c, k, pad in ((3, 5, 17), (5, 3, 0)):
        x = rng.integers(0, 256, (2, c, 7, 6), dtype=np.uint8)
        w = rng.integers(0, 256, (k, c, 3, 2), dtype=np.uint8)
        xp = np.full((2, c, 9, 8), pad, np.uint8)
        xp[:, :, 1:8, 1:7] = x
        want = np.zeros((2, k, 7, 7), np.int64)
        for r in range(3):
            for s_ in range(2):
                xs = xp[:, :, r : r + 7, s_ : s_ + 7].astype(np.int64)  # (n, c, p, q)
                want += np.einsum("ncpqk->nkpq", table[xs[..., None], w[:, :, r, s_].T[None, :, None, None, :]])
        cases.append((x, w, pad, want.astype(np.int32)))
    for _ in range(2):
        for x, w, pad, want in cases:
            got = conv2d_products(x, w, mult, pads=(1, 1, 1, 1), pad_value=pad, path=path, cache=cache)
            assert np.array_equal(got, want)
