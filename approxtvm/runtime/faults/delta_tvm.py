"""The sparse fault deltas compiled with TVM: the inner loops of :mod:`~approxtvm.runtime.faults.delta_numpy`.

Three serial TIR kernels (:mod:`.delta_tir`) add into the flat int32 accumulators in place (int32
wrap-around, as the hardware's accumulator): ``weight_delta`` (each corrupted weight against every
output of its residency), ``input_delta`` (each corrupted input against every weight of its
residency) and ``input_cross`` (the exact correction where a corrupted input meets a corrupted
weight of the same PE, step and call). Their scalar arguments are one named record,
:class:`KernelArgs`, passed in field order; the arrays follow it. One kernel call covers the
samples of several layer calls whose inputs and accumulators are stacked along ``N``
(``delta_calls``). Results equal the numpy kernels bit for bit (tested).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from approxtvm.runtime.faults import input_perm
from approxtvm.runtime.faults.delta_numpy import FaultKernels, LayerArrays
from approxtvm.runtime.faults.geometry import DIM_INDEX as _D
from approxtvm.runtime.faults.geometry import TileGeometry
from approxtvm.runtime.faults.sampling import CorruptedWords, FaultSample, StackedSamples
from approxtvm.runtime.kernels.layout import Scratch

if TYPE_CHECKING:
    from approxtvm.runtime.executor import LayerProgram

__all__ = ["KernelArgs", "clear_kernel_cache", "compiled_kernels", "kernel_args", "tvm_kernels"]


@dataclass(frozen=True, slots=True)
class KernelArgs:
    """Scalar arguments of the compiled kernels, in their parameter order.

    Attributes
    ----------
    instances
        PE instances holding tiles.
    tile_n, tile_k, tile_c, tile_p, tile_q, tile_r, tile_s
        Extent of the PE-level tile in each loop dimension.
    tile_h, tile_w
        Height and width of the PE's input tile (padded coordinates, halo included).
    layer_c, layer_k, layer_p, layer_q, layer_r, layer_s
        Layer bounds (dense: P = Q = R = S = 1); ``layer_c`` per group (the weights' C axis),
        ``layer_k`` over all groups (the output's channel axis).
    stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left
        Convolution geometry (dense: 1, 1, 1, 1, 0, 0).
    in_h, in_w
        Unpadded input height and width (dense: 1, 1).
    zero_x
        The input zero point as a stored byte (what a padded tap holds).
    taps
        Number of (r, s, p, q) entries of the layer's tap table.
    tile_g
        Groups in the PE-level tile (1 for an ungrouped layer).
    group_k
        Output channels of one group (``layer_k`` when ungrouped).
    in_c
        Input channels over all groups (``layer_c`` is per group: the weights' C axis).
    layer_n
        Rows ``N`` of one layer call: the word of call ``cl`` touches rows ``cl · layer_n …``.
    plain_product
        1 when the table is the product of the unsigned bytes (``lut[a · 256 + b] = a · b``, the
        exact unsigned multiplier): ``input_delta`` multiplies instead of looking up (the same
        numbers, measured 27 % faster on ResNet-18); 0 otherwise.
    """

    instances: int
    tile_n: int
    tile_k: int
    tile_c: int
    tile_p: int
    tile_q: int
    tile_r: int
    tile_s: int
    tile_h: int
    tile_w: int
    layer_c: int
    layer_k: int
    layer_p: int
    layer_q: int
    layer_r: int
    layer_s: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    in_h: int
    in_w: int
    zero_x: int
    taps: int
    tile_g: int
    group_k: int
    in_c: int
    layer_n: int
    plain_product: int

    def values(self) -> tuple[int, ...]:
        """The fields in parameter order (what the packed call takes positionally)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


#: The unsigned product table, ``a · 256 + b → a · b``.
_PLAIN_PRODUCT = np.multiply.outer(np.arange(256, dtype=np.int32), np.arange(256, dtype=np.int32)).ravel()


def kernel_args(prog: LayerProgram, geom: TileGeometry, la: LayerArrays) -> KernelArgs:
    """The :class:`KernelArgs` of one layer."""
    s, m = prog.schedule.shape, prog.schedule.mapping
    dense = s.op == "dense"
    _, k, c, p, q, r, ss, _, _ = la.dims
    tg, tk, tc, tr, ts = geom.tile_dims("weight", m)
    tn, _, _, th, tw = geom.tile_dims("input", m)
    zx = int(np.array(prog.schedule.quant.input_zero_point).astype(prog.weight.dtype).view(np.uint8))
    return KernelArgs(
        instances=geom.instances,
        tile_n=tn,
        tile_k=tk,
        tile_c=tc,
        tile_p=int(geom.ext[_D["P"]]),
        tile_q=int(geom.ext[_D["Q"]]),
        tile_r=tr,
        tile_s=ts,
        tile_h=th,
        tile_w=tw,
        layer_c=c,
        layer_k=k,
        layer_p=p,
        layer_q=q,
        layer_r=r,
        layer_s=ss,
        stride_h=s.stride_h,
        stride_w=s.stride_w,
        dilation_h=s.dilation_h,
        dilation_w=s.dilation_w,
        pad_top=0 if dense else s.pad_top,
        pad_left=0 if dense else s.pad_left,
        in_h=1 if dense else s.h,
        in_w=1 if dense else s.w,
        zero_x=zx,
        taps=la.taps.shape[1],
        tile_g=tg,
        group_k=la.group_k,
        in_c=la.in_c,
        layer_n=la.dims[0],
        plain_product=int(np.array_equal(la.table, _PLAIN_PRODUCT)),
    )


def tvm_kernels() -> FaultKernels:
    """The inner loops compiled with TVM (serial loops, int32 wrap-around, in place); see
    :func:`compiled_kernels` for the per-process copy the runtime uses.

    Raises whatever TVM raises when it cannot build; the session then falls back to numpy.
    """
    import tvm_ffi

    from approxtvm.runtime.faults.delta_tir import build_library

    lib = build_library()
    fn_input, fn_weight, fn_cross = lib["input_delta"], lib["weight_delta"], lib["input_cross"]
    scratch = Scratch()  # the vectorised input path's (N, P, Q, K) buffers, kept across calls

    def dl(a: np.ndarray) -> Any:
        return tvm_ffi.from_dlpack(a, require_alignment=0)

    def prepare(prog: LayerProgram, geom: TileGeometry, la: LayerArrays) -> dict[str, Any]:
        """The layer's constant kernel arguments, converted once (the caller keeps them per layer)."""
        geom = geom.compute or geom  # uneven mappings: the deltas run on the PE's boxes
        arrays = {
            "fills_x": geom.fills["input"],
            "ends_x": geom.residency_ends("input"),
            "fills_w": geom.fills["weight"],
            "ends_w": geom.residency_ends("weight"),
            "ss": geom.step_start.ravel(),
            "io": geom.inst_off.ravel(),
            "tst": la.taps_start,
            "tln": la.taps_len,
            "taps": la.taps.ravel(),
        }
        # one weight copy: every (step, PE) reads the weights at offset 0 (see weight_copies)
        arrays["wsel"] = np.zeros(len(geom.step_start) * geom.instances, np.int64)
        st: dict[str, Any] = {k: dl(_compact(v, np.int64)) for k, v in arrays.items()}
        st["w"], st["lut"] = dl(_compact(la.wflat, np.uint8)), dl(_compact(la.table, np.int32))
        arrays["lut_t"] = _compact(la.table.reshape(256, 256).T.ravel(), np.int32)  # weight-major, for weight_delta
        st["lut_t"] = dl(arrays["lut_t"])
        st["record"] = kernel_args(prog, geom, la)
        st["args"] = st["record"].values()
        st["_keep"] = arrays  # the DLPack views above borrow these buffers
        st["weight_tile"] = geom.tile_dims("weight", prog.schedule.mapping)
        st["input_tile"] = geom.tile_dims("input", prog.schedule.mapping)
        steps = arrays["ends_x"] - arrays["fills_x"]
        st["perm_ppw"] = input_perm.products_per_word(st["record"], la.taps_len, steps)
        st["_wflat"] = la.wflat  # the weights the k-major copy below is of
        return st

    def perm(st: dict[str, Any], words: int, out: np.ndarray) -> input_perm.PermLayer | None:
        """The layer's vectorised input path if it runs here and pays for ``words`` corrupted input
        words into ``out`` (built on first use), else ``None`` (the scalar kernel)."""
        if not input_perm.perm_pays(words * st["perm_ppw"], out.size):
            return None
        if "perm" not in st:
            table = st["_keep"]["lut_t"].reshape(256, 256).T
            st["perm"] = input_perm.perm_layer(st["record"], table, st["_keep"]["taps"])
        return st["perm"]

    def kmajor(st: dict[str, Any], weights: np.ndarray) -> np.ndarray:
        """``weights`` as the vectorised kernel reads them (the layer's own weights converted once)."""
        r = st["record"]
        if weights is not st["_wflat"]:
            return input_perm.kmajor_weights(weights, r.layer_k, r.layer_c, r.layer_r, r.layer_s)
        if "perm_w" not in st:
            st["perm_w"] = input_perm.kmajor_weights(weights, r.layer_k, r.layer_c, r.layer_r, r.layer_s)
        return st["perm_w"]

    def delta_calls(
        x: np.ndarray,
        prog: LayerProgram,
        geom: TileGeometry,
        la: LayerArrays,
        prepared: object,
        samples: Sequence[FaultSample] | StackedSamples,
        out: np.ndarray,
        wflat: np.ndarray,
    ) -> None:
        _check_out(out)
        st: dict[str, Any] = prepared  # type: ignore[assignment]
        args = st["args"]
        xr = dl(_compact(np.asarray(x).view(np.uint8).ravel(), np.uint8))
        wd = st["w"] if wflat is la.wflat else dl(_compact(wflat, np.uint8))  # a matmul's weights: per call
        o = dl(out)
        cw, cw_call = _stacked(samples, 0)
        cx, cx_call = _stacked(samples, 1)
        if len(cw[0]):
            fills = (st["fills_w"], st["ends_w"], st["ss"], st["io"])
            fn_weight(*args, *map(dl, cw), dl(cw_call), *fills, xr, wd, st["lut_t"], o)
        if not len(cx[0]):
            return
        common = (*map(dl, cx), dl(cx_call), st["fills_x"], st["ends_x"], st["ss"], st["io"], st["tst"], st["tln"])
        cbase = dl(np.zeros(max(2, len(samples)), np.int64))  # every call reads the same weights
        fast = perm(st, len(cx[0]), out)
        if fast is not None:  # against the weights read: the layer's own, or a matmul's of this call
            wk = kmajor(st, wflat)
            input_perm.run_perm(fast, (*common, st["wsel"], cbase, xr), wk, out, scratch, dl)
        else:
            fn_input(*args, *common, st["taps"], st["wsel"], cbase, xr, wd, st["lut"], o)
        if len(cw[0]):
            bucket, wr = _weight_records(st, geom, la, wflat, cw, cw_call)
            fn_cross(*args, *common, st["taps"], xr, dl(bucket), dl(wr), st["lut"], o)
        _ = lib  # keep the module alive while its functions run

    def delta(
        x: np.ndarray,
        prog: LayerProgram,
        geom: TileGeometry,
        la: LayerArrays,
        prepared: object,
        sample: FaultSample,
        out: np.ndarray,
        wflat: np.ndarray,
    ) -> None:
        delta_calls(x, prog, geom, la, prepared, (sample,), out, wflat)

    def input_copies(
        x: np.ndarray,
        prepared: object,
        words: CorruptedWords,
        weights: np.ndarray,
        select: np.ndarray,
        out: np.ndarray,
        calls: np.ndarray | None = None,
        call_base: np.ndarray | None = None,
    ) -> None:
        _check_out(out)
        if not len(words):
            return
        st: dict[str, Any] = prepared  # type: ignore[assignment]
        if len(select) != len(st["_keep"]["wsel"]):
            raise ValueError("input_copies: one weight-copy offset per (step, PE) of the layer's geometry")
        if (calls is None) != (call_base is None) or (calls is not None and len(calls) != len(words)):
            raise ValueError("input_copies: give both the call of every word and every call's copy offset, or neither")
        xr = dl(_compact(np.asarray(x).view(np.uint8).ravel(), np.uint8))
        cx = (_compact(words.residency, np.int64), _compact(words.word, np.int64), _compact(words.mask, np.uint8))
        if calls is None or call_base is None:
            call, base = np.zeros(len(words), np.int64), np.zeros(2, np.int64)
        else:
            call, base = _compact(calls, np.int64), _compact(np.append(call_base, (0, 0)), np.int64)
        common = (*map(dl, cx), dl(call), st["fills_x"], st["ends_x"], st["ss"], st["io"], st["tst"], st["tln"])
        wsel, cbase = dl(_compact(select, np.int64)), dl(base)
        fast = perm(st, len(words), out)
        if fast is not None:
            input_perm.run_perm(fast, (*common, wsel, cbase, xr), kmajor(st, weights), out, scratch, dl)
        else:
            fn_input(
                *st["args"], *common, st["taps"], wsel, cbase, xr, dl(_compact(weights, np.uint8)), st["lut"], dl(out)
            )
        _ = lib  # keep the module alive while its functions run

    return FaultKernels("tvm", prepare, delta, delta_calls, input_copies)


@functools.lru_cache(maxsize=1)
def _compiled_kernels() -> FaultKernels:
    return tvm_kernels()


def compiled_kernels() -> FaultKernels:
    """:func:`tvm_kernels`, compiled once per process (they hold no layer or model data)."""
    return _compiled_kernels()


def clear_kernel_cache() -> None:
    """Forget the compiled kernels of :func:`compiled_kernels` (benchmarks measure cold builds)."""
    _compiled_kernels.cache_clear()


def _stacked(samples: Sequence[FaultSample] | StackedSamples, tensor: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """``(residency, word, mask)`` of one tensor's corrupted words over ``samples``, and the call
    of every word (its position in ``samples``), compact for DLPack."""
    if isinstance(samples, StackedSamples):
        cw, call = (samples.weight, samples.weight_call) if tensor == 0 else (samples.input, samples.input_call)
        words = (_compact(cw.residency, np.int64), _compact(cw.word, np.int64), _compact(cw.mask, np.uint8))
        return words, _compact(call, np.int64)
    parts = [s.weight if tensor == 0 else s.input for s in samples]
    if len(parts) == 1:
        cw = parts[0]
        words = (_compact(cw.residency, np.int64), _compact(cw.word, np.int64), _compact(cw.mask, np.uint8))
        return words, np.zeros(len(cw), np.int64)
    lens = [len(cw) for cw in parts]
    words = (
        np.concatenate([cw.residency for cw in parts]).astype(np.int64, copy=False),
        np.concatenate([cw.word for cw in parts]).astype(np.int64, copy=False),
        np.concatenate([cw.mask for cw in parts]).astype(np.uint8, copy=False),
    )
    return words, np.repeat(np.arange(len(parts), dtype=np.int64), lens)


def _weight_records(
    st: dict[str, Any],
    geom: TileGeometry,
    la: LayerArrays,
    wflat: np.ndarray,
    cw: tuple[np.ndarray, ...],
    call: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The corrupted weights as ``input_cross`` reads them: records ``k r s wo wn first-step
    end-step`` sorted by (call, PE, global input channel), and that key of every record (ascending,
    then two sentinels above every key). The kernel finds each corrupted input word's records by
    binary search in the keys, so the cost follows the corrupted words, not calls × PEs × channels
    (the search ran here in numpy until session 8: ≈ 15 array passes over the input words, 2.2 ms
    of a digits_resnet batch-64 run of ≈ 17 ms)."""
    res, word, mask = cw
    _, _, C, _, _, R, S, _, _ = la.dims
    Ct, Kg = la.in_c, la.group_k
    n_inst = geom.instances
    _, tk, tc, tr, ts = st["weight_tile"]
    j, i = np.divmod(res, n_inst)
    f0 = geom.fills["weight"][j]
    s0 = geom.step_start[f0] + geom.inst_off[i]
    g = s0[:, _D["G"]] + word // (ts * tr * tc * tk)
    k = g * Kg + s0[:, _D["K"]] + (word // (ts * tr * tc)) % tk
    c = s0[:, _D["C"]] + (word // (ts * tr)) % tc
    r = s0[:, _D["R"]] + (word // ts) % tr
    t = s0[:, _D["S"]] + word % ts
    wr = np.empty((len(res), 7), np.int64)
    wr[:, 0], wr[:, 1], wr[:, 2] = k, r, t
    wr[:, 3] = wflat[((k * C + c) * R + r) * S + t]
    wr[:, 4] = wr[:, 3] ^ mask
    wr[:, 5], wr[:, 6] = f0, geom.residency_ends("weight")[j]
    bucket = (call * n_inst + i) * Ct + g * C + c  # (call, PE, global input channel), as input_cross computes it
    order = np.argsort(bucket, kind="stable")
    keys = np.empty(len(bucket) + 2, np.int64)
    keys[: len(bucket)] = bucket[order]
    keys[len(bucket) :] = np.iinfo(np.int64).max
    return keys, np.ascontiguousarray(wr[order]).ravel()


def _check_out(out: np.ndarray) -> None:
    if out.dtype != np.int32 or out.strides != (out.itemsize,) or not out.flags.writeable:
        raise ValueError("the compiled fault kernels accumulate in place into a writeable compact 1-D int32 array")


def _compact(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A writeable, compact 1-D array for DLPack (numpy keeps odd strides on 1-element views)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.writeable or a.strides != (a.itemsize,):
        a = np.array(a, dtype=dtype, copy=True)
    return a
