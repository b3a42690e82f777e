"""Properties of the parametric families."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels.lowrank import find_factors
from approxtvm.runtime.multipliers import FAMILIES, family_multiplier, operand_values, resolve_multiplier


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("spec", ["trunc:k=0", "optrunc:ka=0,kb=0", "bam:h=0,v=0", "drum:k=8"])
def test_degenerate_parameters_are_exact(spec, signed):
    m = family_multiplier(spec, signed=signed)
    assert m.is_exact, spec


@pytest.mark.parametrize("signed", [False, True])
def test_every_family_builds_in_both_signednesses(signed):
    examples = {
        "exact": "exact",
        "trunc": "trunc:k=4",
        "optrunc": "optrunc:ka=2,kb=1",
        "bam": "bam:h=4,v=1",
        "drum": "drum:k=4",
        "mitchell": "mitchell",
        "kulkarni": "kulkarni",
    }
    assert set(examples) == set(FAMILIES)
    for fam, spec in examples.items():
        m = family_multiplier(spec, signed=signed)
        assert m.signed is signed and m.table.shape == (256, 256)
        assert m.power_mw is not None and 0 < m.power_mw <= (0.425 if signed else 0.391) + 1e-12
        assert m.power_is_estimate == (fam != "exact")


def test_truncation_errors():
    m = family_multiplier("trunc:k=6")
    e = m.table.astype(np.int64) - np.arange(256)[:, None] * np.arange(256)[None, :]
    assert e.max() == 0 and e.min() == -63
    assert m.metrics.wce == 63


@pytest.mark.parametrize("h", [2, 4, 6])
def test_bam_error_has_small_exact_rank(h):
    m = family_multiplier(f"bam:h={h},v=0")
    f = find_factors(m.table, m.signed)
    assert f is not None and f.rank <= h + 1
    assert np.array_equal(f.reconstruct() // f.divisor, m.table)
    e = m.table.astype(np.int64) - np.arange(256)[:, None] * np.arange(256)[None, :]
    assert e.max() == 0  # BAM only drops bits


def test_bam_more_breaks_cost_less_and_err_more():
    a = family_multiplier("bam:h=2,v=0")
    b = family_multiplier("bam:h=6,v=2")
    assert b.power_mw < a.power_mw
    assert b.metrics.mae > a.metrics.mae


def test_operand_truncation_and_drum_are_rank_one():
    for spec in ("optrunc:ka=2,kb=3", "drum:k=4"):
        f = find_factors(family_multiplier(spec).table, False)
        assert f is not None and f.rank == 1, spec


def test_sign_magnitude_families_are_odd():
    vals = operand_values(True)
    pos = vals[(vals > 0)]
    for spec in ("bam:h=4,v=0", "drum:k=3", "mitchell", "kulkarni"):
        m = family_multiplier(spec, signed=True)
        a = pos[:, None]
        b = pos[None, :]
        assert np.array_equal(m(-a, b), -m(a, b)), spec
        assert np.array_equal(m(-a, -b), m(a, b)), spec
        u = family_multiplier(spec, signed=False)
        assert np.array_equal(m(a, b), u(a, b)), spec


def test_mitchell_underestimates_by_at_most_one_ninth():
    m = family_multiplier("mitchell")
    a = np.arange(1, 256)[:, None]
    b = np.arange(1, 256)[None, :]
    p = a * b
    got = m(a, b).astype(np.int64)
    assert np.all(got <= p)
    assert np.max((p - got) / p) <= 1 / 9 + 1e-12  # Mitchell's bound: 11.1 %
    assert m(0, 77) == 0 and m(128, 64) == 8192  # powers of two are exact


def test_kulkarni_block():
    m = family_multiplier("kulkarni")
    assert m(3, 3) == 7
    assert m(255, 255) == 65025 - 2 * 85 * 85
    assert m(2, 3) == 6


def test_drum_keeps_small_operands_exact():
    m = family_multiplier("drum:k=4")
    a = np.arange(16)[:, None]
    assert np.array_equal(m(a, a.T), a * a.T)
    assert m(200, 1) == 208  # 0b1100_1000: keep 1100, force the kept LSB to 1 → 1101 << 4
    assert m(255, 1) == 240  # 0b1111_1111: keep 1111 (LSB already 1) → 1111 << 4


def test_spec_errors_are_clear():
    with pytest.raises(MultiplierError, match="missing parameter k"):
        family_multiplier("trunc")
    with pytest.raises(MultiplierError, match="bad parameter"):
        family_multiplier("bam:h=4,x=1")
    with pytest.raises(MultiplierError, match="not an integer"):
        family_multiplier("drum:k=four")
    with pytest.raises(MultiplierError, match="out of range"):
        family_multiplier("drum:k=1")
    with pytest.raises(MultiplierError, match="unknown multiplier"):
        resolve_multiplier("frobnicate:k=1")


def test_canonical_names():
    assert family_multiplier("bam:h=4").name == "bam:h=4,v=0"
    assert resolve_multiplier(" BAM:v=1,h=3 ").name == "bam:h=3,v=1"
    assert resolve_multiplier("exact", signed=True).signed
