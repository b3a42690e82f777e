"""The Multiplier value object: exactness, call semantics, hash, metrics definitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from approxtvm.errors import ApproxTvmError, MultiplierError
from approxtvm.runtime.multipliers import Multiplier, exact_table, family_multiplier, operand_values


@pytest.mark.parametrize("signed", [False, True])
def test_exact_equals_product_on_all_pairs(signed):
    m = family_multiplier("exact", signed=signed)
    vals = operand_values(signed)
    a, b = np.meshgrid(vals, vals, indexing="ij")
    assert np.array_equal(m(a, b), a * b)  # all 65,536 pairs through __call__
    assert m.is_exact and m.is_commutative
    assert m.metrics.mae == 0 and m.metrics.wce == 0 and m.metrics.ep_pct == 0
    assert m.power_mw == pytest.approx(0.425 if signed else 0.391)
    assert not m.power_is_estimate


def test_signed_table_is_indexed_by_byte():
    m = family_multiplier("exact", signed=True)
    assert m.table[156, 77] == -100 * 77  # 156 = -100 & 0xFF
    assert m(-100, 77) == -7700


def test_call_rejects_out_of_range_operands():
    m = family_multiplier("exact")
    with pytest.raises(MultiplierError, match="out of range"):
        m(np.array([256]), 1)
    with pytest.raises(MultiplierError, match="out of range"):
        family_multiplier("exact", signed=True)(-129, 0)


def test_table_hash_is_stable_and_depends_on_signedness():
    u = family_multiplier("exact", signed=False)
    s = Multiplier("exact", exact_table(False), signed=True)  # same bytes, other signedness
    assert u.table_hash != s.table_hash
    # pinned: sha256(int32 LE table bytes + b"u") of the exact unsigned product
    assert u.table_hash == Multiplier("x", exact_table(False), False).table_hash
    assert u.table_hash == GOLDEN_EXACT_U


GOLDEN_EXACT_U = "6331f54d058c5c57746f4daf96f884c19c1311e8e50dac2eaac2ed7dee6f378d"


def test_frozen_and_read_only():
    m = family_multiplier("bam:h=4,v=0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        m.table[0, 0] = 1


def test_bad_table_shape_and_dtype():
    with pytest.raises(MultiplierError, match="wrong shape") as ei:
        Multiplier("bad", np.zeros((16, 16), np.int32), False)
    assert isinstance(ei.value, ApproxTvmError) and ei.value.expected
    with pytest.raises(MultiplierError, match="not integer"):
        Multiplier("bad", np.zeros((256, 256), np.float32), False)


def test_metrics_definitions_on_a_tiny_error():
    t = exact_table(False).copy()
    t[3, 5] += 4  # one error of +4 where a·b = 15
    t[0, 7] -= 2  # one error of -2 where a·b = 0 (excluded from relative errors)
    me = Multiplier("two_errors", t, False).metrics
    assert me.mae == pytest.approx(6 / 65536)
    assert me.wce == 4
    assert me.bias == pytest.approx(2 / 65536)
    assert me.mse == pytest.approx(20 / 65536)
    assert me.ep_pct == pytest.approx(100 * 2 / 65536)
    assert me.mae_pct == pytest.approx(100 * 6 / 65536 / 65536)
    assert me.wcre_pct == pytest.approx(100 * 4 / 15)
    assert me.mre_pct == pytest.approx(100 * (4 / 15) / (255 * 255))


def test_transposed_swaps_operands():
    rng = np.random.default_rng(0)
    m = Multiplier("r", rng.integers(0, 1000, (256, 256)), False)
    assert m.transposed()(3, 200) == m(200, 3)
