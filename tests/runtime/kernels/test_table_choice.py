"""The table path's kernel choice: measured once per layer shape, exact whichever wins.

Checked: the fastest candidate is kept (a deliberately slow one loses); disagreeing candidates
warn and fall back to the first; on an AVX-512 BW host a layer whose tables fit is measured once
and the choice serves a second multiplier on the same shape, with both results equal to a
product-by-product reference; a layer whose tables do not fit takes the register-LUT kernel
unmeasured.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from approxtvm.runtime.kernels import KernelCache, LayerStore, conv2d_products, tvm_available
from approxtvm.runtime.kernels.table_choice import measured_kernel
from approxtvm.runtime.kernels.table_perm import PermConv
from approxtvm.runtime.multipliers.multiplier import Multiplier

pytestmark = pytest.mark.skipif(not tvm_available(), reason="the table kernels are TVM kernels")


def _reference(x, w, table, pad):
    """One lookup ``table[x_byte, w_byte]`` per multiply of a 3×3 conv padded by 1 with ``pad``."""
    n, c, h, wd = x.shape
    xp = np.full((n, c, h + 2, wd + 2), pad, np.int64)
    xp[:, :, 1:-1, 1:-1] = x
    t = np.asarray(table, np.int64)
    out = np.zeros((n, w.shape[0], h, wd), np.int64)
    for r in range(3):
        for s in range(3):
            win = xp[:, :, r : r + h, s : s + wd]
            out += t[win[:, None], w[None, :, :, r, s, None, None]].sum(axis=2)
    return out.astype(np.int32)


def test_the_faster_candidate_is_kept_and_reused():
    cache = KernelCache().tvm_kernels()
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.02)
        return np.arange(4)

    def fast():
        calls["fast"] += 1
        return np.arange(4)

    shape = ("geometry-a", "int16", None)
    name, out = measured_kernel(shape, {"slow": slow, "fast": fast}, cache.choices, cache.lock)
    assert name == "fast" and np.array_equal(out, np.arange(4))
    n_slow = calls["slow"]
    assert measured_kernel(shape, {"slow": slow, "fast": fast}, cache.choices, cache.lock) == ("fast", None)
    assert calls["slow"] == n_slow  # known: nothing runs again
    # another shape is measured on its own
    name_b, _ = measured_kernel(("geometry-b", "int16", None), {"slow": slow, "fast": fast}, cache.choices, cache.lock)
    assert name_b == "fast" and calls["slow"] > n_slow


def test_disagreeing_candidates_warn_and_use_the_first():
    cache = KernelCache().tvm_kernels()
    with pytest.warns(RuntimeWarning, match="disagree"):
        name, out = measured_kernel(
            ("g", "int16", 1), {"a": lambda: np.zeros(3), "b": lambda: np.ones(3)}, cache.choices, cache.lock
        )
    assert name == "a" and not out.any()


def test_layers_measure_once_per_shape_and_stay_exact():
    cache = KernelCache()
    if not cache.cpu.avx512:
        pytest.skip("both table kernels apply only on an AVX-512 BW host; this CPU lacks it")
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (2, 8, 12, 12), dtype=np.uint8)
    w = rng.integers(0, 256, (16, 8, 3, 3), dtype=np.uint8)
    kernels = cache.tvm_kernels()
    for i in range(2):  # two multipliers on one shape: the second reuses the first's measurement
        table = rng.integers(0, 60000, (256, 256)).astype(np.int32)  # not symmetric
        mult = Multiplier(f"rand_choice{i}", table, False)
        store = LayerStore.for_weights(w)
        for _ in range(2):  # the measuring call and a call with the kept kernel
            got = conv2d_products(x, w, mult, pads=(1, 1, 1, 1), pad_value=9, path="table", cache=cache, store=store)
            assert np.array_equal(got, _reference(x, w, table, 9))
        assert len(kernels.choices) == 1
        (choice,) = kernels.choices.values()
        (prepared,) = [v for k, v in store.entries.items() if k[0] == "tvm_table"]
        assert isinstance(prepared, PermConv) == (choice == "perm")


def test_layer_whose_tables_do_not_fit_takes_the_register_lut_unmeasured():
    cache = KernelCache(table_cache_max_bytes=1 << 20)  # 1 MiB: these tables (2.4 MB) do not fit
    if not cache.cpu.avx512:
        pytest.skip("the register-LUT kernel needs an AVX-512 BW host; this CPU lacks it")
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, (1, 16, 6, 6), dtype=np.uint8)
    w = rng.integers(0, 256, (32, 16, 3, 3), dtype=np.uint8)
    table = rng.integers(0, 60000, (256, 256)).astype(np.int32)
    store = LayerStore.for_weights(w)
    got = conv2d_products(
        x, w, Multiplier("rand_big", table, False), pads=(1, 1, 1, 1), pad_value=3, cache=cache, store=store
    )
    assert np.array_equal(got, _reference(x, w, table, 3))
    assert not cache.tvm_kernels().choices
    assert any(isinstance(v, PermConv) for v in store.entries.values())
