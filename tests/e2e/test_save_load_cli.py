"""A compiled model saves to a directory and loads back with identical outputs and energy; CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from approxtvm.cli import main
from approxtvm.compiler.driver import compile_onnx, load_compiled
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.onnx_builders import calibration, small_cnn

pytestmark = pytest.mark.tvm


def test_save_load_round_trip(tmp_path: Path) -> None:
    policy = ApproxPolicy.per_layer({"conv2": "trunc:k=4"})
    model = compile_onnx(small_cnn(), policy, calibration=calibration(16), batch_size=2)
    x = calibration(4, seed=9)
    before = model.run(x)
    model.save(tmp_path / "m")
    loaded = load_compiled(tmp_path / "m")
    after = loaded.run(x)
    np.testing.assert_array_equal(before.outputs["logits"], after.outputs["logits"])
    assert after.energy.total_pj == before.energy.total_pj
    assert loaded.schedules == model.schedules
    assert loaded.policy == policy


def test_two_models_in_one_process_do_not_collide() -> None:
    x = calibration(2, seed=4)
    a = compile_onnx(small_cnn(), calibration=calibration(16), batch_size=2)
    ya = a.run(x).outputs["logits"]
    b = compile_onnx(small_cnn(), ApproxPolicy.uniform("trunc:k=7"), calibration=calibration(16), batch_size=2)
    yb = b.run(x).outputs["logits"]
    np.testing.assert_array_equal(a.run(x).outputs["logits"], ya)  # a still runs its own layers
    assert not np.array_equal(ya, yb)


def test_cli_inspect_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "digits_cnn", "--layer", "conv2"]) == 0
    out = capsys.readouterr().out
    assert "layer conv2" in out and "DRAM" in out and "vacc.mac8" in out
    assert "estimate per batch:" in out and "pJ/MAC" in out and "cycles, utilisation" in out
    assert main(["inspect", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "p.yaml"
    bad.write_text("default:\n  multiplierr: exact\n")
    assert main(["inspect", "digits_cnn", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "p.yaml" in err and "multiplierr" in err


def test_cli_run_rejects_shape_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((3, 1, 9, 9), np.float32), y=np.zeros(3, np.int64))
    assert main(["run", "digits_cnn", "--data", str(f)]) == 2
    err = capsys.readouterr().err
    assert "9" in err and "8" in err


def test_mapper_objective_is_data_of_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses
    import json

    from approxtvm.errors import ConfigError
    from approxtvm.targets.vacc.hardware import AcceleratorSpec
    from approxtvm.targets.vacc.mapper import map_layer

    spec = AcceleratorSpec.load("simba_like")
    assert spec.mapping_objective == "energy"
    with pytest.raises(ConfigError, match="mapping_objective"):
        AcceleratorSpec.from_dict({**spec.to_dict(), "mapping_objective": "fast"})
    lat = dataclasses.replace(spec, mapping_objective="latency")
    assert AcceleratorSpec.from_dict(lat.to_dict()) == lat
    model = compile_onnx(small_cnn(), accelerator=lat, calibration=calibration(16), batch_size=2)
    for s in model.schedules.values():  # the compiler maps with the spec's objective
        assert s.mapping == map_layer(s.mapping.shape, spec, "latency")
    model.save(tmp_path / "m")
    assert load_compiled(tmp_path / "m").spec.mapping_objective == "latency"
    # the CLI flag replaces the spec's objective; the estimates show the cycles it buys
    docs = {}
    for obj in ("energy", "latency"):
        capsys.readouterr()
        assert main(["inspect", "digits_cnn", "--objective", obj, "--json"]) == 0
        docs[obj] = json.loads(capsys.readouterr().out)
    cycles = {o: sum(e["latency_cycles"] for e in d["estimates"].values()) for o, d in docs.items()}
    energy = {o: sum(e["total_pj"] for e in d["estimates"].values()) for o, d in docs.items()}
    assert cycles["latency"] <= cycles["energy"] and energy["energy"] <= energy["latency"]
