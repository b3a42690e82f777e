"""A wall-clock budget that runs out mid-run: the report shows what finished and names what was
cut, the journal keeps every finished evaluation, and the same call resumes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from approxtvm.explore.deadline import BudgetExhaustedError
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.experiments import ExperimentSettings, run_experiments
from approxtvm.explore.experiments import run as run_module
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings

TINY = ExperimentSettings(
    models=("digits_cnn",),
    limit=24,
    multipliers=("exact", "mul8u_2HH", "drum:k=4"),
    comparison_seeds=(0,),
    swings_v=(0.5,),
    swing_protected_msbs=(0,),
    sram_v=(0.6,),
    nsga=NsgaSettings(pop_size=6, generations=2),
    resnet50_sweeps=(),
    package_accelerator=None,
)


class JournalDeadline:
    """A deterministic clock: the budget runs out once the journal holds ``evaluations`` records."""

    def __init__(self, journal: Path, evaluations: int, budget_s: float) -> None:
        self.journal, self.evaluations, self.budget_s = journal, evaluations, budget_s

    def expired(self) -> bool:
        with Journal(self.journal) as j:
            return j.count() >= self.evaluations

    def elapsed_s(self) -> float:
        return self.budget_s + 1 if self.expired() else 0.0

    def remaining_s(self) -> float:
        return self.budget_s - self.elapsed_s()

    def check(self, what: str) -> None:
        if self.expired():
            raise BudgetExhaustedError(f"budget ran out before {what}", expected="time", found="none", fix="resume")


def test_budget_cut_in_experiment_4_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        @staticmethod
        def start(budget_s: float) -> Any:
            return JournalDeadline(tmp_path / "journal.sqlite", 14, budget_s)

    monkeypatch.setattr(run_module, "Deadline", Clock)
    budgeted = replace(TINY, time_budget_s=3600.0)
    with InlineExecutor() as ex:
        rep = run_experiments(tmp_path, settings=budgeted, executor=ex)
    s = json.loads(rep.summary_json.read_text())
    md = rep.markdown.read_text()
    assert s["cut_by_budget"] == ["experiment 4", "experiment 5"]
    assert "**Cut by the wall-clock budget**" in md and "experiment 4, experiment 5" in md
    assert "## 1." in md and "## 3." in md and s["sweeps"]  # experiments 1–3 finished and are reported
    assert s["pareto"] is None and "## 4. Combined Pareto set\n\nCut by the wall-clock budget" in md
    with Journal(tmp_path / "journal.sqlite") as j:
        first = {r.key: r for r in j.records()}
    assert len(first) == 14  # stopped at the first evaluation boundary past the budget
    with InlineExecutor() as ex:  # the same call without the budget resumes from the journal
        rep2 = run_experiments(tmp_path, settings=TINY, executor=ex)
    s2 = json.loads(rep2.summary_json.read_text())
    assert s2["cut_by_budget"] == [] and s2["pareto"] is not None and "Cut by" not in rep2.markdown.read_text()
    assert s2["sweeps"] == s["sweeps"]
    with Journal(tmp_path / "journal.sqlite") as j:
        again = {r.key: r for r in j.records()}
    assert all(again[k] == r for k, r in first.items())  # nothing redone, nothing lost
    assert s2["evaluations"] > len(first)


def test_a_real_tiny_budget_cuts_and_reports(tmp_path: Path) -> None:
    """A 2 s budget on the shipped model: the run stops early and says what it cut."""
    with InlineExecutor() as ex:
        rep = run_experiments(tmp_path, settings=replace(TINY, time_budget_s=2.0), executor=ex)
    s = json.loads(rep.summary_json.read_text())
    order = ["the knob reach", "experiments 1–3", "experiment 4", "experiment 5"]
    cut = [c for c in s["cut_by_budget"] if c in order]
    assert cut and cut == order[len(order) - len(cut) :]  # a suffix of the run's sections
    assert "**Cut by the wall-clock budget** (2 s" in rep.markdown.read_text()
