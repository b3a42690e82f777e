"""The compiled cross term (``input_cross``): each corrupted input word finds the corrupted weights
of its (call, PE, input channel) by binary search in the records' keys, against the emulator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import accumulate
from approxtvm.runtime.faults.delta_tvm import _weight_records
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _program, layers

pytestmark = pytest.mark.tvm


def _plan(noc: float, w: float, x: float) -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, 0, (("weight", w), ("input", x)), "write")


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


def _only(sample: faults.FaultSample, tensor: str) -> faults.FaultSample:
    empty = faults.CorruptedWords.empty()
    return faults.FaultSample(sample.weight, empty) if tensor == "weight" else faults.FaultSample(empty, sample.input)


def _check_calls(m: Mapping, mult: object, seed: int, calls: int, plan: faults.FaultPlan, weights_kept: int) -> int:
    """Stacked calls through the compiled kernels against the emulator call by call (each call's
    corrupted weights cut to its first ``weights_kept`` words, 0: all); returns how many calls
    have a cross term (their joint deltas differ from the weight-only plus the input-only ones)."""
    prog, x0 = _program(m.shape, m, mult, seed=seed % 1000)  # type: ignore[arg-type]
    g = faults.tile_geometry(m, SPEC)
    rng = np.random.default_rng(seed)
    xs = [x0] + [rng.integers(0, 256, x0.shape).astype(x0.dtype) for _ in range(calls - 1)]
    samples = []
    for c in range(calls):
        s = faults.sample_faults(plan, g, seed=seed, call=c)
        if weights_kept:
            w = s.weight
            s = faults.FaultSample(
                faults.CorruptedWords(w.residency[:weights_kept], w.word[:weights_kept], w.mask[:weights_kept]), s.input
            )
        samples.append(s)
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    prep = kernels.prepare(prog, g, la)
    clean = np.concatenate([accumulate(xc, prog) for xc in xs])
    got = faults.inject_calls(np.concatenate(xs), prog, clean.copy(), samples, g, la, kernels, prep)
    crossed = 0
    rows = len(clean) // calls
    for c, (xc, s) in enumerate(zip(xs, samples, strict=True)):
        ref = emulate(xc, prog, corruption=_corruption(s)).acc
        np.testing.assert_array_equal(got[c * rows : (c + 1) * rows], ref)
        base = accumulate(xc, prog).astype(np.int64)
        apart = sum(
            emulate(xc, prog, corruption=_corruption(_only(s, t))).acc.astype(np.int64) - base
            for t in ("weight", "input")
        )
        crossed += not np.array_equal(ref.astype(np.int64) - base, apart)
    return crossed


@pytest.mark.parametrize("calls", [1, 3])
@pytest.mark.parametrize("weights_kept", [0, 1, 2])
def test_cross_term_finds_every_record_of_the_word(calls: int, weights_kept: int) -> None:
    """Many corrupted words of both tensors (every call has a cross term), and one or two weight
    records only (the keys' sentinels border the search), in one call and in stacked calls."""
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    plan = _plan(noc=0.0, w=0.08, x=0.3) if weights_kept else _plan(noc=0.02, w=0.05, x=0.05)
    crossed = sum(_check_calls(map_layer(shape, SPEC), RAND_U, seed, calls, plan, weights_kept) for seed in range(4))
    assert crossed > 0  # the cross term ran and mattered


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(), st.integers(1, 4))
def test_cross_term_on_random_mappings_and_stacked_calls(layer: tuple[Mapping, object, int], calls: int) -> None:
    m, mult, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    _check_calls(m, mult if seed % 2 else EXACT_U, seed, calls, _plan(noc=0.02, w=0.04, x=0.04), 0)


def test_weight_record_keys_are_sorted_with_two_sentinels() -> None:
    shape = LayerShape.conv2d(2, 16, 8, 6, 6, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_U, seed=1)
    g = faults.tile_geometry(m, SPEC)
    la = faults.layer_arrays(prog, g)
    prep = faults.compiled_kernels().prepare(prog, g, la)
    w = faults.sample_faults(_plan(noc=0.02, w=0.05, x=0.0), g, seed=2).weight
    assert len(w) > 3
    call = np.repeat(np.arange(2), [len(w) // 2, len(w) - len(w) // 2])
    cw = (w.residency.astype(np.int64), w.word.astype(np.int64), w.mask)
    keys, records = _weight_records(prep, g.compute or g, la, la.wflat, cw, call)
    assert len(keys) == len(w) + 2 and len(records) == 7 * len(w)
    assert np.all(np.diff(keys) >= 0) and np.all(keys[-2:] == np.iinfo(np.int64).max)
    assert keys[len(w) // 2 - 1] < keys[-3]  # the second call's keys follow the first's


def _weight_only_check(m: Mapping, mult: object, seed: int, calls: int) -> bool:
    """Weight faults alone, stacked calls, through the compiled ``weight_delta`` against the emulator
    call by call; whether any call had a corrupted weight."""
    prog, x0 = _program(m.shape, m, mult, seed=seed % 1000, zx=seed % 256)  # type: ignore[arg-type]
    g = faults.tile_geometry(m, SPEC)
    rng = np.random.default_rng(seed)
    xs = [x0] + [rng.integers(0, 256, x0.shape).astype(x0.dtype) for _ in range(calls - 1)]
    plan = _plan(noc=0.0, w=0.05, x=0.0)
    samples = [_only(faults.sample_faults(plan, g, seed=seed, call=c), "weight") for c in range(calls)]
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    clean = np.concatenate([accumulate(xc, prog) for xc in xs])
    got = faults.inject_calls(
        np.concatenate(xs), prog, clean.copy(), samples, g, la, kernels, kernels.prepare(prog, g, la)
    )
    rows = len(clean) // calls
    for c, (xc, s) in enumerate(zip(xs, samples, strict=True)):
        np.testing.assert_array_equal(got[c * rows : (c + 1) * rows], emulate(xc, prog, corruption=_corruption(s)).acc)
    return any(len(s.weight) for s in samples)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(kinds=("conv2d", "dense", "grouped")), st.integers(1, 3))
def test_weight_deltas_multiply_on_the_unsigned_product_table(layer: tuple[Mapping, object, int], calls: int) -> None:
    """The weight kernel's multiply path (the exact unsigned table: ``x · (w' − w)``, the taps inside
    the input found by bounds, the padded ones reading the zero point) against the emulator, and its
    lookup path on a non-commutative table, over strides, dilations and paddings."""
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    if not _weight_only_check(m, (EXACT_U, RAND_U)[seed % 2], seed, calls):
        reject()


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1)),
        LayerShape.conv2d(1, 8, 4, 7, 7, 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2)),
        LayerShape.conv2d(1, 8, 4, 5, 5, 5, 5, pads=(4, 4, 4, 4)),  # whole tile rows in the padding
    ],
)
def test_weight_deltas_multiply_across_padding(shape: LayerShape) -> None:
    for seed in range(3):
        assert _weight_only_check(map_layer(shape, SPEC), EXACT_U, seed, calls=2)
