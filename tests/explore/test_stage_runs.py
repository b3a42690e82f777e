"""Every evaluation runs its samples in one fixed stratified order: configurations without faults
keep the records of a run in the dataset's order; faulty ones pair samples and fault draws
differently, with the same outcome distribution."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.explore.evaluate import evaluate
from approxtvm.explore.evaluator import EvalContext, clear_worker_cache, load_model_proto, make_task, run_task
from approxtvm.explore.genome import Configuration
from approxtvm.explore.stage_runs import reusable_prefix, run_stage, stage_order
from approxtvm.models import load_dataset

CTX = EvalContext("digits_cnn")  # the 360 test digits, batch 8


def _model(config: Configuration) -> CompiledModel:
    from approxtvm.compiler import frontend

    proto = frontend.quantize(
        load_model_proto(CTX.model), load_dataset("digits:train").x[:256], frontend.QuantOptions()
    )
    return compile_onnx(proto, config.policy(), accelerator=CTX.accelerator, batch_size=CTX.batch_size)


def test_stage_order_prefixes_and_reusable_prefix() -> None:
    y = np.repeat(np.arange(3), 10)
    full, head = stage_order(y, 30, 0, 4), stage_order(y, 30, 12, 4)
    assert sorted(full.tolist()) == list(range(30)) and np.array_equal(head, full[:12])
    assert np.array_equal(stage_order(y, 30, 40, 4), full)
    assert reusable_prefix(None, 8, True) == 0
    assert reusable_prefix(16, 8, True) == 16 and reusable_prefix(12, 8, True) == 0  # half a batch
    assert reusable_prefix(12, 8, False) == 12  # no faults: a sample's batch does not matter


def test_nominal_record_equals_a_run_in_the_dataset_order() -> None:
    """What a full-set record held before the fixed order: ``evaluate`` on the data as it is."""
    config = Configuration.make({"conv1": "mul8u_2HH", "conv2": "drum:k=3"})
    clear_worker_cache()
    rec = run_task(make_task(CTX, CTX.fingerprint(), config))
    clear_worker_cache()
    data = load_dataset("digits:test")
    ev = evaluate(_model(config), data)
    assert np.array_equal(rec.predictions, ev.predictions)
    assert rec.correct == int(np.sum(ev.predictions == data.y)) and rec.samples == 360
    assert rec.energy_per_inference_pj == ev.energy.total_pj / ev.slots


@pytest.mark.parametrize("first", [0, 8, 24])
def test_a_run_from_a_later_batch_continues_the_whole_run(first: int) -> None:
    """``run_stage`` with a prior of ``first`` samples (whole batches) equals the whole run on the
    later samples: their faults are the whole run's (global batch calls)."""
    model = _model(Configuration.make({"conv2": "drum:k=4"}, noc_swing_v=0.35))
    assert model.draws_faults
    x = load_dataset("digits:test").x[:48]
    order = np.arange(48)[::-1].copy()
    _, whole, _ = run_stage(model, x, order, seed=3)
    prior = (first, whole[np.sort(order[:first])].astype("<i2").tobytes()) if first else None
    _, pred, slots = run_stage(model, x, order, seed=3, prior=prior)
    assert np.array_equal(pred, whole) and slots == 48
    _, other_seed, _ = run_stage(model, x, order, seed=4)
    assert not np.array_equal(other_seed, whole)  # the faults change predictions here


def test_faulty_accuracy_in_the_fixed_order_matches_the_dataset_order() -> None:
    """Statistical equivalence of the two pairings of samples and fault draws: over 6 seeds the
    mean accuracy of the fixed order is within 3 standard errors of the dataset order's, and the
    faults matter (both well below the fault-free accuracy)."""
    model = _model(Configuration.make({"conv1": "drum:k=4", "conv2": "drum:k=4"}, noc_swing_v=0.35))
    data = load_dataset("digits:test")
    order = stage_order(data.y, len(data), 0, 0)
    clean = np.mean(
        evaluate(_model(Configuration.make({"conv1": "drum:k=4", "conv2": "drum:k=4"})), data).predictions == data.y
    )
    fixed, plain = [], []
    for seed in range(6):
        fixed.append(np.mean(run_stage(model, data.x, order, seed)[1] == data.y))
        plain.append(np.mean(evaluate(model, data, seed=seed).predictions == data.y))
    diff = np.array(fixed) - np.array(plain)
    se = np.sqrt(np.var(fixed, ddof=1) / 6 + np.var(plain, ddof=1) / 6 + 2 * (0.5 / len(data)) / 6)
    assert abs(diff.mean()) <= 3 * se, (fixed, plain)
    assert max(np.mean(fixed), np.mean(plain)) < clean - 0.05, (clean, fixed, plain)
