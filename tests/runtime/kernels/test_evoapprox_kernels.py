"""Real EvoApproxLib tables through the kernels (pack in ../shared, read-only; skipped if absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from approxtvm.runtime.kernels import choose_path, conv2d_products, conv2d_products_reference
from approxtvm.runtime.kernels.lowrank import find_factors
from approxtvm.runtime.multipliers import load_lut

PACK = Path(os.environ.get("APPROXTVM_TEST_EVOAPPROX") or Path(__file__).resolve().parents[4] / "shared" / "evoapprox")
pytestmark = pytest.mark.skipif(not (PACK / "luts").is_dir(), reason=f"EvoApproxLib pack not at {PACK}")


def test_factorisations_of_all_pack_tables_are_exact():
    found = 0
    for p in sorted((PACK / "luts").glob("*.bin")):
        m = load_lut(p)
        f = find_factors(m.table, m.signed)
        if f is not None:
            found += 1
            assert np.array_equal(f.reconstruct(), m.table.astype(np.int64) * f.divisor), p.name
    assert found >= 13  # every signed v1 circuit factorises (seen: 34 of 68 tables)


@pytest.mark.parametrize("name", ["mul8u_199Z", "mul8s_1L2H", "mul8u_13QR", "mul8s_1KRC", "mul8u_FTA"])
def test_pack_multipliers_auto_path_matches_reference(kcache, name):
    m = load_lut(PACK / "luts" / f"{name}.bin")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (2, 6, 8, 9), dtype=np.uint8).view(m.operand_dtype)
    w = rng.integers(0, 256, (5, 6, 3, 3), dtype=np.uint8).view(m.operand_dtype)
    pad = -5 if m.signed else 200
    kw = dict(strides=(1, 2), pads=(1, 1, 2, 0), pad_value=pad)
    choice = choose_path(m, weights=w, cache=kcache)
    got = conv2d_products(x, w, m, cache=kcache, **kw)
    assert np.array_equal(got, conv2d_products_reference(x, w, m, **kw)), choice
