"""The study on the user's own images: an ImageNet-style folder, a labels file, the CLI options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from approxtvm.errors import DataError, ExplorationError
from approxtvm.explore.cli_explore import _user_settings, add_explore_parsers
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.experiments import ExperimentSettings, run_experiments
from approxtvm.explore.nsga import NsgaSettings
from approxtvm.explore.userdata import prepare_image_folder, read_labels_file
from approxtvm.models import get_model, load_dataset

DIGITS = (1, 4, 7)  # class folders present (a subset: sorted-folder indices would be wrong)


def _folder(root: Path, per_class: int = 12) -> tuple[Path, Path, np.ndarray]:
    """digits test images as 8-bit PNGs in synset-like folders, and a labels file for all ten."""
    data = load_dataset("digits:test")
    images = root / "val"
    for d in DIGITS:
        (images / f"n{d:02d}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(data.y == d)[:per_class]):
            px = np.rint(data.x[idx, 0] * 255).astype(np.uint8)
            Image.fromarray(px, mode="L").save(images / f"n{d:02d}" / f"{i:03d}.png")
    labels = root / "labels.txt"
    labels.write_text("# model output order\n" + "".join(f"n{d:02d} digit {d}\n" for d in range(10)))
    model = root / "digits_cnn.onnx"
    onnx.save(get_model("digits_cnn"), model)
    return images, labels, data.x


def _args(*argv: str):  # type: ignore[no-untyped-def]
    import argparse

    ap = argparse.ArgumentParser()
    add_explore_parsers(ap.add_subparsers(dest="command"))
    return ap.parse_args(["experiments", *argv])


def test_prepare_maps_folders_through_the_labels_file(tmp_path: Path) -> None:
    images, labels, x_digits = _folder(tmp_path)
    model = onnx.load(tmp_path / "digits_cnn.onnx")
    prep = prepare_image_folder(images, model, tmp_path / "out", labels, normalise="unit")
    with np.load(prep.path) as z:
        x, y = z["x"], z["y"]
    assert prep.samples == 36 and prep.classes == 3 and x.shape == (36, 1, 8, 8)
    assert np.bincount(y, minlength=10)[list(DIGITS)].tolist() == [12, 12, 12]  # not 0, 1, 2
    # pixels: the digits values up to the 8-bit PNG rounding
    assert np.min(np.abs(x[0, 0] - x_digits[:, 0]).max(axis=(1, 2))) <= 0.5 / 255 + 1e-6
    again = prepare_image_folder(images, model, tmp_path / "out", labels, normalise="unit")
    assert again.path == prep.path  # prepared once, reused
    norm = prepare_image_folder(images, model, tmp_path / "out", labels, normalise="imagenet")
    with np.load(norm.path) as z:
        assert z["x"].min() < 0  # mean/std normalised


def test_labels_file_and_folder_errors(tmp_path: Path) -> None:
    images, _, _ = _folder(tmp_path, per_class=2)
    model = onnx.load(tmp_path / "digits_cnn.onnx")
    partial = tmp_path / "partial.txt"
    partial.write_text("n01\nn04\n")
    with pytest.raises(DataError, match="missing from the labels file"):
        prepare_image_folder(images, model, tmp_path / "o", partial)
    dup = tmp_path / "dup.txt"
    dup.write_text("n01\nn01\n")
    with pytest.raises(DataError, match="twice"):
        read_labels_file(dup)
    with pytest.raises(DataError, match="not found"):
        read_labels_file(tmp_path / "nope.txt")
    with pytest.raises(ExplorationError, match="need --model"):
        _user_settings(_args("--data", str(images)), ExperimentSettings.quick())
    with pytest.raises(ExplorationError, match="needs --data"):
        _user_settings(_args("--model", "m.onnx"), ExperimentSettings.quick())


def test_experiments_on_a_user_image_folder(tmp_path: Path) -> None:
    images, labels, _ = _folder(tmp_path)
    a = _args(
        "--model", str(tmp_path / "digits_cnn.onnx"), "--data", str(images), "--labels", str(labels),
        "--normalise", "unit", "--out", str(tmp_path / "rep"), "--staged", "12", "--hours", "2",
        "--pop-size", "4", "--generations", "2",
    )  # fmt: skip
    s = _user_settings(a, ExperimentSettings.quick())
    assert s.models == (a.model,) and s.pareto_model == a.model and s.resnet50_sweeps == ()
    assert s.data.endswith(".npz") and s.calibration == s.data and s.time_budget_s == 7200.0
    assert s.staging is not None and s.staging.first_samples == 12 and s.nsga.pop_size == 4
    tiny = replace(s, multipliers=("exact", "drum:k=4", "drum:k=3"), swings_v=(0.5,), sram_v=(0.6,))
    tiny = replace(tiny, swing_protected_msbs=(0,), nsga=NsgaSettings(pop_size=4, generations=2))
    rep = run_experiments(tmp_path / "rep", settings=tiny, executor=InlineExecutor())
    md = rep.markdown.read_text()
    for title in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert title in md
    assert "staged evaluation" in md  # experiment 4 screened on 12, then 48 (> 36: the full set)
    summary = json.loads(rep.summary_json.read_text())
    exact = summary["pareto"]["reference"]
    assert exact["top1"] is not None and exact["top1"] > 0.8  # labels mapped through the file
