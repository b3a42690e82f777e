"""Exploration throughput: evaluations per minute on the shipped model, 1 vs 2 local workers.

Each evaluation compiles ``digits_cnn`` with one configuration of the default genome (seeded
random genomes, all distinct) and runs the whole digits test split (360 images, batch 8). Four
executors: a local process pool and a Dask ``LocalCluster``, each with 1 and 2 workers. Every
executor first evaluates a warm-up batch (worker start, model quantization and data loading are
not counted); then, in rounds that interleave the four executors (so that load from other
processes on the machine hits all of them alike), each evaluates a timed batch of fresh
configurations through a fresh journal. The best round of each executor counts.

Reports evaluations per minute, the 2-vs-1-worker speed-up, and the Dask overhead per evaluation:
``(wall × workers − Σ worker-side evaluation time) / Σ worker-side evaluation time`` — time
spent outside the evaluation function (scheduling, serialisation, journal). Goals: speed-up ≥ 1.6,
Dask overhead < 5 %.

Run from a file (``python benchmarks/bench_explore.py``): a LocalCluster cannot start from stdin.
Prints one JSON line.

``--resnet50``: instead, evaluations per hour on ResNet-50 with staged evaluation on and off
(in-process, one worker, the worker caches emptied before each): ``BENCH_R50_IMAGES`` random images
(default 12; the shipped ResNet-50 has random weights, so the loss is top-1 disagreement with the
exact model), the uniform configurations of ``BENCH_R50_MULTIPLIERS`` (``;``-separated; nominal
voltages) and ``BENCH_R50_RANDOM`` (default 2)
seeded random genomes of experiment 4's space (most draw faults; a later stage runs only the
images it adds, faulty or not),
stages from ``BENCH_R50_FIRST`` images growing ×2 (rounded up to whole batches of
``BENCH_R50_BATCH``, default 8 as ``approxtvm experiments``), with the accuracy-loss budget
``BENCH_R50_BUDGET`` (fraction; default none: with no budget a configuration is only dropped when
another one beats it with confidence, which a few images rarely show). Reports evaluations per hour both ways, the
fraction of image evaluations and worker time staging saved, and whether the staged front equals
the unstaged one. With so few images and no ImageNet labels the drop rates say nothing about a
real study; the per-configuration costs are ``bench_study_scale.py``'s.
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

from approxtvm.explore.evaluator import EvalContext, make_task
from approxtvm.explore.executors import DaskExecutor, ProcessExecutor, evaluate_batch
from approxtvm.explore.genome import Configuration, SearchSpace
from approxtvm.explore.journal import Journal

LAYERS = ("conv1", "conv2", "conv3", "fc")
TIMED = int(os.environ.get("BENCH_EXPLORE_EVALS", "10"))
REPEATS = int(os.environ.get("BENCH_EXPLORE_REPEATS", "3"))
WARMUP_PER_WORKER = 2


def configs(n: int, seed: int) -> list[Configuration]:
    """``n`` distinct random configurations of the default space."""
    space = SearchSpace(LAYERS)
    rng = np.random.default_rng(seed)
    out: list[Configuration] = []
    while len(out) < n:
        c = space.decode(rng.integers(0, space.upper + 1))
        if c not in out:
            out.append(c)
    return out


def timed_batch(
    name: str, executor: Any, workers: int, ctx: EvalContext, fp: str, chosen: list[Configuration]
) -> dict[str, Any]:
    """Evaluate fresh configurations through a fresh journal; wall time and worker-side time."""
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "bench.sqlite") as journal:
        tasks = [make_task(ctx, fp, c) for c in chosen]
        t0 = time.perf_counter()
        recs, stats = evaluate_batch(tasks, journal, executor)
        wall = time.perf_counter() - t0
    assert stats.evaluated == len(tasks)
    busy = sum(r.eval_s for r in recs)
    return {
        "executor": name,
        "workers": workers,
        "evaluations": len(tasks),
        "wall_s": round(wall, 3),
        "evals_per_min": round(60 * len(tasks) / wall, 2),
        "mean_eval_s": round(busy / len(tasks), 4),
        "overhead_per_eval": round((wall * workers - busy) / busy, 4),
        "distinct_workers": len({r.worker for r in recs}),
    }


def main() -> int:
    ctx = EvalContext("digits_cnn", "digits:test", limit=0, batch_size=8)
    fp = ctx.fingerprint()
    load_before = os.getloadavg()
    modes = [("process", 1), ("process", 2), ("dask", 1), ("dask", 2)]
    pool = configs(len(modes) * (WARMUP_PER_WORKER * 2 + REPEATS * TIMED), seed=0)
    executors: dict[tuple[str, int], Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        for name, w in modes:
            executors[name, w] = ProcessExecutor(w) if name == "process" else DaskExecutor(None, w)
            warm, pool = pool[: WARMUP_PER_WORKER * w], pool[WARMUP_PER_WORKER * w :]
            timed_batch(name, executors[name, w], w, ctx, fp, warm)  # worker start, quantization, data
        for rep in range(REPEATS):  # interleaved, so a noisy neighbour hits every mode alike
            for name, w in modes:
                chosen, pool = pool[:TIMED], pool[TIMED:]
                rows.append({"repeat": rep, **timed_batch(name, executors[name, w], w, ctx, fp, chosen)})
    finally:
        for ex in executors.values():
            ex.close()
    best = {
        m: max((r for r in rows if (r["executor"], r["workers"]) == m), key=lambda r: r["evals_per_min"]) for m in modes
    }
    out: dict[str, Any] = {
        "bench": "explore",
        "model": "digits_cnn",
        "images_per_eval": 360,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
        "best": {f"{n}_{w}w": best[n, w]["evals_per_min"] for n, w in modes},
        "speedup_process_2v1": round(best["process", 2]["evals_per_min"] / best["process", 1]["evals_per_min"], 3),
        "speedup_dask_2v1": round(best["dask", 2]["evals_per_min"] / best["dask", 1]["evals_per_min"], 3),
        "dask_overhead_per_eval_1w": best["dask", 1]["overhead_per_eval"],
        "dask_overhead_per_eval_2w": best["dask", 2]["overhead_per_eval"],
        "dask_vs_process_1w_throughput": round(
            best["dask", 1]["evals_per_min"] / best["process", 1]["evals_per_min"], 3
        ),
        "goals": {"speedup_min": 1.6, "dask_overhead_max": 0.05},
    }
    out["speedup_ok"] = out["speedup_dask_2v1"] >= 1.6 and out["speedup_process_2v1"] >= 1.6
    out["dask_overhead_ok"] = out["dask_overhead_per_eval_1w"] < 0.05
    print(json.dumps(out, separators=(",", ":")))
    return 0


def resnet50_staging() -> int:
    """Evaluations per hour on ResNet-50, staged vs unstaged (see the module docstring)."""
    from approxtvm.explore.evaluator import clear_worker_cache, limit_threads
    from approxtvm.explore.executors import InlineExecutor
    from approxtvm.explore.genome import DEFAULT_MULTIPLIERS
    from approxtvm.explore.nsga import Study, pareto_front
    from approxtvm.explore.staged import StagedStudy, StagingSettings
    from approxtvm.models import calibration_data

    limit_threads(0)  # one single-thread worker
    n_img = int(os.environ.get("BENCH_R50_IMAGES", "12"))
    first = int(os.environ.get("BENCH_R50_FIRST", "3"))
    n_random = int(os.environ.get("BENCH_R50_RANDOM", "2"))
    mults = os.environ.get("BENCH_R50_MULTIPLIERS", "trunc:k=4;drum:k=6;drum:k=3;bam:h=6,v=2").split(";")
    budget = float(os.environ["BENCH_R50_BUDGET"]) if os.environ.get("BENCH_R50_BUDGET") else None
    batch = int(os.environ.get("BENCH_R50_BATCH", "8"))  # as `approxtvm experiments`
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "r50.npz"
        np.savez(npz, x=calibration_data("resnet50", n=n_img, seed=11))
        from bench_study_scale import resnet50_model

        ctx = EvalContext(resnet50_model(tmp, batch), str(npz), batch_size=batch)
        out: dict[str, Any] = {
            "bench": "explore_resnet50_staging",
            "images": n_img,
            "batch_size": batch,
            "first_stage": first,
            "accuracy_budget": budget,
        }
        with Journal(Path(tmp) / "staged.sqlite") as j:
            staged = StagedStudy(ctx, j, InlineExecutor(), StagingSettings(first_samples=first, growth=2), budget)
            clear_worker_cache()
            lids = staged.reference.layer_ids
            configs = [Configuration.make(dict.fromkeys(lids, m)) for m in mults]
            space = SearchSpace(tuple(lids), DEFAULT_MULTIPLIERS)
            rng = np.random.default_rng(3)
            configs += [space.decode(rng.integers(0, space.upper + 1)) for _ in range(n_random)]
            t0 = time.perf_counter()
            staged.points(configs)
            wall_staged = time.perf_counter() - t0 + staged.reference.record.eval_s
            stats = staged.stats.to_dict()
            front_s = [(p.config.to_json(), p.accuracy_loss) for p in staged.front()]
        clear_worker_cache()  # the unstaged study starts from a fresh worker too
        with Journal(Path(tmp) / "full.sqlite") as j:
            study = Study(ctx, j, InlineExecutor())
            t0 = time.perf_counter()
            pts = study.points(configs)
            wall_full = time.perf_counter() - t0 + study.reference.record.eval_s
            recs = {r.config_json: r for r in j.records()}
            front_u = [(p.config.to_json(), p.accuracy_loss) for p in pareto_front(pts, budget)]
    per_cfg = [r.eval_s for r in recs.values()]
    out.update(
        {
            "multipliers": mults,
            "random_genomes": n_random,
            "configurations": len(configs),
            "stage_sizes": staged.sizes,
            "load_avg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "process_cpu_s": round(time.process_time() - cpu0, 1),
            "unstaged_wall_s": round(wall_full, 1),
            "staged_wall_s": round(wall_staged, 1),
            "unstaged_evals_per_hour": round(3600 * (len(configs) + 1) / wall_full, 2),
            "staged_evals_per_hour": round(3600 * (len(configs) + 1) / wall_staged, 2),
            "mean_full_eval_s": round(float(np.mean(per_cfg)), 2),
            "staging": stats,
            "fronts_equal": front_s == front_u,
            "unstaged_losses": sorted(round(p.accuracy_loss, 3) for p in pts),
        }
    )
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(resnet50_staging() if "--resnet50" in sys.argv else main())
