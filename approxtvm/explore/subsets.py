"""Label-stratified sample orders: every prefix keeps the class proportions of the whole set.

Staged evaluation screens configurations on the first ``n`` samples of such an order; a prefix
(rather than an independent sample per stage) makes the stages nested, so a configuration's
stage-``i`` samples are part of its stage-``i+1`` samples, and the last stage is the whole set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError


def stratified_order(labels: np.ndarray | None, n_samples: int, seed: int = 0) -> np.ndarray:
    """A permutation of ``range(n_samples)`` whose every prefix is stratified by label.

    Each sample's key is its (seeded, shuffled) rank within its class divided by the class size,
    plus a sub-rank jitter; sorting by the key interleaves the classes in proportion, so the first
    ``n`` samples hold ``≈ n · share`` of each class (±1). Without labels: a seeded shuffle.

    Parameters
    ----------
    labels
        int class labels (length ``n_samples``) or ``None``.
    n_samples
        Size of the set.
    seed
        Seed of the shuffles.
    """
    rng = np.random.default_rng([seed, 0x57A7])
    if labels is None:
        return rng.permutation(n_samples)
    labels = np.asarray(labels)
    if labels.shape != (n_samples,):
        raise ExplorationError(
            "stratified_order: labels do not match the samples",
            expected=f"{n_samples} labels",
            found=f"shape {labels.shape}",
        )
    key = np.empty(n_samples, dtype=np.float64)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        ranks = rng.permutation(len(idx))
        key[idx] = (ranks + rng.random(len(idx))) / len(idx)
    return np.argsort(key, kind="stable")


def stratified_indices(labels: np.ndarray | None, n_samples: int, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the first ``n`` samples of :func:`stratified_order` (all ``n_samples``
    when ``n`` is 0 or ≥ ``n_samples``): the samples of a stage, in the dataset's own order."""
    if n < 0:
        raise ExplorationError(
            "a stage subset cannot be negative",
            expected="subset ≥ 0 (0 = all samples)",
            found=str(n),
            fix="use a positive first-stage size",
        )
    if n == 0 or n >= n_samples:
        return np.arange(n_samples)
    return np.sort(stratified_order(labels, n_samples, seed)[:n])


def stratified_subset(data: Any, n: int, seed: int = 0) -> Any:
    """The first ``n`` samples of :func:`stratified_order` of a :class:`~approxtvm.models.Dataset`
    (the whole set, in stratified order, when ``n ≥ len(data)``)."""
    if n <= 0:
        raise ExplorationError(
            "a stage subset needs at least one sample",
            expected="subset ≥ 1",
            found=str(n),
            fix="use a positive first-stage size",
        )
    from approxtvm.models import Dataset

    idx = stratified_indices(data.y, len(data), n, seed)  # the dataset's own order inside the subset
    return Dataset(data.x[idx], None if data.y is None else data.y[idx], data.name, data.classes)
