"""The sampler's bookkeeping after its draws, for a whole block of layer calls in one compiled call.

:func:`approxtvm.runtime.faults.sampling.sample_blocks_stacked` draws, per block, the flip count of
every (call, event row) (numpy's binomials) and the uniforms of the flips' slots (numpy's
uniforms, a few spare ones for redraws). :func:`run` then does everything else in one pass of
compiled code, where numpy takes about forty array calls per block:

1. flips per (call, stream) and the first flip of every row;
2. every flip's slot from its uniform (``min(⌊u · slots⌋, slots − 1)``, numpy's arithmetic);
3. repeated slots inside a row redrawn from the block's next uniforms, in numpy's order (every
   later copy of a slot in flip order, one pass after the other, a pass only over the rows the
   previous one changed); a row's repeats are found by comparing each flip with the earlier ones
   (few flips), a bit per slot in a zeroed table, or a hash set (rows wider than the table);
4. every slot turned into ``word · 8 + bit`` within its tile (by reciprocals: no division);
5. flips turned into words: the rows of one tile copy (one per source) merged, the flips of one
   word XORed into one mask (a bit flipped twice is intact), zero masks dropped, the words in
   (call, tensor, residency, word) order with the bounds of every (call, tensor). Each tile copy
   on its own: through the zeroed table (a byte per word, a bitmap of the used entries walked in
   order) unless the tile is large for its flips, then by a merge sort.

The result equals the numpy path's element for element (tested, every path); if a block's spare
uniforms run out (far more redraws than a block needs below rates near 1) :func:`run` says so and
the caller draws again. Where TVM does not build, :func:`compiled` is ``None`` and numpy does it
all. Measured (ResNet-18, one image, load ≈ 3): BER 1e-4 (70 000 flips) 7.2 → 3.8 ms of sampling,
a heavily faulty genome (965 000 flips) 53 → 18 ms, of which numpy's binomials and uniforms 7.5.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DENSE_WORDS_PER_FLIP",
    "FEW_FLIPS",
    "LayerArgs",
    "PassResult",
    "arguments",
    "compiled",
    "layer_args",
    "many_spare_uniforms",
    "run",
    "spare_uniforms",
]


@dataclass(frozen=True, eq=False)
class LayerArgs:
    """A layer's event table as the compiled pass reads it (built once per layer).

    Attributes
    ----------
    table
        int64, concatenated: per row slots, tile slots, free bits, residency (each ``rows`` long),
        the rows in word-key order (``rows``), the first row of every stream (``streams + 1``) and
        the first entry of every tile copy in that order (``groups + 1``).
    reciprocals
        float64: per row ``1 / tile slots``, then per row ``1 / free bits``.
    rows, streams, groups
        Event rows, streams and tile copies (groups of rows with one word-key base).
    first_input_group
        The first tile copy of the input tensor (``groups`` if none).
    bitmap_at, bitset_slots, scratch_words
        The zeroed uint64 table: from 0 a bit per slot of rows of at most ``bitset_slots`` slots
        (wider rows, e.g. read-mode SRAM rows of heavily reused words, use a hash set), or a byte per
        word of the widest tile (eight per entry), from ``bitmap_at`` a bit per entry of the latter;
        ``scratch_words`` in all.
    """

    table: np.ndarray
    reciprocals: np.ndarray
    rows: int
    streams: int
    groups: int
    first_input_group: int
    bitmap_at: int
    bitset_slots: int
    scratch_words: int


@dataclass(frozen=True, eq=False)
class PassResult:
    """Corrupted words of the block's calls, in (call, tensor, residency, word) order."""

    call: np.ndarray
    is_input: np.ndarray
    residency: np.ndarray
    word: np.ndarray
    mask: np.ndarray
    bounds: list[int]  # as SampleBlock.bounds
    flipped: np.ndarray  # (calls, streams)


def layer_args(
    slots: np.ndarray,
    tile_slots: np.ndarray,
    free_bits: np.ndarray,
    key_base: np.ndarray,
    stream_start: np.ndarray,
    tensor_base: tuple[int, int],
    words: tuple[int, int],
) -> LayerArgs:
    """:class:`LayerArgs` of an event table (its columns, see ``sampling.EventTable``)."""
    rows = len(slots)
    is_x = key_base >= tensor_base[1]
    residency = np.where(is_x, (key_base - tensor_base[1]) // words[1], (key_base - tensor_base[0]) // words[0])
    order = np.argsort(key_base, kind="stable")  # tile copies in key order, each copy's sources together
    ko = key_base[order]
    group_start = np.flatnonzero(np.r_[True, ko[1:] != ko[:-1]]) if rows else np.zeros(0, np.int64)
    first_input = int(np.searchsorted(ko[group_start], tensor_base[1])) if rows else 0
    table = np.concatenate(
        [slots, tile_slots, free_bits, residency, order, stream_start, [rows], group_start, [rows]]
    ).astype(np.int64)
    widest_tile = int(max(words)) if rows else 0
    bitmap_at = widest_tile // 8 + 2
    bitset_slots = min(int(slots.max()) if rows else 0, 64 * _BITSET_WORDS)
    reciprocals = np.concatenate([1.0 / tile_slots, 1.0 / free_bits]).astype(np.float64)
    return LayerArgs(
        table,
        reciprocals,
        rows,
        len(stream_start),
        len(group_start),
        first_input,
        bitmap_at,
        bitset_slots,
        max(bitmap_at + widest_tile // 512, bitset_slots // 64) + 2,
    )


def spare_uniforms(flips: int) -> int:
    """Uniforms drawn beyond a block's flips for its redraws. At the bit error rates of the models a
    block redraws about one flip in a thousand (measured ResNet-18, 965 000 flips: 622 redraws)."""
    return flips // 16 + 64


def many_spare_uniforms(flips: int) -> int:
    """:func:`spare_uniforms` for a block that ran out of them (bit error rates near 1)."""
    return 4 * flips + 1024


#: Rows with at most this many flips look for repeats by comparing each flip with the earlier ones
#: (no branches); larger rows through a hash set of their slots.
FEW_FLIPS = 8
#: A tile copy's flips become words through the zeroed table when the tile has at most this many
#: words per flip (the table's bitmap scan then costs at most 8 steps per flip), else by sorting.
DENSE_WORDS_PER_FLIP = 4096
#: Size cap of the zeroed table's bit per slot (uint64 words: 512 KiB), zeroed on every call.
_BITSET_WORDS = 1 << 16


def run(
    args: LayerArgs,
    counts: np.ndarray,
    uniforms: np.ndarray,
    block_uniforms: np.ndarray,
    calls: int,
    *,
    few: int = FEW_FLIPS,
    dense: int = DENSE_WORDS_PER_FLIP,
    bits: int | None = None,
) -> PassResult | None:
    """The corrupted words of ``calls`` consecutive calls, sampled in ``len(block_uniforms)`` blocks.

    Parameters
    ----------
    args
        The layer's :func:`layer_args`.
    counts
        int64 flips per (call, row), calls in order (the blocks' binomials, concatenated).
    uniforms
        The blocks' uniforms, concatenated: per block its flips' uniforms, then its spares.
    block_uniforms
        int64 ``(blocks, 2)``: the first and the end index of every block's uniforms.
    calls
        Calls over all blocks.
    few, dense, bits
        :data:`FEW_FLIPS`, :data:`DENSE_WORDS_PER_FLIP` and the widest row marked in the zeroed table
        (default ``args.bitset_slots``): the tests move them to reach every path.

    Returns
    -------
    PassResult or None
        The words, or ``None`` if a block needed more redraws than it has spare uniforms.
    """
    lib = compiled()
    assert lib is not None
    with _SCRATCH.lend(_work_words(args, counts, calls)) as work:
        call, outputs = arguments(
            args, counts, uniforms, block_uniforms, calls, few=few, dense=dense, bits=bits, work=work
        )
        lib(*call)
        out, out8, flipped, bounds, status = outputs
        if status[1]:
            return None
        m = int(status[0])
        # copied out of the lent scratch: the words only (a block is kept while its layer runs)
        # one call: every word's call is 0 (untouched calloc pages, not a copy of 8 bytes per word)
        words = np.array(out[1:, :m]) if calls == 1 else np.array(out[:, :m])
        return PassResult(
            np.zeros(m, np.int64) if calls == 1 else words[0],
            out8[0, :m].view(bool),
            words[-2],
            words[-1],
            out8[1, :m],
            bounds.tolist(),
            np.array(flipped).reshape(calls, args.streams),
        )


def arguments(
    args: LayerArgs,
    counts: np.ndarray,
    uniforms: np.ndarray,
    block_uniforms: np.ndarray,
    calls: int,
    *,
    few: int = FEW_FLIPS,
    dense: int = DENSE_WORDS_PER_FLIP,
    bits: int | None = None,
    work: np.ndarray | None = None,
) -> tuple[list[Any], tuple[np.ndarray, ...]]:
    """The compiled pass's arguments for :func:`run`, and its outputs (words, masks, flips per
    stream, bounds, status). Every array has at least two elements: the FFI rejects the strides of
    empty numpy arrays. ``work``: int64 scratch of at least :func:`_work_words` elements (its first
    ones are used; the outputs are views of it), else a fresh one."""
    n = int(counts.sum()) if len(counts) else 0
    blocks = len(block_uniforms)
    r, streams = len(counts), args.streams
    size = _work_words(args, counts, calls)  # block_pass's layout
    work = np.empty(size, np.int64) if work is None else work[:size]
    o = 2 * r + 7 * n + 16
    out = work[o : o + 3 * (n + 2)].reshape(3, n + 2)  # call, residency, word
    o += 3 * (n + 2)
    flipped = work[o : o + calls * streams]
    o += calls * streams + 2
    bounds = work[o : o + 2 * calls + 1]
    status = work[o + 2 * calls + 3 : o + 2 * calls + 5]
    status[1] = 0
    out8 = np.empty((2, n + 2), np.uint8)  # is_input, mask
    call = [
        blocks,
        args.rows,
        streams,
        args.groups,
        calls // blocks,
        args.first_input_group,
        n,
        args.bitmap_at,
        args.bitset_slots if bits is None else min(bits, args.bitset_slots),
        few,
        dense,
        _two(counts),
        _two(uniforms),
        block_uniforms.reshape(-1),
        args.table,
        args.reciprocals,
        work,
        out8.reshape(-1),
        np.zeros(args.scratch_words, np.uint64),
    ]
    return call, (out, out8, flipped, bounds, status)


def _work_words(args: LayerArgs, counts: np.ndarray, calls: int) -> int:
    """int64 elements of the pass's scratch and outputs (``block_pass``'s layout)."""
    n = int(counts.sum()) if len(counts) else 0
    return 2 * len(counts) + 10 * n + calls * args.streams + 2 * calls + 29


class _Scratch:
    """The pass's int64 scratch, kept between calls and lent to one caller at a time.

    At tens of millions of flips per call the scratch is ~80 bytes per flip; a fresh one per call
    cost more in page faults than the pass itself (ResNet-50, input buffers at 0.5 V: 6.7 s of
    passes per batch of 8 with fresh arrays, 1.2 s on warm ones). A concurrent caller (a threaded
    worker) gets a fresh array; the kept one is dropped when a call needs more than
    :data:`_SCRATCH_MAX_WORDS` (then each such call allocates its own).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: np.ndarray | None = None
        self._busy = False

    @contextlib.contextmanager
    def lend(self, words: int) -> Iterator[np.ndarray]:
        buf = None
        with self._lock:
            mine = not self._busy and words <= _SCRATCH_MAX_WORDS
            if mine:
                self._busy = True
                if self._kept is None or len(self._kept) < words:
                    self._kept = None  # free the old one before the larger one is faulted in
                    self._kept = np.empty(max(words, 1 << 16), np.int64)
                buf = self._kept
        try:
            yield buf if buf is not None else np.empty(words, np.int64)
        finally:
            if mine:
                with self._lock:
                    self._busy = False


#: Largest kept scratch (int64 elements: 2 GiB).
_SCRATCH_MAX_WORDS = 1 << 28
_SCRATCH = _Scratch()


def _two(a: np.ndarray) -> np.ndarray:
    """``a`` with at least two elements."""
    return a if len(a) >= 2 else np.append(a, np.zeros(2, a.dtype))


_BUILD_LOCK = threading.Lock()  # models may sample from several threads (e.g. a threaded Dask worker)


def compiled() -> Any:
    """The pass compiled for this machine (``None`` where TVM cannot build it: numpy then)."""
    with _BUILD_LOCK:  # one build per process
        return _compiled()


@functools.lru_cache(maxsize=1)
def _compiled() -> Any:
    try:
        from approxtvm.runtime.faults.sample_pass_tir import build  # TVM is imported when first needed

        return build()["block_pass"]
    except Exception:  # no TVM / LLVM failure: the numpy path gives the same words
        return None
