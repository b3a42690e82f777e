"""NSGA-II on the shipped digits model, evaluated for real (in-process)."""

from __future__ import annotations

from pathlib import Path

from approxtvm.explore.evaluator import EvalContext, clear_worker_cache, make_task, run_task
from approxtvm.explore.executors import InlineExecutor
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import NsgaSettings, Study, hypervolume, run_nsga
from approxtvm.explore.report import save_explore

CTX = EvalContext("digits_cnn", limit=40)


def test_front_dominates_uniform_and_reevaluates_identically(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        study = Study(CTX, j, InlineExecutor())
        space = study.space(("exact", "trunc:k=4", "drum:k=5", "drum:k=4"), (None, 0.5), (0.9, 0.7), (0.9, 0.7), (0, 4))
        res = run_nsga(study, space, NsgaSettings(pop_size=6, generations=2, seed=0))
        ref = study.reference
        assert j.count() == study.new_evaluations == len({p.key for p in res.points})
    assert res.reference.accuracy_loss == 0 and res.reference.energy_rel == 1.0
    assert res.hypervolume >= hypervolume(res.uniform) > 0
    for u in res.uniform:
        assert any(p.accuracy_loss <= u.accuracy_loss and p.energy_rel <= u.energy_rel for p in res.pareto)
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
