"""Execute a LayerSchedule: the accelerator's arithmetic, bit-exact (DESIGN §3).

``acc = Σ M(x_q, w_q) − z_w Σ x_q − z_x Σ w_q + K z_x z_w`` in exact integers, where only the
raw products go through the multiplier ``M`` and padded taps hold ``z_x`` and go through ``M``
like any other tap. The float result ``acc · s_x · s_w + bias`` is what the graph's next
``quantize`` expects, the same value the QDQ graph computes in float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from approxtvm.errors import DataError
from approxtvm.runtime import exact_layer
from approxtvm.runtime.kernels import KernelCache, LayerStore, choose_path, conv2d_products, dense_products
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.schedule import LayerSchedule


@dataclass(frozen=True, eq=False)
class LayerProgram:
    """A schedule with the constants and the multiplier it runs with.

    Attributes
    ----------
    schedule
        The layer schedule.
    weight
        Weight codes (OIHW for conv2d, (K, C) for dense).
    bias
        int32 bias codes or ``None``.
    multiplier
        The multiplier whose table hash the schedule records.
    cache
        Kernel sessions, compiled kernels and tables (share one per model).
    path
        Requested kernel path (see :func:`approxtvm.runtime.kernels.choose_path`); empty: chosen on
        first use (:attr:`kernel_path`).
    """

    schedule: LayerSchedule
    weight: np.ndarray
    bias: np.ndarray | None
    multiplier: Multiplier
    cache: KernelCache = field(default_factory=KernelCache)
    path: str = ""

    def __post_init__(self) -> None:
        if self.multiplier.table_hash != self.schedule.intrinsic.table_hash:
            raise DataError(
                f"layer {self.schedule.layer_id}: multiplier table does not match the schedule",
                expected=f"table sha256 {self.schedule.intrinsic.table_hash[:16]}…",
                found=f"{self.multiplier.name} with sha256 {self.multiplier.table_hash[:16]}…",
                fix="recompile the model; the multiplier's table file changed since it was compiled",
            )

    @staticmethod
    def build(
        schedule: LayerSchedule,
        weight: np.ndarray,
        bias: np.ndarray | None,
        multiplier: Multiplier,
        cache: KernelCache | None = None,
    ) -> LayerProgram:
        """A program whose kernel path is chosen now (the fastest exact path for these weights)."""
        cache = cache if cache is not None else KernelCache()
        path = choose_path(multiplier, schedule.shape, weights=weight, cache=cache).path
        return LayerProgram(schedule, weight, bias, multiplier, cache, path)

    @cached_property
    def kernel_path(self) -> str:
        """The kernel path the layer runs on: :attr:`path` if given, else chosen on first use."""
        if self.path:
            return self.path
        return choose_path(self.multiplier, self.schedule.shape, weights=self.weight, cache=self.cache).path

    @cached_property
    def store(self) -> LayerStore:
        """Weight-derived kernel data of this layer (digest, factorisation, weight plan), built on
        first use and kept for the program's life: its weights never change."""
        return LayerStore.for_weights(self.weight)

    @cached_property
    def weight_sums(self) -> np.ndarray:
        """``Σ_{c,r,s} w_q`` per output channel (int64, (K,)): the ``z_x Σ w`` correction term."""
        return self.weight.reshape(self.weight.shape[0], -1).astype(np.int64).sum(axis=1)

    @cached_property
    def float_constants(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``s_x · s_w`` (float64, broadcastable to the output) and the dequantized bias (float32),
        computed once: they depend on the weights only."""
        sched = self.schedule
        q = sched.quant
        bshape = (1, -1) if sched.shape.op == "dense" else (1, -1, 1, 1)
        scale = (q.input_scale * np.asarray(q.weight_scales, np.float64)).reshape(bshape)
        if self.bias is None:
            return scale, None
        bz = np.asarray(q.bias_zero_points, np.int64)
        bias = ((self.bias.astype(np.int64) - bz).astype(np.float32) * np.asarray(q.bias_scales, np.float32)).astype(
            np.float32
        )
        return scale, bias.reshape(bshape)

    @cached_property
    def fused_exact(self) -> exact_layer.ExactLayer | None:
        """One-call exact path (zero points folded into the integer kernel), when it applies."""
        if self.kernel_path == "exact" and exact_layer.supports(self.schedule, self.weight):
            return exact_layer.ExactLayer(self.schedule, self.weight)
        return None


#: A hook that may change a layer call's int32 accumulators: ``(layer_id, x_q, program, acc) -> acc``.
AccumulatorHook = Callable[[str, np.ndarray, "LayerProgram", np.ndarray], np.ndarray]


def _window_sums(x: np.ndarray, sched: LayerSchedule) -> np.ndarray:
    """Σ over (C, R, S) of the padded input under each output position: (N, 1, P, Q) int64."""
    s = sched.shape
    zx = sched.quant.input_zero_point
    xs = x.astype(np.int64).sum(axis=1)  # (N, H, W)
    xp = np.pad(xs, ((0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right)), constant_values=zx * s.c)
    out = np.zeros((s.n, s.p, s.q), np.int64)
    for r in range(s.r):
        for t in range(s.s):
            r0, t0 = r * s.dilation_h, t * s.dilation_w
            out += xp[
                :, r0 : r0 + s.stride_h * (s.p - 1) + 1 : s.stride_h, t0 : t0 + s.stride_w * (s.q - 1) + 1 : s.stride_w
            ]
    return out[:, None]


def accumulate(x: np.ndarray, prog: LayerProgram, products: np.ndarray | None = None) -> np.ndarray:
    """Exact int32 accumulators of the layer for activation codes ``x``.

    Parameters
    ----------
    x
        Activation codes, (N, C, H, W) for conv2d or (N, C) for dense.
    prog
        The layer program.
    products
        Precomputed ``Σ M(x, w)`` (e.g. from a tiled or faulty execution); computed here if ``None``.
    """
    if products is None and prog.fused_exact is not None:
        return prog.fused_exact(x)
    sched = prog.schedule
    s, q = sched.shape, sched.quant
    zx = q.input_zero_point
    zw = np.asarray(q.weight_zero_points, np.int64)
    taps = s.c * s.r * s.s
    if s.op == "dense":
        raw = (
            dense_products(x, prog.weight, prog.multiplier, path=prog.kernel_path, cache=prog.cache, store=prog.store)
            if products is None
            else products
        )
        sum_x = x.astype(np.int64).sum(axis=1, keepdims=True)  # (N, 1)
        sum_w = prog.weight_sums[None, :]  # (1, K)
        zw_b = zw[None, :] if zw.size > 1 else zw[0]
    else:
        if products is None:
            raw = conv2d_products(
                x,
                prog.weight,
                prog.multiplier,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
                pad_value=zx,
                path=prog.kernel_path,
                cache=prog.cache,
                store=prog.store,
            )
        else:
            raw = products
        sum_x = _window_sums(x, sched) if np.any(zw) else 0
        sum_w = prog.weight_sums[None, :, None, None]
        zw_b = zw[None, :, None, None] if zw.size > 1 else zw[0]
    acc = raw.astype(np.int64) - zw_b * sum_x - zx * sum_w + taps * zx * zw_b
    return acc.astype(np.int32)


def to_float(acc: np.ndarray, prog: LayerProgram) -> np.ndarray:
    """``acc · s_x · s_w (+ dequantized bias)`` as float32, the graph's dequantized layer output."""
    scale, bias = prog.float_constants
    out = (acc.astype(np.float64) * scale).astype(np.float32)
    if bias is not None:
        out += bias
    return out


def dequantize_input(x: np.ndarray, prog: LayerProgram) -> np.ndarray:
    """``(x − z_x) · s_x`` as float32 (a dequantize shared with another graph user)."""
    q = prog.schedule.quant
    return (x.astype(np.int32) - q.input_zero_point).astype(np.float32) * np.float32(q.input_scale)


@dataclass
class CallLog:
    """What a run executed: one entry per offloaded call, in order (filled by the runners)."""

    calls: list[str] = field(default_factory=list)
    #: When set, each call also records ``(layer_id, x_q, acc)`` in :attr:`traces` (tests, debugging).
    trace: bool = False
    traces: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    #: The run's accumulator hook ``(layer_id, x_q, program, acc) -> acc`` (e.g. the ``apply`` of an
    #: :class:`approxtvm.runtime.faults.FaultSession`); ``None``: the fault-free accumulators are used.
    faults: AccumulatorHook | None = None

    def clear(self) -> None:
        """Forget previous calls."""
        self.calls.clear()
        self.traces.clear()


def execute_layer(prog: LayerProgram, log: CallLog, x: np.ndarray) -> np.ndarray:
    """One call of an offloaded layer on activation codes ``x``: exact accumulators through the
    layer's kernel, the run's accumulator hook (faults), the trace if enabled; returns the float
    layer output."""
    layer_id = prog.schedule.layer_id
    acc = accumulate(x, prog)
    if log.faults is not None:
        acc = log.faults(layer_id, x, prog, acc)
    if log.trace:
        log.traces.append((layer_id, x.copy(), acc))
    return to_float(acc, prog)


def make_runner(prog: LayerProgram, log: CallLog) -> Callable[..., None]:
    """The VM entry of one layer: DPS call ``(x_q, out_0[, out_1])``."""
    kinds = prog.schedule.outputs
    n_out = len(kinds)
    layer_id = prog.schedule.layer_id

    def run(*tensors: object) -> None:
        ins, outs = tensors[:-n_out], tensors[-n_out:]
        x = ins[0].numpy()  # type: ignore[attr-defined]
        log.calls.append(layer_id)
        result = None
        for kind, out in zip(kinds, outs, strict=True):
            if kind == "input_dequantized":
                val = dequantize_input(x, prog)
            else:
                if result is None:
                    result = execute_layer(prog, log, x)
                val = result
            out.copyfrom(np.ascontiguousarray(val))  # type: ignore[attr-defined]

    return run
