"""simulate_counts (a walk of the loop nest) must equal the mapper's closed forms, exactly."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from approxtvm.errors import ScheduleError
from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.runtime.counting import simulate_counts
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import analytic_counts, map_layer, naive_mapping
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.workload import DIMS, LayerShape

SPEC = AcceleratorSpec.load("simba_like")
LAYERS = [(net, name, shape) for net in ("resnet18", "resnet50") for name, shape in resnet_layer_shapes(net)]


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


@pytest.mark.parametrize(("net", "name", "shape"), LAYERS, ids=[f"{n}:{m}" for n, m, _ in LAYERS])
def test_simulated_equals_analytic_on_resnet_layers(net: str, name: str, shape: LayerShape) -> None:
    m = map_layer(shape, SPEC)
    assert simulate_counts(m, SPEC) == analytic_counts(m, SPEC)


@pytest.mark.parametrize("index", range(0, 21, 4))
def test_simulated_equals_analytic_on_naive_mappings(index: int) -> None:
    m = naive_mapping(resnet_layer_shapes("resnet18")[index][1], SPEC)
    assert simulate_counts(m, SPEC) == analytic_counts(m, SPEC)


def test_golden_mapping_with_partial_sums() -> None:
    m = _m(
        LayerShape.conv2d(1, 8, 16, 4, 4, 3, 3),
        dram=[Loop("C", 2)],
        gb=[Loop("P", 2)],
        pe=[Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)],
        reg=[Loop("Q", 2)],
    )
    sim = simulate_counts(m, SPEC)
    assert sim == analytic_counts(m, SPEC)
    assert sim.reads("accum_buffer", "psum") == 544 + 64  # see tests/targets/test_mapper.py


def test_whole_resnet50_is_fast() -> None:
    maps = [map_layer(s, SPEC) for _, s in resnet_layer_shapes("resnet50")]
    t0 = time.perf_counter()
    for m in maps:
        simulate_counts(m, SPEC)
    assert time.perf_counter() - t0 < 20.0  # ~1.3 s here; generous for slow CI


def test_invalid_mapping_is_rejected() -> None:
    bad = _m(LayerShape.dense(1, 16, 8), pe=[Loop("K", 8, True), Loop("C", 8, True)])  # K covers 8 of 16
    with pytest.raises(ScheduleError):
        simulate_counts(bad, SPEC)


# ------------------------------------------------------------------------------------------------
# Random mappings (hypothesis): the two implementations agree on arbitrary legal nests
# ------------------------------------------------------------------------------------------------


def _factor(draw: st.DrawFn, n: int, parts: int) -> list[int]:
    out = []
    for _ in range(parts - 1):
        divs = [d for d in range(1, n + 1) if n % d == 0]
        f = draw(st.sampled_from(divs))
        out.append(f)
        n //= f
    return [*out, n]


@st.composite
def random_mappings(draw: st.DrawFn) -> Mapping:
    k = draw(st.sampled_from([1, 2, 4, 6, 8, 12, 16, 32]))
    c = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    r = draw(st.sampled_from([1, 2, 3]))
    stride = draw(st.sampled_from([1, 2]))
    h = draw(st.integers(r, 9))
    n = draw(st.sampled_from([1, 2]))
    shape = LayerShape.conv2d(n, k, c, h, h, r, r, strides=(stride, stride))
    b = shape.bounds
    # spatial: K across PEs and vector MACs, C across lanes (divisors within the fan-outs)
    k_pe = draw(st.sampled_from([d for d in range(1, 17) if b["K"] % d == 0]))
    k_vm = draw(st.sampled_from([d for d in range(1, 9) if (b["K"] // k_pe) % d == 0]))
    c_ln = draw(st.sampled_from([d for d in range(1, 9) if b["C"] % d == 0]))
    rest = dict(b)
    rest["K"] //= k_pe * k_vm
    rest["C"] //= c_ln
    levels: list[list[Loop]] = [[], [], [], []]
    for d in DIMS:
        allowed = 4 if d in ("N", "P", "Q") else 3  # the weight register holds one weight
        for lvl, f in enumerate(_factor(draw, rest[d], allowed)):
            if f > 1:
                levels[lvl].append(Loop(d, f))
    for lv in levels:
        perm = draw(st.permutations(lv))
        lv[:] = perm
    levels[1] += [Loop("K", k_pe, True)] if k_pe > 1 else []
    levels[2] += [Loop(d, x, True) for d, x in (("K", k_vm), ("C", c_ln)) if x > 1]
    return Mapping(shape, tuple(LevelNest(nm, tuple(lv)) for nm, lv in zip(LEVELS, levels, strict=True)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_mappings())
def test_simulated_equals_analytic_on_random_mappings(m: Mapping) -> None:
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    a = analytic_counts(m, SPEC)
    assert simulate_counts(m, SPEC) == a
    assert a.macs == m.shape.macs
