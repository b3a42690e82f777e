"""Every fast path equals the reference bit for bit (hypothesis over shapes, strides, pads, ...)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approxtvm.errors import MultiplierError
from approxtvm.runtime.kernels import (
    choose_path,
    conv2d_products,
    conv2d_products_reference,
    dense_products,
    dense_products_reference,
    tvm_available,
)

ORT_PATHS = {"exact_u": "exact", "exact_s": "exact", "bam_u": "lowrank", "bam_s": "lowrank"}
ALL = ["exact_u", "exact_s", "bam_u", "bam_s", "rand_u", "rand_s"]


@st.composite
def conv_case(draw):
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 5))
    k = draw(st.integers(1, 6))
    r = draw(st.sampled_from([1, 3, 7]))
    s = draw(st.sampled_from([1, 3, r]))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h0 = max(1, (r - 1) * dil[0] + 1 - pads[0] - pads[2])
    w0 = max(1, (s - 1) * dil[1] + 1 - pads[1] - pads[3])
    h = draw(st.integers(h0, h0 + 8))
    w = draw(st.integers(w0, w0 + 8))
    seed = draw(st.integers(0, 2**31))
    pad_code = draw(st.integers(0, 255))
    return dict(n=n, c=c, k=k, r=r, s=s, h=h, w=w, dil=dil, strides=strides, pads=pads, seed=seed, pad_code=pad_code)


def _operands(m, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.integers(0, 256, (case["n"], case["c"], case["h"], case["w"]), dtype=np.uint8)
    w = rng.integers(0, 256, (case["k"], case["c"], case["r"], case["s"]), dtype=np.uint8)
    pad = case["pad_code"]
    if m.signed:
        return x.view(np.int8), w.view(np.int8), pad - 256 if pad > 127 else pad
    return x, w, pad


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_case())
def test_conv_ort_and_numpy_paths_match_reference(mults, kcache, name, case):
    m = mults[name]
    x, w, pad = _operands(m, case)
    kw = dict(strides=case["strides"], dilations=case["dil"], pads=case["pads"], pad_value=pad)
    ref = conv2d_products_reference(x, w, m, **kw)
    paths = ["table_numpy"] + ([ORT_PATHS[name]] if name in ORT_PATHS else [])
    for path in paths:
        got = conv2d_products(x, w, m, path=path, cache=kcache, **kw)
        assert got.dtype == np.int32
        assert np.array_equal(got, ref), path
    auto = conv2d_products(x, w, m, cache=kcache, **kw) if name in ORT_PATHS else ref
    assert np.array_equal(auto, ref)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 9), c=st.integers(1, 70), k=st.integers(1, 20), seed=st.integers(0, 2**31))
def test_dense_ort_and_numpy_paths_match_reference(mults, kcache, name, n, c, k, seed):
    m = mults[name]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, c), dtype=np.uint8).view(m.operand_dtype)
    w = rng.integers(0, 256, (k, c), dtype=np.uint8).view(m.operand_dtype)
    ref = dense_products_reference(x, w, m)
    paths = ["table_numpy"] + ([ORT_PATHS[name]] if name in ORT_PATHS else [])
    for path in paths:
        assert np.array_equal(dense_products(x, w, m, path=path, cache=kcache), ref), path


# TVM compiles one kernel per shape (~1 s each): a few fixed shapes that cover the features.
TVM_CASES = [
    dict(n=2, c=5, k=7, r=3, s=3, h=9, w=11, dil=(1, 2), strides=(2, 1), pads=(1, 2, 0, 1), seed=1, pad_code=3),
    dict(n=1, c=3, k=70, r=7, s=7, h=12, w=12, dil=(1, 1), strides=(2, 2), pads=(3, 3, 3, 3), seed=2, pad_code=200),
    dict(n=1, c=4, k=16, r=1, s=1, h=5, w=6, dil=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0), seed=3, pad_code=0),
]


@pytest.mark.tvm
@pytest.mark.skipif(not tvm_available(), reason="needs TVM")
@pytest.mark.parametrize("case", TVM_CASES)
@pytest.mark.parametrize("name", ["rand_u", "rand_s", "bam_s"])
def test_conv_tvm_table_path_matches_reference(mults, kcache, name, case):
    m = mults[name]
    x, w, pad = _operands(m, case)
    kw = dict(strides=case["strides"], dilations=case["dil"], pads=case["pads"], pad_value=pad)
    ref = conv2d_products_reference(x, w, m, **kw)
    assert np.array_equal(conv2d_products(x, w, m, path="table", cache=kcache, **kw), ref)
    # the second call reuses the cached weight tables
    assert np.array_equal(conv2d_products(x, w, m, path="table", cache=kcache, **kw), ref)
    assert np.array_equal(conv2d_products(x, w, m, path="table_gather", cache=kcache, **kw), ref)


@pytest.mark.tvm
@pytest.mark.skipif(not tvm_available(), reason="needs TVM")
def test_dense_tvm_table_path_matches_reference(mults, kcache):
    m = mults["rand_s"]
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (6, 33), dtype=np.int8)
    w = rng.integers(-128, 128, (10, 33), dtype=np.int8)
    for path in ("table", "table_gather"):
        got = dense_products(x, w, m, path=path, cache=kcache)
        assert np.array_equal(got, dense_products_reference(x, w, m)), path


@pytest.mark.tvm
@pytest.mark.skipif(not tvm_available(), reason="needs TVM")
def test_tvm_table_path_in_small_chunks_matches_reference(mults):
    """Tables cut into many (c, k) chunks (tiny chunk budget) still add up exactly."""
    from approxtvm.runtime.kernels import KernelCache
    from approxtvm.runtime.kernels.table_tvm import TableKernelConfig

    cache = KernelCache(table_cache_max_bytes=0)  # no table cache: tables rebuilt, cost model decides
    tk = cache.tvm_kernels()
    tk.config = TableKernelConfig(xt=4, kb=16, cb=2, table_chunk_bytes=1)
    m = mults["rand_u"]
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (1, 6, 6, 7), dtype=np.uint8)
    w = rng.integers(0, 256, (20, 6, 3, 3), dtype=np.uint8)
    ref = conv2d_products_reference(x, w, m, pads=(1, 1, 1, 1), pad_value=5)
    got = conv2d_products(x, w, m, pads=(1, 1, 1, 1), pad_value=5, path="table", cache=cache)
    assert np.array_equal(got, ref)
    from approxtvm.runtime.kernels.geometry import ConvGeometry, pad_input
    from approxtvm.runtime.kernels.table_tvm import conv2d_table_tvm

    g = ConvGeometry(1, 6, 8, 9, 20, 3, 3)  # the padded layer
    xp = pad_input(x, ConvGeometry(1, 6, 6, 7, 20, 3, 3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1), 5)
    forced = conv2d_table_tvm(xp, w, m.table, g, tk, None, kernel="table")  # chunked tables, rebuilt
    assert np.array_equal(forced, ref)


def test_choose_path(mults, kcache):
    assert choose_path(mults["exact_u"], cache=kcache).path == "exact"
    assert choose_path(mults["exact_s"], cache=kcache).path == "exact"
    assert choose_path(mults["bam_u"], cache=kcache).path == "lowrank"
    assert choose_path(mults["rand_u"], cache=kcache).path in ("table", "table_numpy")


def test_forced_exact_path_on_approximate_multiplier_errors(mults, kcache):
    x = np.zeros((1, 1, 2, 2), np.uint8)
    w = np.zeros((1, 1, 1, 1), np.uint8)
    with pytest.raises(MultiplierError, match="exact"):
        conv2d_products(x, w, mults["rand_u"], path="exact", cache=kcache)
    with pytest.raises(MultiplierError, match="unknown kernel path"):
        conv2d_products(x, w, mults["rand_u"], path="gpu", cache=kcache)


def test_large_channel_count_exact_path_does_not_overflow(mults, kcache):
    """C·R·S·255² > 2^31: onnxruntime calls are split over channels, sums stay exact."""
    m = mults["exact_u"]
    x = np.full((1, 4000, 3, 3), 255, np.uint8)
    w = np.full((2, 4000, 3, 3), 255, np.uint8)
    got = conv2d_products(x, w, m, cache=kcache)
    want = np.int64(255 * 255 * 4000 * 9)
    assert got.shape == (1, 2, 1, 1)
    assert np.all(got == np.int64(want).astype(np.int32))  # wraps like an int32 accumulator


@pytest.mark.tvm
@pytest.mark.skipif(not tvm_available(), reason="needs TVM")
def test_avx2_tiling_is_exact_too(mults):
    """The AVX2 configuration (kb=32, mcpu=haswell: runs on any x86-64 with AVX2) is bit-exact."""
    from approxtvm.runtime.kernels import KernelCache, detect_cpu
    from approxtvm.runtime.kernels.cpu import CpuInfo

    host = detect_cpu()
    if not host.avx2:
        pytest.skip("host has no AVX2")
    cache = KernelCache(host_cpu=CpuInfo(llvm_cpu="haswell", avx2=True, avx512=False, vnni=False, machine=host.machine))
    assert cache.tvm_kernels().config.kb == 32
    m = mults["rand_s"]
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (1, 5, 7, 9), dtype=np.int8)
    w = rng.integers(-128, 128, (40, 5, 3, 3), dtype=np.int8)
    ref = conv2d_products_reference(x, w, m, pads=(1, 1, 1, 1), pad_value=-3)
    for path in ("table", "table_gather"):
        got = conv2d_products(x, w, m, pads=(1, 1, 1, 1), pad_value=-3, path=path, cache=cache)
        assert np.array_equal(got, ref), path


def test_kernel_cache_pickles_as_settings(mults):
    """A cache travels to worker processes (Dask) as its settings; contents are rebuilt there."""
    import pickle

    from approxtvm.runtime.kernels import KernelCache

    c = KernelCache(table_cache_max_bytes=123, max_rank=3)
    x = np.zeros((1, 2, 3, 3), np.uint8)
    w = np.ones((2, 2, 1, 1), np.uint8)
    conv2d_products(x, w, mults["exact_u"], cache=c)
    c2 = pickle.loads(pickle.dumps(c))
    assert (c2.table_cache_max_bytes, c2.max_rank) == (123, 3)
    assert not c2.sessions.sessions
    assert np.array_equal(conv2d_products(x, w, mults["exact_u"], cache=c2), np.zeros((1, 2, 3, 3), np.int32))


@pytest.mark.tvm
@pytest.mark.skipif(not tvm_available(), reason="needs TVM")
@pytest.mark.parametrize("name", ["rand_u", "rand_s"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_case())
def test_conv_tvm_paths_match_reference_random_shapes(mults, kcache, name, case):
    """Random shapes on TVM (each new shape compiles ~0.2 s, hence few examples)."""
    m = mults[name]
    x, w, pad = _operands(m, case)
    kw = dict(strides=case["strides"], dilations=case["dil"], pads=case["pads"], pad_value=pad)
    ref = conv2d_products_reference(x, w, m, **kw)
    for path in ("table", "table_gather"):
        assert np.array_equal(conv2d_products(x, w, m, path=path, cache=kcache, **kw), ref), path
