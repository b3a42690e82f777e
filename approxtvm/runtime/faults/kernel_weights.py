"""Weight faults folded into a table layer's own kernel where every weight word is stored once per call.

The arbitrary-table counterpart of :mod:`.corrupted_weights` (exact multipliers): when each weight
word of a call sits in exactly one (fill, PE) residency, the call's corrupted weights ``W'`` are well
defined, and the faulty accumulators are the layer's kernel run on ``W'`` (its products
``Σ T[x, w']``), with the zero-point correction of the fault-free weights (computed off the array,
DESIGN §5), plus the input faults' deltas taken against ``W'`` (``T[x', w'] − T[x, w']``). That is
the same integer as ``acc_clean + Δ_weight + Δ_input + cross`` in int32 wrap-around, so outcomes are
bit-identical, at the price of one relayout of the weights instead of the weight deltas, which
touch ``N·P·Q`` outputs per corrupted weight word (buffers at low voltage corrupt a few % of the
words: the deltas then cost as much as the layer). The tests hold it to the emulator.

Where a weight word is stored several times per call, the copies (:mod:`.weight_copies`) often
split only the batch: a tile loaded again for each block of images, every copy serving whole
images (ResNet-50 at batch 8: 12 of 54 layers, two or four blocks). Each block's accumulators are
then the kernel on that block's rows with its copy ``W'_c`` (:func:`batch_copies`,
:func:`inject_through_copies`), and the input deltas read the copy each PE holds.

Only kernels that take other weights at no cost beyond that relayout qualify
(:meth:`~approxtvm.runtime.executor.LayerProgram.weight_kernel`: the register-LUT conv kernel);
others keep :mod:`.weight_copies` / :mod:`.delta_tvm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.boxes import for_deltas
from approxtvm.runtime.faults.corrupted_weights import weight_index
from approxtvm.runtime.faults.delta_numpy import FaultKernels, LayerArrays, inject_calls
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample
from approxtvm.runtime.faults.weight_copies import WeightCopies, stored_copies

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["batch_copies", "inject_through_copies", "inject_through_kernel"]


def inject_through_kernel(
    x: np.ndarray,
    prog: LayerProgram,
    kernel: Callable[..., np.ndarray],
    sample: FaultSample,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    offsets: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The int32 accumulators of one call of a conv layer under ``sample``: ``kernel`` (the layer's
    accumulators as a function of its weight bytes) on the corrupted weights, then the input faults'
    deltas against them. ``offsets``: the layer's :func:`~.corrupted_weights.weight_offsets` (only
    valid where :func:`~.corrupted_weights.weights_stored_once` holds)."""
    cw = sample.weight
    index = weight_index(offsets, cw)
    weights = arrays.wprime  # the layer's weight bytes: corrupted for this call, restored after
    weights[index] ^= cw.mask
    try:
        acc = kernel(weights.reshape(prog.weight.shape))
        if len(sample.input):
            inputs_only = [replace(sample, weight=CorruptedWords.empty())]
            inject_calls(x, prog, acc, inputs_only, geom, arrays, kernels, prepared, weights)
    finally:
        weights[index] ^= cw.mask
    return acc


def batch_copies(copies: WeightCopies, n: int, p: int, q: int) -> list[slice] | None:
    """Per weight copy, the batch rows it serves, where the copies split only the batch: every
    residency's output box (:attr:`~.weight_copies.WeightCopies.boxes`) spans all ``p × q`` outputs
    of one row range, the same range for every residency of a copy, and the copies' ranges tile
    ``0 … n − 1``; else ``None``."""
    if copies.boxes is None:
        return None
    boxes = copies.boxes.reshape(-1, 6)
    if len(boxes) != len(copies.copy) or not ((boxes[:, 2:] == (0, p, 0, q)).all()):
        return None
    rows: list[tuple[int, int] | None] = [None] * copies.copies
    for c, (n0, nl) in zip(copies.copy.tolist(), boxes[:, :2].tolist(), strict=True):
        if rows[c] is None:
            rows[c] = (n0, nl)
        elif rows[c] != (n0, nl):
            return None
    if any(r is None for r in rows):
        return None
    spans = sorted(r for r in rows if r is not None)
    if spans[0][0] != 0 or any(a[0] + a[1] != b[0] for a, b in pairwise(spans)):
        return None
    if spans[-1][0] + spans[-1][1] != n:
        return None
    return [slice(n0, n0 + nl) for n0, nl in (r for r in rows if r is not None)]


def inject_through_copies(
    x: np.ndarray,
    prog: LayerProgram,
    kernel: Callable[..., np.ndarray],
    sample: FaultSample,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    copies: WeightCopies,
    rows: list[slice],
) -> np.ndarray:
    """The int32 accumulators of one call of a conv layer under ``sample`` whose weight copies
    split the batch (``rows``: :func:`batch_copies`): per copy, ``kernel`` on its rows with its
    corrupted weights, then the input deltas against the copy each PE holds (needs
    ``kernels.input_copies``)."""
    assert kernels.input_copies is not None
    _, boxed = for_deltas(geom, sample, prog.schedule.mapping)
    n_w, shape = len(arrays.wflat), prog.weight.shape
    weights = stored_copies(arrays.wflat, copies, boxed.weight)
    acc = kernel([(weights[c * n_w : (c + 1) * n_w].reshape(shape), r) for c, r in enumerate(rows)])
    if len(sample.input):
        kernels.input_copies(x, prepared, boxed.input, weights, copies.select, acc.reshape(-1))
    return acc
