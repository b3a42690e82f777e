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

Only kernels that take other weights at no cost beyond that relayout qualify
(:meth:`~approxtvm.runtime.executor.LayerProgram.weight_kernel`: the register-LUT conv kernel);
others keep :mod:`.weight_copies` / :mod:`.delta_tvm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.corrupted_weights import weight_index
from approxtvm.runtime.faults.delta_numpy import FaultKernels, LayerArrays, inject_calls
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["inject_through_kernel"]


def inject_through_kernel(
    x: np.ndarray,
    prog: LayerProgram,
    kernel: Callable[[np.ndarray | None], np.ndarray],
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
