"""Run an evaluation context's samples in one fixed order, so a later stage reuses an earlier one.

Every evaluation with data (a staged study's stages and the whole set alike) runs its samples in
the label-stratified order of the context's seed (:func:`~approxtvm.explore.subsets.stratified_order`
of the limited dataset): stage ``n`` runs the first ``n`` samples of that order and the whole set
runs all of them. Sample ``p`` of the order therefore sits in batch call ``p // B`` at row
``p % B`` of every stage that holds it (``B`` = the compiled batch size). Faults are drawn per
(seed, layer, batch call) and each sample of a batch is computed independently, so a sample's
prediction — faulty or not — is the same in every such stage, provided the earlier stage is a
whole number of batches (staged studies align their stage sizes to ``B``).

Hence a later stage with the configuration's predictions on an earlier one
(:class:`~approxtvm.explore.evaluator.StagePrior`) runs only the samples it adds, starting at the
global batch call ``prior.subset // B`` (``CompiledModel.run(first_batch=)``), and merges: the
record equals a run of the whole stage. Without faults the alignment is not needed (a sample's
prediction then does not depend on its batch at all).

Records keep their predictions in the dataset's order (sorted sample indices), as before this
order was introduced: for a configuration that draws no faults every record is unchanged; a
faulty one pairs samples and fault draws differently (the same distribution of draws).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError
from approxtvm.explore.subsets import stratified_order

#: Samples per run call of a long evaluation (whole batches): bounds the copy of the ordered
#: inputs (≈ 150 MiB of 224² images) without changing any result.
CHUNK_SAMPLES = 256


def stage_order(labels: np.ndarray | None, total: int, subset: int, seed: int) -> np.ndarray:
    """Sample indices of a stage in the order they run: the first ``subset`` of the seeded
    stratified order (all ``total`` samples when ``subset`` is 0 or ≥ ``total``)."""
    order = stratified_order(labels, total, seed)
    return order if subset <= 0 or subset >= total else order[:subset]


def reusable_prefix(prior_subset: int | None, batch_size: int, draws_faults: bool) -> int:
    """Samples of the stage a prior of ``prior_subset`` samples lets a run skip: all of them,
    unless the model draws faults and the prior is not a whole number of batches (its last
    batch then mixes samples of the two stages, so the draws would pair differently)."""
    if not prior_subset:
        return 0
    if draws_faults and prior_subset % batch_size:
        return 0
    return prior_subset


def run_stage(
    model: Any, x: np.ndarray, order: np.ndarray, seed: int, prior: tuple[int, bytes] | None = None
) -> tuple[Any, np.ndarray, float]:
    """Energy, predictions and executed slots of a run of ``x[order]`` (what ``evaluate`` returns
    on that array), running only the samples after a reusable prior.

    Parameters
    ----------
    model
        The compiled model.
    x
        The whole (limited) dataset's inputs.
    order
        The stage's samples in run order (:func:`stage_order`).
    seed
        Fault seed of the run.
    prior
        ``(subset, predictions_i16)`` of an earlier stage (the first ``subset`` of ``order``,
        predictions in ascending sample index), or ``None``.

    Returns
    -------
    tuple
        The energy report of the whole stage, the predictions in ascending sample index, and the
        slots executed (batches × batch size, the padding of the last batch included).
    """
    from approxtvm.runtime.energy import EnergyReport

    b = model.batch_size
    n = len(order)
    start = reusable_prefix(None if prior is None else prior[0], b, model.draws_faults)
    by_pos = np.empty(n, dtype=np.int64)  # predictions in run order
    if start:
        _merge_prior(by_pos, order, start, prior[1])  # type: ignore[index]
    first = None
    pos = start
    while pos < n:
        end = min(n, pos + max(b, CHUNK_SAMPLES // b * b))
        res = model.run(x[order[pos:end]], seed=seed, first_batch=pos // b)
        logits = res.outputs[model.output_names[0]]
        by_pos[pos:end] = logits.reshape(len(logits), -1).argmax(axis=1)
        if first is None:
            first = res
        pos = end
    if first is None:  # nothing new to run: one batch gives the per-batch energy
        first = model.run(x[order[:1]], seed=seed)
    batches = -(-n // b)
    ran = int(first.counters.get("batches", 1))
    per_layers = len(first.energy.layers) // ran
    per_host = len(first.energy.uncovered) // ran
    energy = EnergyReport(first.energy.layers[:per_layers] * batches, first.energy.uncovered[:per_host] * batches)
    return energy, by_pos[np.argsort(order, kind="stable")], float(batches * b)


def _merge_prior(by_pos: np.ndarray, order: np.ndarray, start: int, predictions_i16: bytes) -> None:
    """Write an earlier stage's predictions (ascending sample index) to run positions ``< start``."""
    prev = np.frombuffer(predictions_i16, dtype="<i2")
    if len(prev) != start:
        raise ExplorationError(
            "a stage prior does not match the stage's samples",
            expected=f"{start} predictions (the earlier stage's samples)",
            found=f"{len(prev)} predictions",
            fix="pass the record of an earlier stage of the same study (same data, limit and seed)",
        )
    head = order[:start]
    by_pos[:start] = prev[np.searchsorted(np.sort(head), head)]
