"""Weight faults folded into the layer's own kernel where every weight word is stored once per call.

When each weight word of a layer sits in exactly one (fill, PE) residency during a call — no
multicast copies, no refill of the same tile — the corrupted weight tensor ``W'`` of that call is
well defined: every product that reads weight ``w`` reads the same stored copy ``w'``. The faulty
accumulator of an exact multiplier is then the fault-free kernel run on ``W'``, plus two terms:

* the zero-point correction ``z_x Σw`` stays computed from the fault-free weights (off the array,
  DESIGN §5), while the kernel's ``Σ (x − z_x)(w' − z_w)`` subtracts ``z_x Σw'``: add
  ``z_x Σ(w' − w)`` per output channel (padded taps included: they hold ``z_x`` and go through the
  multiplier, so they contribute ``z_x (w' − w)`` like any tap);
* input faults as sparse deltas taken against ``W'`` (``Σ M(x', w') − M(x, w')``), so that the
  weight deltas and the cross terms where a corrupted input meets a corrupted weight disappear.

The sum is the same integer as ``acc_clean + Δ_weight + Δ_input + cross`` (int32 wrap-around in
both), so outcomes are bit-identical; the tests hold this path to the emulator.

Other multipliers, and weights stored more than once, use :mod:`.weight_copies` (no cross term either).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults import delta_rows
from approxtvm.runtime.faults.boxes import for_deltas
from approxtvm.runtime.faults.delta_numpy import FaultKernels, LayerArrays, inject_calls
from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample
from approxtvm.targets.vacc.mapping import Mapping

if TYPE_CHECKING:
    from approxtvm.runtime.exact_layer import ExactLayer, RowsAccumulators
    from approxtvm.runtime.executor import LayerProgram
    from approxtvm.targets.vacc.workload import LayerShape

__all__ = [
    "DELTA_S_PER_PRODUCT",
    "channel_bias",
    "channel_correction",
    "deltas_s",
    "inject_with_weights",
    "weight_index",
    "weight_offsets",
    "weights_stored_once",
]


def weights_stored_once(geom: TileGeometry, mapping: Mapping) -> bool:
    """Whether every weight word of one layer call is held by exactly one (fill, PE) residency.

    Counts, word by word, the residencies whose weight tile covers it (the buffer's own tiles,
    also in an uneven mapping). A weight multicast to several PEs or loaded again by a later fill
    is held more than once: its copies may differ, and ``W'`` is not defined.
    """
    s = mapping.shape
    dims = (s.groups, s.k_per_group, s.c_per_group, s.r, s.s)
    size = int(np.prod(dims))
    fills = geom.fills["weight"]
    tile = geom.tile_dims("weight", mapping)
    if len(fills) * geom.instances * int(np.prod(tile)) != size:
        return False  # more (or fewer) stored words than weights: some word is held twice (or never)
    cover = np.zeros(dims, np.int32)
    cols = [_D[d] for d in "GKCRS"]
    for f in fills.tolist():
        for st in (geom.step_start[f] + geom.inst_off)[:, cols].tolist():
            if any(a < 0 or a + e > n for a, e, n in zip(st, tile, dims, strict=True)):
                return False
            cover[tuple(slice(a, a + e) for a, e in zip(st, tile, strict=True))] += 1
    return bool((cover == 1).all())


def weight_offsets(geom: TileGeometry, mapping: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Where the layer's weight bytes ``(K, C/G, R, S)`` (flat) hold each stored weight word: the
    offset of every residency's tile start and of every word inside a tile (the sum of the two)."""
    s = mapping.shape
    kg, cg = s.k_per_group, s.c_per_group
    start = geom.step_start[geom.fills["weight"]][:, None, :] + geom.inst_off[None, :, :]  # (fill, PE, dim)
    start = start.reshape(-1, start.shape[-1])  # residency = fill · PEs + PE

    def flat(g: np.ndarray, k: np.ndarray, c: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray((((g * kg + k) * cg + c) * s.r + r) * s.s + t, np.int64)

    base = flat(*(start[:, _D[d]] for d in "GKCRS"))
    tile = np.indices(geom.tile_dims("weight", mapping)).reshape(5, -1)
    return base, flat(*tile)


def channel_bias(wflat: np.ndarray, index: np.ndarray, mask: np.ndarray, zero_x: int, channels: int) -> np.ndarray:
    """:func:`channel_correction` as one int32 term per output channel (0 where no weight of the
    channel is corrupted): the form the GEMM's rows take as their bias, in fewer array passes."""
    w = wflat[index].astype(np.int32)
    corr = np.bincount(index // (len(wflat) // channels), weights=(w ^ mask) - w, minlength=channels)
    return (corr.astype(np.int64) * zero_x).astype(np.int32)  # float64 sums: exact (|Σ| < 2^53)


def weight_index(offsets: tuple[np.ndarray, np.ndarray], cw: CorruptedWords) -> np.ndarray:
    """Flat index in the layer's weight bytes of every corrupted weight word (``offsets``:
    :func:`weight_offsets`)."""
    base, word = offsets
    return base[cw.residency] + word[cw.word]


def channel_correction(
    wflat: np.ndarray, index: np.ndarray, mask: np.ndarray, zero_x: int, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Output channels and their ``z_x Σ(w' − w)`` (int32, wrapped) for weights ``index`` XORed
    with ``mask`` (``wflat``: the fault-free weight bytes; each index at most once)."""
    w = wflat[index].astype(np.int64)
    per_k = len(wflat) // channels
    k = index // per_k
    corr = np.bincount(k, weights=(w ^ mask) - w, minlength=channels)  # float64: exact (|Σ| < 2^53)
    ks = np.flatnonzero(corr)
    return ks, (corr[ks].astype(np.int64) * zero_x).astype(np.int32)


#: Seconds per product of the delta kernels, a round upper figure for choosing between them and
#: the GEMM on corrupted weights (weight deltas measured ≈ 0.5 ns per output on digits at batch 64).
DELTA_S_PER_PRODUCT = 1e-9


def deltas_s(shape: LayerShape, sample: FaultSample) -> float:
    """Rough seconds the delta kernels take for one call's ``sample`` of a layer whose weights are
    stored once: each corrupted weight reaches every output of its channel, each corrupted input
    word at most ``K · R · S`` products."""
    outputs = shape.n * (1 if shape.op == "dense" else shape.p * shape.q)
    taps = shape.k * (1 if shape.op == "dense" else shape.r * shape.s)
    return DELTA_S_PER_PRODUCT * (len(sample.weight) * outputs + len(sample.input) * taps)


def inject_with_weights(
    x: np.ndarray,
    rows: np.ndarray,
    prog: LayerProgram,
    exact: ExactLayer,
    sample: FaultSample,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    offsets: tuple[np.ndarray, np.ndarray],
    *,
    gemm_rows: bool = False,
) -> np.ndarray | RowsAccumulators:
    """The int32 accumulators of one call of an exact conv/dense layer under ``sample``: ``exact``
    run on the corrupted weights (``rows``: ``x`` as ``exact`` reads it), the ``z_x Σ(w' − w)``
    correction, then the input faults' deltas against the corrupted weights.

    ``offsets``: the layer's :func:`weight_offsets`. Only valid where :func:`weights_stored_once`
    holds and ``exact.has_gemm``; equals
    :func:`~.delta_numpy.inject` of ``exact(rows)`` (and the emulator) bit for bit.

    ``gemm_rows``: where the input deltas run in the GEMM's layout (:mod:`.delta_rows`), return
    the :class:`~approxtvm.runtime.exact_layer.RowsAccumulators` as the GEMM left them (the
    correction as their bias) for a requantizer that reads them; else (and always when ``False``)
    the ``(N, K, P, Q)`` int32 array.
    """
    cw = sample.weight
    if not len(cw) and not len(sample.input):
        return exact(rows)
    s = prog.schedule.shape
    index = weight_index(offsets, cw)
    if delta_rows.applies(prepared):  # everything inside the GEMM's call, input deltas vectorised
        bias = None
        if len(cw):
            bias = channel_bias(arrays.wflat, index, cw.mask, prog.schedule.quant.input_zero_point, s.k)
        _, boxed = for_deltas(geom, replace(sample, weight=CorruptedWords.empty()), prog.schedule.mapping)

        def add(weights: np.ndarray, out: np.ndarray) -> None:
            delta_rows.add_input_rows(x, prepared, boxed.input, weights, out)  # type: ignore[arg-type]

        return exact.with_weights(rows, index, cw.mask, bias, add if len(boxed.input) else None, rows=gemm_rows)
    if not len(cw):
        acc = exact(rows)
        inject_calls(x, prog, acc, [sample], geom, arrays, kernels, prepared)
        return acc
    acc = exact.with_weights(rows, index, cw.mask)
    assert isinstance(acc, np.ndarray)
    ks, corr = channel_correction(arrays.wflat, index, cw.mask, prog.schedule.quant.input_zero_point, s.k)
    per_k = acc.reshape(len(acc), s.k, -1)
    per_k[:, ks] += corr[:, None]  # int32, wraps like the accumulator
    if len(sample.input):
        weights = arrays.wprime  # the layer's weight bytes: corrupted for this call, restored after
        weights[index] ^= cw.mask
        try:
            inputs_only = [replace(sample, weight=CorruptedWords.empty())]
            inject_calls(x, prog, acc, inputs_only, geom, arrays, kernels, prepared, weights)
        finally:
            weights[index] ^= cw.mask
    return acc
