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
        return _build()["block_pass"]
    except Exception:  # no TVM / LLVM failure: the numpy path gives the same words
        return None


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    # Three TVM 0.27 pitfalls shape this code (each gave wrong samples or failed to build while it was
    # written): a loop nested in a loop that does not start at 0 computed wrong values (so every
    # loop here starts at 0), ``0 - x`` on uint64 folded to 0 (so ``~x + 1``), and buffers declared
    # over ``work`` with let-bound sizes did not build (so their sizes are spelled out).
    # scalar state in a local int64 array (TIR values are immutable)
    ACC, NA, NN, PTR, MK, M, K, X, J, I, SRC, DST, WD, CUR, MSK, NOUT, F0, H = range(18)
    one, zero64 = T.int64(1), T.int64(0)
    u0, u1, u63 = T.uint64(0), T.uint64(1), T.uint64(63)
    HASH = T.uint64(0x5851F42D4C957F2D)  # odd: multiplicative hashing

    def low_bit(x: Any) -> Any:  # index of the lowest set bit of a non-zero uint64
        return u63 - T.clz(T.bitwise_and(x, T.bitwise_not(x) + u1))

    @T.macro
    def emit(out: Any, v: Any, c: Any, res: Any, isx: Any, word: Any, mask: Any) -> None:
        out[0][v[NOUT]] = c
        out[1][v[NOUT]] = res
        out[2][v[NOUT]] = word
        out[3][v[NOUT]] = isx
        out[4][v[NOUT]] = T.Cast("uint8", mask)
        v[NOUT] = v[NOUT] + one

    @T.prim_func(s_tir=True)
    def block_pass(nblk: T.int64, E: T.int64, S: T.int64, G: T.int64, B: T.int64, gsplit: T.int64, n: T.int64,
                   zb: T.int64, bits: T.int64, few: T.int64, dense: T.int64, counts_h: T.handle, u_h: T.handle,
                   blk_h: T.handle, st_h: T.handle, rcp_h: T.handle, work_h: T.handle, bytes_h: T.handle,
                   zero_h: T.handle):  # fmt: skip
        T.func_attr({"global_symbol": "block_pass", "tirx.noalias": True})
        n1, n2, n3, n4 = T.int64(), T.int64(), T.int64(), T.int64()
        n5, n6, n7, n8 = T.int64(), T.int64(), T.int64(), T.int64()
        counts = T.match_buffer(counts_h, (n1,), "int64", align=1)  # flips per (call, row)
        u = T.match_buffer(u_h, (n2,), "float64", align=1)  # uniforms
        blk = T.match_buffer(blk_h, (n3,), "int64", align=1)  # per block: first and end uniform
        st = T.match_buffer(st_h, (n4,), "int64", align=1)  # LayerArgs.table
        rcp = T.match_buffer(rcp_h, (n5,), "float64", align=1)  # LayerArgs.reciprocals
        work = T.match_buffer(work_h, (n6,), "int64", align=1)  # scratch and outputs (see arguments)
        byt = T.match_buffer(bytes_h, (n7,), "uint8", align=1)  # is_input, mask of every word
        zero = T.match_buffer(zero_h, (n8,), "uint64", align=1)  # the zeroed table (left zeroed)
        # the int64 arrays in work, placed as arguments() places them
        fstart = T.decl_buffer(((nblk * B * E) + 2,), "int64", data=work.data, elem_offset=0)  # first flip of every row
        pos = T.decl_buffer(
            (n + 2,), "int64", data=work.data, elem_offset=(nblk * B * E) + 2
        )  # slot, then word · 8 + bit
        act = T.decl_buffer(
            ((nblk * B * E) + 2,), "int64", data=work.data, elem_offset=(nblk * B * E) + n + 4
        )  # rows of a redraw pass
        sbuf = T.decl_buffer(
            (2 * n + 2,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + n + 6
        )  # marks, sorts
        hset = T.decl_buffer((4 * n + 8,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + 3 * n + 8)  # slots
        ocall = T.decl_buffer((n + 2,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + 7 * n + 16)
        ores = T.decl_buffer((n + 2,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + 8 * n + 18)
        oword = T.decl_buffer((n + 2,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + 9 * n + 20)
        fl = T.decl_buffer(
            ((nblk * B) * S + 2,), "int64", data=work.data, elem_offset=2 * (nblk * B * E) + 10 * n + 22
        )  # per stream
        bnd = T.decl_buffer(
            (2 * (nblk * B) + 3,),
            "int64",
            data=work.data,
            elem_offset=2 * (nblk * B * E) + 10 * n + (nblk * B) * S + 24,
        )
        stat = T.decl_buffer(
            (2,),
            "int64",
            data=work.data,
            elem_offset=2 * (nblk * B * E) + 10 * n + (nblk * B) * S + 2 * (nblk * B) + 27,
        )
        oisx = T.decl_buffer((n + 2,), "uint8", data=byt.data, elem_offset=0)
        omask = T.decl_buffer((n + 2,), "uint8", data=byt.data, elem_offset=n + 2)
        out = (ocall, ores, oword, oisx, omask)
        v = T.decl_buffer((18,), "int64", scope="local")
        vu = T.decl_buffer((2,), "uint64", scope="local")
        # table: slots 0, tile slots E, free bits 2E, residency 3E, key order 4E, streams 5E, groups 5E+S+1
        GS = 5 * E + S + 1
        # 1. first flip of every row; flips per (call, stream)
        v[ACC] = zero64
        for g in range(nblk * B * E):
            fstart[g] = v[ACC]
            v[ACC] = v[ACC] + counts[g]
        fstart[nblk * B * E] = v[ACC]
        for c in range(nblk * B):
            for s in range(S):
                v[ACC] = zero64
                for r_ in range(st[5 * E + s + 1] - st[5 * E + s]):
                    v[ACC] = v[ACC] + counts[c * E + st[5 * E + s] + r_]
                fl[c * S + s] = v[ACC]
        stat[1] = zero64
        for b in range(nblk):  # 2. and 3., block by block: each block has its own uniforms
            v[F0] = fstart[b * B * E]
            uoff = blk[2 * b] - v[F0]  # uniform of flip j: uoff + j
            for c in range(B):  # 2. slots, as numpy's min(floor(u · slots), slots - 1)
                for r in range(E):
                    g = (b * B + c) * E + r
                    ns = st[r]
                    nsf = T.Cast("float64", st[r])
                    for j_ in range(fstart[g + 1] - fstart[g]):
                        pos[fstart[g] + j_] = T.min(T.Cast("int64", u[uoff + fstart[g] + j_] * nsf), ns - one)
            # 3. repeats: passes over the rows with several flips, then over the rows a pass changed
            v[PTR] = blk[2 * b] + fstart[(b + 1) * B * E] - v[F0]
            v[NA] = zero64
            for gg in range(B * E):
                if counts[b * B * E + gg] > one:
                    act[v[NA]] = b * B * E + gg
                    v[NA] = v[NA] + one
            while v[NA] > zero64:
                v[NN] = zero64
                for a in range(v[NA]):
                    g = act[a]
                    j0 = fstart[g]
                    nf = fstart[g + 1] - j0
                    ns = st[T.floormod(g, E)]
                    if nf <= few:  # few flips: each against the earlier ones (no branches)
                        for j_ in range(nf):
                            v[X] = zero64
                            for i_ in range(j_):
                                v[X] = v[X] + T.Cast("int64", pos[j0 + i_] == pos[j0 + j_])
                            sbuf[j_] = v[X]
                    elif ns <= bits:  # a bit per slot of the row in the zeroed table, cleared after
                        for j_ in range(nf):
                            w = T.shift_right(pos[j0 + j_], T.int64(6))
                            bit = T.shift_left(u1, T.Cast("uint64", T.bitwise_and(pos[j0 + j_], T.int64(63))))
                            sbuf[j_] = T.Cast("int64", T.bitwise_and(zero[w], bit) != u0)
                            zero[w] = T.bitwise_or(zero[w], bit)
                        for j_ in range(nf):
                            zero[T.shift_right(pos[j0 + j_], T.int64(6))] = u0
                    else:  # rows too wide for the table: a hash set of their slots (open addressing)
                        hb = T.int64(64) - T.Cast("int64", T.clz(T.Cast("uint64", 2 * nf - one)))  # 2^hb >= 2 nf
                        for k in range(T.shift_left(one, hb)):
                            hset[k] = zero64
                        for j_ in range(nf):
                            key = pos[j0 + j_] + one  # 0: an empty entry
                            v[H] = T.Cast(
                                "int64", T.shift_right(T.Cast("uint64", key) * HASH, T.Cast("uint64", T.int64(64) - hb))
                            )
                            while hset[v[H]] != zero64 and hset[v[H]] != key:
                                v[H] = T.bitwise_and(v[H] + one, T.shift_left(one, hb) - one)
                            if hset[v[H]] == key:
                                sbuf[j_] = one
                            else:
                                sbuf[j_] = zero64
                                hset[v[H]] = key
                    v[MK] = zero64
                    for j_ in range(nf):  # the marked copies, in flip order, from the next uniforms
                        if sbuf[j_] != zero64:
                            if v[PTR] < blk[2 * b + 1]:
                                pos[j0 + j_] = T.min(T.Cast("int64", u[v[PTR]] * T.Cast("float64", ns)), ns - one)
                            else:
                                stat[1] = one  # out of spare uniforms: the caller takes numpy's path
                            v[PTR] = v[PTR] + one
                            v[MK] = one
                    if v[MK] != zero64:
                        act[v[NN]] = g
                        v[NN] = v[NN] + one
                v[NA] = v[NN]
                if stat[1] != zero64:
                    v[NA] = zero64
            # each slot to word · 8 + bit in its tile: (slot mod tile slots) divmod free bits, by
            # reciprocals (64-bit divisions cost more than the rest); the quotients are off by at
            # most one (slots < 2^52) and corrected
            for c in range(B):
                for r in range(E):
                    g = (b * B + c) * E + r
                    ts = st[E + r]
                    fb = st[2 * E + r]
                    rts = rcp[r]
                    rfb = rcp[E + r]
                    if fb == T.int64(8):  # word · 8 + bit is the slot within the tile
                        if st[r] > ts:  # several hops or reads: the slot modulo the tile's slots
                            for j_ in range(fstart[g + 1] - fstart[g]):
                                p = pos[fstart[g] + j_]
                                w1 = p - T.Cast("int64", T.Cast("float64", p) * rts) * ts
                                pos[fstart[g] + j_] = (
                                    w1 + T.Select(w1 < zero64, ts, zero64) - T.Select(w1 >= ts, ts, zero64)
                                )
                    else:
                        for j_ in range(fstart[g + 1] - fstart[g]):
                            p = pos[fstart[g] + j_]
                            w1 = p - T.Cast("int64", T.Cast("float64", p) * rts) * ts
                            within = w1 + T.Select(w1 < zero64, ts, zero64) - T.Select(w1 >= ts, ts, zero64)
                            q2 = T.Cast("int64", T.Cast("float64", within) * rfb)
                            word = (
                                q2
                                - T.Select(within - q2 * fb < zero64, one, zero64)
                                + T.Select(within - q2 * fb >= fb, one, zero64)
                            )
                            pos[fstart[g] + j_] = word * T.int64(8) + within - word * fb
        # 4. words: call by call, tile copy by tile copy in key order (weight copies first)
        v[NOUT] = zero64
        bnd[0] = zero64
        for c in range(nblk * B):
            for q in range(G):
                if q == gsplit:
                    bnd[2 * c + 1] = v[NOUT]
                v[M] = zero64
                for k_ in range(st[GS + q + 1] - st[GS + q]):
                    v[M] = v[M] + counts[c * E + st[4 * E + st[GS + q] + k_]]
                if v[M] > zero64:
                    r0 = st[4 * E + st[GS + q]]
                    words = T.floordiv(st[E + r0], st[2 * E + r0])
                    res = st[3 * E + r0]
                    isx = T.if_then_else(q >= gsplit, T.uint8(1), T.uint8(0))
                    if words <= dense * v[M]:
                        # dense: XOR into the table (a byte per word, eight words per entry; a bit
                        # per used entry above), then walk the set bits in order, clearing them
                        for k_ in range(st[GS + q + 1] - st[GS + q]):
                            r = st[4 * E + st[GS + q] + k_]
                            for j_ in range(fstart[c * E + r + 1] - fstart[c * E + r]):
                                val = pos[fstart[c * E + r] + j_]
                                ch = T.shift_right(val, T.int64(6))
                                sh = T.bitwise_and(T.shift_right(val, T.int64(3)), T.int64(7)) * T.int64(8)
                                zero[ch] = T.bitwise_xor(
                                    zero[ch], T.shift_left(u1, T.Cast("uint64", sh + T.bitwise_and(val, T.int64(7))))
                                )
                                zero[zb + T.shift_right(ch, T.int64(6))] = T.bitwise_or(
                                    zero[zb + T.shift_right(ch, T.int64(6))],
                                    T.shift_left(u1, T.Cast("uint64", T.bitwise_and(ch, T.int64(63)))),
                                )
                        for bw in range(T.shift_right(words + T.int64(511), T.int64(9))):
                            vu[0] = zero[zb + bw]
                            zero[zb + bw] = u0
                            while vu[0] != u0:
                                ch = bw * T.int64(64) + T.Cast("int64", low_bit(vu[0]))
                                vu[0] = T.bitwise_and(vu[0], vu[0] - u1)
                                vu[1] = zero[ch]
                                zero[ch] = u0
                                while vu[1] != u0:
                                    bb = T.shift_right(low_bit(vu[1]), T.uint64(3))
                                    emit(
                                        out,
                                        v,
                                        c,
                                        res,
                                        isx,
                                        ch * T.int64(8) + T.Cast("int64", bb),
                                        T.shift_right(vu[1], bb * T.uint64(8)),
                                    )
                                    vu[1] = T.bitwise_and(
                                        vu[1], T.bitwise_not(T.shift_left(T.uint64(255), bb * T.uint64(8)))
                                    )
                    else:  # sparse: the flips' word · 8 + bit, sorted, then merged
                        v[K] = zero64
                        for k_ in range(st[GS + q + 1] - st[GS + q]):
                            r = st[4 * E + st[GS + q] + k_]
                            for j_ in range(fstart[c * E + r + 1] - fstart[c * E + r]):
                                sbuf[v[K]] = pos[fstart[c * E + r] + j_]
                                v[K] = v[K] + one
                        m = v[M]
                        for k in range(T.floordiv(m + T.int64(15), T.int64(16))):  # insertion sorts, runs of 16
                            for i_ in range(T.min(k * 16 + 16, m) - k * 16 - 1):
                                v[X] = sbuf[k * 16 + 1 + i_]
                                v[J] = k * 16 + i_
                                while v[J] >= k * 16 and sbuf[T.max(v[J], k * 16)] > v[X]:
                                    sbuf[v[J] + one] = sbuf[v[J]]
                                    v[J] = v[J] - one
                                sbuf[v[J] + one] = v[X]
                        v[SRC] = zero64
                        v[DST] = n + one
                        v[WD] = T.int64(16)
                        while v[WD] < m:  # bottom-up merges between the two halves of sbuf
                            wd = v[WD]
                            src = v[SRC]
                            dst = v[DST]
                            for k in range(T.floordiv(m + 2 * wd - one, 2 * wd)):
                                mid = T.min(k * 2 * wd + wd, m)
                                hi = T.min(k * 2 * wd + 2 * wd, m)
                                v[I] = k * 2 * wd
                                v[J] = mid
                                for o_ in range(hi - k * 2 * wd):
                                    if v[I] < mid and (v[J] >= hi or sbuf[src + v[I]] <= sbuf[src + v[J]]):
                                        sbuf[dst + k * 2 * wd + o_] = sbuf[src + v[I]]
                                        v[I] = v[I] + one
                                    else:
                                        sbuf[dst + k * 2 * wd + o_] = sbuf[src + v[J]]
                                        v[J] = v[J] + one
                            v[SRC] = dst
                            v[DST] = src
                            v[WD] = wd * 2
                        v[CUR] = T.int64(-1)
                        v[MSK] = zero64
                        for k in range(m):
                            key = T.shift_right(sbuf[v[SRC] + k], T.int64(3))
                            bit = T.shift_left(one, T.bitwise_and(sbuf[v[SRC] + k], T.int64(7)))
                            if key != v[CUR]:
                                if v[CUR] >= zero64 and v[MSK] != zero64:
                                    emit(out, v, c, res, isx, v[CUR], v[MSK])
                                v[CUR] = key
                                v[MSK] = bit
                            else:
                                v[MSK] = T.bitwise_xor(v[MSK], bit)
                        if v[CUR] >= zero64 and v[MSK] != zero64:
                            emit(out, v, c, res, isx, v[CUR], v[MSK])
            if gsplit >= G:
                bnd[2 * c + 1] = v[NOUT]
            bnd[2 * c + 2] = v[NOUT]
        stat[0] = v[NOUT]

    mod = tvm.IRModule({"block_pass": block_pass})
    return tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
