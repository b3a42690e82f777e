"""Fitting NSGA-II generations into a wall-clock budget."""

from __future__ import annotations

from approxtvm.explore.budget import plan_generations


def test_generations_that_fit() -> None:
    # 10 s per evaluation, 2 workers, population 8: 40 s per generation; 8 reserved evaluations = 40 s
    assert plan_generations(400.0, [8.0, 12.0], 2, 8, 20, reserve_evaluations=8) == 9
    assert plan_generations(400.0, [10.0], 1, 8, 20) == 5  # one worker: twice the time per generation
    assert plan_generations(1e6, [10.0], 2, 8, 6) == 6  # never more than asked
    assert plan_generations(5.0, [10.0], 2, 8, 6) == 1  # at least one generation
    assert plan_generations(5.0, [], 2, 8, 6) == 6  # nothing measured: as asked
