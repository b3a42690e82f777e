"""Mapping: validation errors, tile extents, JSON round trip and the Timeloop-style text."""

from __future__ import annotations

import json

import pytest

from approxtvm.errors import ScheduleError
from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape


@pytest.fixture(scope="module")
def spec() -> AcceleratorSpec:
    return AcceleratorSpec.load("simba_like")


def _m(shape: LayerShape, dram=(), gb=(), pe=(), reg=()) -> Mapping:
    return Mapping(shape, tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, (dram, gb, pe, reg), strict=True)))


CONV = LayerShape.conv2d(1, 8, 16, 4, 4, 3, 3)  # P = Q = 2


def _good() -> Mapping:
    return _m(
        CONV,
        dram=[Loop("C", 2)],
        gb=[Loop("P", 2)],
        pe=[Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)],
        reg=[Loop("Q", 2)],
    )


def test_tile_extents_and_instances() -> None:
    m = _good()
    assert m.tile_extent("PE", "weight") == {"K": 8, "C": 8, "R": 3, "S": 3}
    assert m.tile_extent("PE", "input") == {"N": 1, "C": 8, "H": 3, "W": 4}  # halo: (1-1)+(3-1)+1 rows
    assert m.tile_extent("GlobalBuffer", "input") == {"N": 1, "C": 8, "H": 4, "W": 4}
    assert m.tile_size("GlobalBuffer", "output") == 8 * 2 * 2
    assert m.tile_size("Register", "weight") == 1
    assert m.instances("Register") == 64 and m.instances("PE") == 1
    assert m.compute_cycles() * m.spatial_macs() == CONV.macs


def test_validate_accepts_and_round_trips(spec: AcceleratorSpec) -> None:
    m = _good()
    m.validate(spec)
    again = Mapping.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        (
            _m(CONV, dram=[Loop("C", 16), Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2)]),
            "loops over K",
        ),
        (
            _m(
                CONV,
                dram=[Loop("C", 2), Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2)],
                pe=[Loop("K", 8, True), Loop("C", 16, True)],
            ),
            "loops over C do not cover",
        ),
        (
            _m(
                CONV,
                dram=[Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2), Loop("K", 2)],
                pe=[Loop("K", 4, True), Loop("C", 16, True)],
            ),
            "16 lanes",
        ),
        (
            _m(
                CONV,
                dram=[Loop("C", 16), Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2)],
                gb=[Loop("C", 1, True)],
                pe=[Loop("K", 8, True)],
            ),
            "spatial loop over C is not supported",
        ),
        (
            _m(
                CONV,
                dram=[
                    Loop("C", 16),
                    Loop("R", 3),
                    Loop("S", 3),
                    Loop("P", 2),
                    Loop("Q", 2),
                    Loop("K", 8, True),
                ],
            ),
            "DRAM has spatial loops",
        ),
        (
            _m(
                CONV,
                dram=[Loop("C", 2), Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2)],
                pe=[Loop("K", 8, True), Loop("C", 8, True)],
                reg=[],
            ),
            None,
        ),
        (
            _m(
                CONV,
                dram=[Loop("C", 2), Loop("R", 3), Loop("S", 3), Loop("P", 2), Loop("Q", 2)],
                reg=[Loop("K", 8)],
                pe=[Loop("C", 8, True)],
            ),
            "does not fit the weight_register",
        ),
    ],
)
def test_validate_rejects(spec: AcceleratorSpec, mapping: Mapping, match: str | None) -> None:
    if match is None:
        mapping.validate(spec)
        return
    with pytest.raises(ScheduleError, match=match) as exc:
        mapping.validate(spec)
    assert exc.value.expected and exc.value.fix


def test_capacity_violation_names_the_buffer(spec: AcceleratorSpec) -> None:
    big = LayerShape.conv2d(1, 64, 64, 56, 56, 3, 3, pads=(1, 1, 1, 1))
    # accumulation tile: K 8 (temporal) x 8 (vector MACs) x Q 56 = 3584 partial sums > 1024 entries
    m = _m(
        big,
        dram=[Loop("C", 8), Loop("P", 56)],
        pe=[Loop("K", 8), Loop("Q", 56), Loop("R", 3), Loop("S", 3), Loop("K", 8, True), Loop("C", 8, True)],
    )
    with pytest.raises(ScheduleError, match="does not fit the accum_buffer") as exc:
        m.validate(spec)
    assert "86016 bits" in str(exc.value)  # 3584 x 24


def test_wrong_levels_and_bad_loops(spec: AcceleratorSpec) -> None:
    m = _good()
    with pytest.raises(ScheduleError, match="levels are wrong"):
        Mapping(CONV, m.levels[::-1]).validate(spec)
    with pytest.raises(ScheduleError, match="unknown dimension"):
        Loop("X", 2)
    with pytest.raises(ScheduleError, match="impossible bound"):
        Loop("K", 0)
    bad_order = _m(
        CONV,
        dram=[Loop("C", 2)],
        gb=[Loop("P", 2)],
        pe=[Loop("K", 8, True), Loop("R", 3), Loop("S", 3), Loop("C", 8, True)],
        reg=[Loop("Q", 2)],
    )
    with pytest.raises(ScheduleError, match="after a spatial loop"):
        bad_order.validate(spec)


def test_to_text_is_timeloop_style(spec: AcceleratorSpec) -> None:
    text = _good().to_text(spec)
    lines = text.splitlines()
    assert lines[0].startswith("DRAM [ Weights:1152 Inputs:256 Outputs:32 ]")
    assert "| for C in [0:2)" in text
    assert "for C in [0:8) (Spatial-X)" in text and "for K in [0:8) (Spatial-Y)" in text
    assert text.rstrip().endswith("<< Compute >>")
    assert text.index("GlobalBuffer [ Inputs:") < text.index("PE [ Weights:") < text.index("Register [ Weights:1 ]")


def test_mapper_mappings_round_trip(spec: AcceleratorSpec) -> None:
    for _, shape in resnet_layer_shapes("resnet18"):
        m = map_layer(shape, spec)
        assert Mapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m
