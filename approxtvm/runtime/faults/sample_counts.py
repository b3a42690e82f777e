"""numpy's binomial flip counts of a block's event rows, compiled: the same numbers from the block's
stream of doubles, with no numpy call per block but the stream's own.

``Generator.binomial(n, p)`` takes, for ``0 < p ≤ 0.5`` and ``n · p ≤ 30`` (every event row at the
bit error rates of the models), numpy's inversion algorithm, which reads only the generator's doubles
(``Generator.random``'s): ``U = next double, X = 0, px = (1 − p)^n``; while ``U > px``: ``X += 1``;
if ``X`` passes ``min(n, n·p + 10·√(n·p·(1 − p) + 1))``, ``X = 0, px = (1 − p)^n`` and a fresh
``U``; else ``U −= px`` and ``px = (n − X + 1) · p · px / (X · (1 − p))``. The block's flips' uniforms
(:mod:`.sample_pass`) are the doubles that follow. So a block draws, here, one run of doubles
(``Generator.random``, long enough for its rows, its flips far above their expected number, and the
redraws' spares), and :func:`draw_counts` runs the loop of every row over it in one compiled call,
for all blocks at once, each operation as numpy's C code does it (``(1 − p)^n`` and the bound
computed once per layer with the C library's ``exp``, ``log`` and ``sqrt``, the functions numpy
calls). Every count and every later uniform is numpy's (tested against ``Generator.binomial``).

Why: an array ``Generator.binomial`` call costs ≈ 8 µs before its first row (its argument checks
and broadcasting), and a digits run at batch 64 samples 15-54 blocks of one call each (≈ 0.2-0.65 ms
of a 5-15 ms run). Layers with a row on another branch of numpy's algorithm (``n · p > 30``, e.g.
heavily faulty ResNet-50 genomes) keep numpy's draws (:attr:`InversionRows.applies`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InversionRows", "draw_blocks", "draw_counts", "inversion_rows", "kernel"]

#: numpy's switch from inversion to its BTPE algorithm (``n · p`` above it).
INVERSION_MAX_NP = 30.0


@dataclass(frozen=True, eq=False)
class InversionRows:
    """A layer's event rows (one call's) as :func:`draw_counts` reads them (built once per layer).

    Attributes
    ----------
    n, p, q, qn, bound
        Per row: ``n`` (int64), ``p``, ``1 − p``, ``(1 − p)^n`` (float64) and the restart bound
        (int64), as numpy computes them.
    applies
        Whether every row takes numpy's inversion branch (``0 < p ≤ 0.5``, ``n > 0``, ``n · p ≤ 30``).
    expected
        Expected flips of one call (``Σ n · p``).
    """

    n: np.ndarray
    p: np.ndarray
    q: np.ndarray
    qn: np.ndarray
    bound: np.ndarray
    applies: bool
    expected: float

    def doubles(self, calls: int) -> int:
        """Doubles a block of ``calls`` calls draws: one per row, some for restarts, its flips' far
        above their expected number (about 9 standard deviations), and the redraws' spares."""
        rows = calls * len(self.n)
        mean = calls * self.expected
        flips = int(mean + 9.0 * math.sqrt(mean) + 16)
        return rows + rows // 64 + 16 + flips + flips // 16 + 64


def inversion_rows(slots: np.ndarray, ber: np.ndarray) -> InversionRows:
    """:class:`InversionRows` of rows with ``slots`` trials (binomial ``n``) and ``ber`` (``p``)."""
    n = np.ascontiguousarray(slots, np.int64)
    p = np.ascontiguousarray(ber, np.float64)
    applies = bool(len(n) and np.all((p > 0.0) & (p <= 0.5) & (n > 0) & (p * n <= INVERSION_MAX_NP)))
    q = 1.0 - p
    # per distinct (n, p) (rows share a few: a stream's rows differ by their hops or reads), as numpy's
    # C code: qn = exp(n * log(q)); np = n * p; bound = (int64) MIN(n, np + 10 sqrt(np q + 1)), with
    # the C library's functions (Python's math; numpy's own vectorised exp and log may round otherwise)
    pairs, inverse = np.unique(np.stack([n, p.view(np.int64)], axis=1), axis=0, return_inverse=True)
    qn_u, bound_u = np.empty(len(pairs), np.float64), np.empty(len(pairs), np.int64)
    for i, (ni, pbits) in enumerate(pairs.tolist()):
        pi = float(np.int64(pbits).view(np.float64))
        qi, npq = 1.0 - pi, ni * pi
        qn_u[i] = math.exp(ni * math.log(qi))
        bound_u[i] = int(min(ni, npq + 10.0 * math.sqrt(npq * qi + 1)))
    qn, bound = qn_u[inverse.reshape(-1)], bound_u[inverse.reshape(-1)]
    return InversionRows(n, p, q, qn, bound, applies, float(np.dot(n, p)) if len(n) else 0.0)


def draw_counts(
    rows: InversionRows, calls: int, doubles: np.ndarray, block_doubles: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The flip counts of ``len(block_doubles)`` blocks of ``calls`` calls each, from their doubles.

    Parameters
    ----------
    rows
        The layer's :func:`inversion_rows` (``rows.applies`` must hold).
    calls
        Calls per block.
    doubles
        float64, every block's run of ``Generator.random`` doubles end to end.
    block_doubles
        int64 ``(blocks, 2)``: the first and the end index of every block's doubles.

    Returns
    -------
    (counts, first) or None
        int64 counts per (block, call, row), in that order (``Generator.binomial`` of the block's
        rows), and per block the index of its first double after them (its flips' first uniform);
        ``None`` where a block's doubles ran out (or the kernel does not build here).
    """
    fn = kernel()
    if fn is None or not rows.applies:
        return None
    import tvm_ffi

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    blocks = len(block_doubles)
    counts = np.empty(max(2, blocks * calls * len(rows.n)), np.int64)
    first = np.empty(max(2, blocks) + 1, np.int64)  # the last entry: the status (1: out of doubles)
    first[-1] = 0
    arrays = (doubles, np.ascontiguousarray(block_doubles, np.int64).reshape(-1), rows.n, rows.p, rows.q, rows.qn)
    fn(blocks, calls, len(rows.n), *map(dl, arrays), dl(rows.bound), dl(counts), dl(first))
    if first[-1]:
        return None
    return counts[: blocks * calls * len(rows.n)], first[:blocks]


def draw_blocks(
    rows: InversionRows, calls: int, generators: Iterable[np.random.Generator], blocks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each of ``blocks`` blocks' doubles from its generator (``generators`` yields them in block
    order, each used before the next is made: they may be one generator reset per block), then every
    block's counts (:func:`draw_counts`).

    Returns
    -------
    (counts, doubles, uniforms) or None
        The counts per (block, call, row), the doubles, and per block the first and the end index of
        its flips' uniforms and spares in them (what :func:`.sample_pass.run` reads); ``None`` where
        :func:`draw_counts` gives none.
    """
    per = rows.doubles(calls)
    doubles = np.empty(blocks * per, np.float64)
    for b, rng in enumerate(generators):
        rng.random(out=doubles[b * per : (b + 1) * per])
    bounds = np.empty((blocks, 2), np.int64)
    bounds[:, 0] = np.arange(blocks) * per
    bounds[:, 1] = bounds[:, 0] + per
    got = draw_counts(rows, calls, doubles, bounds)
    if got is None:
        return None
    counts, first = got
    bounds[:, 0] = first
    return counts, doubles, bounds


_LOCK = threading.Lock()


def kernel() -> Any:
    """The compiled loop (``None`` where TVM cannot build it here: numpy's draws then)."""
    with _LOCK:  # one build per process
        return _kernel()


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    try:
        return _build()["binomial_counts"]
    except Exception:  # no TVM / LLVM failure: numpy's binomials, the same numbers
        return None


def _build() -> Any:
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    one, zero = T.int64(1), T.int64(0)

    @T.prim_func(s_tir=True)
    def binomial_counts(
        nblk: T.int64,
        B: T.int64,
        E: T.int64,
        u_h: T.handle,
        blk_h: T.handle,
        n_h: T.handle,
        p_h: T.handle,
        q_h: T.handle,
        qn_h: T.handle,
        bound_h: T.handle,
        counts_h: T.handle,
        first_h: T.handle,
    ):
        # numpy's inversion loop per row, rows in the block's order, each block on its own doubles;
        # the operations in numpy's order, none fused (no product feeds a sum)
        T.func_attr({"global_symbol": "binomial_counts", "tirx.noalias": True})
        nu, nb, ne, nc, nf = T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        u = T.match_buffer(u_h, (nu,), "float64", align=1)
        blk = T.match_buffer(blk_h, (nb,), "int64", align=1)  # per block: first and end double
        n = T.match_buffer(n_h, (ne,), "int64", align=1)
        p = T.match_buffer(p_h, (ne,), "float64", align=1)
        q = T.match_buffer(q_h, (ne,), "float64", align=1)
        qn = T.match_buffer(qn_h, (ne,), "float64", align=1)
        bound = T.match_buffer(bound_h, (ne,), "int64", align=1)
        counts = T.match_buffer(counts_h, (nc,), "int64", align=1)
        first = T.match_buffer(first_h, (nf,), "int64", align=1)  # per block, then the status last
        fv = T.decl_buffer((2,), "float64", scope="local")  # U, px
        iv = T.decl_buffer((2,), "int64", scope="local")  # X, next double
        for b in range(nblk):
            iv[1] = blk[2 * b]
            for g in range(B * E):
                r = T.floormod(g, E)
                iv[0] = zero
                fv[1] = qn[r]
                fv[0] = u[T.min(iv[1], nu - one)]
                iv[1] = iv[1] + one
                while fv[0] > fv[1]:
                    iv[0] = iv[0] + one
                    if iv[0] > bound[r]:  # numpy's restart: a fresh double
                        iv[0] = zero
                        fv[1] = qn[r]
                        fv[0] = u[T.min(iv[1], nu - one)]
                        iv[1] = iv[1] + one
                    else:
                        fv[0] = fv[0] - fv[1]
                        fv[1] = (T.Cast("float64", n[r] - iv[0] + one) * p[r] * fv[1]) / (
                            T.Cast("float64", iv[0]) * q[r]
                        )
                    if iv[1] > blk[2 * b + 1]:  # out of doubles: stop (the caller draws numpy's way)
                        fv[0] = T.float64(-1.0)
                        first[nf - one] = one
                if iv[1] > blk[2 * b + 1]:
                    first[nf - one] = one
                counts[b * B * E + g] = iv[0]
            first[b] = iv[1]

    mod = tvm.IRModule({"binomial_counts": binomial_counts})
    return tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
