"""Exact per-bit sampling of the corrupted words of a layer call (DESIGN §5).

The flip count of each (tile residency, destination, source) is ``Binomial(exposed bits, BER)``
and the flipped bits are uniform without replacement among the exposed (bit, hop or read) slots.
The generator is numpy's counter-based ``Philox``, keyed by ``(seed, layer index)``; its counter
selects a block of ``B`` consecutive layer calls (``B ≤ 64``, fixed per layer by its number of
fault rows and expected flips). Inside a block the draws are taken in a fixed order — call,
tensor (weight, input), source (NoC, SRAM write, SRAM read), tile (fill), destination (PE) — one
vectorised draw per quantity, so a call's faults are a pure function of (seed, layer, call,
tensor, tile, destination) and do not depend on threads, processes or what ran before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from approxtvm.errors import PolicyError
from approxtvm.runtime.faults import sample_counts, sample_pass
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.physics import WORD_BITS
from approxtvm.runtime.faults.plan import TENSORS, FaultPlan
from approxtvm.runtime.faults.repeats import repeat_flags

__all__ = [
    "CorruptedWords",
    "EventTable",
    "FaultSample",
    "SampleBlock",
    "StackedSamples",
    "block_generator",
    "check_seed",
    "event_table",
    "fault_counters",
    "sample_block",
    "sample_blocks",
    "sample_blocks_stacked",
    "sample_faults",
    "uniform_slots",
]

_SOURCES = ("noc", "sram_write", "sram_read")
_MAX_SEED = 2**64
_MAX_BLOCK_CALLS = 64  # layer calls sampled by one generator ...
_BLOCK_ROWS = 1 << 13  # ... as long as their event rows stay below this
_BLOCK_FLIPS = 256.0  # ... and their expected flips too
#: SampleBlock.stacked slices each call's words below this many words per call on average (a
#: slice costs a few µs; one mask and gathers over the range ≈ 10 ns per word)
_SLICE_WORDS_PER_CALL = 512


@dataclass(frozen=True, eq=False)
class CorruptedWords:
    """Corrupted stored words of one tensor in one layer call.

    Attributes
    ----------
    residency
        ``fill index · instances + instance`` of the tile copy (see :class:`TileGeometry`).
    word
        Flat index of the word inside the tile (C order over the tile's axes).
    mask
        uint8 XOR mask applied to the stored byte (never 0).
    """

    residency: np.ndarray
    word: np.ndarray
    mask: np.ndarray

    @staticmethod
    def empty() -> CorruptedWords:
        """No corruption."""
        return CorruptedWords(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.word)


@dataclass(frozen=True, eq=False)
class EventTable:
    """Static per-layer event table: one row per (tensor, source, residency) with exposure > 0.

    Rows are grouped in streams (tensor, source) in :data:`TENSORS` × :data:`_SOURCES` order.
    """

    slots: np.ndarray  # exposed (bit, hop/read) slots per row
    ber: np.ndarray
    free_bits: np.ndarray  # bits per word that can flip (8 - protected at the NoC)
    tile_slots: np.ndarray  # words · free_bits
    key_base: np.ndarray  # global word key of the row's tile copy: tensor base + residency · words
    stream_start: np.ndarray  # first row of every stream
    streams: tuple[tuple[str, str, int], ...]  # (tensor, source label, exposed slots per call)
    tensor_base: tuple[int, int]  # key base of weight and input words
    words: tuple[int, int]  # words per tile of weight and input
    key_span: int  # keys of one call: weight then input words of every residency

    @cached_property
    def block_calls(self) -> int:
        """Layer calls sampled together: one generator per block, the work per block bounded (rows
        and expected flips), so that a run never samples much more than it uses."""
        flips = float(np.dot(self.slots, self.ber)) if len(self.slots) else 0.0
        by_flips = int(_BLOCK_FLIPS // flips) if flips > 0 else _MAX_BLOCK_CALLS
        return max(1, min(_MAX_BLOCK_CALLS, _BLOCK_ROWS // max(1, len(self.slots)), by_flips))

    @cached_property
    def block_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Exposed slots and BER of every row of a block (the rows of each call, calls in order)."""
        return np.tile(self.slots, self.block_calls), np.tile(self.ber, self.block_calls)

    @cached_property
    def inversion(self) -> sample_counts.InversionRows:
        """The rows of one call as the compiled binomial draws read them (:mod:`.sample_counts`)."""
        return sample_counts.inversion_rows(self.slots, self.ber)

    @cached_property
    def pass_args(self) -> sample_pass.LayerArgs:
        """The table as the compiled bookkeeping pass reads it (:mod:`.sample_pass`)."""
        return sample_pass.layer_args(
            self.slots, self.tile_slots, self.free_bits, self.key_base, self.stream_start, self.tensor_base, self.words
        )


def event_table(plan: FaultPlan, geom: TileGeometry) -> EventTable:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("slots", "ber", "fb", "ts", "kb")}
    streams: list[tuple[str, str, int]] = []
    starts: list[int] = []
    n_inst = geom.instances
    sb = plan.sram_ber_map
    free = WORD_BITS - plan.noc_protected_msbs
    rows = 0
    base = 0
    bases = []
    for t in TENSORS:
        n_res = len(geom.fills[t]) * n_inst
        words = geom.words[t]
        bases.append(base)
        res = np.arange(n_res, dtype=np.int64)
        per_source = {
            "noc": (plan.noc_ber, free, words * free * np.tile(geom.hops, len(geom.fills[t]))),
            "sram_write": (
                sb[t] if plan.sram_fault_mode in ("write", "both") else 0.0,
                WORD_BITS,
                np.full(n_res, words * WORD_BITS, np.int64),
            ),
            "sram_read": (
                sb[t] if plan.sram_fault_mode in ("read", "both") else 0.0,
                WORD_BITS,
                np.full(n_res, words * WORD_BITS * geom.reads_per_word[t], np.int64),
            ),
        }
        for src in _SOURCES:
            ber, fb, slots = per_source[src]
            if ber <= 0.0 or fb <= 0:
                continue
            keep = slots > 0
            m = int(keep.sum())
            if not m:
                continue
            streams.append((t, "noc" if src == "noc" else "sram", int(slots.sum())))
            starts.append(rows)
            rows += m
            cols["slots"].append(slots[keep].astype(np.int64))
            cols["ber"].append(np.full(m, ber))
            cols["fb"].append(np.full(m, fb, np.int64))
            cols["ts"].append(np.full(m, words * fb, np.int64))
            cols["kb"].append(base + res[keep] * words)
        base += n_res * words

    def cat(k: str, dtype: Any) -> np.ndarray:
        return np.concatenate(cols[k]) if cols[k] else np.zeros(0, dtype)

    return EventTable(
        cat("slots", np.int64),
        cat("ber", np.float64),
        cat("fb", np.int64),
        cat("ts", np.int64),
        cat("kb", np.int64),
        np.array(starts, np.int64),
        tuple(streams),
        (bases[0], bases[1]),
        (geom.words["weight"], geom.words["input"]),
        base,
    )


@dataclass(frozen=True, eq=False)
class FaultSample:
    """The faults of one layer call.

    Attributes
    ----------
    weight, input
        Corrupted words of each tensor.
    streams
        ``(tensor, source, exposed bits)`` of every sampled stream (source ``noc`` or ``sram``).
    flipped
        Bits flipped per stream (binomial counts; a bit hit on two hops counts twice).
    """

    weight: CorruptedWords
    input: CorruptedWords
    streams: tuple[tuple[str, str, int], ...] = ()
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def of(self, tensor: str) -> CorruptedWords:
        """Corrupted words of ``tensor``."""
        return self.weight if tensor == "weight" else self.input

    @property
    def counters(self) -> dict[str, dict[str, Any]]:
        """Per tensor: ``bits_exposed``, ``bits_flipped``, ``words_corrupted``, and per source."""
        return fault_counters(self.streams, self.flipped, (len(self.weight), len(self.input)))


@dataclass(frozen=True, eq=False)
class StackedSamples:
    """The samples of consecutive layer calls in shared arrays (what one kernel call takes).

    Attributes
    ----------
    weight, input
        Corrupted words of each tensor over all calls, in call order.
    weight_call, input_call
        The call (0 … ``calls`` − 1) of every word.
    calls
        Number of calls.
    streams
        As :attr:`FaultSample.streams`.
    flipped
        ``(calls, streams)`` bits flipped per call and stream.
    """

    weight: CorruptedWords
    input: CorruptedWords
    weight_call: np.ndarray
    input_call: np.ndarray
    calls: int
    streams: tuple[tuple[str, str, int], ...]
    flipped: np.ndarray

    def __len__(self) -> int:
        return self.calls

    def samples(self) -> list[FaultSample]:
        """One :class:`FaultSample` per call."""
        wb = np.searchsorted(self.weight_call, np.arange(self.calls + 1)).tolist()
        xb = np.searchsorted(self.input_call, np.arange(self.calls + 1)).tolist()
        w, x = self.weight, self.input
        return [
            FaultSample(
                CorruptedWords(w.residency[wb[c] : wb[c + 1]], w.word[wb[c] : wb[c + 1]], w.mask[wb[c] : wb[c + 1]]),
                CorruptedWords(x.residency[xb[c] : xb[c + 1]], x.word[xb[c] : xb[c + 1]], x.mask[xb[c] : xb[c + 1]]),
                self.streams,
                self.flipped[c],
            )
            for c in range(self.calls)
        ]


@dataclass(frozen=True, eq=False)
class SampleBlock:
    """The samples of consecutive layer calls as the sampler makes them: words sorted by (call,
    tensor); a call's :class:`FaultSample` or a range of calls' :class:`StackedSamples` are views."""

    call: np.ndarray  # call of every word
    is_input: np.ndarray  # bool: an input word (else a weight word)
    words: CorruptedWords
    bounds: list[int]  # words of call c: weight [bounds[2c], bounds[2c+1]), input [bounds[2c+1], bounds[2c+2])
    streams: tuple[tuple[str, str, int], ...]
    flipped: np.ndarray  # (calls, streams)

    def __len__(self) -> int:
        return len(self.flipped)

    def sample(self, c: int) -> FaultSample:
        """The sample of call ``c``."""
        w0, x0, x1 = self.bounds[2 * c : 2 * c + 3]
        r, wd, m = self.words.residency, self.words.word, self.words.mask
        return FaultSample(
            CorruptedWords(r[w0:x0], wd[w0:x0], m[w0:x0]),
            CorruptedWords(r[x0:x1], wd[x0:x1], m[x0:x1]),
            self.streams,
            self.flipped[c],
        )

    def word_counts(self, first: int, calls: int) -> tuple[np.ndarray, np.ndarray]:
        """Corrupted weight and input words of each of calls ``first … first + calls − 1`` (int64
        ``(calls,)`` each), read off :attr:`bounds` without touching the words."""
        b = np.asarray(self.bounds[2 * first : 2 * (first + calls) + 1], np.int64)
        return b[1::2] - b[:-1:2], b[2::2] - b[1::2]

    def stacked(self, first: int, calls: int) -> StackedSamples:
        """Calls ``first … first + calls − 1`` (renumbered from 0) in shared arrays."""
        # the words are sorted by (call, tensor): each tensor's words of a call are one slice of
        # ``bounds``, so one call's are views and several calls' one concatenation (no masks, no
        # gathers: at tens of millions of input words per call these were 1 s per ResNet-50 batch).
        # Many light calls (digits at batch 1: 360 calls of a few words) take one mask and gathers
        # instead: a slice per call and tensor cost 3-6 ms per run there, more than their faults.
        b, r, wd, m = self.bounds, self.words.residency, self.words.word, self.words.mask
        lo_all, hi_all = b[2 * first], b[2 * (first + calls)]
        if calls > 1 and hi_all - lo_all < _SLICE_WORDS_PER_CALL * calls:
            xs = self.is_input[lo_all:hi_all]
            parts = []
            for sel in (np.flatnonzero(~xs) + lo_all, np.flatnonzero(xs) + lo_all):
                parts.append((CorruptedWords(r[sel], wd[sel], m[sel]), self.call[sel] - first))
            (w, wc), (x, xc) = parts
            return StackedSamples(w, x, wc, xc, calls, self.streams, self.flipped[first : first + calls])
        parts = []
        for t in (0, 1):
            lo = [b[2 * c + t] for c in range(first, first + calls)]
            hi = [b[2 * c + t + 1] for c in range(first, first + calls)]
            if calls == 1:
                cw = CorruptedWords(r[lo[0] : hi[0]], wd[lo[0] : hi[0]], m[lo[0] : hi[0]])
            else:
                spans = list(zip(lo, hi, strict=True))
                cw = CorruptedWords(*(np.concatenate([a[i:j] for i, j in spans]) for a in (r, wd, m)))
            if calls == 1:  # zeros: calloc's untouched pages, not a written array (8 bytes per word)
                call = np.zeros(hi[0] - lo[0], np.int64)
            else:
                call = np.repeat(np.arange(calls, dtype=np.int64), np.subtract(hi, lo))
            parts.append((cw, call))
        (w, wc), (x, xc) = parts
        return StackedSamples(w, x, wc, xc, calls, self.streams, self.flipped[first : first + calls])


def fault_counters(
    streams: tuple[tuple[str, str, int], ...], flipped: np.ndarray, words: tuple[int, int], calls: int = 1
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for ti, t in enumerate(TENSORS):
        c: dict[str, Any] = {"bits_exposed": 0, "bits_flipped": 0, "words_corrupted": int(words[ti])}
        for (st, label, exposed), fl in zip(streams, flipped.tolist(), strict=True):
            if st != t:
                continue
            sub = c.setdefault(label, {"bits_exposed": 0, "bits_flipped": 0})
            sub["bits_exposed"] += exposed * calls
            sub["bits_flipped"] += int(fl)
            c["bits_exposed"] += exposed * calls
            c["bits_flipped"] += int(fl)
        out[t] = c
    return out


def check_seed(seed: int) -> None:
    if not 0 <= seed < _MAX_SEED:
        raise PolicyError(
            "fault seed out of range",
            expected="0 <= seed < 2**64",
            found=str(seed),
            fix="use a non-negative 64-bit seed",
        )


def sample_faults(
    plan: FaultPlan, geom: TileGeometry, *, seed: int, call: int = 0, events: EventTable | None = None
) -> FaultSample:
    """Sample the corrupted words of one layer call (see the module docstring for the key).

    Parameters
    ----------
    plan, geom
        The layer's fault plan and tile geometry.
    seed
        Run seed.
    call
        Index of the layer call within the run (batch index).
    events
        The layer's precomputed event table (built here if ``None``).
    """
    ev = events if events is not None else event_table(plan, geom)
    b = ev.block_calls
    return sample_block(plan, geom, seed=seed, block=call // b, events=ev)[call % b]


def sample_block(
    plan: FaultPlan,
    geom: TileGeometry,
    *,
    seed: int,
    block: int,
    events: EventTable | None = None,
    generator: np.random.Generator | None = None,
) -> list[FaultSample]:
    """The samples of layer calls ``block·B … block·B + B − 1`` (``B = events.block_calls``).

    One ``Philox`` generator per (seed, layer, block) draws, in order, the flip counts of every
    (call, tensor, source, tile, destination) row, then the flipped slots of the rows that have
    flips: a call's faults are a pure function of (seed, layer, call), whatever ran before.
    ``generator``: a ``Philox``-backed generator to reuse (its state is set to this block's key
    and counter, the same stream a fresh one would draw, at a fifth of the construction cost).
    """
    return sample_blocks(plan, geom, seed=seed, blocks=range(block, block + 1), events=events, generator=generator)


def sample_blocks(
    plan: FaultPlan,
    geom: TileGeometry,
    *,
    seed: int,
    blocks: range,
    events: EventTable | None = None,
    generator: np.random.Generator | None = None,
) -> list[FaultSample]:
    """:func:`sample_block` of consecutive ``blocks``, their samples in call order: each block's
    generator draws as in :func:`~.sample_reference.sample_block_reference` (repeated positions
    inside a row redrawn right after the block's draws); the flips of all blocks are then turned
    into corrupted words in one pass (compiled, :mod:`.sample_pass`, where TVM builds; numpy's
    passes elsewhere: the same words)."""
    block = sample_blocks_stacked(plan, geom, seed=seed, blocks=blocks, events=events, generator=generator)
    return [block.sample(c) for c in range(len(block))]


def sample_blocks_stacked(
    plan: FaultPlan,
    geom: TileGeometry,
    *,
    seed: int,
    blocks: range,
    events: EventTable | None = None,
    generator: np.random.Generator | None = None,
) -> SampleBlock:
    """:func:`sample_blocks` as one :class:`SampleBlock` (no per-call objects)."""
    check_seed(seed)
    ev = events if events is not None else event_table(plan, geom)
    B, E = ev.block_calls, len(ev.slots)
    if not E:
        none = np.zeros(0, np.int64)
        calls = B * len(blocks)
        return SampleBlock(
            none, none.astype(bool), CorruptedWords.empty(), [0] * (2 * calls + 1), (), none.reshape(calls, 0)
        )
    if sample_pass.compiled() is not None:
        block = _stacked_compiled(plan, ev, seed, blocks, generator)
        if block is None:  # far more redraws than usual (rates near 1): draw again with more spares
            block = _stacked_compiled(plan, ev, seed, blocks, generator, spare=sample_pass.many_spare_uniforms)
        if block is not None:
            return block
    return _stacked_numpy(plan, ev, seed, blocks, generator)


def _stacked_compiled(
    plan: FaultPlan,
    ev: EventTable,
    seed: int,
    blocks: range,
    generator: np.random.Generator | None,
    *,
    spare: Callable[[int], int] | None = None,
    **paths: int,
) -> SampleBlock | None:
    """numpy's draws, then the compiled pass for all of the bookkeeping (``None``: a block ran out of
    spare uniforms for its redraws; the numpy path then draws it again). ``spare`` and ``paths``
    (:func:`.sample_pass.run`'s ``few``, ``dense``, ``bits``): the tests move them to reach every
    path."""
    if spare is None and ev.inversion.applies and sample_counts.kernel() is not None:
        block = _stacked_doubles(plan, ev, seed, blocks, generator, **paths)
        if block is not None:
            return block
    slots_b, ber_b = ev.block_rows
    counts, uniforms, ubounds = [], [], np.empty((len(blocks), 2), np.int64)
    first = 0
    for bi, block in enumerate(blocks):
        rng = block_generator(seed, plan.layer_index, block, generator)
        c = rng.binomial(slots_b, ber_b)
        n = int(c.sum())
        # the flips' uniforms, then spares for the redraws: the stream uniform_slots would draw
        u = rng.random(n + (spare or sample_pass.spare_uniforms)(n))
        counts.append(c)
        uniforms.append(u)
        ubounds[bi] = first, first + len(u)
        first += len(u)
    one = len(blocks) == 1
    res = sample_pass.run(
        ev.pass_args,
        counts[0] if one else np.concatenate(counts),
        uniforms[0] if one else np.concatenate(uniforms),
        ubounds,
        ev.block_calls * len(blocks),
        **paths,
    )
    if res is None:
        return None
    words = CorruptedWords(res.residency, res.word, res.mask)
    return SampleBlock(res.call, res.is_input, words, res.bounds, ev.streams, res.flipped)


def _stacked_doubles(
    plan: FaultPlan, ev: EventTable, seed: int, blocks: range, generator: np.random.Generator | None, **paths: int
) -> SampleBlock | None:
    """:func:`_stacked_compiled` with the flip counts compiled too (:mod:`.sample_counts`: per block
    one run of doubles, one call for every block's counts); the same samples. ``None``: a block's
    doubles or spares ran out (flips far above their expected number): numpy's binomials then."""
    rngs = (block_generator(seed, plan.layer_index, b, generator) for b in blocks)
    got = sample_counts.draw_blocks(ev.inversion, ev.block_calls, rngs, len(blocks))
    res = None if got is None else sample_pass.run(ev.pass_args, *got, ev.block_calls * len(blocks), **paths)
    if res is None:
        return None
    words = CorruptedWords(res.residency, res.word, res.mask)
    return SampleBlock(res.call, res.is_input, words, res.bounds, ev.streams, res.flipped)


def _stacked_numpy(
    plan: FaultPlan, ev: EventTable, seed: int, blocks: range, generator: np.random.Generator | None
) -> SampleBlock:
    """:func:`sample_blocks_stacked` by numpy alone (where the compiled pass does not build)."""
    B, E = ev.block_calls, len(ev.slots)
    slots_b, ber_b = ev.block_rows
    owners, positions, flipped = [], [], []
    for bi, block in enumerate(blocks):
        rng = block_generator(seed, plan.layer_index, block, generator)
        counts = rng.binomial(slots_b, ber_b)
        flipped.append(np.add.reduceat(counts.reshape(B, E), ev.stream_start, axis=1))
        hit = np.flatnonzero(counts)
        reps = counts[hit]
        owner = np.repeat(hit, reps)  # row within the block: call · E + event
        nslots = ev.slots[owner % E]
        pos = uniform_slots(rng, nslots)
        if len(reps) and reps.max() > 1:  # without replacement inside each row: redraw repeats, as
            # sample_block_reference does, while this block's generator is where it left off
            _redraw_repeats(rng, pos, nslots, reps)
        owners.append(owner + bi * B * E)  # global row over the blocks: (block · B + call) · E + event
        positions.append(pos)
    owner, pos = np.concatenate(owners), np.concatenate(positions)
    return _corrupted_words(ev, owner, pos, np.concatenate(flipped), B * len(blocks))


def _flip_keys(ev: EventTable, owner: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word key (call · key span + the word's key) and bit of every flip."""
    call, row = np.divmod(owner, len(ev.slots))
    word, bit = np.divmod(pos % ev.tile_slots[row], ev.free_bits[row])
    return call * ev.key_span + ev.key_base[row] + word, bit


def _corrupted_words(
    ev: EventTable, owner: np.ndarray, pos: np.ndarray, flipped: np.ndarray, calls: int
) -> SampleBlock:
    """The samples of ``calls`` calls from their flips (global rows ``owner``, slots ``pos``):
    flips of one word merged (XOR), then split per call and tensor (views of shared arrays)."""
    key, bit = _flip_keys(ev, owner, pos)
    # equal values are equal flips: a value sort suffices; stable (timsort) runs through the
    # streams' already ascending runs of words (measured ~4× faster than quicksort on them)
    kb = np.sort(key * 8 + bit, kind="stable")
    key = kb >> 3
    mask = np.left_shift(np.uint8(1), (kb & 7).astype(np.uint8))
    if len(key) > 1:
        new = np.empty(len(key), bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        if not new.all():  # two flips of one word: XOR their masks (a bit flipped twice is intact)
            starts = np.flatnonzero(new)
            mask = np.bitwise_xor.reduceat(mask, starts)
            key = key[starts]
            nz = mask != 0
            key, mask = key[nz], mask[nz]
    call, k = np.divmod(key, ev.key_span)
    is_x = k >= ev.tensor_base[1]
    k -= np.where(is_x, ev.tensor_base[1], ev.tensor_base[0])
    words = np.where(is_x, ev.words[1], ev.words[0])
    res, word = np.divmod(k, words)
    bounds = np.searchsorted(call * 2 + is_x, np.arange(2 * calls + 1)).tolist()
    return SampleBlock(call, is_x, CorruptedWords(res, word, mask), bounds, ev.streams, flipped)


def block_generator(
    seed: int, layer_index: int, block: int, generator: np.random.Generator | None
) -> np.random.Generator:
    """``Generator(Philox(key=seed | layer_index << 64, counter=block << 128))``, reusing ``generator``."""
    if generator is None or not isinstance(generator.bit_generator, np.random.Philox):
        return np.random.Generator(np.random.Philox(key=seed | (layer_index << 64), counter=block << 128))
    m64 = (1 << 64) - 1
    generator.bit_generator.state = {
        "bit_generator": "Philox",
        "state": {
            "counter": np.array([0, 0, block & m64, (block >> 64) & m64], np.uint64),
            "key": np.array([seed, layer_index], np.uint64),
        },
        "buffer": np.zeros(4, np.uint64),
        "buffer_pos": 4,
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


def _redraw_repeats(rng: np.random.Generator, pos: np.ndarray, nslots: np.ndarray, reps: np.ndarray) -> None:
    """Redraw, in place, every position repeated inside its row (``reps``: flips per row, the rows'
    flips consecutive in ``pos``), until none is: each later copy of a repeat (in flip order) gets a
    fresh uniform slot, all of one pass drawn in flip order. After the first pass only the rows that
    got a redraw can hold a repeat, so later passes look at those alone."""
    start = np.cumsum(reps) - reps
    several = reps > 1
    begin, end = start[several], start[several] + reps[several]
    span = int(nslots.max()) if len(nslots) else 0
    while len(begin):
        idx = repeat_flags(pos, begin, end, span)  # compiled where TVM builds, else numpy (the same marks)
        if not len(idx):
            return
        pos[idx] = uniform_slots(rng, nslots[idx])
        rows = np.unique(np.searchsorted(begin, idx, "right") - 1)  # the rows that changed
        begin, end = begin[rows], end[rows]


def uniform_slots(rng: np.random.Generator, nslots: np.ndarray) -> np.ndarray:
    """Uniform slot indices in ``[0, nslots)`` (53-bit uniforms; bias below 2^-40 for our sizes)."""
    if not len(nslots):
        return np.zeros(0, np.int64)
    pos = (rng.random(len(nslots)) * nslots).astype(np.int64)
    return np.minimum(pos, nslots - 1)
