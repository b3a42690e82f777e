"""Whole models on a package: one chiplet gives today's numbers byte for byte; 36 chiplets give
the same outputs with the package's own energy components."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.models import get_model, load_dataset
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.schedule import LayerSchedule

pytestmark = pytest.mark.tvm


def _one_chiplet() -> AcceleratorSpec:
    two = AcceleratorSpec.load("simba_package_2x2")
    pkg = dataclasses.replace(two.package, chiplet_rows=1, chiplet_cols=1)
    return dataclasses.replace(two, name="simba_package_1x1", package=pkg, mapping_objective="energy")


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_one_chiplet_package_is_the_chiplet_and_36_compute_the_same(name: str) -> None:
    calib = load_dataset("digits:train").x[:32]
    x = load_dataset("digits:test").x[:8]
    models = {
        tag: compile_onnx(get_model(name), ApproxPolicy.exact(), accelerator=spec, calibration=calib, batch_size=8)
        for tag, spec in (
            ("chip", "simba_like"),
            ("one", _one_chiplet()),
            ("six", "simba_package_6x6"),
        )
    }
    reps = {tag: m.energy_per_batch() for tag, m in models.items()}
    # byte-identical: every (component, tensor, pJ) entry, the latency, the predicted counts
    assert [le.entries for le in reps["one"].layers] == [le.entries for le in reps["chip"].layers]
    assert repr(reps["one"].total_pj) == repr(reps["chip"].total_pj)
    assert reps["one"].latency_cycles == reps["chip"].latency_cycles
    for lid, s in models["chip"].schedules.items():
        assert models["one"].schedules[lid].predicted == s.predicted
        assert models["one"].schedules[lid].mapping == s.mapping
    # 36 chiplets: the arithmetic is the layer's, whatever the split
    outs = {tag: m.run(x).outputs for tag, m in models.items()}
    for k, v in outs["chip"].items():
        np.testing.assert_array_equal(outs["six"][k], v)
        np.testing.assert_array_equal(outs["one"][k], v)
    six = reps["six"]
    comp = six.by_component()
    assert comp["package_link"] > 0 and comp["package_router"] > 0
    assert six.latency_cycles < reps["chip"].latency_cycles  # the edp objective splits layers
    # MACs and the MAC energy do not depend on the split; the package adds communication
    assert six.macs == reps["chip"].macs
    assert comp["mac"] >= reps["chip"].by_component()["mac"]
    # the schedules carry the package level and survive a JSON round trip
    for s in models["six"].schedules.values():
        assert s.package is not None
        assert LayerSchedule.from_json(s.to_json()) == s
        assert LayerSchedule.from_json(s.to_json()).package == s.package
        assert "Package [ chiplets" in s.to_text()
    split = [s for s in models["six"].schedules.values() if s.package.partition.splits]
    assert split, "some layer is split across chiplets"
    assert all("package_traffic" in json.loads(json.dumps(s.predicted))["counts"] for s in split)


def test_energy_json_on_a_package_gives_components_latency_and_utilisation(capsys) -> None:
    from approxtvm.cli import main

    assert main(["energy", "digits_cnn", "--accelerator", "simba_package_2x2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accelerator"] == "simba_package_2x2" and doc["chiplets"] == 4
    comp = doc["by_component"]
    assert comp["package_link"] > 0 and comp["package_router"] > 0
    assert sum(comp.values()) == pytest.approx(doc["total_pj"])
    assert doc["latency_cycles"] == sum(le["latency_cycles"] for le in doc["layers"])
    macs = sum(le["macs"] for le in doc["layers"])
    assert doc["utilisation"] == pytest.approx(macs / (doc["latency_cycles"] * 1024 * 4))
    assert 0 < doc["utilisation"] <= 1
    assert all(le["partition"] is not None for le in doc["layers"])
