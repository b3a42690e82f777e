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
