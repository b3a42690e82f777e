"""A whole model mapped unevenly (``mapper: {uneven: true}``): same numbers, less energy, faults, save/load, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from approxtvm.cli import main
from approxtvm.compiler.driver import compile_onnx, load_compiled
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec, MapperOptions
from tests.onnx_builders import calibration, small_cnn

pytestmark = pytest.mark.tvm

SPEC = AcceleratorSpec.load("simba_like")
UNEVEN = dataclasses.replace(SPEC, mapper=MapperOptions(uneven=True))


def test_uneven_model_computes_the_same_outputs_for_less_energy_and_saves(tmp_path: Path) -> None:
    x = calibration(4, seed=9)
    even = compile_onnx(small_cnn(), calibration=calibration(16), batch_size=2)
    model = compile_onnx(small_cnn(), accelerator=UNEVEN, calibration=calibration(16), batch_size=2)
    moved = [lid for lid, s in model.schedules.items() if s.mapping.boundaries]
    assert moved  # conv1 (3 input channels) keeps its tiles across more loops
    for lid, s in model.schedules.items():  # the loops are the even ones: only the cuts move
        assert dataclasses.replace(s.mapping, boundaries=()) == even.schedules[lid].mapping
    r0, r1 = even.run(x), model.run(x)
    np.testing.assert_array_equal(r0.outputs["logits"], r1.outputs["logits"])  # a mapping changes no number
    assert r1.energy.total_pj < r0.energy.total_pj
    model.save(tmp_path / "m")
    loaded = load_compiled(tmp_path / "m")
    assert loaded.spec.mapper.uneven and loaded.schedules == model.schedules
    assert loaded.run(x).energy.total_pj == r1.energy.total_pj
    # an even model's saved spec has no mapper section (saved models stay byte-identical)
    even.save(tmp_path / "e")
    assert "mapper" not in (tmp_path / "e" / "manifest.json").read_text()


def test_faults_of_an_uneven_model_are_sampled_per_buffer_residency_and_reproducible() -> None:
    x = calibration(4, seed=3)
    policy = ApproxPolicy.uniform(noc_swing_v=0.3, sram_v={"input_buffer": 0.55, "weight_buffer": 0.55})
    model = compile_onnx(small_cnn(), policy, accelerator=UNEVEN, calibration=calibration(16), batch_size=2)
    a, b = model.run(x, seed=4), model.run(x, seed=4)
    np.testing.assert_array_equal(a.outputs["logits"], b.outputs["logits"])
    moved = next(lid for lid, s in model.schedules.items() if s.mapping.boundaries)
    c = a.counters["faults"][moved]
    assert c["weight"]["bits_exposed"] > 0 and c["input"]["bits_exposed"] > 0
    assert sum(c[t]["bits_flipped"] for t in ("weight", "input")) > 0


def test_the_cli_flag_maps_unevenly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), path)
    docs = {}
    for flags in ((), ("--uneven",)):
        capsys.readouterr()
        assert main(["inspect", str(path), "--batch-size", "2", "--json", *flags]) == 0
        docs[flags] = json.loads(capsys.readouterr().out)
    pj = {f: sum(e["total_pj"] for e in d["estimates"].values()) for f, d in docs.items()}
    assert pj[("--uneven",)] < pj[()]
