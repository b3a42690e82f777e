"""Fit an exploration into a wall-clock budget from the evaluation times measured so far."""

from __future__ import annotations

import math
from collections.abc import Sequence


def plan_generations(
    remaining_s: float,
    eval_s: Sequence[float],
    workers: int,
    pop_size: int,
    wanted: int,
    reserve_evaluations: int = 0,
) -> int:
    """NSGA-II generations that fit into ``remaining_s`` seconds (at least 1, at most ``wanted``).

    Parameters
    ----------
    remaining_s
        Wall-clock seconds left.
    eval_s
        Worker seconds of the evaluations measured so far in the same context (compile + run);
        their mean is the cost of one more (staged studies spend less, so this is conservative).
    workers
        Evaluations that run at once.
    pop_size
        Configurations per generation.
    wanted
        Generations asked for.
    reserve_evaluations
        Evaluations to keep time for after the search (the uniform grid, re-evaluations).
    """
    if not eval_s:
        return wanted
    per = sum(eval_s) / len(eval_s)
    per_generation = per * math.ceil(pop_size / max(1, workers))
    left = remaining_s - per * math.ceil(reserve_evaluations / max(1, workers))
    return int(max(1, min(wanted, math.floor(left / per_generation) if per_generation > 0 else wanted)))
