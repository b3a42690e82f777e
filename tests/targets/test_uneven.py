"""Uneven mappings: each tensor's buffers cut the loop nest at their own place (ZigZag's term).

The closed form is held to the counting walk and the walk to a plain loop nest on drawn mappings;
one layer has hand-derived counts; the mapper's refinement is opt-in and never worse than even.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ConfigError, ScheduleError
from approxtvm.runtime.counting import simulate_counts
from approxtvm.targets.vacc.hardware import AcceleratorSpec, MapperOptions
from approxtvm.targets.vacc.mapper import analytic_counts, clear_mapper_cache, map_layer
from approxtvm.targets.vacc.mapping import LEVELS, TENSORS, Boundary, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.pricing import energy_breakdown_pj
from approxtvm.targets.vacc.tilewalk import TileWalk
from approxtvm.targets.vacc.timeloop_export import mapping_yaml
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS, LayerShape
from tests.runtime.layers import uneven_layers

SPEC = AcceleratorSpec.load("simba_like")
UNEVEN = dataclasses.replace(SPEC, mapper=MapperOptions(uneven=True))


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=(), boundaries=()) -> Mapping:
    levels = tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True))
    return Mapping(shape, levels, tuple(boundaries))


def _golden(boundaries: tuple[Boundary, ...] = ()) -> Mapping:
    # dense 1×16 → 32 on one PE: C2 (outer) and K4 at the global buffer, 8 vector MACs × 8 lanes
    return _m(
        LayerShape.dense(1, 32, 16),
        gb=[Loop("C", 2), Loop("K", 4)],
        pe=[Loop("K", 8, True), Loop("C", 8, True)],
        boundaries=boundaries,
    )


def test_golden_accumulation_buffer_above_the_reduction_loop() -> None:
    # Even: the accumulation buffer holds 8 outputs; the loops above it run C2 then K4, so each of
    # the 4 output tiles is visited twice: 4 first visits (32 words, fresh) and 4 refills (32 words
    # of partial sums written to the global buffer and read back; 2 × 32 × 24 bits over the NoC).
    # The MACs update 8 outputs a cycle for 8 cycles: 64 writes, 64 − 32 fresh = 32 reads.
    even = analytic_counts(_golden(), SPEC)
    assert even.reads("accum_buffer", "psum") == 32 + 32 + 32  # MACs + final + partial write-backs
    assert even.writes("accum_buffer", "psum") == 64 + 32  # MACs + refills
    assert (even.reads("global_buffer", "psum"), even.writes("global_buffer", "psum")) == (32, 32)
    assert even.noc("psum")[0] == 2 * 32 * 24
    # Uneven: the accumulation buffer cuts above both loops (0 temporal loops above it) and keeps
    # all 32 outputs: one visit, no partial sums leave the PE. Weights and inputs are unchanged.
    u = _golden((Boundary("output", "PE", 0),))
    u.validate(SPEC)
    assert u.tile_size("PE", "output") == 32 and u.tile_size("PE", "weight") == 64
    got = analytic_counts(u, SPEC)
    assert got.reads("accum_buffer", "psum") == 32 + 32
    assert got.writes("accum_buffer", "psum") == 64
    assert (got.reads("global_buffer", "psum"), got.writes("global_buffer", "psum")) == (0, 0)
    assert got.noc("psum") == (0, 0, 0)
    assert (got.reads("global_buffer", "output"), got.writes("global_buffer", "output")) == (32, 32)
    for t in ("weight", "input"):
        for b in ("dram", "global_buffer", "weight_buffer", "input_buffer", "weight_register"):
            assert (got.reads(b, t), got.writes(b, t)) == (even.reads(b, t), even.writes(b, t))
    assert got == simulate_counts(u, SPEC)
    # the global buffer now receives finished 8-bit outputs: no reduction loop is above the cut
    assert u.output_tile_bits("GlobalBuffer", SPEC) == SPEC.precision.output_bits
    saved = sum(energy_breakdown_pj(even, SPEC).values()) - sum(energy_breakdown_pj(got, SPEC).values())
    gb, acc, noc = SPEC.memory("global_buffer"), SPEC.memory("accum_buffer"), SPEC.noc
    per_bit = {
        "gb": gb.read_energy_pj_per_bit + gb.write_energy_pj_per_bit,
        "acc": acc.read_energy_pj_per_bit + acc.write_energy_pj_per_bit,
        "noc": noc.router_energy_pj_per_bit,  # PE 0 sits at the global buffer's router: 0 links
    }
    assert saved == pytest.approx(32 * 24 * (per_bit["gb"] + per_bit["acc"] + 2 * per_bit["noc"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(("conv2d", "dense", "grouped")))
def test_closed_form_equals_the_counting_walk_on_uneven_mappings(layer: tuple[Mapping, object, int]) -> None:
    m = layer[0]
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    assert analytic_counts(m, SPEC) == simulate_counts(m, SPEC)


def _naive_fills(m: Mapping, level: str, tensor: str) -> tuple[list[int], dict[str, int]]:
    """Fills of ``tensor``'s buffer at ``level`` and its tile extent, by running the loops literally.

    Every loop is taken in nest order; a loop advances its dimension by the product of the inner
    loops' bounds on it. The buffer sits below the first ``cut`` temporal loops and below the
    spatial loops of the levels above ``level``: those iterate, the others form the tile.
    """
    cut = m.cut(level, tensor)
    li = [n.level for n in m.levels].index(level)
    flat = [(i, lp) for i, n in enumerate(m.levels) for lp in n.loops]
    unit = [math.prod(b.bound for _, b in flat[k + 1 :] if b.dim == lp.dim) for k, (_, lp) in enumerate(flat)]
    above, rank = [], 0
    for k, (i, lp) in enumerate(flat):
        if (not lp.spatial and rank < cut) or (lp.spatial and i < li):
            above.append(k)
        rank += 0 if lp.spatial else 1
    ext = {d: math.prod(lp.bound for k, (_, lp) in enumerate(flat) if lp.dim == d and k not in above) for d in DIMS}
    steps = [k for k in above if not flat[k][1].spatial]
    fills, prev = [], None
    for s, ix in enumerate(itertools.product(*(range(flat[k][1].bound) for k in steps))):
        start = dict.fromkeys(DIMS, 0)
        for k, v in zip(steps, ix, strict=True):
            start[flat[k][1].dim] += v * unit[k]
        key = tuple(start[d] for d in DIMS if d in TENSOR_DIMS[tensor])
        if key != prev:
            fills.append(s)
        prev = key
    return fills, ext


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(("conv2d", "dense", "grouped")))
def test_each_buffers_walk_equals_the_naive_loop_nest(layer: tuple[Mapping, object, int]) -> None:
    m = layer[0]
    try:
        m.check_boundaries(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    for t, level in (("weight", "PE"), ("input", "PE"), ("output", "PE"), ("input", "GlobalBuffer")):
        fills, ext = _naive_fills(m, level, t)
        w = TileWalk.of(m, level, t)
        assert w.fills(t).tolist() == fills
        assert dict(zip(DIMS, w.ext.tolist(), strict=True)) == ext
        assert math.prod(m.tile_extent(level, t).values()) == m.tile_size(level, t)


def test_illegal_cuts_are_rejected_with_the_reason() -> None:
    m = _golden()
    cases = {
        Boundary("weight", "GlobalBuffer", 0): "no such buffer",  # weights bypass the global buffer
        Boundary("output", "PE", 3): "outside the loop nest",
    }
    for b, what in cases.items():
        with pytest.raises(ScheduleError, match=what):
            dataclasses.replace(m, boundaries=(b,)).validate(SPEC)
    with pytest.raises(ScheduleError, match="given twice"):
        dataclasses.replace(m, boundaries=(Boundary("output", "PE", 0),) * 2).validate(SPEC)
    with pytest.raises(ScheduleError, match="do not nest"):  # the PE tile would outgrow the GB tile
        dataclasses.replace(
            m, boundaries=(Boundary("output", "GlobalBuffer", 1), Boundary("output", "PE", 0))
        ).validate(SPEC)
    # K across PEs inside a temporal K loop: a PE's outputs over that loop are not one block
    spread = _m(
        LayerShape.dense(1, 64, 16),
        gb=[Loop("C", 2), Loop("K", 4), Loop("K", 2, True)],
        pe=[Loop("K", 8, True), Loop("C", 8, True)],
        boundaries=(Boundary("output", "PE", 1),),
    )
    with pytest.raises(ScheduleError, match="non-contiguous"):
        spread.validate(SPEC)
    # an input cut above C2 is legal (inputs do not depend on K): the buffer keeps both C halves
    dataclasses.replace(m, boundaries=(Boundary("input", "PE", 0),)).validate(SPEC)


def test_a_tile_that_outgrows_its_buffer_is_rejected() -> None:
    shape = LayerShape.dense(1, 64, 1024)
    m = _m(shape, dram=[Loop("K", 8)], gb=[Loop("C", 128)], pe=[Loop("K", 8, True), Loop("C", 8, True)])
    m.validate(SPEC)
    with pytest.raises(ScheduleError, match="does not fit the weight_buffer"):  # 64 KiB of weights > 32 KiB
        dataclasses.replace(m, boundaries=(Boundary("weight", "PE", 0),)).validate(SPEC)


def test_json_forms_are_unchanged_for_even_mappings_and_round_trip_uneven_ones() -> None:
    even = _golden()
    assert "boundaries" not in even.to_dict()
    u = _golden((Boundary("output", "PE", 0),))
    d = u.to_dict()
    assert d["boundaries"] == [{"tensor": "output", "level": "PE", "temporal_loops_above": 0}]
    assert Mapping.from_dict(d) == u
    assert "uneven: Outputs at PE below 0 temporal loops" in u.to_text(SPEC)
    # the mapping schema is strict and names the key
    with pytest.raises(ScheduleError, match=r"(?s)boundaries\[0\]\.temporal_loops'.*temporal_loops_above"):
        Mapping.from_dict({**d, "boundaries": [{"tensor": "output", "level": "PE", "temporal_loops": 0}]})
    bad = even.to_dict()
    bad["levels"][1]["loops"][0]["bound"] = "2"
    with pytest.raises(ScheduleError, match=r"(?s)levels\[1\]\.loops\[0\]\.bound'.*wrong type"):
        Mapping.from_dict(bad)
    with pytest.raises(ScheduleError, match="uneven mapping has no Timeloop form"):
        mapping_yaml(u, SPEC)


def test_the_mapper_option_is_spec_data_written_only_when_set() -> None:
    assert "mapper" not in SPEC.to_dict()  # shipped specs, saved models and schedules: byte-identical
    d = UNEVEN.to_dict()
    assert d["mapper"] == {"uneven": True}
    assert AcceleratorSpec.from_dict(d) == UNEVEN
    with pytest.raises(ConfigError, match=r"mapper\.unevn"):
        AcceleratorSpec.from_dict({**SPEC.to_dict(), "mapper": {"unevn": True}})
    with pytest.raises(ConfigError, match=r"mapper\.uneven"):
        AcceleratorSpec.from_dict({**SPEC.to_dict(), "mapper": {"uneven": "yes"}})


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(1, 96, 72, 79, 79, 1, 1, strides=(2, 2)),
        LayerShape.conv2d(1, 40, 72, 10, 10, 5, 5, pads=(2, 2, 2, 2)),
        LayerShape.conv2d(1, 40, 24, 28, 28, 3, 3, pads=(1, 1, 1, 1)),
    ],
)
def test_the_uneven_refinement_is_legal_and_never_worse(shape: LayerShape) -> None:
    clear_mapper_cache()
    for objective in ("energy", "edp"):
        even, u = map_layer(shape, SPEC, objective), map_layer(shape, UNEVEN, objective)
        assert even.is_even and not even.boundaries
        u.validate(UNEVEN)
        assert dataclasses.replace(u, boundaries=()) == even  # the same loops: only the cuts move
        ce, cu = analytic_counts(even, SPEC), analytic_counts(u, SPEC)
        assert cu == simulate_counts(u, SPEC)
        pj_e, pj_u = sum(energy_breakdown_pj(ce, SPEC).values()), sum(energy_breakdown_pj(cu, SPEC).values())
        if objective == "energy":
            assert pj_u <= pj_e
        else:
            assert pj_u * cu.latency_cycles <= pj_e * ce.latency_cycles
        assert u.is_even == (not u.boundaries)


def test_the_refinement_finds_the_accumulation_saving_on_an_unseen_layer() -> None:
    # a strided 1×1 conv of bench_uneven's unseen set: the weight buffers keep the whole layer's
    # weights across the image loops, and the input cuts move; > 10 % saved (20.8 % measured)
    shape = LayerShape.conv2d(1, 96, 72, 79, 79, 1, 1, strides=(2, 2))
    even, u = map_layer(shape, SPEC), map_layer(shape, UNEVEN)
    pj = [sum(energy_breakdown_pj(analytic_counts(m, SPEC), SPEC).values()) for m in (even, u)]
    assert u.boundaries and pj[1] < 0.9 * pj[0]
    assert {b.tensor for b in u.boundaries} <= set(TENSORS)


def test_uneven_mappings_on_a_spec_without_global_buffer_and_on_a_package() -> None:
    from approxtvm.targets.vacc.package_mapper import map_package

    d = SPEC.to_dict()
    del d["memories"]["global_buffer"]
    spec = AcceleratorSpec.from_dict({**d, "name": "no_gb", "mapper": {"uneven": True}})
    shape = LayerShape.conv2d(1, 96, 72, 79, 79, 1, 1, strides=(2, 2))
    u = map_layer(shape, spec)
    assert u.boundaries and [n.level for n in u.levels] == ["DRAM", "PE", "Register"]
    assert analytic_counts(u, spec) == simulate_counts(u, spec)
    pkg = dataclasses.replace(AcceleratorSpec.load("simba_package_2x2"), mapper=MapperOptions(uneven=True))
    pm = map_package(shape, pkg)
    pm.validate(pkg)
    assert pm.chiplet.boundaries and analytic_counts(pm.chiplet, pkg) == simulate_counts(pm.chiplet, pkg)
