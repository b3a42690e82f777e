"""NSGA-II vs a uniform grid vs random search at the same evaluation budget, over five seeds.

The combined genome of experiment 4 (per-layer EvoApproxLib multipliers from the unsigned
power–MAE Pareto set, NoC swing, input/weight buffer voltages, protected MSBs) on the shipped
``digits_cnn``, digits test images; every method gets NSGA-II's number of distinct evaluations per
seed (:mod:`approxtvm.explore.search_comparison`). Prints one JSON line: hypervolume mean ± sd per
method, the paired gains and the verdicts, with the reference point.

Environment: ``BENCH_CMP_LIMIT`` (test images, default 120), ``BENCH_CMP_POP`` (12),
``BENCH_CMP_GENS`` (4), ``BENCH_CMP_SEEDS`` (5), ``BENCH_CMP_WORKERS`` (2), ``BENCH_CMP_JOURNAL``
(journal path; default a fresh temporary file), ``BENCH_CMP_MAXK`` (at most k multiplier types).
Run from a file (``python benchmarks/bench_search_comparison.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.executors import ProcessExecutor
from approxtvm.explore.experiments import ExperimentSettings
from approxtvm.explore.experiments.pareto import experiment4_space
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings, Study
from approxtvm.explore.search_comparison import compare_searches


def main() -> None:
    limit = int(os.environ.get("BENCH_CMP_LIMIT", "120"))
    pop = int(os.environ.get("BENCH_CMP_POP", "12"))
    gens = int(os.environ.get("BENCH_CMP_GENS", "4"))
    seeds = tuple(range(int(os.environ.get("BENCH_CMP_SEEDS", "5"))))
    workers = int(os.environ.get("BENCH_CMP_WORKERS", "2"))
    maxk = int(os.environ["BENCH_CMP_MAXK"]) if os.environ.get("BENCH_CMP_MAXK") else None
    s = ExperimentSettings()
    with tempfile.TemporaryDirectory() as tmp:
        jpath = Path(os.environ.get("BENCH_CMP_JOURNAL") or Path(tmp) / "journal.sqlite")
        t0 = time.perf_counter()
        with Journal(jpath) as journal, ProcessExecutor(workers) as ex:
            study = Study(EvalContext(s.pareto_model, "digits:test", limit, s.batch_size), journal, ex)
            space = experiment4_space(study, replace(s, max_distinct_multipliers=maxk))
            cmp = compare_searches(study, space, NsgaSettings(pop_size=pop, generations=gens), seeds)
            evaluations = journal.count()
    out = {
        "model": s.pareto_model,
        "limit": limit,
        "nsga": {"pop_size": pop, "generations": gens},
        "multipliers": len(s.multipliers),
        "max_distinct_multipliers": maxk,
        "evaluations_in_journal": evaluations,
        "wall_s": round(time.perf_counter() - t0, 1),
        **cmp.to_dict(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
