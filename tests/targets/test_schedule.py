"""LayerSchedule's JSON form (saved models, the BYOC layer blob): exact round trip, strict reading."""

from __future__ import annotations

import json

import pytest

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.config import ApproxConfig
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import naive_mapping
from approxtvm.targets.vacc.schedule import SCHEDULE_VERSION, Intrinsic, LayerSchedule, QuantParams, WeightLayout
from approxtvm.targets.vacc.workload import LayerShape


def _schedule() -> LayerSchedule:
    spec = AcceleratorSpec.load("simba_like")
    shape = LayerShape.conv2d(n=1, k=8, c=4, h=6, w=6, r=3, s=3)
    return LayerSchedule(
        "conv1",
        "vacc_conv1",
        shape,
        QuantParams(False, 0.05, 3, (0.01, 0.02), (7, 9), (0.0005,), (0,), 0),
        True,
        ApproxConfig(multiplier="mul8u_2HH", noc_swing_v=0.5, sram_v=(("input_buffer", 0.7),)),
        spec.name,
        naive_mapping(shape, spec),
        Intrinsic("vacc.mac8", 8, "mul8u_2HH", "mul8u_2HH", "ab" * 32, 0.21),
        WeightLayout(("K", "C"), ("dense", "rle"), (100, 60)),
        predicted={"macs": 1296},
    )


def test_json_round_trip_is_exact() -> None:
    sch = _schedule()
    d = json.loads(sch.to_json())
    assert d["version"] == SCHEDULE_VERSION and d["quant"]["weight_zero_points"] == [7, 9]
    back = LayerSchedule.from_dict(d)
    assert back == sch and back.predicted == sch.predicted
    assert LayerSchedule.from_json(sch.to_json()).to_json() == sch.to_json()


@pytest.mark.parametrize(
    ("edit", "key", "what"),
    [
        (lambda d: d["quant"].update(input_zero_point="3"), "'quant.input_zero_point'", "an integer"),
        (lambda d: d["intrinsic"].update(lanes_count=8), "'intrinsic.lanes_count'", "did you mean 'lanes'"),
        (lambda d: d["weight_layout"].pop("tile_bytes"), "'weight_layout.tile_bytes'", "missing field"),
        (lambda d: d["config"].update(noc_swing_v=2.0), "'config.noc_swing_v'", "out of range"),
        (lambda d: d.update(outputs="result"), "'outputs'", "a list"),
    ],
)
def test_a_damaged_schedule_names_the_key(edit, key: str, what: str) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(_schedule().to_json())
    edit(d)
    with pytest.raises(ScheduleError) as exc:
        LayerSchedule.from_dict(d, "model/manifest.json")
    assert "model/manifest.json" in str(exc.value) and key in str(exc.value) and what in str(exc.value)


def test_unknown_version_is_refused() -> None:
    d = json.loads(_schedule().to_json())
    d["version"] = SCHEDULE_VERSION + 1
    with pytest.raises(ScheduleError, match="unsupported schedule version"):
        LayerSchedule.from_dict(d)
