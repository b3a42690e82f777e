"""Input deltas against the weight copies the PEs hold (``faults.weight_copies``), any table and
any number of stored copies, against the emulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import accumulate
from approxtvm.runtime.faults import weight_copies as weight_copies_module
from approxtvm.runtime.faults.sampling import sample_blocks_stacked
from approxtvm.runtime.faults.weight_copies import (
    COPIES_MIN_CROSS,
    COPIES_MIN_WEIGHT_WORDS,
    STACKED_COPY_BYTES_FREE,
    STACKED_COPY_BYTES_PER_INPUT_WORD,
    copies_pay,
    inject_calls_with_copies,
    inject_with_copies,
    stacked_copies_pay,
    weight_copies,
)
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _mapping, _program, layers, uneven_layers

#: A signed non-commutative random table (the unsigned one is ``RAND_U``).
RAND_S = Multiplier("rand_s", np.random.default_rng(11).integers(-(2**20), 2**20, (256, 256)).astype(np.int32), True)


def _plan(noc: float, w: float, x: float, mode: str = "write", msbs: int = 0) -> faults.FaultPlan:
    return faults.FaultPlan("L", 0, noc, msbs, (("weight", w), ("input", x)), mode)


def _corruption(sample: faults.FaultSample) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {t: (sample.of(t).residency, sample.of(t).word, sample.of(t).mask) for t in ("weight", "input")}


def _check(m: Mapping, mult: Multiplier, seed: int, plan: faults.FaultPlan, spec: AcceleratorSpec = SPEC) -> int | None:
    """``inject_with_copies`` against the emulator on one layer call; the number of copies, or
    ``None`` where they cannot be formed."""
    prog, x = _program(m.shape, m, mult, seed=seed % 1000, zx=seed % 256, zw=(seed >> 8) % 256)
    g = faults.tile_geometry(m, spec)
    copies = weight_copies(g.compute or g, m)
    if copies is None:
        return None
    sample = faults.sample_faults(plan, g, seed=seed)
    ref = emulate(x, prog, corruption=_corruption(sample)).acc
    clean = accumulate(x, prog)
    before = clean.copy()
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    prep = kernels.prepare(prog, g, la)
    # the weight deltas box by box (where the residencies' steps tile boxes) and by the step walk
    for cp in {id(c): c for c in (copies, replace(copies, boxes=None))}.values():
        got = inject_with_copies(x, prog, clean, sample, g, la, kernels, prep, cp)
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(clean, before)  # the fault-free accumulators are not changed
    return copies.copies


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(kinds=("conv2d", "dense", "grouped")))
def test_copies_injection_equals_the_emulator(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    mult = (RAND_U, RAND_S)[seed % 2]
    mode = ("write", "read", "both")[(seed >> 1) % 3]
    # both tensors, weights only, inputs only
    noc, w, x = ((0.02, 0.03, 0.03), (0.0, 0.05, 0.0), (0.0, 0.0, 0.05))[(seed >> 5) % 3]
    if _check(m, mult, seed, _plan(noc=noc, w=w, x=x, mode=mode, msbs=(seed >> 3) % 3)) is None:
        reject()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(kinds=("conv2d", "dense", "grouped")))
def test_copies_injection_equals_the_emulator_on_uneven_mappings(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    if _check(m, (RAND_U, RAND_S)[seed % 2], seed, _plan(noc=0.02, w=0.03, x=0.03)) is None:
        reject()


def test_multicast_and_refilled_weights_become_copies() -> None:
    """Weights held by two PEs at once, or loaded again later: two copies, each its own corruption."""
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    plan = _plan(noc=0.05, w=0.05, x=0.05)
    d = SPEC.to_dict()
    spec = AcceleratorSpec.from_dict({**d, "pe_array": {**d["pe_array"], "pe_spatial_dims": ["K", "Q"]}, "name": "kq"})
    multicast = _mapping(shape, gb=[Loop("Q", 2, True)], pe=[Loop("K", 4), Loop("Q", 2), Loop("C", 2), Loop("S", 3)])
    multicast.validate(spec)
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    refill.validate(SPEC)
    once = _mapping(
        shape, dram=[Loop("K", 2), Loop("Q", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    once.validate(SPEC)
    for mapping, sp in ((multicast, spec), (refill, SPEC), (once, SPEC)):
        g = faults.tile_geometry(mapping, sp)
        copies = weight_copies(g, mapping)
        assert copies is not None and copies.boxes is not None  # each residency's outputs: one box
        assert len(copies.boxes) == len(g.fills["weight"]) * g.instances
    for seed in range(6):
        assert _check(multicast, RAND_U, seed, plan, spec=spec) == 2
        assert _check(refill, RAND_S, seed, plan) == 2
        assert _check(once, RAND_U, seed, plan) == 1


def test_a_layer_past_the_byte_budget_keeps_the_cross_term() -> None:
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    g = faults.tile_geometry(refill, SPEC)
    assert weight_copies(g, refill, max_bytes=2 * 24) is not None
    assert weight_copies(g, refill, max_bytes=2 * 24 - 1) is None


def test_a_session_takes_the_path_and_keeps_its_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a session on a mapped 3×3 layer: the path runs, and the accumulators and counters
    equal the sparse deltas with the cross term (the path switched off)."""
    from approxtvm.runtime.faults import session as session_module

    shape = LayerShape.conv2d(2, 32, 16, 14, 14, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, x = _program(shape, m, RAND_U, seed=4)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.003, w=0.004, x=0.004)
    acc = accumulate(x, prog)
    calls: list[int] = []
    real = session_module.inject_with_copies

    def counted(*a: object, **k: object) -> np.ndarray:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "inject_with_copies", counted)
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_WEIGHT_WORDS", 0)  # every call: the path
    a = mf.session(seed=5)
    assert a is not None
    got = [a.apply("L", x, prog, acc) for _ in range(3)]
    assert calls == [1, 1, 1]
    monkeypatch.setattr(mf, "weight_copies", lambda layer_id: None)  # the cross-term path
    b = mf.session(seed=5)
    assert b is not None
    ref = [b.apply("L", x, prog, acc) for _ in range(3)]
    assert calls == [1, 1, 1]
    for gg, rr in zip(got, ref, strict=True):
        np.testing.assert_array_equal(gg, rr)
        assert not np.array_equal(gg, acc)
    assert a.counters() == b.counters()


@pytest.mark.parametrize("mult", [RAND_U, EXACT_U])
def test_stacked_calls_take_the_path_in_place_call_by_call(mult: Multiplier, monkeypatch: pytest.MonkeyPatch) -> None:
    """``apply_calls`` on three calls stacked along N: in place, the same accumulators and counters
    as three calls of ``apply``, and as the emulator call by call."""
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_WEIGHT_WORDS", 0)  # every call: the path
    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, mult, seed=6)
    rng = np.random.default_rng(2)
    xs = [rng.integers(0, 256, (2, 8, 9, 9)).astype(np.uint8) for _ in range(3)]
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.004, w=0.005, x=0.005)
    assert mf.weight_copies("L") is not None
    a, b = mf.session(seed=9), mf.session(seed=9)
    assert a is not None and b is not None
    stacked = np.concatenate([accumulate(x, prog) for x in xs])
    got = a.apply_calls("L", np.concatenate(xs), prog, stacked, 3)
    assert got is stacked  # in place
    g = mf.geometry("L")
    for c, x in enumerate(xs):
        want = b.apply("L", x, prog, accumulate(x, prog))
        np.testing.assert_array_equal(got[2 * c : 2 * c + 2], want)
        sample = faults.sample_faults(mf.plans["L"], g, seed=9, call=c)
        np.testing.assert_array_equal(want, emulate(x, prog, corruption=_corruption(sample)).acc)
    assert a.counters() == b.counters()


def test_light_stacked_calls_keep_one_stacked_kernel_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the thresholds the stacked calls stay one kernel call (per-call work costs more there);
    above, they take the path; the accumulators are the same either way."""
    from approxtvm.runtime.faults import session as session_module

    assert not copies_pay(10, 100) and copies_pay(4096, 0) and copies_pay(1024, 1024)
    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_U, seed=6)
    x = np.random.default_rng(3).integers(0, 256, (6, 8, 9, 9)).astype(np.uint8)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.0005, w=0.0005, x=0.0005)
    calls: list[int] = []
    real = session_module.inject_with_copies
    monkeypatch.setattr(session_module, "inject_with_copies", lambda *a, **k: calls.append(1) or real(*a, **k))
    clean = np.concatenate([accumulate(x[2 * c : 2 * c + 2], prog) for c in range(3)])
    a = mf.session(seed=1)
    assert a is not None
    light = a.apply_calls("L", x, prog, clean.copy(), 3)
    assert calls == []
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_WEIGHT_WORDS", 0)
    b = mf.session(seed=1)
    assert b is not None
    heavy = b.apply_calls("L", x, prog, clean.copy(), 3)
    assert len(calls) == 3
    np.testing.assert_array_equal(light, heavy)
    assert not np.array_equal(light, clean)
    assert a.counters() == b.counters()


def test_copies_pay_is_judged_per_call() -> None:
    """Stacked calls are judged on their per-call average: 360 light calls whose sums would pass
    (1,978 × 2,222 pairs over the group) keep the stacked kernels; one call with the same counts,
    or calls each above a threshold, take the path; counts must pair up call by call."""
    w, x = np.full(360, 5), np.full(360, 6)
    w[:178] += 1
    x[:22] += 1  # 1,978 and 2,182 words over the calls
    assert int(w.sum()) * int(x.sum()) >= COPIES_MIN_CROSS and not copies_pay(w, x)
    assert copies_pay(int(w.sum()), int(x.sum()))  # one call holding all of them
    assert copies_pay(np.full(4, COPIES_MIN_WEIGHT_WORDS), np.zeros(4, np.int64))
    assert not copies_pay(np.array([COPIES_MIN_WEIGHT_WORDS, 0, 0, 0]), np.zeros(4, np.int64))
    assert copies_pay(np.array([1024, 0]), np.array([2048, 5]))  # the cross pairs of each call
    assert not copies_pay(np.array([1024, 0]), np.array([0, 2048]))  # no call pairs them
    with pytest.raises(ValueError, match="one weight and one input count per call"):
        copies_pay(np.ones(3, np.int64), np.ones(2, np.int64))


def test_many_light_calls_summing_above_the_threshold_keep_the_stacked_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A threshold between the group's per-call average and its total: the stacked kernels (the
    sum over the calls would have sent every call down the path one by one); at the average: the
    path. The accumulators and counters are the same either way."""
    from approxtvm.runtime.faults import session as session_module

    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_U, seed=6)
    ncalls = 6
    x = np.random.default_rng(4).integers(0, 256, (2 * ncalls, 8, 9, 9)).astype(np.uint8)
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.002, w=0.002, x=0.002)
    g = mf.geometry("L")
    samples = [faults.sample_faults(mf.plans["L"], g, seed=1, call=c) for c in range(ncalls)]
    words = [len(s.weight) for s in samples]
    assert sum(words) > ncalls and max(words) < sum(words)  # a threshold fits between mean and sum
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_CROSS", 1 << 62)
    calls: list[int] = []
    real = session_module.inject_with_copies
    monkeypatch.setattr(session_module, "inject_with_copies", lambda *a, **k: calls.append(1) or real(*a, **k))
    clean = np.concatenate([accumulate(x[2 * c : 2 * c + 2], prog) for c in range(ncalls)])
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_WEIGHT_WORDS", sum(words))
    a = mf.session(seed=1)
    assert a is not None
    stacked = a.apply_calls("L", x, prog, clean.copy(), ncalls)
    assert calls == []
    monkeypatch.setattr(weight_copies_module, "COPIES_MIN_WEIGHT_WORDS", sum(words) // ncalls)
    b = mf.session(seed=1)
    assert b is not None
    by_call = b.apply_calls("L", x, prog, clean.copy(), ncalls)
    assert len(calls) == sum(1 for s in samples if len(s.weight) or len(s.input))
    np.testing.assert_array_equal(stacked, by_call)
    assert not np.array_equal(stacked, clean)
    assert a.counters() == b.counters()


def _stacked_check(
    m: Mapping, mult: Multiplier, seed: int, plan: faults.FaultPlan, ncalls: int, spec: AcceleratorSpec = SPEC
) -> bool:
    """``inject_calls_with_copies`` on ``ncalls`` calls stacked along N against the emulator call by
    call and against the cross-term kernels (``inject_calls``); whether it applied (even mapping,
    copies formed, some call with both tensors corrupted)."""
    g = faults.tile_geometry(m, spec)
    copies = weight_copies(g, m)
    if g.compute is not None or copies is None:
        return False
    prog, _ = _program(m.shape, m, mult, seed=seed % 1000, zx=seed % 256, zw=(seed >> 8) % 256)
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if mult.signed else (0, 256)
    dtype = np.int8 if mult.signed else np.uint8
    xs = []
    for _ in range(ncalls):
        _, x1 = _program(m.shape, m, mult, seed=int(rng.integers(1 << 30)))
        xs.append(rng.integers(lo, hi, x1.shape).astype(dtype))
    block = sample_blocks_stacked(plan, g, seed=seed, blocks=range(1))
    if len(block) < ncalls:
        block = sample_blocks_stacked(plan, g, seed=seed, blocks=range(-(-ncalls // len(block))))
    stacked = block.stacked(0, ncalls)
    if not (len(stacked.weight) and len(stacked.input)):
        return False
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    prep = kernels.prepare(prog, g, la)
    clean = np.concatenate([accumulate(x, prog) for x in xs])
    got = inject_calls_with_copies(np.concatenate(xs), prog, clean.copy(), stacked, g, la, kernels, prep, copies)
    ref = faults.inject_calls(np.concatenate(xs), prog, clean.copy(), stacked, g, la, kernels, prep)
    np.testing.assert_array_equal(got, ref)
    rows = len(clean) // ncalls
    for c, x in enumerate(xs):
        want = emulate(x, prog, corruption=_corruption(block.sample(c))).acc
        np.testing.assert_array_equal(got[c * rows : (c + 1) * rows], want)
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(kinds=("conv2d", "dense", "grouped")))
def test_stacked_calls_against_their_own_weight_copies_equal_the_emulator(
    layer: tuple[Mapping, Multiplier, int],
) -> None:
    """Stacked calls, each call's input deltas against its own corrupted weight copies (no cross
    term), on non-commutative tables and the exact one (the kernel multiplies there)."""
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    mult = (RAND_U, RAND_S, EXACT_U)[seed % 3]
    mode = ("write", "read", "both")[(seed >> 1) % 3]
    plan = _plan(noc=0.01, w=(0.004, 0.03)[(seed >> 4) % 2], x=0.02, mode=mode, msbs=(seed >> 3) % 3)
    if not _stacked_check(m, mult, seed, plan, ncalls=2 + seed % 3):
        reject()


def test_stacked_copies_cover_multicast_refills_and_calls_without_weight_faults() -> None:
    """Two copies per call (weights multicast to two PEs, or loaded again), and stacks where some
    calls have no corrupted weight (those read the fault-free copies)."""
    shape = LayerShape.conv2d(1, 4, 2, 1, 4, 1, 3, pads=(0, 1, 0, 1))
    d = SPEC.to_dict()
    spec = AcceleratorSpec.from_dict({**d, "pe_array": {**d["pe_array"], "pe_spatial_dims": ["K", "Q"]}, "name": "kq"})
    multicast = _mapping(shape, gb=[Loop("Q", 2, True)], pe=[Loop("K", 4), Loop("Q", 2), Loop("C", 2), Loop("S", 3)])
    multicast.validate(spec)
    refill = _mapping(
        shape, dram=[Loop("Q", 2), Loop("K", 2)], pe=[Loop("K", 2), Loop("Q", 2), Loop("C", 2), Loop("S", 3)]
    )
    refill.validate(SPEC)
    plan = _plan(noc=0.0, w=0.006, x=0.06)
    for mapping, sp in ((multicast, spec), (refill, SPEC)):
        g = faults.tile_geometry(mapping, sp)
        copies = weight_copies(g, mapping)
        assert copies is not None and copies.copies == 2
        seen_clean_call = seen = 0
        for seed in range(16):
            stacked = sample_blocks_stacked(plan, g, seed=seed, blocks=range(4)).stacked(0, 4)
            applied = _stacked_check(mapping, (RAND_U, RAND_S)[seed % 2], seed, plan, ncalls=4, spec=sp)
            seen += applied
            seen_clean_call += applied and len(np.unique(stacked.weight_call)) < 4
        assert seen >= 6 and seen_clean_call >= 3


def test_a_session_runs_light_stacked_calls_against_their_weight_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Light stacked calls with both tensors corrupted: one stacked copies call (no cross term), the
    same accumulators and counters as the cross-term kernels (copies switched off)."""
    from approxtvm.runtime.faults import session as session_module

    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_U, seed=6)
    x = np.random.default_rng(5).integers(0, 256, (8, 8, 9, 9)).astype(np.uint8)
    clean = np.concatenate([accumulate(x[2 * c : 2 * c + 2], prog) for c in range(4)])
    mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
    mf.plans["L"] = _plan(noc=0.002, w=0.004, x=0.002)
    seen: list[int] = []
    real = session_module.inject_calls_with_copies
    monkeypatch.setattr(session_module, "inject_calls_with_copies", lambda *a, **k: seen.append(1) or real(*a, **k))
    a = mf.session(seed=2)
    assert a is not None
    got = a.apply_calls("L", x, prog, clean.copy(), 4)
    assert seen == [1]
    monkeypatch.setattr(mf, "weight_copies", lambda layer_id: None)  # the cross-term kernels
    b = mf.session(seed=2)
    assert b is not None
    ref = b.apply_calls("L", x, prog, clean.copy(), 4)
    assert seen == [1]
    np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(got, clean)
    c = a.counters()["L"]
    assert c == b.counters()["L"] and c["weight"]["words_corrupted"] > 0 and c["input"]["words_corrupted"] > 0


def test_stacked_copies_past_their_byte_budget_keep_the_cross_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies larger than the budget (per corrupted input word, plus a free amount): the cross-term
    kernels, with the same accumulators."""
    from approxtvm.runtime.faults import session as session_module

    assert stacked_copies_pay(STACKED_COPY_BYTES_FREE, 0)
    assert not stacked_copies_pay(STACKED_COPY_BYTES_FREE + 1, 0)
    assert stacked_copies_pay(STACKED_COPY_BYTES_FREE + STACKED_COPY_BYTES_PER_INPUT_WORD, 1)
    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    m = map_layer(shape, SPEC)
    prog, _ = _program(shape, m, RAND_S, seed=7)
    x = np.random.default_rng(6).integers(-128, 128, (8, 8, 9, 9)).astype(np.int8)
    clean = np.concatenate([accumulate(x[2 * c : 2 * c + 2], prog) for c in range(4)])
    seen: list[int] = []
    real = session_module.inject_calls_with_copies
    monkeypatch.setattr(session_module, "inject_calls_with_copies", lambda *a, **k: seen.append(1) or real(*a, **k))
    out = []
    for free in (1 << 20, 0):
        monkeypatch.setattr(weight_copies_module, "STACKED_COPY_BYTES_FREE", free)
        monkeypatch.setattr(weight_copies_module, "STACKED_COPY_BYTES_PER_INPUT_WORD", 1 if free == 0 else 1024)
        mf = faults.ModelFaults({"L": prog.schedule}, SPEC, faults.FaultOptions())
        mf.plans["L"] = _plan(noc=0.002, w=0.004, x=0.002)
        s = mf.session(seed=4)
        assert s is not None
        out.append(s.apply_calls("L", x, prog, clean.copy(), 4))
    assert seen == [1]  # the first only
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], clean)
