"""The five experiments end to end on a tiny budget, and the report's Markdown → HTML."""

from __future__ import annotations

import json
from pathlib import Path

from approxtvm.explore.executors import ProcessExecutor
from approxtvm.explore.experiments import ExperimentSettings, run_experiments
from approxtvm.explore.nsga import NsgaSettings

TINY = ExperimentSettings(
    models=("digits_cnn",),
    limit=24,
    multipliers=("exact", "mul8u_2HH", "drum:k=4"),  # EvoApproxLib and a family side by side
    comparison_seeds=(0,),  # five seeds in the default settings; the statistics: test_nsga (fakes)
    swings_v=(0.5,),
    swing_protected_msbs=(0, 4),
    sram_v=(0.6,),
    nsga=NsgaSettings(pop_size=6, generations=2),
    resnet50_sweeps=(),
    package_accelerator="simba_package_2x2",  # experiment 2 on a package: tests/explore/experiments/test_package_links
    link_fractions=(0.3,),
)


def test_experiments_report(tmp_path: Path) -> None:
    with ProcessExecutor(2) as ex:
        rep = run_experiments(tmp_path, settings=TINY, executor=ex)
        md = rep.markdown.read_text()
        for title in ("## 1.", "## 2.", "## 2b.", "## 3.", "## 4.", "## 5."):
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
        assert all(s["reevaluated_identically"].values())
        assert [r["series"] for r in s["package_link_sweep"]] == ["nominal", "NoC", "package", "both"]
        cmp = s["search_comparison"]
        assert [x["seed"] for x in cmp["seeds"]] == [0]
        for x in cmp["seeds"]:  # the same budget for the three searches
            assert x["evaluations"]["grid"] == x["evaluations"]["random"] == x["evaluations"]["nsga2"] > 0
        assert cmp["seeds"][0]["hypervolume"]["nsga2"] == s["pareto"]["hypervolume"]  # seed 0 is the reported run
        assert cmp["reference_point"] == {"accuracy_loss": 1.0, "energy_rel": 1.0}
        for other in ("grid", "random"):
            v = cmp["nsga2_vs"][other]["verdict"]
            assert v in ("better", "not better") and f"**{v}**" in md
        # knob reach: digits_cnn is offloaded whole, so every knob reaches all of it
        assert "## Knob reach" in md and "| approximate multiplier | MACs | 100.0 % |" in md
        reach = s["knob_reach"]["digits_cnn"]
        assert reach["offloaded_macs"] == reach["total_macs"] > 0 and reach["host_layers"] == []
        assert "| mul8u_2HH | 0.302 |" in md  # experiment 1: published power next to the accuracy loss
        # a second run finds everything in the journal
        before = s["evaluations"]
        rep2 = run_experiments(tmp_path, settings=TINY, executor=ex)
        assert json.loads(rep2.summary_json.read_text())["evaluations"] == before


def test_best_uniform_point_when_the_knee_beats_every_uniform_multiplier() -> None:
    from types import SimpleNamespace as P

    from approxtvm.explore.experiments import best_uniform_point

    uniform = [
        P(accuracy_loss=0.02, energy_rel=0.5),
        P(accuracy_loss=0.0, energy_rel=0.9),
        P(accuracy_loss=0.0, energy_rel=0.8),
    ]
    ref = P(accuracy_loss=0.0, energy_rel=1.0)
    assert best_uniform_point(uniform, P(accuracy_loss=0.03), ref) is uniform[0]  # cheapest within the knee's loss
    assert best_uniform_point(uniform, P(accuracy_loss=0.01), ref) is uniform[2]
    # a knee that gains accuracy (negative loss): no uniform point qualifies; the demo crashed here
    assert best_uniform_point(uniform, P(accuracy_loss=-0.008), ref) is uniform[2]
    assert best_uniform_point([], P(accuracy_loss=-0.008), ref) is ref
