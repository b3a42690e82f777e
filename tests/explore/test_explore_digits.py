"""NSGA-II on the shipped digits model with EvoApproxLib circuits, evaluated for real (in-process):
re-evaluation is bit-identical, at most k multiplier types hold, and the comparison with a uniform
grid and random search at the same budget is computed from the journalled points."""

from __future__ import annotations

from pathlib import Path

import pytest

from approxtvm.explore.evaluator import EvalContext, clear_worker_cache, make_task, run_task
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings, Study, run_nsga, uniform_grid
from approxtvm.explore.report import save_explore
from approxtvm.explore.search_comparison import compare_searches, front_hypervolume, random_configs

CTX = EvalContext("digits_cnn", limit=40)
LIB = ("exact", "mul8u_2HH", "mul8u_FTA")

pytestmark = pytest.mark.real_circuit


def test_pareto_set_reevaluates_identically_and_compares_with_grid_and_random(tmp_path: Path) -> None:
    settings = NsgaSettings(pop_size=4, generations=2, seed=0)
    with Journal(tmp_path / "j.sqlite") as j:
        study = Study(CTX, j, InlineExecutor())
        space = study.space(LIB, (None, 0.5), (0.9,), (0.9, 0.7), (0,), max_distinct_multipliers=2)
        res = run_nsga(study, space, settings)
        ref = study.reference
        assert j.count() == study.new_evaluations == len({p.key for p in (*res.points, *res.uniform)})
        for p in res.points:  # at most two multiplier types in the network
            assert len({p.config.multiplier_for(lid) for lid in space.layer_ids}) <= 2
        cmp = compare_searches(study, space, settings, seeds=(0,))  # five seeds: test_nsga (fakes)
        first = cmp.seeds[0]
        n = len(res.points)
        assert first.evaluations == {"nsga2": n, "grid": n, "random": n}
        assert first.hypervolume["nsga2"] == front_hypervolume(res.points)
        assert first.hypervolume["grid"] == front_hypervolume(study.points(uniform_grid(space, n, 0)))
        assert first.hypervolume["random"] == front_hypervolume(study.points(random_configs(space, n, 0)))
        assert j.count() == len({r.key for r in j.records()})  # every point evaluated once
    assert res.reference.accuracy_loss == 0 and res.reference.energy_rel == 1.0
    assert any(p.energy_rel < 1.0 for p in res.pareto)  # EvoApproxLib circuits save energy
    assert cmp.verdict("grid") in ("better", "not better")
    clear_worker_cache()  # re-evaluate from scratch: same energy and accuracy, bit for bit
    for p in res.pareto:
        q = ref.point(run_task(make_task(CTX, study.fingerprint, p.config)))
        assert (q.energy_per_inference_pj, q.accuracy_loss, q.agreement) == (
            p.energy_per_inference_pj,
            p.accuracy_loss,
            p.agreement,
        )
    paths = save_explore(res, tmp_path / "out", "digits_cnn")
    assert all(path.stat().st_size > 0 for path in paths.values())
