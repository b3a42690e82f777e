"""Low-rank conv layers as onnxruntime's own quantized conv over *shifted* activation maps, placed
inside the host graph (no Python between the layers).

Broken-array multipliers and their relatives have tables that, for every weight byte ``b``, are
affine in the **bits** of the activation byte ``a``: ``T(a, b) = h(b) + Σ_j a_j β_j(b)``. The
bits span the same functions as the floor shifts ``F_i(a) = a >> i`` (``a_j = F_j − 2 F_{j+1}``),
so with ``g_0 = β_0`` and ``g_i = β_i − 2 β_{i−1}``

    ``T(a, b) = h(b) + Σ_i F_i(a) · g_i(b)``  (integers, exactly).

For BAM with a vertical break ``h`` this has ``h + 1`` terms (``g_0(b) = b`` with its low ``h``
bits cleared, ``g_i(b) = 2^h · bit_{h−i}(b)`` for ``1 ≤ i ≤ h``): the same count of byte terms as
the low-rank GEMM plan of :mod:`.lowrank_gemm`, but every map is a floor shift, which onnxruntime
computes itself with one vectorised ``QLinearAdd`` per map (``round((a − (2^i − 1)/2) / 2^i)`` is
``a >> i``: the argument is never a tie), and every weight map fits a byte. The layer then is

* the maps of the (padded) activation codes, concatenated along the channels, ``(N, B·C, H, W)``;
* one ``QLinearConv`` over them with the weights ``g_i`` of every block (``g_0`` minus ``z_w``,
  which folds the ``z_w Σ x`` correction into the conv), stored as int8 with a weight zero point
  where the host's u8×s8 dot products are exact (VNNI; probed), else as uint8 (exact everywhere);
* its int32 bias carrying every per-channel constant (``Σ h(w)``, ``z_x Σ w − taps·z_x·z_w``,
  the layer bias), wrapped modulo 2^32 like the accumulators;
* its requantization with input and output scales 1 and the layer's ``s_x·s_w/s_y`` as the
  per-channel weight scale: ``float32(acc)·scale``, clamped, rounded half to even, plus ``z_y``
  — the float32 steps of :class:`~approxtvm.runtime.executor.Requantizer`.

onnxruntime runs these layers inside one session with the graph's host ops, on its own threads
and im2col, at its u8×s8 GEMM rate (≈ 2.6× its u8×u8 rate per MAC on this project's VNNI host,
which the exact layers of a uint8 model run on). Outputs equal the kernel-by-kernel path's: the
integers are the same modulo 2^32 and the requantization is the same float32 arithmetic (tested
against a plain numpy integer convolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.intconv import OrtSessionCache

#: Largest number of blocks (shifted maps) a fused layer may have: the term count beyond which
#: the fused conv is no longer cheaper than the other paths was not measured; 8 covers every map.
MAX_BLOCKS = 8

_BITS = (np.arange(256, dtype=np.int64)[:, None] >> np.arange(8)) & 1  # (a, j): bit j of a


@dataclass(frozen=True, eq=False)
class ShiftForm:
    """``T(a, b) = h[b] + Σ_j (a >> shifts[j]) · g[j, b]`` for every activation byte ``a`` and every
    weight byte ``b`` the layer uses (other columns are zero).

    Attributes
    ----------
    shifts
        The floor shifts with a nonzero weight map, ascending.
    g
        int64 (len(shifts), 256): the weight map of each shift.
    h
        int64 (256,): ``T(0, b)``, the part that does not depend on the activation.
    """

    shifts: tuple[int, ...]
    g: np.ndarray
    h: np.ndarray


def shift_form(table: np.ndarray, weight_bytes: np.ndarray) -> ShiftForm | None:
    """The :class:`ShiftForm` of an unsigned product ``table`` (rows: activation byte, columns:
    weight byte) over the weight bytes that occur, or ``None`` when some used column is not affine
    in the activation's bits (checked exactly, for all 256 activation bytes)."""
    used = np.unique(np.asarray(weight_bytes, dtype=np.int64).reshape(-1))
    t = np.asarray(table, dtype=np.int64)[:, used]
    h = t[0]
    beta = t[1 << np.arange(8)] - h  # β_j(b) = T(2^j, b) − T(0, b)
    if not np.array_equal(_BITS @ beta + h, t):
        return None
    g = beta.copy()
    g[1:] -= 2 * beta[:-1]  # Σ_j a_j β_j = Σ_i F_i(a) (β_i − 2 β_{i−1})
    shifts = tuple(i for i in range(8) if g[i].any())
    g_full = np.zeros((len(shifts), 256), np.int64)
    g_full[:, used] = g[list(shifts)]
    h_full = np.zeros(256, np.int64)
    h_full[used] = h
    return ShiftForm(shifts, g_full, h_full)


@dataclass(frozen=True)
class QConvQuant:
    """What the fused layer needs besides its weights (conv layers of a uint8 model).

    Attributes
    ----------
    input_zero_point
        ``z_x`` (the code padded taps hold).
    weight_zero_points
        int64 (K,): ``z_w`` per output channel.
    bias
        int64 (K,): bias codes minus their zero point (zeros without a bias).
    scale
        float32 (K,): ``s_x · s_w / s_y``.
    output_zero_point
        ``z_y``.
    output_dtype
        ``"uint8"`` (onnxruntime's ``QLinearConv`` writes its input's type; other types are refused).
    """

    input_zero_point: int
    weight_zero_points: np.ndarray
    bias: np.ndarray
    scale: np.ndarray
    output_zero_point: int
    output_dtype: str


@dataclass(frozen=True, eq=False)
class QConvLayer:
    """The ONNX nodes of one fused layer, reading ``input_name`` and writing ``output_name``.

    Attributes
    ----------
    nodes, initializers, value_infos
        ONNX protos (names prefixed with the layer's prefix).
    blocks
        The shifts of the concatenated maps, in channel-block order.
    weight_signed
        Weights stored as int8 (u8×s8 kernels) or uint8.
    """

    nodes: tuple[Any, ...]
    initializers: tuple[Any, ...]
    value_infos: tuple[Any, ...]
    blocks: tuple[int, ...]
    weight_signed: bool


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((np.asarray(v, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def qconv_weights(
    form: ShiftForm, weight: np.ndarray, quant: QConvQuant, weight_signed: bool
) -> tuple[tuple[int, ...], np.ndarray, int, np.ndarray] | None:
    """The fused conv's blocks, stored weights (K, B·C, R, S), weight zero point and int32 bias for
    the uint8 OIHW ``weight`` codes; ``None`` when the weight maps do not fit one byte with one
    zero point, or there would be more than :data:`MAX_BLOCKS` blocks."""
    wq = np.asarray(weight, np.int64)
    k = wq.shape[0]
    zw = np.broadcast_to(np.asarray(quant.weight_zero_points, np.int64).reshape(-1), (k,))
    blocks = list(form.shifts)
    maps = [form.g[j][wq] for j in range(len(blocks))]
    if zw.any():  # −z_w Σ x = −z_w Σ F_0(x): folded into the identity block's weights
        if 0 not in blocks:
            blocks.insert(0, 0)
            maps.insert(0, np.zeros_like(wq))
        maps[0] = maps[0] - zw[:, None, None, None]
    if not blocks or len(blocks) > MAX_BLOCKS:
        return None
    w_all = np.concatenate(maps, axis=1)
    lo, hi = int(w_all.min()), int(w_all.max())
    qmin, qmax = (-128, 127) if weight_signed else (0, 255)
    zp_lo, zp_hi = max(qmin, qmin - lo), min(qmax, qmax - hi)
    if zp_lo > zp_hi:
        return None
    zp = zp_lo  # stored = g + zp; the kernel subtracts zp again
    stored = (w_all + zp).astype(np.int8 if weight_signed else np.uint8)
    zx = int(quant.input_zero_point)
    taps = int(np.prod(wq.shape[1:]))
    wsum = wq.reshape(k, -1).sum(axis=1)
    const = form.h[wq].reshape(k, -1).sum(axis=1) - zx * wsum + taps * zx * zw + np.asarray(quant.bias, np.int64)
    return tuple(blocks), stored, zp, _wrap32(const)


def qconv_layer(
    form: ShiftForm,
    weight: np.ndarray,
    g: ConvGeometry,
    quant: QConvQuant,
    weight_signed: bool,
    input_name: str,
    output_name: str,
    prefix: str,
    *,
    dense: bool = False,
) -> QConvLayer | None:
    """The nodes computing a layer's requantized output codes from its uint8 activation codes, or
    ``None`` where the form does not apply (:func:`qconv_weights`).

    A conv layer reads NCHW ``input_name`` of shape ``(N, g.c, g.h, g.w)``; a dense layer
    (``dense``: weights (K, C), ``g`` a 1×1 geometry) reads ``(…, C)`` and writes ``(…, K)``, as a
    1×1 conv over the rows. The batch dimension stays symbolic (``g.n`` is not used)."""
    from onnx import TensorProto, helper, numpy_helper

    if quant.output_dtype != "uint8":
        return None  # onnxruntime's QLinearConv writes the activations' type (uint8 here)
    if dense:
        weight = np.asarray(weight).reshape(*np.shape(weight), 1, 1)
    made = qconv_weights(form, weight, quant, weight_signed)
    if made is None:
        return None
    blocks, stored, zp, bias = made
    k = stored.shape[0]
    nodes: list[Any] = []
    inits: list[Any] = []
    infos: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), prefix + name))
        return prefix + name

    zx = int(quant.input_zero_point)
    pads = [g.pad_top, g.pad_left, g.pad_bottom, g.pad_right]
    src, h, w = input_name, g.h, g.w
    n: str = "N"
    if dense:  # (…, C) → (rows, C, 1, 1)
        src = prefix + "x4"
        nodes.append(
            helper.make_node("Reshape", [input_name, const("to4", np.array([-1, g.c, 1, 1], np.int64))], [src])
        )
        infos.append(helper.make_tensor_value_info(src, TensorProto.UINT8, [n, g.c, 1, 1]))
    if any(pads) and any((zx >> i) != 0 for i in blocks):
        # padded taps hold z_x, whose maps differ per block: pad the codes, then map them
        nodes.append(
            helper.make_node(
                "Pad",
                [src, const("pads", np.array([0, 0, g.pad_top, g.pad_left, 0, 0, g.pad_bottom, g.pad_right], np.int64)),
                 const("padv", np.array(zx, np.uint8))],
                [prefix + "xpad"],
            )
        )  # fmt: skip
        src, h, w, pads = prefix + "xpad", g.hp, g.wp, [0, 0, 0, 0]
        infos.append(helper.make_tensor_value_info(src, TensorProto.UINT8, [n, g.c, h, w]))
    one = const("one", np.array(1.0, np.float32))
    u8zero = const("u8zero", np.array(0, np.uint8))
    planes = []
    for i in blocks:
        if i == 0:
            planes.append(src)
            continue
        # round((a − (2^i − 1)/2) / 2^i) = a >> i: never a tie (QLinearAdd rounds half to even)
        out = f"{prefix}shift{i}"
        nodes.append(
            helper.make_node(
                "QLinearAdd",
                [src, one, u8zero, const(f"b{i}", np.array([0], np.uint8)), const(f"bs{i}", np.array(0.5, np.float32)),
                 const(f"bz{i}", np.array(2**i - 1, np.uint8)), const(f"cs{i}", np.array(2.0**i, np.float32)), u8zero],
                [out],
                domain="com.microsoft",
            )
        )  # fmt: skip
        infos.append(helper.make_tensor_value_info(out, TensorProto.UINT8, [n, g.c, h, w]))
        planes.append(out)
    xcat = planes[0]
    if len(planes) > 1:
        xcat = prefix + "maps"
        nodes.append(helper.make_node("Concat", planes, [xcat], axis=1))
        infos.append(helper.make_tensor_value_info(xcat, TensorProto.UINT8, [n, g.c * len(planes), h, w]))
    wdtype = np.int8 if weight_signed else np.uint8
    y_dtype = np.dtype(quant.output_dtype)
    ins = [
        xcat, one, u8zero, const("w", stored), const("wscale", np.asarray(quant.scale, np.float32).reshape(k)),
        const("wzp", np.full(k, zp, wdtype)), one, const("yzp", np.array(quant.output_zero_point, y_dtype)),
        const("bias", bias),
    ]  # fmt: skip
    conv_out = prefix + "y4" if dense else output_name
    nodes.append(
        helper.make_node(
            "QLinearConv",
            ins,
            [conv_out],
            strides=[g.stride_h, g.stride_w],
            dilations=[g.dilation_h, g.dilation_w],
            pads=pads,
            kernel_shape=[g.r, g.s],
        )
    )
    out_type = TensorProto.INT8 if y_dtype == np.int8 else TensorProto.UINT8
    if dense:  # (rows, K, 1, 1) → (…, K): the input's leading dimensions
        infos.append(helper.make_tensor_value_info(conv_out, out_type, [n, k, 1, 1]))
        nodes += [
            helper.make_node("Shape", [input_name], [prefix + "xshape"]),
            helper.make_node(
                "Slice",
                [prefix + "xshape", const("s0", np.array([0], np.int64)), const("s1", np.array([-1], np.int64))],
                [prefix + "lead"],
            ),
            helper.make_node(
                "Concat", [prefix + "lead", const("k", np.array([k], np.int64))], [prefix + "yshape"], axis=0
            ),
            helper.make_node("Reshape", [conv_out, prefix + "yshape"], [output_name]),
        ]
    else:
        infos.append(helper.make_tensor_value_info(output_name, out_type, [n, k, g.p, g.q]))
    return QConvLayer(tuple(nodes), tuple(inits), tuple(infos), blocks, weight_signed)


def floor_maps_exact(sessions: OrtSessionCache) -> bool:
    """Whether onnxruntime's ``QLinearAdd`` computes ``a >> i`` (the maps of :func:`qconv_layer`)
    for every uint8 code and shift, at lengths that take its vector and tail loops (cached)."""
    with sessions.lock:
        hit = sessions.sessions.get(("floor_maps_exact",))
    if hit is not None:
        return bool(hit)
    from onnx import TensorProto, helper

    from approxtvm.runtime.kernels.ort_session import runtime_session

    x = np.concatenate([np.arange(256, dtype=np.uint8)] * 17 + [np.arange(37, dtype=np.uint8)])
    ok = True
    for i in range(1, 8):
        nodes, inits = _map_graph(i)
        graph = helper.make_graph(
            nodes, "floor_probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, [len(x)])],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, [len(x)])], inits,
        )  # fmt: skip
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
        )
        model.ir_version = 8
        for threads in (1, None):
            y = runtime_session(model, threads, arena=False).run(None, {"x": x})[0]
            ok = ok and bool(np.array_equal(y, x >> i))
    with sessions.lock:
        sessions.sessions[("floor_maps_exact",)] = ok
    return ok


def qconv_s8_exact(sessions: OrtSessionCache, vnni: bool) -> bool:
    """Whether onnxruntime's ``QLinearConv`` with uint8 activations and int8 weights with a zero
    point is exact on this host (cached in ``sessions``): ``False`` without VNNI (its u8×s8 dot
    products sum pairs in 16 bits and saturate); with VNNI a probe decides whose pairs of products
    reach ±64770 — its bias cancels the exact sums, so an exact kernel outputs ``z_y`` everywhere
    and a saturating one does not."""
    if not vnni:
        return False
    with sessions.lock:
        hit = sessions.sessions.get(("qconv_s8_exact",))
    if hit is not None:
        return bool(hit)
    from onnx import TensorProto, helper, numpy_helper

    from approxtvm.runtime.kernels.ort_session import runtime_session

    rng = np.random.default_rng(0)
    c, k = 512, 64
    pixel = np.full(c, 255, np.uint8)
    pixel[::7] = rng.integers(0, 256, pixel[::7].shape, dtype=np.uint8)
    x = np.broadcast_to(pixel[None, :, None, None], (1, c, 4, 4)).copy()  # one pixel: one bias per channel
    w = np.where(rng.random((k, c)) < 0.5, -128, 127).astype(np.int8)
    w[:, ::2] = w[:, 1::2]  # equal signs in every pair of the reduction
    bias = -(w.astype(np.int64) + 128) @ pixel.astype(np.int64)  # zero point −128: the kernel sums x·(w + 128)
    ok = True
    vals = {
        "one": np.array(1.0, np.float32), "xz": np.array(0, np.uint8), "w": w.reshape(k, c, 1, 1),
        "ws": np.ones(k, np.float32), "wz": np.full(k, -128, np.int8), "yz": np.array(128, np.uint8),
        "b": bias.astype(np.int32),
    }  # fmt: skip
    node = helper.make_node("QLinearConv", ["x", "one", "xz", "w", "ws", "wz", "one", "yz", "b"], ["y"])
    graph = helper.make_graph(
        [node], "qconv_probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        [numpy_helper.from_array(v, name) for name, v in vals.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for threads in (1, None):
        y = runtime_session(model, threads, arena=False).run(None, {"x": x})[0]
        ok = ok and bool(np.all(y == 128))
    with sessions.lock:
        sessions.sessions[("qconv_s8_exact",)] = ok
    return ok


def _map_graph(i: int) -> tuple[list[Any], list[Any]]:
    from onnx import helper, numpy_helper

    vals = {
        "as": np.array(1.0, np.float32), "az": np.array(0, np.uint8), "b": np.array([0], np.uint8),
        "bs": np.array(0.5, np.float32), "bz": np.array(2**i - 1, np.uint8), "cs": np.array(2.0**i, np.float32),
    }  # fmt: skip
    inits = [numpy_helper.from_array(v, k) for k, v in vals.items()]
    node = helper.make_node("QLinearAdd", ["x", "as", "az", "b", "bs", "bz", "cs", "az"], ["y"], domain="com.microsoft")
    return [node], inits
