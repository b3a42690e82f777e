"""Window sums ``Σ_{c,r,s} x_pad`` of a conv layer in one onnxruntime call (the ``z_w Σ x`` term).

The zero-point correction of a layer with a non-zero weight zero point needs, per output position,
the sum of the padded input under the filter window (per group for grouped convs). onnxruntime's
``ConvInteger`` with all-ones uint8 weights computes exactly that for the real pixels (int32, exact:
at most ``255·C·R·S`` per sum); padded taps hold the activation zero point ``z_x`` and add
``z_x · C/G · (padded taps under the window)``, a constant map of the layer's geometry computed once.
Grouped convs get one ones-filter per output channel (``group = G``), so each output channel gets
its own group's sum without a repeat.
"""

from __future__ import annotations

import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from approxtvm.runtime.kernels.ort_session import runtime_session
from approxtvm.targets.vacc.schedule import LayerSchedule


class WindowSums:
    """Per-layer window-sum operator (built once per layer program).

    Parameters
    ----------
    sched
        The conv layer's schedule (shape and activation zero point).
    """

    def __init__(self, sched: LayerSchedule) -> None:

        s = sched.shape
        zx = int(sched.quant.input_zero_point)
        g = s.groups
        kout = 1 if g == 1 else s.k
        ones = np.ones((kout, s.c_per_group, s.r, s.s), np.uint8)
        pads = [s.pad_top, s.pad_left, s.pad_bottom, s.pad_right]
        node = helper.make_node(
            "ConvInteger",
            ["x", "w"],
            ["y"],
            strides=[s.stride_h, s.stride_w],
            dilations=[s.dilation_h, s.dilation_w],
            pads=pads,
            group=g,
        )
        graph = helper.make_graph(
            [node],
            "window_sums",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, [s.n, s.c, s.h, s.w])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [s.n, kout, s.p, s.q])],
            [numpy_helper.from_array(ones, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        self._sess = runtime_session(model, os.cpu_count() or 1)
        self._signed = bool(sched.quant.signed)
        term = self._constant_term(sched, zx, self._signed)
        self._term = term if term.any() else None

    @staticmethod
    def _constant_term(sched: LayerSchedule, zx: int, signed: bool) -> np.ndarray:
        """What onnxruntime's sum (padding 0, signed codes read as ``code + 128``) misses: int32 (P, Q).

        ``z_x · C/G · pads(p, q)`` for the padded taps, minus ``128 · C/G · (R·S − pads(p, q))``
        for signed codes, with ``pads(p, q)`` the padded taps under the window.
        """
        s = sched.shape
        mask = np.ones((s.h + s.pad_top + s.pad_bottom, s.w + s.pad_left + s.pad_right), np.int64)
        mask[s.pad_top : s.pad_top + s.h, s.pad_left : s.pad_left + s.w] = 0
        padded = np.zeros((s.p, s.q), np.int64)
        for r in range(s.r):
            for t in range(s.s):
                r0, t0 = r * s.dilation_h, t * s.dilation_w
                padded += mask[
                    r0 : r0 + s.stride_h * (s.p - 1) + 1 : s.stride_h,
                    t0 : t0 + s.stride_w * (s.q - 1) + 1 : s.stride_w,
                ]
        term = padded * zx * s.c_per_group
        if signed:
            term -= 128 * s.c_per_group * (s.r * s.s - padded)
        return term.astype(np.int32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int32 window sums of activation codes ``x`` (N, C, H, W): (N, 1, P, Q) for an ungrouped
        conv, (N, K, P, Q) (each channel its group's sum) for a grouped one."""
        xu = (x.view(np.uint8) ^ np.uint8(0x80)) if self._signed else np.ascontiguousarray(x)
        y = self._sess.run(None, {"x": xu})[0]  # type: ignore[attr-defined]
        if self._term is not None:
            y += self._term
        return y
