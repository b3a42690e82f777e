"""Survival of staged evaluation in a real experiment-4 search, on labelled images: how many
configurations go past each stage, and what that makes of the ResNet-50 projection.

``bench_study_scale.py`` measures what an evaluation of experiment 4 costs on ResNet-50 but has
no labels, so its 8-hour projection is given for assumed survival fractions. This script measures
them where labels exist: experiment 4 itself (NSGA-II over the default search space of
``approxtvm experiments``: a per-layer multiplier from the library, NoC swing, input/weight buffer
voltages, protected MSBs; the uniform-multiplier baselines beside the search) on a shipped
labelled model, through a :class:`~approxtvm.explore.staged.StagedStudy` with the projection's
rule and stage sizes (``StagingSettings(100, 4)``, batch 8: 104 → 400 → 1,000 on 1,000 images).

Data: ``BENCH_SURVIVAL_DATA`` (default ``digits:all`` limited to ``BENCH_SURVIVAL_LIMIT`` = 1,000
images, so the stage sizes are the projection's exactly; 80 % of those are the models' training
images, ``digits:test`` gives the 360 held-out ones with stages 104 → 360). Models:
``BENCH_SURVIVAL_MODELS`` (default ``digits_resnet``). NSGA-II: ``BENCH_SURVIVAL_POP`` ×
``BENCH_SURVIVAL_GENS`` (default 24 × 12, ``experiments --full``: ≈ 300 configurations with the
baselines). ``BENCH_SURVIVAL_Z``: the bounds' one-sided quantile (default 2.33, the staged
default); ``BENCH_SURVIVAL_RESOLUTION_PP``: the loss resolution ε in percentage points (default 0,
the exact front; ``--staged-resolution``); ``BENCH_SURVIVAL_BUDGET_PP``: an accuracy-loss budget of
the search (``explore --budget``; default none); ``BENCH_SURVIVAL_FIRST`` / ``BENCH_SURVIVAL_GROWTH``: other
stage sizes than the projection's (default 100 / 4). One in-process worker.

Reported per model: distinct configurations, evaluations per stage size, the fractions that went
past stage 1 (q₁) and reached the full set (q₂, front completions included), image evaluations
per configuration (the exact cost measure: a front completion from stage 1 adds every image it
lacks), and the same per NSGA-II generation (later generations meet a better front). Then the
projection of ``bench_study_scale.py`` with the measured images per configuration: hours for
``GOAL_CONFIGS`` configurations on two workers, from ``BENCH_SURVIVAL_S_PER_IMAGE`` and
``BENCH_SURVIVAL_FIXED_S`` (default: the idle session-6 figures of ``bench_study_scale.py``,
0.842 s per image and 5.28 s fixed; pass the latest) at linear scaling and at
``BENCH_SURVIVAL_SCALING`` (default 1.95, the measured Dask 1 → 2 workers).

What this cannot tell: whether ImageNet on ResNet-50 drops configurations as often as digits on
these models. The rule's confidence intervals depend only on the stage sizes and on how often a
configuration disagrees with the exact model, so with the same stage sizes the survival differs
only through how the configurations' losses and energies spread.

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from approxtvm.explore.evaluator import EvalContext, clear_worker_cache
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.experiments.pareto import experiment4_space
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings, Study, pareto_front, run_nsga
from approxtvm.explore.staged import StagedStudy, StagingSettings

MODELS = tuple(os.environ.get("BENCH_SURVIVAL_MODELS", "digits_resnet").split(","))
DATA = os.environ.get("BENCH_SURVIVAL_DATA", "digits:all")
LIMIT = int(os.environ.get("BENCH_SURVIVAL_LIMIT", "1000"))
POP = int(os.environ.get("BENCH_SURVIVAL_POP", "24"))
GENS = int(os.environ.get("BENCH_SURVIVAL_GENS", "12"))
SEED = int(os.environ.get("BENCH_SURVIVAL_SEED", "0"))
S_PER_IMAGE = float(os.environ.get("BENCH_SURVIVAL_S_PER_IMAGE", "0.842"))
FIXED_S = float(os.environ.get("BENCH_SURVIVAL_FIXED_S", "5.28"))
SCALING = float(os.environ.get("BENCH_SURVIVAL_SCALING", "1.95"))
#: Optional JSON file to which every configuration's final stage is written (per model), for
#: ``bench_weighted_projection.py``: which configurations ran how many images.
DUMP = os.environ.get("BENCH_SURVIVAL_DUMP")
#: With ``1``, every configuration of the search is then also evaluated on the full set (unstaged;
#: full-set records are shared through the journal) and the staged front is compared with the
#: unstaged front of the same configurations.
CHECK_FRONT = os.environ.get("BENCH_SURVIVAL_CHECK_FRONT", "0") == "1"
#: Accuracy-loss budget of the search in percentage points (``explore --budget``; unset: none).
BUDGET = float(os.environ["BENCH_SURVIVAL_BUDGET_PP"]) / 100.0 if os.environ.get("BENCH_SURVIVAL_BUDGET_PP") else None
GOAL_CONFIGS = 300
GOAL_IMAGES = 1000
STAGING = StagingSettings(
    first_samples=int(os.environ.get("BENCH_SURVIVAL_FIRST", "100")),
    growth=int(os.environ.get("BENCH_SURVIVAL_GROWTH", "4")),
    z=float(os.environ.get("BENCH_SURVIVAL_Z", "2.33")),
    resolution=float(os.environ.get("BENCH_SURVIVAL_RESOLUTION_PP", "0")) / 100.0,
)


def survival(model: str) -> dict[str, Any]:
    """Experiment 4 staged on ``model``: stage counts overall and per generation."""
    s = ExperimentSettings.full()
    ctx = EvalContext(model, DATA, limit=LIMIT, batch_size=s.batch_size)
    clear_worker_cache()
    per_gen: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "journal.sqlite") as journal:
        study = StagedStudy(ctx, journal, InlineExecutor(), STAGING, BUDGET)
        space = experiment4_space(study, s)
        st = study.stats
        last = {"configurations": 0, "samples_run": 0, "by_stage": {}}

        def on_generation(g: Any) -> None:
            # stage counts of this generation alone (its new configurations and front completions)
            by = {n: st.by_stage.get(n, 0) - last["by_stage"].get(n, 0) for n in study.sizes}
            new = st.configurations - last["configurations"]
            per_gen.append(
                {
                    "generation": g.generation,
                    "new_configurations": new,
                    "by_stage": {str(k): v for k, v in by.items()},
                    "images_per_configuration": round((st.samples_run - last["samples_run"]) / max(1, new), 1),
                }
            )
            last.update(configurations=st.configurations, samples_run=st.samples_run, by_stage=dict(st.by_stage))
            print(f"  generation {g.generation}: {per_gen[-1]}", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        nsga = replace(s.nsga, pop_size=POP, generations=GENS, seed=SEED, accuracy_budget=BUDGET)
        assert isinstance(nsga, NsgaSettings)
        result = run_nsga(study, space, nsga, on_generation)
        wall = time.perf_counter() - t0
        sizes = study.sizes
        n_conf = st.configurations
        # reference (exact) runs are counted once per stage size: not a configuration's cost
        ref_images = sum(sizes)
        images_per_conf = (st.samples_run - ref_images) / n_conf
        configs = [
            {
                "configuration": c.to_dict(),
                "samples": e.samples,
                "accuracy_loss": e.point.accuracy_loss,
                "energy_rel": e.point.energy_rel,
            }
            for c, e in study.estimates().items()
        ]
        # a front completion after a drop still ran every image it reports: the sum must match
        images_in_estimates = sum(r["samples"] for r in configs)
        check: dict[str, Any] = {}
        if CHECK_FRONT:
            from bench_staging import front_set  # the same comparison as the staging benchmark's

            every = list(study.estimates())
            full = pareto_front(Study(ctx, journal, InlineExecutor()).points(every), BUDGET)
            staged_front = study.front()

            check = {
                "fronts_equal": front_set(staged_front) == front_set(full),
                "front_sizes_staged_unstaged": [len(staged_front), len(full)],
                "nsga_result_front_equal": front_set(result.pareto) == front_set(full),
            }
    q1 = st.by_stage.get(sizes[1], 0) / n_conf if len(sizes) > 2 else None
    q2 = st.by_stage.get(sizes[-1], 0) / n_conf
    return {
        "model": model,
        "data": DATA,
        "images": sizes[-1],
        "stages": sizes,
        "configurations": n_conf,
        "by_stage": {str(k): v for k, v in sorted(st.by_stage.items())},
        "q1_past_stage_1": None if q1 is None else round(q1, 4),
        "q2_full_set": round(q2, 4),
        "images_per_configuration": round(images_per_conf, 1),
        "image_savings": round(st.sample_savings, 4),
        "front_size": len(result.pareto),
        "hypervolume": round(result.hypervolume, 5),
        "per_generation": per_gen,
        "wall_s": round(wall, 1),
        "images_in_final_estimates": images_in_estimates,
        "deferred_left": study.deferred,
        **check,
        "layer_ids": list(space.layer_ids),
        "configurations_final_stage": configs,
    }


def projection(images_per_conf_of_1000: float) -> dict[str, float]:
    """Hours of ``GOAL_CONFIGS`` ResNet-50 evaluations on two workers with this many image
    evaluations per configuration (on a 1,000-image set)."""
    worker_s = GOAL_CONFIGS * (FIXED_S + images_per_conf_of_1000 * S_PER_IMAGE)
    return {
        "hours_2_workers_linear": round(worker_s / 2 / 3600, 2),
        f"hours_2_workers_at_{SCALING:g}x": round(worker_s / SCALING / 3600, 2),
        "hours_unstaged_linear": round(GOAL_CONFIGS * (FIXED_S + GOAL_IMAGES * S_PER_IMAGE) / 2 / 3600, 2),
    }


def main() -> int:
    load = os.getloadavg()[0]
    rows = []
    for m in MODELS:
        r = survival(m)
        # scaled to a 1,000-image set when the data has another size (same fractions per stage)
        r["projection_resnet50"] = projection(r["images_per_configuration"] * GOAL_IMAGES / r["images"])
        rows.append(r)
    if DUMP:
        Path(DUMP).write_text(json.dumps({"models": rows}, indent=1))
    for r in rows:  # the per-configuration list goes to the dump only
        del r["configurations_final_stage"], r["layer_ids"]
    out = {
        "bench": "survival",
        "nsga": [POP, GENS, SEED],
        "staging": [STAGING.first_samples, STAGING.growth, STAGING.z],
        "resolution_pp": 100 * STAGING.resolution,
        "accuracy_budget_pp": None if BUDGET is None else 100 * BUDGET,
        "s_per_image": S_PER_IMAGE,
        "fixed_s": FIXED_S,
        "load_avg_1min_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "models": rows,
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
