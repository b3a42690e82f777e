"""The wall-clock budget: evaluations stop at the first boundary past it, journaled ones stay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from approxtvm.errors import ExplorationError
from approxtvm.explore.deadline import BudgetedExecutor, BudgetExhaustedError, Deadline
from approxtvm.explore.evaluator import EvalContext, make_task
from approxtvm.explore.executors import evaluate_batch
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import Journal
from tests.explore.fakes import FakeExecutor


class FakeDeadline:
    """Expires after ``checks`` checks (a deterministic clock)."""

    budget_s = 10.0

    def __init__(self, checks: int) -> None:
        self.left = checks

    def expired(self) -> bool:
        return self.left <= 0

    def elapsed_s(self) -> float:
        return 11.0 if self.expired() else 1.0

    def remaining_s(self) -> float:
        return self.budget_s - self.elapsed_s()

    def check(self, what: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise BudgetExhaustedError(f"budget ran out before {what}", expected="time", found="none", fix="resume")


def _tasks(n: int) -> list:
    ctx = EvalContext("fake")
    layers = ("conv1", "conv2", "conv3", "fc")  # the fake evaluator's layers and multipliers
    return [make_task(ctx, "fp", Configuration.make({layers[i % 4]: f"m{1 + i // 4}"})) for i in range(n)]


def test_a_batch_stops_at_the_first_evaluation_past_the_deadline(tmp_path: Path) -> None:
    tasks = _tasks(5)
    with Journal(tmp_path / "j.sqlite") as j:
        # one check before the batch, one after each of the first two records: the third check fails
        ex = BudgetedExecutor(FakeExecutor(), FakeDeadline(3))  # type: ignore[arg-type]
        with pytest.raises(BudgetExhaustedError, match="remaining 2") as info:
            evaluate_batch(tasks, j, ex)
        assert info.value.fix and isinstance(info.value, ExplorationError)
        assert j.count() == 3  # every record that reached the driver is journaled
        recs, stats = evaluate_batch(tasks, j, FakeExecutor())  # resumed without a budget
        assert stats.cached == 3 and stats.evaluated == 2 and len(recs) == 5


def test_no_batch_starts_after_the_deadline(tmp_path: Path) -> None:
    inner = FakeExecutor()
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(BudgetExhaustedError):
        evaluate_batch(_tasks(2), j, BudgetedExecutor(inner, FakeDeadline(0)))  # type: ignore[arg-type]
    assert inner.submitted == 0


def test_deadline_clock_and_errors() -> None:
    d = Deadline.start(3600.0)
    assert not d.expired() and 3590 < d.remaining_s() <= 3600
    d.check("anything")
    late = Deadline(1.0, time.monotonic() - 2.0)
    assert late.expired()
    with pytest.raises(BudgetExhaustedError, match="before experiment 4") as info:
        late.check("experiment 4")
    assert "resume" in info.value.fix
    with pytest.raises(ExplorationError, match="positive"):
        Deadline.start(0.0)
