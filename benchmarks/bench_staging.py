"""Staged evaluation on the shipped models: compute saved, and the same front as an unstaged run.

For ``digits_cnn`` and ``digits_resnet`` (the whole digits test split, 360 labelled images,
batch 8) the same configurations are evaluated twice in this process, each through its own
journal and one in-process worker: once by a :class:`~approxtvm.explore.staged.StagedStudy`
(stages of ``BENCH_STAGING_FIRST`` images growing ×``BENCH_STAGING_GROWTH``, default 40 → 120 →
360) and once by a plain :class:`~approxtvm.explore.nsga.Study` (every configuration on every
image). Each run starts from an empty worker cache
(:func:`~approxtvm.explore.evaluator.clear_worker_cache`: no compiled model, kernel or table carried
over from the previous run). The configurations are every multiplier of the default library on every
layer plus ``BENCH_STAGING_RANDOM`` seeded random per-layer genomes of the default search space. The
staged run is repeated for each accuracy-loss budget of ``BENCH_STAGING_BUDGETS`` (default: none and
2 pp; with a budget, a configuration whose loss is over it with confidence is dropped early, and
both fronts keep only points within it).

Reported per model: image evaluations and worker seconds of both runs and the fractions staging
saved; the two Pareto fronts (accuracy loss vs energy) and whether they are the same set of
(configuration, loss, energy) points (tolerance 0: the final front is always evaluated on the
full set, so a front point must match the unstaged one exactly; a staged run that dropped a true
front member makes the sets differ); the hypervolume of both fronts and their difference.

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.explore.evaluator import EvalContext, clear_worker_cache, load_context_data
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.genome import DEFAULT_MULTIPLIERS, Configuration
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import Point, Study, hypervolume, pareto_front
from approxtvm.explore.staged import StagedStudy, StagingSettings

MODELS = tuple(os.environ.get("BENCH_STAGING_MODELS", "digits_cnn,digits_resnet").split(","))
FIRST = int(os.environ.get("BENCH_STAGING_FIRST", "40"))
GROWTH = int(os.environ.get("BENCH_STAGING_GROWTH", "3"))
RANDOM = int(os.environ.get("BENCH_STAGING_RANDOM", "12"))
LIMIT = int(os.environ.get("BENCH_STAGING_LIMIT", "0"))  # 0 = the whole test split
#: Accuracy-loss budgets compared (``none``: no budget, the front of every point).
BUDGETS = tuple(
    None if b == "none" else float(b) for b in os.environ.get("BENCH_STAGING_BUDGETS", "none,0.02").split(",")
)


def front_set(points: list[Point]) -> set[tuple[str, float, float]]:
    """The front as a set of (configuration, accuracy loss, energy per inference)."""
    return {(p.config.to_json(), p.accuracy_loss, p.energy_per_inference_pj) for p in points}


def configurations(study: Study, n_random: int, seed: int) -> list[Configuration]:
    """Every library multiplier on every layer, then ``n_random`` random per-layer genomes."""
    space = study.space(DEFAULT_MULTIPLIERS, (None,), (0.9,), (0.9,), (0,))
    configs = [space.decode(g) for g in space.uniform_genomes()]
    rng = np.random.default_rng(seed)
    while len(configs) < len(space.uniform_genomes()) + n_random:
        c = space.decode(rng.integers(0, space.upper + 1))
        if c not in configs:
            configs.append(c)
    return configs


def staged_run(
    ctx: EvalContext, configs: list[Configuration], full_pts: list[Point], budget: float | None, tmp: str
) -> dict[str, Any]:
    """One staged run through its own journal, compared with the unstaged points."""
    n_unstaged = (len(configs) + 1) * len(load_context_data(ctx))
    clear_worker_cache()
    with Journal(Path(tmp) / f"staged-{budget}.sqlite") as j:
        staged = StagedStudy(
            ctx, j, InlineExecutor(), StagingSettings(first_samples=FIRST, growth=GROWTH), budget=budget
        )
        t0 = time.perf_counter()
        staged.points(configs)
        wall = time.perf_counter() - t0 + staged.reference.record.eval_s
        st = staged.stats
        eval_s = sum(r.eval_s for r in j.records())
        front_s = staged.front()
        missed = [
            c.label()
            for c, e in staged.estimates().items()
            if not e.loss_low <= full_pts[configs.index(c)].accuracy_loss <= e.loss_high
        ]
    front_u = pareto_front(full_pts, budget)
    hv_s, hv_u = hypervolume(front_s), hypervolume(front_u)
    return {
        "budget": budget,
        "stages": staged.sizes,
        "reached_full_set": st.full_evaluations,
        "by_stage": {str(k): v for k, v in sorted(st.by_stage.items())},
        "image_evals": st.samples_run,
        "image_savings": round(1 - st.samples_run / n_unstaged, 4),
        "worker_s": round(eval_s, 2),
        "wall_s": round(wall, 2),
        "front_size": [len(front_s), len(front_u)],
        "fronts_equal": front_set(front_s) == front_set(front_u),
        "hypervolume_staged": hv_s,
        "hypervolume_unstaged": hv_u,
        "hypervolume_diff": hv_s - hv_u,
        "bounds_missed": missed,
    }


def compare(model: str) -> dict[str, Any]:
    """Staged vs unstaged on one model (see the module docstring)."""
    ctx = EvalContext(model, "digits:test", limit=LIMIT, batch_size=8)
    with tempfile.TemporaryDirectory() as tmp:
        clear_worker_cache()
        with Journal(Path(tmp) / "unstaged.sqlite") as j:
            full = Study(ctx, j, InlineExecutor())
            configs = configurations(full, RANDOM, seed=5)
            t0 = time.perf_counter()
            full_pts = full.points(configs)
            wall_u = time.perf_counter() - t0 + full.reference.record.eval_s
            eval_s_u = sum(r.eval_s for r in j.records())
            n = full.reference.record.samples
        runs = [staged_run(ctx, configs, full_pts, b, tmp) for b in BUDGETS]
    for r in runs:
        r["worker_time_savings"] = round(1 - r["worker_s"] / eval_s_u, 4)
    return {
        "model": model,
        "images": n,
        "configurations": len(configs),
        "image_evals_unstaged": (len(configs) + 1) * n,
        "worker_s_unstaged": round(eval_s_u, 2),
        "wall_s_unstaged": round(wall_u, 2),
        "staged": runs,
    }


def main() -> int:
    load = os.getloadavg()[0]
    rows = [compare(m) for m in MODELS]
    out = {
        "bench": "staging",
        "first_stage": FIRST,
        "growth": GROWTH,
        "random_genomes": RANDOM,
        "load_avg_1min_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "models": rows,
        "all_fronts_equal": all(r["fronts_equal"] for m in rows for r in m["staged"]),
        "tolerance": "set equality of (configuration, loss, energy) front points; hypervolume difference 0",
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
