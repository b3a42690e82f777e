"""The five experiments end to end on a tiny budget, and the report's Markdown → HTML."""

from __future__ import annotations

import json
from pathlib import Path

from approxtvm.explore.executors import ProcessExecutor
from approxtvm.explore.experiments import ExperimentSettings, run_experiments
from approxtvm.explore.nsga import NsgaSettings
from approxtvm.explore.report import markdown_to_html

TINY = ExperimentSettings(
    models=("digits_cnn",),
    limit=24,
    multipliers=("exact", "trunc:k=4", "drum:k=5", "drum:k=4"),
    swings_v=(0.5,),
    swing_protected_msbs=(0, 4),
    sram_v=(0.6,),
    nsga=NsgaSettings(pop_size=6, generations=2),
    resnet50_sweeps=(),
)


def test_experiments_report(tmp_path: Path) -> None:
    with ProcessExecutor(2) as ex:
        rep = run_experiments(tmp_path, settings=TINY, executor=ex)
        md = rep.markdown.read_text()
        for title in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
            assert title in md
        html = rep.html.read_text()
        assert "<table>" in html and 'src="pareto_front.png"' in html
        for png in (
            "pareto_front.png",
            "energy_breakdown.png",
            "multiplier_map.png",
            "sweep_multipliers.png",
            "sweep_noc_swing.png",
            "sweep_sram.png",
        ):
            assert (tmp_path / png).stat().st_size > 1000
        s = json.loads(rep.summary_json.read_text())
        assert s["pareto"]["hypervolume"] >= s["pareto"]["uniform_hypervolume"]
        assert all(s["reevaluated_identically"].values()) and s["front_dominates_uniform"]
        # a second run finds everything in the journal
        before = s["evaluations"]
        rep2 = run_experiments(tmp_path, settings=TINY, executor=ex)
        assert json.loads(rep2.summary_json.read_text())["evaluations"] == before


def test_markdown_to_html() -> None:
    html = markdown_to_html(
        "# T\n\ntext `x` **b**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two\n\n![p](p.png)", "t"
    )
    assert "<h1>T</h1>" in html and "<code>x</code>" in html and "<b>b</b>" in html
    assert "<th>a</th>" in html and "<td>2</td>" in html and "<li>two</li>" in html and '<img src="p.png"' in html
