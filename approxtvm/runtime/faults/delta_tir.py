"""The TIR source of the compiled fault-delta kernels (:mod:`.delta_tvm` holds their arguments and calls).

Three serial kernels add into flat int32 accumulators in place (int32 wrap-around, as the
hardware's accumulator): ``weight_delta`` (each corrupted weight against every output of its
residency), ``input_delta`` (each corrupted input against every weight of its residency) and
``input_cross`` (the exact correction where a corrupted input meets a corrupted weight of the same
PE, step and call). Their scalar parameters are the fields of :class:`.delta_tvm.KernelArgs`, in
order; the arrays follow. Every corrupted word carries its layer call ``cl``: the accumulators and
inputs of several calls are stacked along ``N`` (call ``c`` holds rows ``c · layer_n …``), so one
kernel call adds the deltas of a whole group of calls.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_library"]


def build_library() -> Any:
    """The three kernels compiled for the host CPU (a TVM runtime module with ``input_delta``,
    ``weight_delta`` and ``input_cross``); raises whatever TVM raises when it cannot build."""
    import tvm
    from tvm.script import tirx as T  # noqa: N812 (TVMScript convention)

    @T.prim_func(s_tir=True)
    def input_delta(
        instances: T.int64,
        tile_n: T.int64,
        tile_k: T.int64,
        tile_c: T.int64,
        tile_p: T.int64,
        tile_q: T.int64,
        tile_r: T.int64,
        tile_s: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
        layer_c: T.int64,
        layer_k: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_r: T.int64,
        layer_s: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        zero_x: T.int64,
        taps: T.int64,
        tile_g: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        layer_n: T.int64,
        plain_product: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        cl_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        tap_h: T.handle,
        wsel_h: T.handle,
        cbase_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        lut_h: T.handle,
        out_h: T.handle,
    ):
        # each corrupted input word against every weight of the PE during its residency
        T.func_attr({"global_symbol": "input_delta", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nws, ncb, nx, nw, no = (
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
        )
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        cl = T.match_buffer(cl_h, (ne,), "int64", align=1)  # call of the word (row block cl · layer_n)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        tap = T.match_buffer(tap_h, (ntp,), "int64", align=1)
        # per (step, PE): offset of the weight copy that PE holds at that step (0: one copy, ``w``)
        wsel = T.match_buffer(wsel_h, (nws,), "int64", align=1)
        # per call: offset of that call's weight copies (0: the copies of ``w``'s start, every call alike)
        cbase = T.match_buffer(cbase_h, (ncb,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "uint8", align=1)
        lut = T.match_buffer(lut_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            ww = word[e] % tile_w
            hh = (word[e] // tile_w) % tile_h
            cc = (word[e] // (tile_w * tile_h)) % tile_c
            gg = (word[e] // (tile_w * tile_h * tile_c)) % tile_g
            nn = word[e] // (tile_w * tile_h * tile_c * tile_g)
            f0 = fills[jf]
            n = ss[f0 * 8 + 0] + io[i * 8 + 0] + nn + cl[e] * layer_n
            g = ss[f0 * 8 + 7] + io[i * 8 + 7] + gg
            c = ss[f0 * 8 + 2] + io[i * 8 + 2] + cc
            p0 = ss[f0 * 8 + 3] + io[i * 8 + 3]
            q0 = ss[f0 * 8 + 4] + io[i * 8 + 4]
            r0 = ss[f0 * 8 + 5] + io[i * 8 + 5]
            s0 = ss[f0 * 8 + 6] + io[i * 8 + 6]
            hu = p0 * stride_h + r0 * dilation_h + hh - pad_top
            wu = q0 * stride_w + s0 * dilation_w + ww - pad_left
            inside = T.int64(0) <= hu and hu < in_h and T.int64(0) <= wu and wu < in_w
            xo = T.if_then_else(
                inside,
                T.Cast(
                    "int64",
                    x[T.if_then_else(inside, ((n * in_c + g * layer_c + c) * in_h + hu) * in_w + wu, T.int64(0))],
                ),
                zero_x,
            )
            xn = T.bitwise_xor(xo, T.Cast("int64", mask[e]))
            hw = hh * tile_w + ww
            for t in range(tln[hw]):
                tt = tst[hw] + t
                wb = ((c * layer_r + r0 + tap[tt]) * layer_s) + s0 + tap[taps + tt]
                ob = (n * layer_k * layer_p + p0 + tap[2 * taps + tt]) * layer_q + q0 + tap[3 * taps + tt]
                for st in range(ends[jf] - f0):
                    k0 = g * group_k + ss[(f0 + st) * 8 + 1] + io[i * 8 + 1]
                    wc = cbase[cl[e]] + wsel[(f0 + st) * instances + i] + wb
                    if plain_product != T.int64(0):  # lut[a · 256 + b] = a · b: multiply (same numbers)
                        for k in range(tile_k):
                            wv = T.Cast("int64", w[wc + (k0 + k) * layer_c * layer_r * layer_s])
                            oi = ob + (k0 + k) * layer_p * layer_q
                            out[oi] = out[oi] + T.Cast("int32", (xn - xo) * wv)
                    else:
                        for k in range(tile_k):
                            wv = T.Cast("int64", w[wc + (k0 + k) * layer_c * layer_r * layer_s])
                            oi = ob + (k0 + k) * layer_p * layer_q
                            out[oi] = out[oi] + (lut[xn * 256 + wv] - lut[xo * 256 + wv])

    @T.prim_func(s_tir=True)
    def weight_delta(
        instances: T.int64,
        tile_n: T.int64,
        tile_k: T.int64,
        tile_c: T.int64,
        tile_p: T.int64,
        tile_q: T.int64,
        tile_r: T.int64,
        tile_s: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
        layer_c: T.int64,
        layer_k: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_r: T.int64,
        layer_s: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        zero_x: T.int64,
        taps: T.int64,
        tile_g: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        layer_n: T.int64,
        plain_product: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        cl_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        x_h: T.handle,
        w_h: T.handle,
        lut_t_h: T.handle,
        out_h: T.handle,
    ):
        # each corrupted weight word against every output of the PE during its residency
        T.func_attr({"global_symbol": "weight_delta", "tirx.noalias": True})
        ne, nf, nss, nio, nx, nw, no = T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64(), T.int64()
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        cl = T.match_buffer(cl_h, (ne,), "int64", align=1)  # call of the word (row block cl · layer_n)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        w = T.match_buffer(w_h, (nw,), "uint8", align=1)
        lut_t = T.match_buffer(lut_t_h, (65536,), "int32", align=1)  # lut_t[w * 256 + x] = M(x, w)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            f0 = fills[jf]
            g = ss[f0 * 8 + 7] + io[i * 8 + 7] + word[e] // (tile_s * tile_r * tile_c * tile_k)
            k = g * group_k + ss[f0 * 8 + 1] + io[i * 8 + 1] + (word[e] // (tile_s * tile_r * tile_c)) % tile_k
            c = ss[f0 * 8 + 2] + io[i * 8 + 2] + (word[e] // (tile_s * tile_r)) % tile_c
            r = ss[f0 * 8 + 5] + io[i * 8 + 5] + (word[e] // tile_s) % tile_r
            s_ = ss[f0 * 8 + 6] + io[i * 8 + 6] + word[e] % tile_s
            wo = T.Cast("int64", w[((k * layer_c + c) * layer_r + r) * layer_s + s_])
            # rows of the transposed table (lut_t[w · 256 + x] = M(x, w)): every product of this
            # word reads 2 × 1 KiB, not 2 × 256 lines of the x-major table
            rn = T.bitwise_xor(wo, T.Cast("int64", mask[e])) * 256
            ro = wo * 256
            dz = lut_t[rn + zero_x] - lut_t[ro + zero_x]  # a padded tap (the zero point's byte)
            dw = T.bitwise_xor(wo, T.Cast("int64", mask[e])) - wo  # plain_product: M(x, w') - M(x, w) = x (w' - w)
            for st in range(ends[jf] - f0):
                n0 = ss[(f0 + st) * 8 + 0] + io[i * 8 + 0] + cl[e] * layer_n
                p0 = ss[(f0 + st) * 8 + 3] + io[i * 8 + 3]
                q0 = ss[(f0 + st) * 8 + 4] + io[i * 8 + 4]
                # the tile's q inside the input (wu = (q0 + qb) · stride + s · dilation − pad in [0, W)):
                # [qlo, qhi), clamped to the tile; the taps left and right of it read the padding
                wq = s_ * dilation_w - pad_left + q0 * stride_w
                qlo = T.min(T.max(T.floordiv(stride_w - T.int64(1) - wq, stride_w), T.int64(0)), tile_q)
                qhi = T.max(T.min(T.floordiv(in_w - T.int64(1) - wq, stride_w) + T.int64(1), tile_q), qlo)
                for nb in range(tile_n):
                    for pb in range(tile_p):
                        hu = (p0 + pb) * stride_h + r * dilation_h - pad_top
                        ob = (((n0 + nb) * layer_k + k) * layer_p + p0 + pb) * layer_q + q0
                        if T.int64(0) <= hu and hu < in_h:
                            xb = (((n0 + nb) * in_c + g * layer_c + c) * in_h + hu) * in_w + wq
                            if plain_product != T.int64(0):  # a multiply per product, no branch (same numbers)
                                for qa in range(qlo):
                                    out[ob + qa] = out[ob + qa] + dz
                                for qi in range(qhi - qlo):
                                    out[ob + qlo + qi] = out[ob + qlo + qi] + T.Cast(
                                        "int32", dw * T.Cast("int64", x[xb + (qlo + qi) * stride_w])
                                    )
                                for qz in range(tile_q - qhi):
                                    out[ob + qhi + qz] = out[ob + qhi + qz] + dz
                            else:
                                for qb in range(tile_q):
                                    wu = wq + qb * stride_w
                                    inside = T.int64(0) <= wu and wu < in_w
                                    xo = T.if_then_else(
                                        inside,
                                        T.Cast("int64", x[T.if_then_else(inside, xb + qb * stride_w, T.int64(0))]),
                                        zero_x,
                                    )
                                    out[ob + qb] = out[ob + qb] + (lut_t[rn + xo] - lut_t[ro + xo])
                        else:
                            for qb in range(tile_q):
                                out[ob + qb] = out[ob + qb] + dz

    @T.prim_func(s_tir=True)
    def input_cross(
        instances: T.int64,
        tile_n: T.int64,
        tile_k: T.int64,
        tile_c: T.int64,
        tile_p: T.int64,
        tile_q: T.int64,
        tile_r: T.int64,
        tile_s: T.int64,
        tile_h: T.int64,
        tile_w: T.int64,
        layer_c: T.int64,
        layer_k: T.int64,
        layer_p: T.int64,
        layer_q: T.int64,
        layer_r: T.int64,
        layer_s: T.int64,
        stride_h: T.int64,
        stride_w: T.int64,
        dilation_h: T.int64,
        dilation_w: T.int64,
        pad_top: T.int64,
        pad_left: T.int64,
        in_h: T.int64,
        in_w: T.int64,
        zero_x: T.int64,
        taps: T.int64,
        tile_g: T.int64,
        group_k: T.int64,
        in_c: T.int64,
        layer_n: T.int64,
        plain_product: T.int64,
        res_h: T.handle,
        word_h: T.handle,
        mask_h: T.handle,
        cl_h: T.handle,
        fills_h: T.handle,
        ends_h: T.handle,
        ss_h: T.handle,
        io_h: T.handle,
        tst_h: T.handle,
        tln_h: T.handle,
        tap_h: T.handle,
        x_h: T.handle,
        bk_h: T.handle,
        wr_h: T.handle,
        lut_h: T.handle,
        out_h: T.handle,
    ):
        # the cross term only: corrupted inputs against the corrupted weights of the same PE and step
        T.func_attr({"global_symbol": "input_cross", "tirx.noalias": True})
        ne, nf, nss, nio, nhw, ntp, nx, ncs, nwr, no = (
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
            T.int64(),
        )
        res = T.match_buffer(res_h, (ne,), "int64", align=1)
        word = T.match_buffer(word_h, (ne,), "int64", align=1)
        mask = T.match_buffer(mask_h, (ne,), "uint8", align=1)
        cl = T.match_buffer(cl_h, (ne,), "int64", align=1)  # call of the word (row block cl · layer_n)
        fills = T.match_buffer(fills_h, (nf,), "int64", align=1)
        ends = T.match_buffer(ends_h, (nf,), "int64", align=1)
        ss = T.match_buffer(ss_h, (nss,), "int64", align=1)
        io = T.match_buffer(io_h, (nio,), "int64", align=1)
        tst = T.match_buffer(tst_h, (nhw,), "int64", align=1)
        tln = T.match_buffer(tln_h, (nhw,), "int64", align=1)
        tap = T.match_buffer(tap_h, (ntp,), "int64", align=1)
        x = T.match_buffer(x_h, (nx,), "uint8", align=1)
        # per weight record, ascending: its (call, PE, global input channel); then two sentinels above all
        bk = T.match_buffer(bk_h, (ncs,), "int64", align=1)
        wr = T.match_buffer(wr_h, (nwr,), "int64", align=1)  # per weight record: k r s wo wn begin end
        lut = T.match_buffer(lut_h, (65536,), "int32", align=1)
        out = T.match_buffer(out_h, (no,), "int32", align=1)
        span = T.alloc_buffer((4,), "int64")  # binary searches' bounds
        for e in range(ne):
            i = res[e] % instances
            jf = res[e] // instances
            ww = word[e] % tile_w
            hh = (word[e] // tile_w) % tile_h
            f0 = fills[jf]
            g = ss[f0 * 8 + 7] + io[i * 8 + 7] + (word[e] // (tile_w * tile_h * tile_c)) % tile_g
            c = g * layer_c + ss[f0 * 8 + 2] + io[i * 8 + 2] + (word[e] // (tile_w * tile_h)) % tile_c  # global
            # the records of its (call, PE, channel): [span[0], span[2]) by two binary searches
            key = (cl[e] * instances + i) * in_c + c
            span[0] = T.int64(0)
            span[1] = ncs
            while span[0] < span[1]:  # first record >= key
                if bk[(span[0] + span[1]) // 2] < key:
                    span[0] = (span[0] + span[1]) // 2 + 1
                else:
                    span[1] = (span[0] + span[1]) // 2
            span[2] = span[0]
            span[3] = ncs
            while span[2] < span[3]:  # first record > key
                if bk[(span[2] + span[3]) // 2] <= key:
                    span[2] = (span[2] + span[3]) // 2 + 1
                else:
                    span[3] = (span[2] + span[3]) // 2
            if span[2] > span[0]:  # corrupted weights in its (call, PE, channel)
                n = ss[f0 * 8 + 0] + io[i * 8 + 0] + word[e] // (tile_w * tile_h * tile_c * tile_g) + cl[e] * layer_n
                p0 = ss[f0 * 8 + 3] + io[i * 8 + 3]
                q0 = ss[f0 * 8 + 4] + io[i * 8 + 4]
                r0 = ss[f0 * 8 + 5] + io[i * 8 + 5]
                s0 = ss[f0 * 8 + 6] + io[i * 8 + 6]
                hu = p0 * stride_h + r0 * dilation_h + hh - pad_top
                wu = q0 * stride_w + s0 * dilation_w + ww - pad_left
                inside = T.int64(0) <= hu and hu < in_h and T.int64(0) <= wu and wu < in_w
                xo = T.if_then_else(
                    inside,
                    T.Cast("int64", x[T.if_then_else(inside, ((n * in_c + c) * in_h + hu) * in_w + wu, T.int64(0))]),
                    zero_x,
                )
                xn = T.bitwise_xor(xo, T.Cast("int64", mask[e])) * 256
                xo2 = xo * 256
                hw = hh * tile_w + ww
                for t in range(tln[hw]):
                    tt = tst[hw] + t
                    for st in range(ends[jf] - f0):
                        for b in range(span[2] - span[0]):
                            wi = (span[0] + b) * 7
                            if (
                                wr[wi + 1] == r0 + tap[tt]
                                and wr[wi + 2] == s0 + tap[taps + tt]
                                and wr[wi + 5] <= f0 + st
                                and f0 + st < wr[wi + 6]
                            ):
                                oi = (
                                    ((n * layer_k + wr[wi]) * layer_p + p0 + tap[2 * taps + tt]) * layer_q
                                    + q0
                                    + tap[3 * taps + tt]
                                )
                                out[oi] = out[oi] + (
                                    (lut[xn + wr[wi + 4]] - lut[xn + wr[wi + 3]])
                                    - (lut[xo2 + wr[wi + 4]] - lut[xo2 + wr[wi + 3]])
                                )

    mod = tvm.IRModule({"input_delta": input_delta, "weight_delta": weight_delta, "input_cross": input_cross})
    lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    return lib
