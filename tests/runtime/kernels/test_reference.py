"""The reference kernel against a scalar loop written independently, incl. operand order."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels import conv2d_products_reference, dense_products_reference
from approxtvm.runtime.multipliers.multiplier import Multiplier


def scalar_conv(x, w, table, strides, dilations, pads, pad_value):
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    pt, pl, pb, pr = pads
    xp = np.full((n, c, h + pt + pb, wd + pl + pr), pad_value, dtype=np.int64)
    xp[:, :, pt : pt + h, pl : pl + wd] = x.astype(np.int64)
    p = (xp.shape[2] - dilations[0] * (r - 1) - 1) // strides[0] + 1
    q = (xp.shape[3] - dilations[1] * (s - 1) - 1) // strides[1] + 1
    y = np.zeros((n, k, p, q), np.int64)
    for ni in range(n):
        for ki in range(k):
            for pi in range(p):
                for qi in range(q):
                    acc = 0
                    for ci in range(c):
                        for ri in range(r):
                            for si in range(s):
                                yy = pi * strides[0] + ri * dilations[0]
                                xx = qi * strides[1] + si * dilations[1]
                                a = xp[ni, ci, yy, xx]
                                b = int(w[ki, ci, ri, si])
                                acc += int(table[a & 0xFF, b & 0xFF])
                    y[ni, ki, pi, qi] = acc
    return y.astype(np.int32)


@pytest.mark.parametrize("name", ["rand_u", "rand_s", "bam_s"])
def test_reference_matches_scalar_loop(mults, name):
    m = mults[name]
    rng = np.random.default_rng(5)
    lo, hi = (-128, 128) if m.signed else (0, 256)
    x = rng.integers(lo, hi, (2, 3, 5, 6)).astype(m.operand_dtype)
    w = rng.integers(lo, hi, (4, 3, 3, 2)).astype(m.operand_dtype)
    kw = dict(strides=(2, 1), dilations=(1, 2), pads=(1, 0, 2, 1), pad_value=int(lo + 7))
    got = conv2d_products_reference(x, w, m, **kw)
    assert np.array_equal(got, scalar_conv(x, w, m.table, **kw))


def test_operand_order_activation_is_row():
    table = np.zeros((256, 256), np.int32)
    table[200, 3] = 7  # M(200, 3) = 7, M(3, 200) = 0
    m = Multiplier("order", table, False)
    x = np.array([[200]], np.uint8)
    w = np.array([[3]], np.uint8)
    assert dense_products_reference(x, w, m)[0, 0] == 7
    assert dense_products_reference(w, x, m)[0, 0] == 0
    y = conv2d_products_reference(x.reshape(1, 1, 1, 1), w.reshape(1, 1, 1, 1), m)
    assert y.item() == 7


def test_padding_goes_through_the_multiplier():
    table = np.full((256, 256), 5, np.int32)
    m = Multiplier("const5", table, False)
    x = np.zeros((1, 1, 1, 1), np.uint8)
    w = np.zeros((1, 1, 3, 3), np.uint8)
    y = conv2d_products_reference(x, w, m, pads=(1, 1, 1, 1), pad_value=9)
    assert y.item() == 45  # 9 taps, 8 of them padded, all through M


def test_wrong_dtype_is_a_clear_error(mults):
    x = np.zeros((1, 1, 3, 3), np.int8)
    w = np.zeros((1, 1, 1, 1), np.int8)
    with pytest.raises(MultiplierError, match="signedness"):
        conv2d_products_reference(x, w, mults["exact_u"])
