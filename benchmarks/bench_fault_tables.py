"""Fault injection on layers with library-table multipliers: experiment-4 genomes of ResNet-50.

Experiment 4 gives every layer an EvoApproxLib multiplier and scales the NoC swing and the buffer
voltages; its heavily faulty genomes (low swing, low buffer voltage) spent most of their time in
the fault deltas of the table layers. This benchmark compiles seeded random genomes of the default
experiment-4 space (``bench_study_scale.random_genomes(layers, 10, seed=3)[2:]``, the probes of the
study-cost benchmark; index 0 is the heaviest: swing 0.3 V, input buffers 0.6 V) for batch 8, pins
one compute thread, and times one batch per genome (process CPU and wall, per image) with

* ``new``: the current fault path (weight copies: no cross term; weight planes where weights are
  stored once; see ``approxtvm.runtime.faults.weight_copies``);
* ``cross``: the same run with the weight copies switched off (the older cross-term path), in the
  same process, runs interleaved, best of ``BENCH_FT_REPEAT`` (default 2).

Outputs and fault counters of the two are checked equal (the benchmark fails otherwise). Prints one
JSON line; the load average is in it (the machine is shared).

Usage: ``python benchmarks/bench_fault_tables.py [genome index ...]`` (default ``0 6 2 1``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

REPEAT = int(os.environ.get("BENCH_FT_REPEAT", "2"))
BATCH = 8


def _same(a: Any, b: Any) -> bool:
    outs = all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
    return outs and json.dumps(a.counters["faults"], sort_keys=True) == json.dumps(b.counters["faults"], sort_keys=True)


def main() -> dict[str, Any]:
    import bench_study_scale as scale

    from approxtvm.compiler import frontend
    from approxtvm.compiler.driver import compile_onnx
    from approxtvm.explore.evaluator import limit_threads
    from approxtvm.explore.genome import Configuration
    from approxtvm.models import calibration_data
    from approxtvm.runtime.faults import ModelFaults
    from approxtvm.runtime.shared_caches import SharedCaches

    limit_threads(0)
    which = [int(a) for a in sys.argv[1:]] or [0, 6, 2, 1]
    load0 = os.getloadavg()[0]
    proto = scale.resnet50_proto(BATCH)
    qdq = frontend.quantize(proto, calibration_data(proto, n=8), frontend.QuantOptions())
    x = calibration_data(proto, n=2 * BATCH, seed=11)
    caches = SharedCaches()
    lids = list(compile_onnx(qdq, Configuration().policy(), batch_size=BATCH, caches=caches).layer_ids)
    probes = scale.random_genomes(lids, 10, seed=3)[2:]
    real = ModelFaults.weight_copies
    rows: dict[str, Any] = {}
    for i in which:
        c = probes[i]
        model = compile_onnx(qdq, c.policy(), batch_size=BATCH, caches=caches)
        model.run(x[:BATCH], seed=7)  # lazily built kernels, tables and fault geometry
        best: dict[str, list[float]] = {"new": [1e9, 1e9], "cross": [1e9, 1e9]}
        results: dict[str, Any] = {}
        for _ in range(REPEAT):
            for mode in ("new", "cross"):
                ModelFaults.weight_copies = real if mode == "new" else (lambda self, layer_id: None)  # type: ignore[method-assign]
                try:
                    t0, c0 = time.perf_counter(), time.process_time()
                    results[mode] = model.run(x[BATCH:], seed=7, first_batch=1)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                finally:
                    ModelFaults.weight_copies = real  # type: ignore[method-assign]
                best[mode] = [min(best[mode][0], wall / BATCH), min(best[mode][1], cpu / BATCH)]
        if not _same(results["new"], results["cross"]):
            raise AssertionError(f"genome {i}: the two fault paths disagree")
        rows[f"genome{i}"] = {
            "noc_swing_v": c.noc_swing_v,
            "sram_v": dict(c.sram_v),
            "new_s_per_image": round(best["new"][0], 3),
            "new_cpu_s_per_image": round(best["new"][1], 3),
            "cross_s_per_image": round(best["cross"][0], 3),
            "cross_cpu_s_per_image": round(best["cross"][1], 3),
            "speedup_cpu": round(best["cross"][1] / best["new"][1], 2),
        }
        print(i, rows[f"genome{i}"], file=sys.stderr, flush=True)
    return {
        "bench": "fault_tables",
        "batch": BATCH,
        "threads": 1,
        "repeat": REPEAT,
        "load_avg_start": round(load0, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "genomes": rows,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
