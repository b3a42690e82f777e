"""A wall-clock budget for a whole exploration run, enforced at evaluation boundaries.

:class:`Deadline` is the budget; :class:`BudgetedExecutor` wraps any executor so that no batch
starts after the deadline and a running batch stops at the first finished evaluation past it
(that evaluation and every earlier one are already in the journal: :func:`evaluate_batch` commits
each record before it asks for the next). Evaluations not yet started are cancelled; those in
flight on other workers finish before the executor closes and are not recorded. The run then
raises :class:`BudgetExhaustedError`, which the experiments catch per section: what finished is
reported, what was cut is named, and the same command resumes from the journal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalTask
from approxtvm.explore.journal import EvalRecord


class BudgetExhaustedError(ExplorationError):
    """The wall-clock budget of the run ran out (finished evaluations are in the journal)."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A wall-clock budget started at a point in time.

    Attributes
    ----------
    budget_s
        The budget (s).
    start_s
        ``time.monotonic()`` when it started.
    """

    budget_s: float
    start_s: float

    @staticmethod
    def start(budget_s: float) -> Deadline:
        """A budget of ``budget_s`` seconds from now."""
        if not budget_s > 0:
            raise ExplorationError(
                "the wall-clock budget must be positive",
                expected="budget > 0 s (--hours > 0)",
                found=f"{budget_s} s",
                fix="pass a positive --hours, or none for no budget",
            )
        return Deadline(float(budget_s), time.monotonic())

    def elapsed_s(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.start_s

    def remaining_s(self) -> float:
        """Seconds left (negative once expired)."""
        return self.budget_s - self.elapsed_s()

    def expired(self) -> bool:
        """Whether the budget has run out."""
        return self.remaining_s() <= 0

    def check(self, what: str) -> None:
        """Raise :class:`BudgetExhaustedError` if the budget has run out before ``what`` starts."""
        if self.expired():
            raise BudgetExhaustedError(
                f"the {self.budget_s:.0f} s wall-clock budget ran out before {what}",
                expected=f"{what} within the budget",
                found=f"{self.elapsed_s():.0f} s elapsed",
                fix="run the same command again to resume from the journal, with a larger --hours",
            )


class BudgetedExecutor:
    """An executor that stops at the first evaluation boundary past a :class:`Deadline`.

    Parameters
    ----------
    inner
        The executor that runs the evaluations (not closed here: its owner closes it).
    deadline
        The budget.
    """

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    @property
    def n_workers(self) -> int:
        """The inner executor's."""
        return int(self.inner.n_workers)

    @property
    def description(self) -> str:
        """The inner executor's, with the time left."""
        return f"{self.inner.description}, {max(0.0, self.deadline.remaining_s()):.0f} s of budget left"

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        """The inner executor's records until the deadline; then :class:`BudgetExhaustedError`."""
        if not tasks:
            return
        self.deadline.check(f"{len(tasks)} evaluation(s)")
        left = len(tasks)
        inner = self.inner.run(tasks)
        try:
            for item in inner:
                yield item  # the caller journals it before asking for the next
                left -= 1
                if left:
                    self.deadline.check(f"the remaining {left} evaluation(s) of a batch")
        finally:
            inner.close()  # cancels what has not started

    def close(self) -> None:
        """Nothing to release (the inner executor belongs to the caller)."""


__all__ = ["BudgetExhaustedError", "BudgetedExecutor", "Deadline"]
