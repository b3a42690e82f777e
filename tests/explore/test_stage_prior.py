"""A later stage that runs only the images it adds (and a worker's compiled-model cache) gives the
record an evaluation of the whole stage gives, with or without faults; a configuration that draws
faults reruns a stage whose prior is not a whole number of batches."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from approxtvm.compiler import driver
from approxtvm.compiler.model import CompiledModel
from approxtvm.errors import ExplorationError
from approxtvm.explore import evaluator
from approxtvm.explore.evaluator import EvalContext, StagePrior, clear_worker_cache, make_task, run_task
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import EvalRecord

CTX = EvalContext("digits_resnet", limit=120)


def _values(rec: EvalRecord) -> tuple[Any, ...]:
    """Everything an evaluation determines (not its timing or worker)."""
    return (
        rec.key,
        rec.context,
        rec.samples,
        rec.correct,
        rec.energy_per_inference_pj,
        rec.predictions_i16,
        rec.detail_json,
    )


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Counts compiles and the samples of every model run in this process."""
    seen: dict[str, list[int]] = {"compiles": [], "samples": []}
    compile_onnx, run = driver.compile_onnx, CompiledModel.run

    def counting_compile(*a: Any, **k: Any) -> Any:
        seen["compiles"].append(1)
        return compile_onnx(*a, **k)

    def counting_run(self: CompiledModel, x: Any, *a: Any, **k: Any) -> Any:
        seen["samples"].append(len(x))
        return run(self, x, *a, **k)

    monkeypatch.setattr(driver, "compile_onnx", counting_compile)
    monkeypatch.setattr(CompiledModel, "run", counting_run)
    clear_worker_cache()
    yield seen
    clear_worker_cache()


NOMINAL = Configuration.make({"conv1": "mul8u_2HH", "layer1.0.conv2": "drum:k=3", "fc": "trunc:k=5"})
FAULTY = Configuration.make({"layer1.0.conv2": "drum:k=4"}, noc_swing_v=0.5, sram_v={"input_buffer": 0.6})


@pytest.mark.parametrize(
    ("config", "sizes", "ran"),
    [
        (NOMINAL, (40, 80), [40, 40, 40]),
        (FAULTY, (40, 80), [40, 40, 40]),  # whole batches of 8: the later stages add only
        (NOMINAL, (20, 44), [20, 24, 76]),
        (FAULTY, (20, 44), [20, 44, 120]),  # 20 and 44 images end inside a batch: rerun
    ],
    ids=["nominal", "faulty", "nominal-unaligned", "faulty-unaligned"],
)
def test_added_images_merged_equal_the_whole_stage(
    runs: dict[str, list[int]], config: Configuration, sizes: tuple[int, int], ran: list[int]
) -> None:
    stages = [replace(CTX, subset=sizes[0]), replace(CTX, subset=sizes[1]), CTX]  # … → all 120 images
    fps = [c.fingerprint() for c in stages]
    staged = [run_task(make_task(stages[0], fps[0], config))]
    for i in (1, 2):
        prior = StagePrior(stages[i - 1].subset, staged[-1].predictions_i16)
        staged.append(run_task(make_task(stages[i], fps[i], config, prior)))
    assert len(runs["compiles"]) == 1  # one compile for the three stages (the worker's cache)
    assert runs["samples"] == ran
    clear_worker_cache()
    direct = [run_task(make_task(c, fp, config)) for c, fp in zip(stages, fps, strict=True)]
    for s, d in zip(staged, direct, strict=True):
        assert _values(s) == _values(d)
    assert staged[2].samples == 120 and len(set(staged[2].predictions.tolist())) > 1


def test_compiled_models_are_kept_in_a_bounded_lru(runs: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, fp = replace(CTX, subset=8), replace(CTX, subset=8).fingerprint()
    a, b = Configuration.make({"conv1": "drum:k=4"}), Configuration.make({"conv1": "trunc:k=4"})
    run_task(make_task(ctx, fp, a))
    run_task(make_task(ctx, fp, a))
    assert len(runs["compiles"]) == 1
    ((model, kept_bytes, _),) = evaluator._COMPILED.values()
    # sized by the worker's measured growth, never below the static estimate
    assert kept_bytes >= evaluator._model_bytes(model) > 0
    monkeypatch.setattr(evaluator, "COMPILED_CACHE_BYTES", 1)  # no room for two: only the latest stays
    run_task(make_task(ctx, fp, b))
    run_task(make_task(ctx, fp, a))
    assert len(runs["compiles"]) == 3 and len(evaluator._COMPILED) == 1


def test_a_prior_that_does_not_fit_the_stage_is_an_error() -> None:
    ctx = replace(CTX, subset=40)
    with pytest.raises(ExplorationError, match="smaller, earlier stage") as info:
        make_task(ctx, "fp", Configuration(), StagePrior(40, b""))
    assert info.value.fix
    task = make_task(ctx, ctx.fingerprint(), Configuration.make({"conv1": "drum:k=4"}), StagePrior(20, b"\0\0" * 7))
    with pytest.raises(ExplorationError, match="does not match"):
        run_task(task)
    clear_worker_cache()


def test_stage_indices_are_nested_and_cover_the_set() -> None:
    from approxtvm.explore.subsets import stratified_indices

    y = np.repeat(np.arange(5), 24)
    a, b, full = (stratified_indices(y, 120, n, 3) for n in (40, 80, 0))
    assert np.all(np.diff(a) > 0) and set(a) < set(b) < set(full) and len(full) == 120
    with pytest.raises(ExplorationError, match="negative"):
        stratified_indices(y, 120, -1)
