"""Experiment 4 re-searched per scenario: scenario isolation, the ordering check, a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.genome import Configuration
from approxtvm.explore.nsga import Point, pareto_front
from approxtvm.explore.sensitivity import Scenario, scenarios
from approxtvm.explore.sensitivity_search import (
    SearchBudget,
    front_order_holds,
    run_search_report,
    scenario_context,
)
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.technology import apply_technology


def _pt(swing: float | None, loss: float, energy: float) -> Point:
    c = Configuration.make(noc_swing_v=swing)
    return Point(c, c.to_json(), loss, energy * 100.0, energy, None, 1.0 - loss)


def test_front_order_check_fails_on_a_reorder_or_a_dominated_member() -> None:
    base = [_pt(0.4, 0.05, 0.90), _pt(0.5, 0.01, 0.95), _pt(None, 0.0, 1.0)]
    assert front_order_holds(base, [_pt(0.4, 0.08, 0.90), _pt(0.5, 0.02, 0.96), _pt(None, 0.0, 1.0)])
    # the 0.5 V point became cheaper than the 0.4 V one: the energy order changed
    assert not front_order_holds(base, [_pt(0.4, 0.05, 0.93), _pt(0.5, 0.01, 0.92), _pt(None, 0.0, 1.0)])
    # same order, but the 0.5 V point now loses as much as the cheaper 0.4 V one: it is dominated
    assert not front_order_holds(base, [_pt(0.4, 0.05, 0.90), _pt(0.5, 0.05, 0.95), _pt(None, 0.0, 1.0)])


def test_scenario_contexts_carry_the_moved_assumption(tmp_path: Path) -> None:
    spec = AcceleratorSpec.load("simba_like")
    base = EvalContext("digits_cnn")
    by_name = {sc.name: sc for sc in scenarios()}
    ber = scenario_context(base, by_name["BER x10"], spec, tmp_path)
    assert ber.ber_scale == 10.0 and ber.accelerator == "simba_like"
    noc = scenario_context(base, by_name["noc energy x1.25"], spec, tmp_path)
    moved = AcceleratorSpec.load(noc.accelerator)
    assert moved.noc.link_energy_pj_per_bit == pytest.approx(1.25 * spec.noc.link_energy_pj_per_bit)
    assert moved.memories == spec.memories and moved.sram == spec.sram
    assert scenario_context(base, Scenario("baseline"), spec, tmp_path) == base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("search")
    budget = SearchBudget(pop_size=4, generations=2, limit=40)  # a tiny budget: the fast suite stays fast
    # a spec object (here: a technology applied) reaches the workers as a YAML file
    spec = apply_technology(AcceleratorSpec.load("simba_like"), "illustrative_45nm")
    return out, run_search_report("digits_cnn", out, budget=budget, accelerator=spec, only=("BER x10",))


def test_a_tiny_search_per_scenario(tiny) -> None:
    out, rep = tiny
    assert list(rep.searches) == ["baseline", "baseline, seed 1", "BER x10"]  # with the noise-floor row
    for r in rep.searches.values():
        assert 1 <= r.evaluations <= 4 * 2
        labels = [f[0] for f in r.front]
        energies = [f[2] for f in r.front]
        assert energies == sorted(energies) and r.knee["label"] in labels
    holds = rep.holds()
    assert holds["search knee knobs"]["baseline"] and holds["front ordering"]["baseline"]
    doc = json.loads((out / "search.json").read_text())
    assert doc["budget"]["pop_size"] == 4 and set(doc["searches"]) == {"baseline", "baseline, seed 1", "BER x10"}
    reseeded = rep.searches["baseline, seed 1"]  # same assumptions: the baseline front re-evaluates to itself
    assert reseeded.order_holds
    assert "BER x10" in (out / "search.md").read_text()
    assert AcceleratorSpec.load(out / "specs" / "base.yaml").name == "simba_like+illustrative_45nm"


def test_ber_x10_loses_at_least_as_much_on_the_baseline_front(tiny) -> None:
    """The same configurations re-evaluated with ten times the bit error rates (same seed): the
    energies are those of the baseline run, and no point loses less accuracy than its fault-free part."""
    out, _ = tiny
    from approxtvm.explore.executors import InlineExecutor
    from approxtvm.explore.journal import Journal
    from approxtvm.explore.nsga import Study

    base = EvalContext("digits_cnn", limit=40)
    with Journal(out / "journal.sqlite") as j:
        front_cfgs = [Configuration.make(noc_swing_v=0.35), Configuration.make(sram_v={"input_buffer": 0.55})]
        a = Study(base, j, InlineExecutor()).points(front_cfgs)
        b = Study(scenario_context(base, Scenario("x10", ber_scale=10.0), AcceleratorSpec.load("simba_like"), out), j,
                  InlineExecutor()).points(front_cfgs)  # fmt: skip
    assert [p.energy_per_inference_pj for p in a] == [p.energy_per_inference_pj for p in b]
    assert all(q.accuracy_loss >= p.accuracy_loss - 0.05 for p, q in zip(a, b, strict=True))
    assert sum(q.accuracy_loss for q in b) > sum(p.accuracy_loss for p in a)  # a decade more flips shows
    assert pareto_front(a)  # sanity: the helper accepts them
