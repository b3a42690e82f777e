"""The 8-hour projection of experiment 4 on ResNet-50 with each configuration's own cost, weighted
by how many images staging gave it.

``bench_survival.py`` multiplies the measured images per configuration by the *mean* per-image
cost of random ResNet-50 genomes (``bench_study_scale.py``). That assumes a configuration's cost
does not depend on how far it gets. It does if, say, the heavily faulty genomes (low NoC swing,
low buffer voltages: several times the cost of a light one) are dropped after stage 1 and the
configurations that reach the full set are the light ones; or the other way round. This script
measures that instead of assuming it:

1. the configurations of a real staged experiment-4 search with their final stage (the file
   written by ``BENCH_SURVIVAL_DUMP=… bench_survival.py``, path in ``BENCH_WEIGHTED_DUMP``; digits
   models on 1,000 labelled images, stages 104 → 400 → 1,000);
2. each sampled configuration transplanted onto ResNet-50: the same NoC swing, protected MSBs
   and buffer voltages, and per ResNet-50 layer the multiplier of the digits layer at the same
   relative depth (so the mix of multipliers and the distinct-multiplier limit carry over);
3. each transplant timed on ResNet-50 as ``bench_study_scale.py`` times a probe (one thread,
   batch 8, shared caches after two warm-up genomes; fixed cost = compile + first batch beyond
   its images; per-image wall and process CPU over ``BENCH_WEIGHTED_IMAGES`` images);
4. a stratified estimate (strata = final stage size) of the worker seconds of ``GOAL_CONFIGS``
   configurations: Σ over strata of the stratum's share × mean(fixed + images × per-image cost),
   with its standard error, beside the unweighted estimate (all sampled configurations' mean
   per-image cost × mean images), as the survival benchmark computes it.

``BENCH_WEIGHTED_PER_STAGE`` (default 5) configurations per stratum and model are sampled
(seeded, ``BENCH_WEIGHTED_SEED``). Two workers at linear scaling and at ``BENCH_WEIGHTED_SCALING``
(default 1.95, the measured Dask 1 → 2 workers). Later stages are assumed routed to the worker
that compiled the configuration (Dask; the fixed cost is paid once).

What this cannot tell: whether ResNet-50 on ImageNet drops the same kinds of configurations as
the digits models do (the transplant keeps the knobs, not the data).

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.explore.genome import Configuration

DUMP = os.environ.get("BENCH_WEIGHTED_DUMP", "")
PER_STAGE = int(os.environ.get("BENCH_WEIGHTED_PER_STAGE", "5"))
SEED = int(os.environ.get("BENCH_WEIGHTED_SEED", "0"))
IMAGES = int(os.environ.get("BENCH_WEIGHTED_IMAGES", "8"))
SCALING = float(os.environ.get("BENCH_WEIGHTED_SCALING", "1.95"))
GOAL_CONFIGS, GOAL_HOURS = 300, 8.0


def transplant(c: dict[str, Any], src_layers: list[str], dst_layers: list[str]) -> Configuration:
    """``c`` (a configuration of the model with ``src_layers``) on the model with ``dst_layers``:
    knobs kept, multipliers by relative depth."""
    mults = c.get("multipliers", {})
    n_src, n_dst = len(src_layers), len(dst_layers)
    per_layer = {dst_layers[j]: mults.get(src_layers[j * n_src // n_dst], "exact") for j in range(n_dst)}
    return Configuration.make(
        per_layer,
        noc_swing_v=c.get("noc_swing_v"),
        noc_protected_msbs=int(c.get("noc_protected_msbs", 0)),
        sram_v=c.get("sram_v") or {},
    )


def sample_strata(configs: list[dict[str, Any]], k: int, rng: np.random.Generator) -> dict[int, list[int]]:
    """Indices of up to ``k`` configurations per final stage size."""
    by: dict[int, list[int]] = {}
    for i, r in enumerate(configs):
        by.setdefault(int(r["samples"]), []).append(i)
    return {n: sorted(rng.choice(ix, size=min(k, len(ix)), replace=False).tolist()) for n, ix in sorted(by.items())}


def stratified(
    counts: dict[int, int], costs: dict[int, list[tuple[float, float]]], total_configs: int
) -> tuple[float, float]:
    """Worker seconds of ``GOAL_CONFIGS`` configurations and its standard error, from per-stratum
    ``(fixed_s, per_image_s)`` samples (stratum key = images the configuration ran)."""
    mean = var = 0.0
    for n, rows in costs.items():
        share = counts[n] / total_configs
        per_conf = np.array([f + n * p for f, p in rows])
        mean += share * per_conf.mean()
        if len(per_conf) > 1:
            fpc = 1.0 - len(per_conf) / counts[n]  # sampled without replacement from the stratum
            var += share**2 * per_conf.var(ddof=1) / len(per_conf) * fpc
    return GOAL_CONFIGS * mean, GOAL_CONFIGS * float(np.sqrt(var))


def hours(worker_s: float) -> dict[str, float]:
    """Hours on two workers, at linear scaling and at the measured one."""
    linear, measured = worker_s / 2 / 3600, worker_s / SCALING / 3600
    return {"2_workers_linear": round(linear, 2), f"2_workers_at_{SCALING:g}x": round(measured, 2)}


def main() -> int:
    if not DUMP or not os.path.exists(DUMP):
        print(
            "bench_weighted_projection: set BENCH_WEIGHTED_DUMP to the file written by "
            "BENCH_SURVIVAL_DUMP=<file> benchmarks/bench_survival.py",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_study_scale as scale

    from approxtvm.compiler import frontend
    from approxtvm.explore.evaluator import limit_threads
    from approxtvm.models import calibration_data
    from approxtvm.runtime.shared_caches import SharedCaches

    limit_threads(0)
    load = os.getloadavg()[0]
    dump = json.loads(Path(DUMP).read_text())
    proto = scale.resnet50_proto(scale.BATCH)
    qdq = frontend.quantize(proto, calibration_data(proto, n=8), frontend.QuantOptions())
    x = calibration_data(proto, n=scale.BATCH * (1 + max(1, IMAGES // scale.BATCH)), seed=11)
    caches = SharedCaches()
    exact = scale._time_probe(qdq, Configuration(), x, caches, 0)
    r50_layers = list(exact["model"].layer_ids)
    del exact
    rng = np.random.default_rng(SEED)
    warm = scale.random_genomes(r50_layers, 2, seed=3)
    for c in warm:  # a worker that has evaluated a few configurations already
        scale._time_probe(qdq, c, x, caches, 0)
    out_models = []
    for m in dump["models"]:
        configs, src_layers = m["configurations_final_stage"], m["layer_ids"]
        counts: dict[int, int] = {}
        for r in configs:
            counts[int(r["samples"])] = counts.get(int(r["samples"]), 0) + 1
        picks = sample_strata(configs, PER_STAGE, rng)
        costs: dict[int, list[tuple[float, float]]] = {}
        costs_cpu: dict[int, list[tuple[float, float]]] = {}
        probes = []
        for n, ix in picks.items():
            for i in ix:
                c = transplant(configs[i]["configuration"], src_layers, r50_layers)
                t0 = time.perf_counter()
                row = scale._time_probe(qdq, c, x, caches, IMAGES)
                faulty = bool(row["model"].draws_faults)
                row.pop("model")
                fixed = row["compile_s"] + max(0.0, row["first_batch_s"] - scale.BATCH * row["per_image_s"])
                costs.setdefault(n, []).append((fixed, row["per_image_s"]))
                costs_cpu.setdefault(n, []).append((fixed, row["per_image_cpu_s"]))
                probes.append(
                    {
                        "stage_images": n,
                        "digits_accuracy_loss": round(configs[i]["accuracy_loss"], 4),
                        "noc_swing_v": c.noc_swing_v,
                        "sram_v": dict(c.sram_v),
                        "distinct_multipliers": len({v for _, v in c.multipliers}),
                        "draws_faults": faulty,
                        "fixed_s": round(fixed, 2),
                        "per_image_s": row["per_image_s"],
                        "per_image_cpu_s": row["per_image_cpu_s"],
                    }
                )
                print(m["model"], probes[-1], f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        total = len(configs)
        w_s, w_se = stratified(counts, costs, total)
        w_cpu, w_cpu_se = stratified(counts, costs_cpu, total)
        all_rows = [r for rows in costs.values() for r in rows]
        mean_fixed = float(np.mean([f for f, _ in all_rows]))
        mean_per_image = float(np.mean([p for _, p in all_rows]))
        images_per_conf = sum(n * k for n, k in counts.items()) / total
        unweighted = GOAL_CONFIGS * (mean_fixed + images_per_conf * mean_per_image)
        per_stage = {
            str(n): {
                "configurations": counts[n],
                "sampled": len(rows),
                "per_image_s_mean": round(float(np.mean([p for _, p in rows])), 3),
                "fixed_s_mean": round(float(np.mean([f for f, _ in rows])), 2),
            }
            for n, rows in costs.items()
        }
        out_models.append(
            {
                "model": m["model"],
                "configurations": total,
                "images_per_configuration": round(images_per_conf, 1),
                "per_stage": per_stage,
                "weighted_worker_s": round(w_s),
                "weighted_worker_s_se": round(w_se),
                "weighted_hours": hours(w_s),
                "weighted_hours_cpu": hours(w_cpu),
                "weighted_hours_cpu_se_2_workers_linear": round(w_cpu_se / 2 / 3600, 2),
                "unweighted_hours": hours(unweighted),
                "within_8h_2_workers_linear": bool(w_s / 2 / 3600 <= GOAL_HOURS),
                "probes": probes,
            }
        )
    print(
        json.dumps(
            {
                "bench": "weighted_projection",
                "dump": os.path.basename(DUMP),
                "per_stage_sampled": PER_STAGE,
                "images_timed": IMAGES,
                "batch_size": scale.BATCH,
                "load_avg_1min_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
                "models": out_models,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
