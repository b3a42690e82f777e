"""Real EvoApproxLib tables (shipped with the package) through the kernels."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.runtime.kernels import choose_path, conv2d_products, conv2d_products_reference
from approxtvm.runtime.kernels.lowrank import find_factors
from approxtvm.runtime.multipliers import EvoApproxLibrary, load_catalog, resolve_multiplier

pytestmark = pytest.mark.real_circuit


def test_factorisations_of_all_packaged_tables_are_exact():
    lib = EvoApproxLibrary(allow_network=False)
    found = 0
    for sha, e in {e.lut_sha256: e for e in load_catalog()}.items():
        m = lib.packaged_multiplier(e.key)
        f = find_factors(m.table, m.signed)
        if f is not None:
            found += 1
            assert np.array_equal(f.reconstruct(), m.table.astype(np.int64) * f.divisor), (e.key, sha)
    assert found >= 13  # every signed v1 circuit factorises (seen: 34 of the pack's 68 table files)


@pytest.mark.parametrize("name", ["mul8u_199Z", "mul8s_1L2H", "mul8u_13QR", "mul8s_1KRC", "mul8u_FTA"])
def test_pack_multipliers_auto_path_matches_reference(kcache, name):
    m = resolve_multiplier(name)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (2, 6, 8, 9), dtype=np.uint8).view(m.operand_dtype)
    w = rng.integers(0, 256, (5, 6, 3, 3), dtype=np.uint8).view(m.operand_dtype)
    pad = -5 if m.signed else 200
    kw = dict(strides=(1, 2), pads=(1, 1, 2, 0), pad_value=pad)
    choice = choose_path(m, weights=w, cache=kcache)
    got = conv2d_products(x, w, m, cache=kcache, **kw)
    assert np.array_equal(got, conv2d_products_reference(x, w, m, **kw)), choice
