"""EnergyReport / LayerEnergy / energy_of: components add up, knobs scale only their share."""

from __future__ import annotations

import dataclasses
import json

import pytest

from approxtvm.errors import DataError, PolicyError
from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.energy import COMPONENTS, EnergyReport, LayerEnergy, energy_of
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import analytic_counts, map_layer
from approxtvm.targets.vacc.mapping import LEVELS, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape

SPEC = AcceleratorSpec.load("simba_like")


def _dense_golden() -> Mapping:
    """Dense 16x8 on 2 PEs (hand-computed in tests/targets/test_mapper.py: 10528.02 pJ)."""
    levels = ((), (Loop("K", 2, True),), (Loop("K", 8, True), Loop("C", 8, True)), ())
    return Mapping(LayerShape.dense(1, 16, 8), tuple(LevelNest(n, lv) for n, lv in zip(LEVELS, levels, strict=True)))


@pytest.fixture(scope="module")
def report() -> EnergyReport:
    layers = resnet_layer_shapes("resnet18")
    return EnergyReport(tuple(energy_of(n, simulate_counts(map_layer(s, SPEC), SPEC), SPEC) for n, s in layers))


def test_components_add_up_exactly(report: EnergyReport) -> None:
    for layer in report.layers:
        comps = layer.by_component()
        assert list(comps) == list(COMPONENTS)
        # total_pj is defined as the sum of by_component(): check both against the raw entries
        assert layer.total_pj == pytest.approx(sum(pj for _, _, pj in layer.entries), rel=1e-12)
        for comp, pj in comps.items():
            assert pj == pytest.approx(sum(p for c, _, p in layer.entries if c == comp), rel=1e-12, abs=1e-12)
        assert sum(layer.by_tensor().values()) == pytest.approx(layer.total_pj, rel=1e-12)
    assert report.total_pj == pytest.approx(sum(layer.total_pj for layer in report.layers), rel=1e-12)
    assert sum(report.by_layer().values()) == pytest.approx(report.total_pj, rel=1e-12)
    assert sum(report.by_tensor().values()) == pytest.approx(report.total_pj, rel=1e-12)
    assert all(v >= 0 for v in report.by_component().values())
    assert report.macs == 1_814_073_344


def test_resnet18_lands_near_zigzag(report: EnergyReport) -> None:
    comps = report.by_component()
    no_noc = (report.total_pj - comps["noc_link"] - comps["noc_router"]) / report.macs
    assert no_noc == pytest.approx(2.29, rel=0.25)  # ZigZag 3.9.1 yardstick (DESIGN §4)
    assert comps["mac"] / report.macs == pytest.approx(0.315)
    # accumulation buffer: a 24-bit read and write per 8 MACs ~ 1 pJ/MAC
    assert 0.9 < comps["accum_buffer"] / report.macs < 1.3


def test_golden_total() -> None:
    e = energy_of("fc", analytic_counts(_dense_golden(), SPEC), SPEC)
    assert e.total_pj == pytest.approx(10526.74)  # test_mapper derives it by hand; register: fills only
    assert e.by_component()["dram"] == pytest.approx(9728.0)
    assert e.pj_per_mac == pytest.approx(10526.74 / 128)
    assert e.latency_cycles == 19


def test_multiplier_energy_scales_only_the_multiply() -> None:
    counts = analytic_counts(_dense_golden(), SPEC)
    exact = energy_of("fc", counts, SPEC)
    approx = energy_of("fc", counts, SPEC, mul_energy_pj=0.20 * 0.302 / 0.391)  # mul8u_2HH
    assert approx.by_component()["mac"] == pytest.approx(128 * (0.20 * 0.302 / 0.391 + 0.115))
    for comp in COMPONENTS[1:]:
        assert approx.by_component()[comp] == exact.by_component()[comp]


def test_noc_swing_and_sram_voltage() -> None:
    counts = analytic_counts(_dense_golden(), SPEC)
    exact = energy_of("fc", counts, SPEC).by_component()
    low = energy_of("fc", counts, SPEC, noc_swing_v=0.45, sram_v={"input_buffer": 0.6}).by_component()
    assert low["noc_link"] == pytest.approx(exact["noc_link"] * 0.5)  # linear: 0.45 / 0.9
    assert low["noc_router"] == exact["noc_router"]
    assert low["input_buffer"] == pytest.approx(exact["input_buffer"] * (0.6 / 0.9) ** 2)
    assert low["weight_buffer"] == exact["weight_buffer"]
    quad = dataclasses.replace(SPEC, noc=dataclasses.replace(SPEC.noc, swing_model="quadratic"))
    q = energy_of("fc", counts, quad, noc_swing_v=0.45).by_component()
    assert q["noc_link"] == pytest.approx(exact["noc_link"] * 0.25)
    with pytest.raises(PolicyError, match="NoC swing out of range"):
        energy_of("fc", counts, SPEC, noc_swing_v=1.2)
    with pytest.raises(PolicyError, match="bad SRAM voltage"):
        energy_of("fc", counts, SPEC, sram_v={"dram": 0.7})


def test_report_algebra_and_json(report: EnergyReport) -> None:
    a, b = report.layers[0], report.layers[1]
    ab = a + b
    assert isinstance(ab, EnergyReport) and ab.layers == (a, b)
    assert (ab + a).by_layer()[a.layer_id] == pytest.approx(2 * a.total_pj)  # repeated layer summed
    assert (ab + EnergyReport((a,))).macs == 2 * a.macs + b.macs
    assert EnergyReport().total_pj == 0.0 and EnergyReport().pj_per_mac == 0.0
    again = EnergyReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert LayerEnergy.from_dict(a.to_dict()) == a
    assert report.latency_cycles == sum(layer.latency_cycles for layer in report.layers)


def test_report_json_is_strict_and_names_the_key(report: EnergyReport) -> None:
    d = report.to_dict()
    d["layers"][0]["entries"][0] = {"component": "mac", "tensor": "compute", "pJ": 1.0}
    with pytest.raises(DataError, match=r"(?s)layers\[0\]\.entries\[0\]\.pJ'.*did you mean 'pj'"):
        EnergyReport.from_dict(d)
