"""A whole low-rank conv layer as one onnxruntime session: activation maps, im2col, the GEMMs of
:mod:`~approxtvm.runtime.kernels.lowrank_gemm`, the zero-point correction and the requantization.

:func:`~approxtvm.runtime.kernels.lowrank_gemm.gemm_sums` runs only the GEMMs in onnxruntime; the
passes between them (the maps and im2col of every block, the window sums of ``z_w Σ x``, the int32
corrections, the requantization) ran in numpy on one core, about as long as the GEMMs themselves
on ResNet-50. Here every pass is a node of the layer's own session, so onnxruntime runs all of
them in C++ on its thread pool, with no Python between them:

* ``Transpose`` to NHWC and ``Pad`` with the activation zero point (padded taps go through the
  maps like any other tap);
* the activation maps: ``BitShift`` / ``BitwiseAnd`` / ``BitwiseXor`` for the shift-and-mask maps
  (bytes in, bytes out), else one ``Gather`` from a 256-entry table per map; the maps of a GEMM are
  concatenated along the channels, ``(N, Hp, Wp, B·C)``;
* im2col as one ``Gather`` of whole pixels (runs of ``B·C`` bytes) with a constant index array
  ``(N·P·Q, R·S)``, so the columns come out in (r, s, block, c) order (the weight rows are
  permuted to match);
* ``MatMulInteger`` against the prepacked weights (as in :mod:`.lowrank_gemm`);
* the plan's window-sum columns combined by an int32 ``MatMul`` with their coefficients, the
  layer's ``z_w Σ x`` from a ``MatMulInteger`` with a ones column (channel sums) gathered over the
  window, and every per-channel constant (plan constant, ``z_x Σ w − taps·z_x·z_w``, bias) as one
  int32 vector;
* the requantization: ``Cast`` to float32 and ``Mul`` by ``s_x·s_w/s_y`` (``DequantizeLinear``
  with a per-channel scale does the same in one node but measured 5× slower: a scalar loop),
  ``QuantizeLinear`` with scale 1 and ``z_y`` (clamp, round half to even, add ``z_y``: the same float32 operations as
  :class:`~approxtvm.runtime.executor.Requantizer`), and the ``Transpose`` back to NCHW on bytes.

Every int32 operation wraps modulo 2^32 like the numpy ring arithmetic it replaces, so the output
bytes equal the kernel-by-kernel path's (tested against it and against a plain numpy integer
convolution). Applies to ungrouped convs whose factorisation has divisor 1 (int32 accumulators);
other layers keep the kernel-by-kernel path.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.intconv import OrtSessionCache
from approxtvm.runtime.kernels.lowrank_gemm import GemmPlan


@dataclass(frozen=True)
class LayerQuant:
    """The integer constants of a layer's accumulators and requantization.

    Attributes
    ----------
    input_zero_point
        ``z_x`` (the pad code), as the activation code (signed for int8 activations).
    weight_zero_points
        ``z_w``: int64 (1,) or (K,).
    channel_const
        int64 (K,): every per-channel term subtracted from the products (``z_x Σ w − taps·z_x·z_w``).
    bias
        int64 (K,): bias codes minus their zero point (zeros without a bias).
    scale
        float32 (K,): ``s_x · s_w / s_y``.
    output_zero_point
        ``z_y``.
    output_dtype
        ``"uint8"`` or ``"int8"``; ``"int32"``: the layer outputs its int32 accumulators (products
        minus the zero-point terms, wrapped), without bias, scale and output zero point (ignored),
        for callers that change accumulators before requantizing them (fault injection).
    signed
        Activations are int8 codes.
    """

    input_zero_point: int
    weight_zero_points: np.ndarray
    channel_const: np.ndarray
    bias: np.ndarray
    scale: np.ndarray
    output_zero_point: int
    output_dtype: str
    signed: bool


def _wrap32(v: np.ndarray) -> np.ndarray:
    """int64 values as int32, wrapped modulo 2^32 (the accumulator ring)."""
    return ((np.asarray(v, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def window_index(g: ConvGeometry) -> np.ndarray:
    """int64 (N·P·Q, R·S): the flat pixel index of the padded NHWC input under every filter tap of
    every output position, rows in (n, p, q) order and taps in (r, s) order."""
    n = np.arange(g.n)[:, None, None, None, None]
    p = np.arange(g.p)[None, :, None, None, None]
    q = np.arange(g.q)[None, None, :, None, None]
    r = np.arange(g.r)[None, None, None, :, None]
    s = np.arange(g.s)[None, None, None, None, :]
    row = p * g.stride_h + r * g.dilation_h
    col = q * g.stride_w + s * g.dilation_w
    idx = (n * g.hp + row) * g.wp + col
    return idx.reshape(g.n * g.p * g.q, g.r * g.s).astype(np.int64)


class _Graph:
    """A small ONNX graph under construction (unique names, initializers)."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        from onnx import numpy_helper

        nm = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), nm))
        return nm

    def op(self, op: str, inputs: list[str], stem: str = "t", **attrs: object) -> str:
        from onnx import helper

        out = self.name(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def build_layer_model(plan: GemmPlan, g: ConvGeometry, quant: LayerQuant) -> Any:
    """The ONNX model of the whole layer after the activation maps.

    Inputs: ``m0, m1, …`` uint8 (N·Hp·Wp, B·C), the maps of each GEMM of ``plan`` on the padded
    NHWC input (pixel-major, blocks then channels), and when ``z_w ≠ 0`` ``xs`` (N·Hp·Wp, C), the
    padded NHWC activation codes. Output ``y`` (N, K, P, Q): the requantized codes, or the int32
    accumulators when ``quant.output_dtype`` is ``"int32"``.
    ``g`` is the layer's geometry with its pads; ``plan`` must have int32 accumulators (divisor 1).
    """
    from onnx import TensorProto, helper

    k = plan.const_k.shape[0]
    npq = g.n * g.p * g.q
    pix = g.n * g.hp * g.wp
    gr = _Graph()
    inputs = []
    unit = g.r == g.s == 1 and g.strides == (1, 1) and (g.p, g.q) == (g.hp, g.wp)
    idx = None if unit else gr.const(window_index(g), "win")
    taps_rs = g.r * g.s

    def i64(*v: int) -> str:
        return gr.const(np.array(v, np.int64))

    acc: str | None = None
    col_terms: list[str] = []  # (N·P·Q, 1) int32 terms added to every channel
    gi = 0
    for call in plan.calls:
        for gm in call.gemms:
            nb = len(gm.maps)
            name = f"m{gi}"
            gi += 1
            inputs.append(helper.make_tensor_value_info(name, TensorProto.UINT8, [pix, nb * g.c]))
            xcol = name
            if idx is not None:  # im2col: whole pixels (runs of B·C bytes) under every tap
                xcol = gr.op("Reshape", [gr.op("Gather", [name, idx], axis=0), i64(npq, taps_rs * nb * g.c)])
            # the plan's rows are (block, r, s, c); the columns here are (r, s, block, c)
            cols_w = gm.w_mat.shape[1]
            w = gm.w_mat.reshape(nb, g.r, g.s, g.c, cols_w).transpose(1, 2, 0, 3, 4).reshape(-1, cols_w)
            ins = [xcol, gr.const(np.ascontiguousarray(w), "w")]
            if gm.signed:  # weights stored as g − 128: the zero point −128 restores g
                ins += [gr.const(np.array(0, np.uint8)), gr.const(np.array(-128, np.int8))]
            y = gr.op("MatMulInteger", ins)
            if gm.main_cols:
                main = y if cols_w == gm.main_cols else gr.op("Slice", [y, i64(0), i64(k), i64(1)])
                if call.scale != 1:
                    main = gr.op("Mul", [main, gr.const(_wrap32(np.array(call.scale)))])
                acc = main if acc is None else gr.op("Add", [acc, main])
            if gm.extra_coefs:
                ex = gr.op("Slice", [y, i64(gm.main_cols), i64(cols_w), i64(1)])
                coefs = _wrap32(np.array(gm.extra_coefs, np.int64)).reshape(-1, 1)
                col_terms.append(gr.op("MatMul", [ex, gr.const(coefs)]))
    zw = np.asarray(quant.weight_zero_points, np.int64).reshape(-1)
    if zw.any():
        code = TensorProto.INT8 if quant.signed else TensorProto.UINT8
        inputs.append(helper.make_tensor_value_info("xs", code, [pix, g.c]))
        ones = np.ones((g.c, 1), np.int8 if quant.signed else np.uint8)
        sums = gr.op("MatMulInteger", ["xs", gr.const(ones)])  # channel sums (N·Hp·Wp, 1)
        sums = _window_sum(gr, sums, g, idx, 128 if quant.signed else 255)
        if zw.size == 1:
            col_terms.append(gr.op("Mul", [sums, gr.const(_wrap32(-zw))]))
        else:
            zterm = gr.op("Mul", [sums, gr.const(_wrap32(-zw).reshape(1, -1))])
            acc = zterm if acc is None else gr.op("Add", [acc, zterm])
    col = None
    for t in col_terms:
        col = t if col is None else gr.op("Add", [col, t])
    accumulators = quant.output_dtype == "int32"
    bias = 0 if accumulators else quant.bias
    per_k = _wrap32(plan.const_k.astype(np.int64) - quant.channel_const + bias).reshape(1, k)
    base = gr.const(per_k)
    if col is not None:
        base = gr.op("Add", [col, base])  # (N·P·Q, K)
    elif acc is None:  # no product term at all (e.g. every used weight maps to 0): constants only
        base = gr.op("Expand", [base, i64(npq, k)])
    total = base if acc is None else gr.op("Add", [acc, base])
    if accumulators:  # the int32 accumulators themselves (bias and scale belong to the requantizer)
        yq = total
        out_type = TensorProto.INT32
    else:
        scale = gr.const(quant.scale.astype(np.float32).reshape(1, k))
        v = gr.op("Mul", [gr.op("Cast", [total], to=TensorProto.FLOAT), scale])
        zy = np.array(quant.output_zero_point, np.dtype(quant.output_dtype))
        yq = gr.op("QuantizeLinear", [v, gr.const(np.array(1.0, np.float32)), gr.const(zy)])
        out_type = TensorProto.INT8 if quant.output_dtype == "int8" else TensorProto.UINT8
    y4 = gr.op("Reshape", [yq, i64(g.n, g.p, g.q, k)])
    gr.nodes.append(helper.make_node("Transpose", [y4], ["y"], perm=[0, 3, 1, 2]))
    graph = helper.make_graph(
        gr.nodes,
        "approxtvm_lowrank_layer",
        inputs,
        [helper.make_tensor_value_info("y", out_type, [g.n, k, g.p, g.q])],
        gr.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _window_sum(gr: _Graph, sums: str, g: ConvGeometry, idx: str | None, code_max: int) -> str:
    """(N·P·Q, 1) int32 sums over each filter window of the per-pixel channel sums ``sums``
    (N·Hp·Wp, 1). A float32 ``Conv`` with a ones filter when every partial sum is an integer below
    2^24 (exact in float32 whatever the order), else a ``Gather`` of the window and ``ReduceSum``."""
    from onnx import TensorProto

    npq = g.n * g.p * g.q
    if idx is None:
        return sums
    if g.r * g.s == 1:  # strided 1×1: one pixel per output
        return gr.op("Reshape", [gr.op("Gather", [sums, idx], axis=0), gr.const(np.array([npq, 1], np.int64))])
    if code_max * g.c * g.r * g.s < 2**24:
        img = gr.op("Reshape", [sums, gr.const(np.array([g.n, 1, g.hp, g.wp], np.int64))])
        ones = gr.const(np.ones((1, 1, g.r, g.s), np.float32))
        conv = gr.op(
            "Conv",
            [gr.op("Cast", [img], to=TensorProto.FLOAT), ones],
            strides=list(g.strides),
            dilations=list(g.dilations),
        )
        return gr.op("Cast", [gr.op("Reshape", [conv, gr.const(np.array([npq, 1], np.int64))])], to=TensorProto.INT32)
    win = gr.op("Gather", [gr.op("Reshape", [sums, gr.const(np.array([-1], np.int64))]), idx], axis=0)
    return gr.op("ReduceSum", [win, gr.const(np.array([1], np.int64))], keepdims=1)


class LowRankLayer:
    """One low-rank conv layer, activation codes to requantized output codes: the maps in numpy
    (bit operations on the padded NHWC bytes), the rest as one onnxruntime session.

    Parameters
    ----------
    plan
        The layer's :class:`~approxtvm.runtime.kernels.lowrank_gemm.GemmPlan` (divisor 1).
    g
        The layer's geometry (with its pads) at the call's batch size.
    quant
        Zero points, constants and requantization.
    threads
        onnxruntime intra-op threads (``None``: every core).
    """

    def __init__(self, plan: GemmPlan, g: ConvGeometry, quant: LayerQuant, threads: int | None = None) -> None:
        from approxtvm.runtime.kernels.ort_session import runtime_session

        self.geometry = g
        self.key = layer_key(plan, g, quant)
        self.speed_key = speed_key(plan, g, quant)
        self._dtype = np.dtype(np.int8 if quant.signed else np.uint8)
        self._maps = [gm.maps for call in plan.calls for gm in call.gemms]
        self._pad = int(quant.input_zero_point)
        self._sums = bool(np.asarray(quant.weight_zero_points).any())
        self._sess = runtime_session(build_layer_model(plan, g, quant), threads, arena=False)  # cached: see ort_session
        # kept across calls: fresh large arrays page-fault (onnxruntime only reads them during a run);
        # a second thread calling at the same time gets fresh ones
        self._buffers: tuple[np.ndarray, list[np.ndarray]] | None = None
        self._busy = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Requantized output codes (or int32 accumulators) (N, K, P, Q) of activation codes ``x``
        (N, C, H, W)."""
        g = self.geometry
        if x.shape != (g.n, g.c, g.h, g.w) or x.dtype != self._dtype:
            from approxtvm.errors import DataError

            raise DataError(
                "low-rank layer: activation codes of the wrong shape or type",
                expected=f"{self._dtype} {(g.n, g.c, g.h, g.w)}",
                found=f"{x.dtype} {tuple(x.shape)}",
                fix="pass the layer's quantized input at the batch size the layer was built for",
            )
        own = self._busy.acquire(blocking=False)
        try:
            if own and self._buffers is not None:
                xn, planes_all = self._buffers
            else:
                xn = np.full((g.n, g.hp, g.wp, g.c), self._pad, x.dtype)
                planes_all = [np.empty((g.n, g.hp, g.wp, len(m), g.c), np.uint8) for m in self._maps]
                if own:
                    self._buffers = (xn, planes_all)
            # NHWC and padded in one copy (the border keeps z_x)
            xn[:, g.pad_top : g.pad_top + g.h, g.pad_left : g.pad_left + g.w, :] = x.transpose(0, 2, 3, 1)
            xb = xn.view(np.uint8)
            feeds: dict[str, np.ndarray] = {}
            for i, (maps, planes) in enumerate(zip(self._maps, planes_all, strict=True)):
                index: list[np.ndarray | None] = [None]
                for b, amap in enumerate(maps):
                    amap.apply(xb, planes[:, :, :, b, :], index)
                feeds[f"m{i}"] = planes.reshape(g.n * g.hp * g.wp, -1)
            if self._sums:
                feeds["xs"] = xn.reshape(g.n * g.hp * g.wp, g.c)
            return self._sess.run(None, feeds)[0]  # type: ignore[no-any-return]
        finally:
            if own:
                self._busy.release()


def layer_key(plan: GemmPlan, g: ConvGeometry, quant: LayerQuant) -> tuple:
    """What a :class:`LowRankLayer` is a function of: the plan's weight digests, maps and scales,
    the geometry and every constant of ``quant`` (a cache key shared across compiled models)."""
    h = hashlib.sha1()
    for call in plan.calls:
        h.update(f"{call.scale}".encode())
        for gm in call.gemms:
            maps = [(m.shift, m.mask, m.flip, None if m.lut is None else m.lut.tobytes()) for m in gm.maps]
            h.update(f"{gm.w_key}:{gm.signed}:{gm.main_cols}:{gm.extra_coefs}:{maps}".encode())
    h.update(plan.const_k.astype(np.int64).tobytes())
    for arr in (quant.weight_zero_points, quant.channel_const, quant.bias):
        h.update(np.asarray(arr, np.int64).tobytes())
    h.update(np.asarray(quant.scale, np.float32).tobytes())
    scalars = (quant.input_zero_point, quant.output_zero_point, quant.output_dtype, quant.signed)
    return ("lowrank_layer", h.hexdigest(), g, scalars)


def speed_key(plan: GemmPlan, g: ConvGeometry, quant: LayerQuant) -> tuple:
    """What the layer's speed depends on, against its kernel-by-kernel path: the geometry, and per
    GEMM its blocks, weight kind, columns and which maps are table lookups; not the weight or table
    values (neither form branches on them). Layers of one shape and plan structure share a
    measured choice (experiment 4 puts many circuits on ResNet-50's repeated layer shapes)."""
    calls = tuple(
        (call.scale != 1, tuple((gm.signed, gm.main_cols, len(gm.extra_coefs), tuple(m.lut is None for m in gm.maps))
                                for gm in call.gemms))
        for call in plan.calls
    )  # fmt: skip
    zw = np.asarray(quant.weight_zero_points)
    return ("lowrank_speed", g, calls, bool(zw.any()), zw.size, quant.signed, quant.output_dtype)


def shared_layer(sessions: OrtSessionCache, plan: GemmPlan, g: ConvGeometry, quant: LayerQuant) -> LowRankLayer:
    """The :class:`LowRankLayer` of ``(plan, g, quant)`` from ``sessions``, kept among the sessions
    that carry weights (least recently used within their byte budget, shared by the models of a
    process: an exploration worker builds a (layer, multiplier) session once)."""
    weight_bytes = int(sum(gm.w_mat.nbytes for call in plan.calls for gm in call.gemms))
    return sessions.with_weights(layer_key(plan, g, quant), weight_bytes, lambda: LowRankLayer(plan, g, quant))  # type: ignore[return-value]
