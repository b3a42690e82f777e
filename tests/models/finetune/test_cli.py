"""`approxtvm finetune` end to end: the written model runs with `approxtvm run` at the reported accuracy."""

from __future__ import annotations

import numpy as np

import approxtvm as at
from approxtvm.cli import build_parser, main
from approxtvm.models import load_dataset


def test_policy_and_multiplier_are_exclusive(capsys):
    parser = build_parser()
    try:
        parser.parse_args(
            ["finetune", "digits_cnn", "--data", "digits", "--policy", "p.yaml", "--multiplier", "x", "-o", "d"]
        )
    except SystemExit as e:
        assert e.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_cli_finetune_writes_a_runnable_model(tmp_path, capsys):
    out = tmp_path / "ft"
    rc = main(
        [
            "finetune",
            "digits_cnn",
            "--data",
            "digits:train",
            "--multiplier",
            "drum:k=4",
            "--epochs",
            "1",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "eval top-1" in text and (out / "model.onnx").is_file() and (out / "policy.yaml").is_file()
    test = load_dataset("digits:test")
    model = at.compile_onnx(out / "model.onnx", policy=out / "policy.yaml", batch_size=64)
    top1 = float(np.mean(model.run(test.x).outputs["logits"].argmax(1) == test.y))
    assert f"{100 * top1:.2f} %" in text
