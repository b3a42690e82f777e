"""Input faults against the corrupted weights the PE holds, with no cross term, for any table.

Per product, ``T[x'][w'] − T[x][w] = (T[x][w'] − T[x][w]) + (T[x'][w'] − T[x][w'])``: the weight
deltas against the fault-free inputs plus the input deltas against the weights as stored. The
older form adds the input deltas against the fault-free weights and then a cross term where a
corrupted input meets a corrupted weight of the same PE and step; that term needs the corrupted
weights as sorted records searched per corrupted input word, and on a heavily faulty ResNet-50
genome (NoC swing 0.3 V, input buffers 0.6 V, batch 8) the records and the cross term were ≈ 60 %
of the fault work (kernels replayed per layer: 12.0 s per 8 images with them, 4.9 s without).

The input kernel then needs, at every step, the weights its PE holds at that step. A weight word
may be stored several times in one call (a tile loaded again for another block of images, or a
copy per PE), each copy corrupted independently. :func:`weight_copies` numbers the weight
residencies so that residencies with the same number never hold the same word: each number is
then one full corrupted weight tensor ``W'_c`` (the fault-free weights where that copy holds
nothing it is read through), and the kernel reads, at step ``s`` on PE ``i``, the copy of the
residency resident there (``wsel``, :attr:`WeightCopies.select`). Where every word is stored once
(:func:`~.corrupted_weights.weights_stored_once`) there is one copy.

Results equal :func:`~.delta_numpy.inject` and the emulator bit for bit (tested, including uneven
mappings, where the deltas run on the PE's boxes and a stored word corrupts each box that reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.runtime.faults.boxes import for_deltas
from approxtvm.runtime.faults.corrupted_weights import weight_offsets
from approxtvm.runtime.faults.delta_numpy import FaultKernels, LayerArrays, inject_calls
from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample, StackedSamples
from approxtvm.runtime.faults.weight_planes import add_weight_planes, planes_kernel, residency_boxes
from approxtvm.targets.vacc.mapping import Mapping

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = [
    "COPIES_MIN_CROSS",
    "COPIES_MIN_WEIGHT_WORDS",
    "MAX_COPY_BYTES",
    "STACKED_COPY_BYTES_FREE",
    "STACKED_COPY_BYTES_PER_INPUT_WORD",
    "WeightCopies",
    "copies_pay",
    "inject_calls_with_copies",
    "inject_with_copies",
    "stacked_copies_pay",
    "stored_copies",
    "weight_copies",
]

#: Largest ``copies × weight bytes`` buffer built per call; a layer needing more keeps the cross term.
MAX_COPY_BYTES: int = 1 << 28
#: Calls take this path (stacked calls: call by call) only from this many corrupted weight words
#: (the step walk's cost) or this many weight × input word pairs of the same call (the cross
#: term's) per call on average: below, the stacked kernels are cheaper than the path's per-call
#: work (measured on digits at BER 1e-4, 20 calls of batch 1: 3.7 vs 2.5 CPU-ms per run with every
#: call on this path). Per call, not summed over the calls: a group of 360 batch-1 calls summed
#: 1,978 × 2,222 word pairs, which passed the sum's threshold though each call held ≈ 34 pairs,
#: and digits batch 1 ran 2-3× slower call by call.
COPIES_MIN_WEIGHT_WORDS: int = 4096
COPIES_MIN_CROSS: int = 1 << 20


def copies_pay(weight_words: int | np.ndarray, input_words: int | np.ndarray) -> bool:
    """Whether calls with these corrupted word counts (one call: ints; stacked calls: one count per
    call) take this path rather than the stacked cross-term kernels: on average per call at least
    :data:`COPIES_MIN_WEIGHT_WORDS` weight words or :data:`COPIES_MIN_CROSS` weight × input pairs."""
    w = np.atleast_1d(np.asarray(weight_words, dtype=np.int64))
    x = np.atleast_1d(np.asarray(input_words, dtype=np.int64))
    if w.shape != x.shape or not len(w):
        raise ValueError(f"copies_pay needs one weight and one input count per call, found {w.shape} and {x.shape}")
    calls = len(w)
    return bool(int(w.sum()) >= COPIES_MIN_WEIGHT_WORDS * calls or int(w @ x) >= COPIES_MIN_CROSS * calls)


#: Stacked light calls run their input deltas against per-call weight copies (no cross term) while
#: the copies' bytes stay below this many per corrupted input word, plus :data:`STACKED_COPY_BYTES_FREE`:
#: the cross term costs ≈ 100 ns per corrupted input word (its records, a search per word), a copied
#: byte ≈ 0.1 ns (measured on digits at batch 1: 360 calls of 4.6-9 KB copy sets gained 0.1-0.4 ms
#: per layer and run where input words were ≥ 1 KB of copies each, and were even below).
STACKED_COPY_BYTES_PER_INPUT_WORD: int = 1024
STACKED_COPY_BYTES_FREE: int = 1 << 20


def stacked_copies_pay(copy_bytes: int, input_words: int) -> bool:
    """Whether stacked calls whose weight copies total ``copy_bytes`` (every call with corrupted
    weights, plus the fault-free set) and which hold ``input_words`` corrupted input words run
    against per-call copies (:func:`inject_calls_with_copies`) rather than with the cross term."""
    return copy_bytes <= STACKED_COPY_BYTES_PER_INPUT_WORD * input_words + STACKED_COPY_BYTES_FREE


@dataclass(frozen=True, eq=False)
class WeightCopies:
    """How one layer call's stored weight copies map onto full weight tensors (see the module doc).

    Attributes
    ----------
    copies
        Number of full weight tensors ``W'_c``.
    copy
        Per weight residency of the deltas' geometry (``fill · instances + PE``): its copy number.
    select
        Per ``(step, PE)`` (``step · instances + PE``): byte offset ``c · weights`` of the copy that
        PE holds at that step, as the compiled input kernel reads it.
    offsets
        The geometry's :func:`~.corrupted_weights.weight_offsets` (flat weight index of every
        stored word).
    boxes
        Per weight residency, the output box its steps compute (:func:`.weight_planes.residency_boxes`),
        or ``None`` (the weight deltas then walk the residencies' steps).
    """

    copies: int
    copy: np.ndarray
    select: np.ndarray
    offsets: tuple[np.ndarray, np.ndarray]
    boxes: np.ndarray | None = None


def weight_copies(geom: TileGeometry, mapping: Mapping, max_bytes: int = MAX_COPY_BYTES) -> WeightCopies | None:
    """The copies of ``geom``'s weight residencies (the deltas' geometry: ``geom.compute`` when
    uneven), or ``None`` where they cannot be formed: a tile reaching outside the weights, or
    ``copies × weights`` bytes above ``max_bytes``.

    Residencies are numbered greedily in fill order: each takes the lowest number none of whose
    residencies holds any of its words (checked word by word).
    """
    s = mapping.shape
    dims = (s.groups, s.k_per_group, s.c_per_group, s.r, s.s)
    size = int(np.prod(dims))
    tile = geom.tile_dims("weight", mapping)
    fills, ends = geom.fills["weight"], geom.residency_ends("weight")
    n_inst = geom.instances
    cols = [_D[d] for d in "GKCRS"]
    starts = (geom.step_start[fills][:, None, :] + geom.inst_off[None, :, :])[:, :, cols].reshape(-1, 5)
    cover: list[np.ndarray] = []
    copy = np.empty(len(starts), np.int64)
    for r, st in enumerate(starts.tolist()):
        if any(a < 0 or a + e > n for a, e, n in zip(st, tile, dims, strict=True)):
            return None
        box = tuple(slice(a, a + e) for a, e in zip(st, tile, strict=True))
        c = next((c for c, cv in enumerate(cover) if not cv[box].any()), len(cover))
        if c == len(cover):
            if (c + 1) * size > max_bytes:
                return None
            cover.append(np.zeros(dims, bool))
        cover[c][box] = True
        copy[r] = c
    # the weight residency resident at every step (fills ascending; a step outside every residency
    # reads no weights, and no input word is ever mapped to it)
    steps = len(geom.step_start)
    fill_of = np.searchsorted(fills, np.arange(steps), side="right") - 1
    held = (fill_of >= 0) & (np.arange(steps) < ends[np.maximum(fill_of, 0)])
    res = np.maximum(fill_of, 0)[:, None] * n_inst + np.arange(n_inst)[None, :]
    select = np.where(held[:, None], copy[res] * size, 0).astype(np.int64).ravel()
    out_dims = (s.n, 1, 1) if s.op == "dense" else (s.n, s.p, s.q)
    boxes = residency_boxes(geom, out_dims)
    return WeightCopies(len(cover), copy, select, weight_offsets(geom, mapping), boxes)


def stored_copies(wflat: np.ndarray, copies: WeightCopies, cw: CorruptedWords) -> np.ndarray:
    """The ``copies.copies`` weight tensors as stored, one after the other (flat bytes): the
    fault-free ``wflat`` with each corrupted word ``cw`` (in the deltas' geometry) XORed into its
    residency's copy."""
    base, word = copies.offsets
    weights = np.tile(wflat, copies.copies)
    weights[copies.copy[cw.residency] * len(wflat) + base[cw.residency] + word[cw.word]] ^= cw.mask
    return weights


def inject_with_copies(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    sample: FaultSample,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    copies: WeightCopies,
    *,
    in_place: bool = False,
) -> np.ndarray:
    """The int32 accumulators of one call of a conv/dense layer under ``sample``, from its
    fault-free accumulators ``acc`` (not changed unless ``in_place``: then added into, and ``acc``
    must be a writeable C-contiguous int32 array): weight deltas against the fault-free inputs,
    then input deltas against the weight copies the PEs hold (``copies``: :func:`weight_copies` of
    the deltas' geometry). Needs ``kernels.input_copies``; equals :func:`~.delta_numpy.inject`.

    The weight deltas run output box by output box (:mod:`.weight_planes`) where every residency's
    steps compute one box (:attr:`WeightCopies.boxes`) and that kernel builds; else they walk the
    residencies' steps.
    """
    assert kernels.input_copies is not None
    if in_place and not (acc.dtype == np.int32 and acc.flags.c_contiguous and acc.flags.writeable):
        raise ValueError("inject_with_copies adds in place only into a writeable C-contiguous int32 array")
    out = acc if in_place else np.array(acc, dtype=np.int32, order="C", copy=True)
    _, boxed = for_deltas(geom, sample, prog.schedule.mapping)
    cw = boxed.weight
    base, word = copies.offsets
    if len(cw) and copies.boxes is not None and planes_kernel() is not None:
        st: dict = prepared  # type: ignore[assignment]  # the compiled kernels' layer arguments
        index = base[cw.residency] + word[cw.word]
        shape, zx, lut_t = prog.schedule.shape, st["record"].zero_x, st["_keep"]["lut_t"]
        add_weight_planes(x, shape, zx, arrays.wflat, lut_t, index, cw.mask, out, (cw.residency, copies.boxes))
    elif len(sample.weight):
        inject_calls(x, prog, out, [replace(sample, input=CorruptedWords.empty())], geom, arrays, kernels, prepared)
    if not len(sample.input):
        return out
    wflat = arrays.wflat
    if len(cw):
        weights, select = stored_copies(wflat, copies, cw), copies.select
    else:  # every copy holds the fault-free weights
        weights, select = wflat, np.zeros_like(copies.select)
    kernels.input_copies(x, prepared, boxed.input, weights, select, out.reshape(-1))
    return out


def inject_calls_with_copies(
    x: np.ndarray,
    prog: LayerProgram,
    acc: np.ndarray,
    stacked: StackedSamples,
    geom: TileGeometry,
    arrays: LayerArrays,
    kernels: FaultKernels,
    prepared: object,
    copies: WeightCopies,
) -> np.ndarray:
    """:func:`~.delta_numpy.inject_calls` of stacked calls (``x`` and ``acc`` stacked along ``N``, in
    place into ``acc``) with no cross term: the weight deltas of every call against the fault-free
    inputs (one kernel call), then the input deltas of every call against the copies its PEs hold,
    each call with a weight copy set of its own where it has corrupted weights (one kernel call).

    The cross term's records and search cost about 100 ns per corrupted input word and ≈ 50 µs per
    kernel call (digits_cnn at batch 64: 0.6 of ≈ 2.7 ms of fault work per run); the copies cost a
    ``copies × weights`` tile per call with corrupted weights. Needs ``kernels.input_copies`` and an
    even mapping (``geom.compute is None``); equals :func:`~.delta_numpy.inject_calls` bit for bit.
    """
    assert kernels.input_copies is not None
    if geom.compute is not None:
        raise ValueError("inject_calls_with_copies takes even mappings (uneven ones run call by call on their boxes)")
    if acc.dtype != np.int32 or not acc.flags.c_contiguous or not acc.flags.writeable:
        raise ValueError("inject_calls_with_copies adds in place into a writeable C-contiguous int32 array")
    out = acc.reshape(-1)
    cw, wcall = stacked.weight, stacked.weight_call
    if len(cw):  # the weight deltas alone: the stacked kernel with no input words
        none = np.zeros(0, np.int64)
        only = StackedSamples(cw, CorruptedWords.empty(), wcall, none, stacked.calls, stacked.streams, stacked.flipped)
        kernels.delta_calls(x, prog, geom, arrays, prepared, only, out, arrays.wflat)
    if not len(stacked.input):
        return acc
    wflat = arrays.wflat
    size = len(wflat)
    per_call = copies.copies * size
    call_base = np.zeros(stacked.calls, np.int64)
    if len(cw):
        # the calls with corrupted weights (weight_call ascends), each with its copies after the
        # fault-free ones (block 0, read by every other call)
        new = np.empty(len(wcall), bool)
        new[0] = True
        np.not_equal(wcall[1:], wcall[:-1], out=new[1:])
        block = np.cumsum(new)  # 1 + the rank of the word's call among the faulty calls
        faulty = wcall[new]
        weights = np.tile(wflat, copies.copies * (1 + len(faulty)))
        base, word = copies.offsets
        weights[block * per_call + copies.copy[cw.residency] * size + base[cw.residency] + word[cw.word]] ^= cw.mask
        call_base[faulty] = np.arange(1, len(faulty) + 1) * per_call
    else:
        weights = np.tile(wflat, copies.copies) if copies.copies > 1 else wflat
    kernels.input_copies(x, prepared, stacked.input, weights, copies.select, out, stacked.input_call, call_base)
    return acc
