"""The vectorised input-delta path (``faults.input_perm``, AVX-512 BW) against the emulator and the
scalar kernel, on random non-commutative 16-bit tables; and its fallback where it does not run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import accumulate
from approxtvm.runtime.faults import input_perm
from approxtvm.runtime.faults.delta_numpy import inject
from approxtvm.runtime.faults.weight_copies import inject_with_copies, weight_copies
from approxtvm.runtime.kernels.cpu import detect_cpu
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.faults.test_weight_copies import _stacked_check
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _program, layers, uneven_layers

pytestmark = pytest.mark.tvm

#: A signed non-commutative random table whose values fit int16 (``RAND_U`` is unsigned, uint16).
RAND16_S = Multiplier("rand16_s", np.random.default_rng(5).integers(-(2**15), 2**15, (256, 256)).astype(np.int32), True)
#: Values past 16 bits: the path never runs on it.
WIDE = Multiplier("wide", np.random.default_rng(6).integers(-(2**20), 2**20, (256, 256)).astype(np.int32), True)

AVX512 = detect_cpu().avx512
SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
needs_avx512 = pytest.mark.skipif(not AVX512, reason="the register-permute lookup needs AVX-512 BW on the host")


def _plan(noc: float, w: float, x: float, mode: str = "write", msbs: int = 0) -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, msbs, (("weight", w), ("input", x)), mode)


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every call with input words takes the vectorised path where it runs; counts its calls."""
    monkeypatch.setattr(input_perm, "PRODUCTS_PER_ACCUMULATOR", 0)
    seen: list[int] = []
    real = input_perm.run_perm

    def counted(*a: object, **k: object) -> None:
        seen.append(1)
        real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(input_perm, "run_perm", counted)
    return seen


def _check(m: Mapping, mult: Multiplier, seed: int, plan: faults.FaultPlan) -> bool:
    """The stacked-kernel path (``inject``) and the weight-copies path against the emulator on one
    layer call; whether the sample had input words."""
    prog, x = _program(m.shape, m, mult, seed=seed % 1000, zx=seed % 256, zw=(seed >> 8) % 256)
    g = faults.tile_geometry(m, SPEC)
    sample = faults.sample_faults(plan, g, seed=seed)
    ref = emulate(x, prog, corruption=_corruption(sample)).acc
    clean = accumulate(x, prog)
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    prep = kernels.prepare(prog, g, la)
    np.testing.assert_array_equal(inject(x, prog, clean, sample, g, la, kernels, prep), ref)
    copies = weight_copies(g.compute or g, m)
    if copies is not None:
        np.testing.assert_array_equal(inject_with_copies(x, prog, clean, sample, g, la, kernels, prep, copies), ref)
    return len(sample.input) > 0


@needs_avx512
@settings(max_examples=40, deadline=None, suppress_health_check=SLOW_OK)
@given(layers(kinds=("conv2d", "dense", "grouped")), st.sampled_from(["write", "read", "both"]))
def test_the_vectorised_path_equals_the_emulator(
    runs: list[int], layer: tuple[Mapping, Multiplier, int], mode: str
) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    mult = (RAND_U, RAND16_S)[seed % 2]
    noc, w, x = ((0.02, 0.03, 0.03), (0.0, 0.0, 0.05), (0.0, 0.05, 0.2))[(seed >> 5) % 3]
    before = len(runs)
    if _check(m, mult, seed, _plan(noc=noc, w=w, x=x, mode=mode, msbs=(seed >> 3) % 3)):
        assert len(runs) > before  # the vectorised path ran


@needs_avx512
@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_OK)
@given(uneven_layers(kinds=("conv2d", "dense", "grouped")))
def test_the_vectorised_path_equals_the_emulator_on_uneven_mappings(
    runs: list[int], layer: tuple[Mapping, Multiplier, int]
) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    _check(m, (RAND_U, RAND16_S)[seed % 2], seed, _plan(noc=0.02, w=0.03, x=0.1))


@needs_avx512
@settings(max_examples=25, deadline=None, suppress_health_check=SLOW_OK)
@given(layers(kinds=("conv2d", "dense", "grouped")))
def test_the_vectorised_path_reads_each_stacked_calls_weight_copies(
    runs: list[int], layer: tuple[Mapping, Multiplier, int]
) -> None:
    """Stacked calls, each against its own corrupted weight copies (``cbase``), through this path."""
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    before = len(runs)
    plan = _plan(noc=0.01, w=0.02, x=0.05, mode=("write", "both")[seed % 2])
    if not _stacked_check(m, (RAND_U, RAND16_S)[seed % 2], seed, plan, ncalls=3):
        reject()
    assert len(runs) > before  # the vectorised path ran


@pytest.mark.parametrize("mult", [RAND_U, RAND16_S, EXACT_U, WIDE])
def test_a_session_gives_the_scalar_kernels_faults(mult: Multiplier, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a session on a mapped 3×3 layer (48 channels: one and a half 32-lane chunks): the
    accumulators and counters with the path forced on equal those with it off; without AVX-512 (or a
    table past 16 bits) the forced path falls back to the scalar kernel."""
    shape = LayerShape.conv2d(2, 48, 16, 10, 10, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, x = _program(shape, m, mult, seed=9, zx=200, zw=3)
    acc = accumulate(x, prog)

    def run(threshold: int) -> tuple[list[np.ndarray], dict]:
        monkeypatch.setattr(input_perm, "PRODUCTS_PER_ACCUMULATOR", threshold)
        mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
        mf.plans["L"] = _plan(noc=0.01, w=0.001, x=0.05, mode="both")
        s = mf.session(seed=3)
        assert s is not None
        return [s.apply("L", x, prog, acc) for _ in range(2)], s.counters()

    seen: list[int] = []
    real = input_perm.run_perm
    monkeypatch.setattr(input_perm, "run_perm", lambda *a, **k: (seen.append(1), real(*a, **k)))
    fast, fc = run(0)
    assert bool(seen) == (AVX512 and mult is not WIDE)
    slow, sc = run(10**18)
    assert len(seen) == (2 if AVX512 and mult is not WIDE else 0)  # none with the threshold out of reach
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, acc)
    assert fc == sc
    # a host without AVX-512 BW: no kernel, the scalar one, the same sums
    monkeypatch.setattr(input_perm, "input_perm_kernel", lambda td: None)
    none, nc = run(0)
    assert len(seen) == (2 if AVX512 and mult is not WIDE else 0)
    for a, b in zip(none, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    assert nc == sc


@settings(max_examples=25, deadline=None)
@given(*(st.integers(1, v) for v in (3, 40, 5, 3, 3)), st.integers(0, 99))
def test_kmajor_weights_and_the_transposed_add(copies: int, k: int, c: int, r: int, s: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 256, copies * k * c * r * s).astype(np.uint8)
    got = input_perm.kmajor_weights(w, k, c, r, s)
    assert got.dtype == np.int16 and len(got) == w.size + input_perm.LANES
    for cp in range(copies):
        for kk, cc, rr, ss in zip(*(rng.integers(0, v, 5) for v in (k, c, r, s)), strict=True):
            flat = cp * k * c * r * s + ((kk * c + cc) * r + rr) * s + ss
            assert got[cp * k * c * r * s + ((cc * r + rr) * s + ss) * k + kk] == w[flat]
    n, pq = copies, r * s
    out = rng.integers(-(2**31), 2**31, n * k * pq).astype(np.int32)
    buf = rng.integers(-(2**31), 2**31, n * pq * k + input_perm.LANES).astype(np.int32)
    want = (out.reshape(n, k, pq).astype(np.int64) + buf[: n * pq * k].reshape(n, pq, k).transpose(0, 2, 1)).astype(
        np.int32
    )  # int32 wrap-around
    input_perm.add_transposed(out, buf, n, k, pq)
    np.testing.assert_array_equal(out.reshape(n, k, pq), want)


def test_tiles_past_the_decode_table_keep_the_scalar_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = LayerShape.conv2d(1, 40, 8, 8, 8, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_U, seed=2)
    g = faults.tile_geometry(m, SPEC)
    rec = faults.compiled_kernels().prepare(prog, g, faults.layer_arrays(prog, g))["record"]  # type: ignore[index]
    taps = faults.layer_arrays(prog, g).taps
    words = rec.tile_n * rec.tile_g * rec.tile_c * rec.tile_h * rec.tile_w
    monkeypatch.setattr(input_perm, "MAX_TILE_WORDS", words - 1)
    assert input_perm.perm_layer(rec, RAND_U.table, taps) is None
    monkeypatch.setattr(input_perm, "MAX_TILE_WORDS", words)
    layer = input_perm.perm_layer(rec, RAND_U.table, taps)
    assert (layer is not None) == AVX512
    if layer is not None:  # the table: every word's mixed-radix digits, ww fastest
        dec = layer.decode.reshape(words, 8)
        w = np.arange(words)
        np.testing.assert_array_equal(dec[:, 1], w % rec.tile_w)
        np.testing.assert_array_equal(dec[:, 0], w // rec.tile_w % rec.tile_h)
        np.testing.assert_array_equal(dec[:, 2], w // (rec.tile_w * rec.tile_h) % rec.tile_c)
        np.testing.assert_array_equal(dec[:, 4], w // (rec.tile_w * rec.tile_h * rec.tile_c * rec.tile_g))
