"""`experiments --finetune`: Pareto points fine-tuned and re-run; the fine-tuning study report."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="fine-tuning needs the optional `train` extra (torch)")

from approxtvm.explore.finetune_front import finetune_front, markdown_section
from approxtvm.explore.finetune_study import run_study


def _point(mults, energy_rel, loss, top1):
    cfg = {"multipliers": mults, "noc_swing_v": None, "noc_protected_msbs": 0, "sram_v": {}}
    return {"label": str(mults), "config": cfg, "energy_rel": energy_rel, "accuracy_loss": loss, "top1": top1}


def test_moved_front_points_are_fine_tuned_and_rerun(tmp_path):
    exact = 0.99
    pareto = {
        "reference": {"top1": exact},
        "pareto": [
            _point({}, 1.0, 0.0, exact),  # exact point: nothing to fine-tune, skipped
            _point({"conv2": "drum:k=4", "conv3": "drum:k=4"}, 0.9, 0.2, exact - 0.2),
        ],
    }
    pj = tmp_path / "pareto.json"
    pj.write_text(json.dumps(pareto))
    moved, png = finetune_front(pj, tmp_path / "ft", model="digits_cnn", limit=120, epochs=1, max_points=3)
    assert len(moved) == 1 and png.is_file()
    m = moved[0]
    assert m.energy_rel == 0.9 and 0.0 <= exact - m.loss_after <= 1.0
    assert (tmp_path / "ft/point_0/model.onnx").is_file()
    md = "\n".join(markdown_section(moved, png, 1))
    assert "finetune_front.png" in md and "conv2" in md


@pytest.mark.slow  # ~40 s: compiles and fine-tunes a whole model; the hand-over itself is in the fast suite
def test_study_rows_report_and_bit_exact_hand_over(tmp_path):
    rows = run_study(["digits_cnn"], ["drum:k=4"], tmp_path, epochs=1, log=lambda s: None)
    (r,) = rows
    assert r.bit_exact and r.energy_before_pj == r.energy_after_pj
    assert 0 <= r.ort_top1_changed <= r.ort_images_differing <= 360
    assert r.before_top1 < r.exact_top1  # drum:k=4 loses accuracy on digits_cnn (16.7 pp)
    assert r.recovered is not None and r.recovered == pytest.approx(
        (r.after_top1 - r.before_top1) / (r.exact_top1 - r.before_top1)
    )
    report = (tmp_path / "report.md").read_text()
    assert "drum:k=4" in report and "images differing" in report
    assert (tmp_path / "finetune.png").is_file() and (tmp_path / "results.json").is_file()


def test_experiments_finetune_hook_appends_the_moved_front(tmp_path):
    import argparse

    from rich.console import Console

    from approxtvm.explore.cli_explore import _finetune_front, add_explore_parsers
    from approxtvm.explore.experiments import ExperimentSettings, ExperimentsReport

    ap = argparse.ArgumentParser()
    add_explore_parsers(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["experiments", "--finetune", "--finetune-epochs", "1"])
    assert args.finetune and args.finetune_epochs == 1
    (tmp_path / "pareto").mkdir()
    pareto = {"reference": {"top1": 0.99}, "pareto": [_point({"conv3": "drum:k=4"}, 0.95, 0.05, 0.94)]}
    (tmp_path / "pareto/pareto.json").write_text(json.dumps(pareto))
    report = ExperimentsReport(tmp_path / "report.md", tmp_path / "report.html", tmp_path / "summary.json")
    report.markdown.write_text("# experiments\n")
    _finetune_front(tmp_path, ExperimentSettings.quick(), 1, report, Console(quiet=True))
    md = report.markdown.read_text()
    assert md.startswith("# experiments") and "## 6. Fine-tuning the Pareto set" in md and "conv3" in md
    assert "finetune_front.png" in report.html.read_text() and (tmp_path / "finetune/finetune_front.png").is_file()


def test_experiments_finetune_hook_skips_user_data_without_a_training_split(tmp_path):
    from dataclasses import replace

    from rich.console import Console

    from approxtvm.explore.cli_explore import _finetune_front
    from approxtvm.explore.experiments import ExperimentSettings, ExperimentsReport

    report = ExperimentsReport(tmp_path / "report.md", tmp_path / "report.html", tmp_path / "summary.json")
    report.markdown.write_text("# experiments\n")
    console = Console(record=True, width=200)
    _finetune_front(tmp_path, replace(ExperimentSettings.quick(), data="user.npz"), 1, report, console)
    assert report.markdown.read_text() == "# experiments\n" and "skipped" in console.export_text()
