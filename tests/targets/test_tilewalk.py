"""TileWalk against a naive loop nest (its independent oracle), and against the analytic counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import analytic_counts
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.tilewalk import COMPUTE, TileWalk
from approxtvm.targets.vacc.workload import DIMS, TENSOR_DIMS, LayerShape
from tests.runtime.layers import layers

SPEC = AcceleratorSpec.load("simba_like")


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


def _naive(m: Mapping, level_index: int) -> list[tuple[int, int, dict[str, tuple[int, int]], frozenset[str], bool]]:
    """Every (step, instance, ranges, filled, first output visit) by plain nested loops.

    The loop nest is run literally: every loop above the level iterates in nest order, a loop
    advances its dimension by the product of the inner loops' bounds on that dimension; temporal
    iterations are steps, spatial ones instances; a tensor is filled when the starts of its
    dimensions differ from the previous step's.
    """
    flat = [lp for nest in m.levels for lp in nest.loops]
    above = sum(len(n.loops) for n in m.levels[:level_index])
    ext = {d: math.prod(lp.bound for lp in flat[above:] if lp.dim == d) for d in DIMS}
    unit = {i: math.prod(b.bound for b in flat[i + 1 :] if b.dim == lp.dim) for i, lp in enumerate(flat)}
    temporal = [i for i in range(above) if not flat[i].spatial]
    spatial = [i for i in range(above) if flat[i].spatial]
    out = []
    prev: dict[str, tuple[int, ...]] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for step, tix in enumerate(itertools.product(*(range(flat[i].bound) for i in temporal))):
        start = dict.fromkeys(DIMS, 0)
        for i, v in zip(temporal, tix, strict=True):
            start[flat[i].dim] += v * unit[i]
        keys = {t: tuple(start[d] for d in DIMS if d in TENSOR_DIMS[t]) for t in ("weight", "input", "output")}
        filled = frozenset(t for t in keys if prev.get(t) != keys[t])
        prev = keys
        for inst, six in enumerate(itertools.product(*(range(flat[i].bound) for i in spatial))):
            s = dict(start)
            for i, v in zip(spatial, six, strict=True):
                s[flat[i].dim] += v * unit[i]
            first = (inst, keys["output"]) not in seen
            seen.add((inst, keys["output"]))
            out.append((step, inst, {d: (s[d], s[d] + ext[d]) for d in DIMS}, filled, first))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_tilewalk_equals_the_naive_loop_nest(layer: tuple[Mapping, object, int]) -> None:
    m = layer[0]
    for li in range(len(LEVELS) + 1):
        w = TileWalk.of(m, li)
        got = [(t.step, t.instance, t.ranges, t.filled, t.output_first_visit) for t in w.tiles()]
        assert got == _naive(m, li)
        for t in ("weight", "input", "output"):  # fills and evictions agree with the steps' filled sets
            fills = [s for s, _, _, f, _ in _naive(m, li)[:: w.instances] if t in f]
            assert w.fills(t).tolist() == fills
            assert w.ends(t).tolist() == [*fills[1:], w.steps]


def _small() -> Mapping:
    return _m(
        LayerShape.conv2d(1, 32, 16, 6, 6, 3, 3),  # P = Q = 4
        dram=[Loop("K", 2), Loop("C", 2)],
        gb=[Loop("P", 2), Loop("K", 2, True)],
        pe=[Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)],
        reg=[Loop("P", 2), Loop("Q", 4)],
    )


@pytest.mark.parametrize("level", [*LEVELS, COMPUTE])
def test_tiles_partition_the_iteration_space(level: str) -> None:
    m = _small()
    b = m.shape.bounds
    hits = np.zeros([b[d] for d in DIMS], dtype=np.int64)
    for t in TileWalk.of(m, level).tiles():
        hits[tuple(slice(*t.ranges[d]) for d in DIMS)] += 1
    assert (hits == 1).all()  # every (n, k, c, p, q, r, s) exactly once


def test_fills_match_the_analytic_counts() -> None:
    m = _small()
    c = analytic_counts(m, SPEC)
    tiles = list(TileWalk.of(m, "PE").tiles())
    assert len(tiles) == 2 * 2 * 2 * 2  # temporal steps above the PEs (K2 C2 P2) x 2 PEs
    assert {t.instance for t in tiles} == {0, 1}
    w = sum("weight" in t.filled for t in tiles) * m.tile_size("PE", "weight")
    i = sum("input" in t.filled for t in tiles) * m.tile_size("PE", "input")
    assert w == c.writes("weight_buffer", "weight")
    assert i == c.writes("input_buffer", "input")
    out_tile = m.tile_size("PE", "output")
    visits = sum("output" in t.filled for t in tiles)
    first = sum(t.output_first_visit and "output" in t.filled for t in tiles)
    assert first * out_tile == c.writes("global_buffer", "output")  # finished outputs, one per tile
    assert (visits - first) * out_tile == c.reads("global_buffer", "psum")  # refills of partial sums


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ScheduleError):
        TileWalk.of(_small(), "L2")
