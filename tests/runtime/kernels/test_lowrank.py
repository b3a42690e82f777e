"""Exact integer factorisation: rank decisions, rational coefficients (divisor > 1), offsets."""

from __future__ import annotations

import numpy as np

from approxtvm.runtime.kernels import conv2d_products, conv2d_products_reference, dense_products
from approxtvm.runtime.kernels.intconv import IntegerFactors, OrtSessionCache, factor_sums
from approxtvm.runtime.kernels.lowrank import find_factors, integer_factorise
from approxtvm.runtime.multipliers import Multiplier


def test_integer_factorise_with_rational_coefficients():
    m = np.array([[0, 0, 0], [2, 4, 6], [1, 2, 3], [3, 6, 9]])
    u, v, d = integer_factorise(m)
    assert d == 2 and u.shape == (4, 1)
    assert np.array_equal(u @ v, d * m)


def test_rank_limit_and_random_table_rejected():
    rng = np.random.default_rng(0)
    assert integer_factorise(rng.integers(-5, 5, (20, 20)), max_rank=8) is None
    assert find_factors(rng.integers(0, 1000, (256, 256)), signed=False) is None


def test_factor_sums_divides_exactly():
    a = np.arange(256, dtype=np.int64)
    f = IntegerFactors(u=(2 * a)[None], v=(3 * a)[None], divisor=6)  # = a·b
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 9), dtype=np.uint8)
    w = rng.integers(0, 256, (3, 9), dtype=np.uint8)
    got = factor_sums(x, w, f, None, OrtSessionCache(), None)
    assert got.dtype == np.int64
    assert np.array_equal(got, x.astype(np.int64) @ w.T.astype(np.int64))


def test_table_with_divisor_through_the_public_api(kcache):
    u = np.r_[0, 2, np.arange(2, 256) + 1].astype(np.int64)  # first pivot row 2·b, odd rows after
    m = Multiplier("rational", np.outer(u, np.arange(256)), False)
    f = find_factors(m.table, False)
    assert f is not None and f.rank == 1 and f.divisor == 2
    rng = np.random.default_rng(2)
    x = rng.integers(0, 120, (1, 3, 5, 5), dtype=np.uint8)
    w = rng.integers(0, 200, (2, 3, 3, 3), dtype=np.uint8)
    kw = dict(pads=(1, 1, 1, 1), pad_value=9)
    assert np.array_equal(
        conv2d_products(x, w, m, path="lowrank", cache=kcache, **kw), conv2d_products_reference(x, w, m, **kw)
    )


def test_factorisation_restricted_to_used_weights_lowers_rank(kcache):
    """An error that only lives on weights that never occur does not count."""
    rng = np.random.default_rng(3)
    t = (np.arange(256)[:, None] * np.arange(256)[None, :]).astype(np.int64)
    t[:, 200:] = rng.integers(0, 65536, (256, 56))  # arbitrary columns for weights ≥ 200
    m = Multiplier("masked", t, False)
    assert find_factors(m.table, False) is None
    w = rng.integers(0, 200, (7, 30), dtype=np.uint8)
    f = find_factors(m.table, False, np.unique(w))
    assert f is not None and f.rank == 1
    x = rng.integers(0, 256, (5, 30), dtype=np.uint8)
    from approxtvm.runtime.kernels import choose_path, dense_products_reference

    assert choose_path(m, weights=w, cache=kcache).path == "lowrank"
    assert np.array_equal(dense_products(x, w, m, cache=kcache), dense_products_reference(x, w, m))


def test_constant_zero_multiplier(kcache):
    m = Multiplier("zero", np.zeros((256, 256), np.int32), False)
    f = find_factors(m.table, False)
    assert f is not None and f.rank == 0
    x = np.full((1, 2, 3, 3), 255, np.uint8)
    w = np.full((2, 2, 3, 3), 255, np.uint8)
    assert not conv2d_products(x, w, m, pads=(1, 1, 1, 1), cache=kcache).any()
