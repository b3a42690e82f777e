"""The compiled block pass of :mod:`.sample_pass` (its TVMScript source and build).

Kept apart from the pass's host side (argument packing, scratch, the numpy path's contract) so that
each file has one job; :func:`.sample_pass.compiled` builds it once per process.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build"]


def build() -> Any:
    """The compiled library holding ``block_pass`` (raises where TVM or LLVM cannot build it)."""
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
