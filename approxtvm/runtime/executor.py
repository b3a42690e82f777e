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
from typing import TYPE_CHECKING

import numpy as np

from approxtvm.errors import DataError, ScheduleError
from approxtvm.runtime import exact_layer
from approxtvm.runtime.kernels import KernelCache, choose_path, conv2d_products, dense_products
from approxtvm.runtime.kernels.act_matmul import choose_matmul_path, matmul_products
from approxtvm.runtime.kernels.grouped import grouped_conv2d_products
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.schedule import LayerSchedule

if TYPE_CHECKING:
    from approxtvm.runtime.faults import FaultSession


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
        Kernel path (see :func:`approxtvm.runtime.kernels.choose_path`); chosen here if empty.
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
        if not self.path:
            if self.schedule.shape.op == "matmul":  # no constant weights to specialise for
                path = choose_matmul_path(self.multiplier, self.cache)
            else:
                path = choose_path(self.multiplier, self.schedule.shape, weights=self.weight, cache=self.cache).path
            object.__setattr__(self, "path", path)

    @cached_property
    def fused_exact(self) -> exact_layer.ExactLayer | None:
        """One-call exact path (zero points folded into the integer kernel), when it applies."""
        if (
            self.path == "exact"
            and self.schedule.shape.op != "matmul"
            and exact_layer.supports(self.schedule, self.weight)
        ):
            return exact_layer.ExactLayer(self.schedule, self.weight)
        return None


def _window_sums(x: np.ndarray, sched: LayerSchedule) -> np.ndarray:
    """Σ over (C, R, S) of the padded input under each output position: (N, 1, P, Q) int64.

    Grouped layers sum over each group's own channels: (N, K, P, Q), one window sum per group
    repeated for its ``K / G`` output channels.
    """
    s = sched.shape
    zx = sched.quant.input_zero_point
    g = s.groups
    xs = x.astype(np.int64).reshape(s.n, g, s.c_per_group, s.h, s.w).sum(axis=2)  # (N, G, H, W)
    pads = ((0, 0), (0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right))
    xp = np.pad(xs, pads, constant_values=zx * s.c_per_group)
    out = np.zeros((s.n, g, s.p, s.q), np.int64)
    for r in range(s.r):
        for t in range(s.s):
            r0, t0 = r * s.dilation_h, t * s.dilation_w
            out += xp[
                :,
                :,
                r0 : r0 + s.stride_h * (s.p - 1) + 1 : s.stride_h,
                t0 : t0 + s.stride_w * (s.q - 1) + 1 : s.stride_w,
            ]
    return out if g == 1 else np.repeat(out, s.k_per_group, axis=1)


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
    sched = prog.schedule
    s, q = sched.shape, sched.quant
    if s.op == "dense":
        x = x.reshape(-1, s.c)  # a rank ≥ 3 input is a batch of rows
    if products is None and prog.fused_exact is not None:
        return prog.fused_exact(x)
    zx = q.input_zero_point
    zw = np.asarray(q.weight_zero_points, np.int64)
    w64 = prog.weight.astype(np.int64)
    taps = s.c_per_group * s.r * s.s
    if s.op == "dense":
        raw = (
            dense_products(x, prog.weight, prog.multiplier, path=prog.path, cache=prog.cache)
            if products is None
            else products
        )
        sum_x = x.astype(np.int64).sum(axis=1, keepdims=True)  # (N, 1)
        sum_w = w64.sum(axis=1)[None, :]  # (1, K)
        zw_b = zw[None, :] if zw.size > 1 else zw[0]
    else:
        if products is None:
            raw = grouped_conv2d_products(
                x,
                prog.weight,
                prog.multiplier,
                groups=s.groups,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
                pad_value=zx,
                path=prog.path,
                cache=prog.cache,
            )
        else:
            raw = products
        sum_x = _window_sums(x, sched) if np.any(zw) else 0
        sum_w = w64.reshape(s.k, -1).sum(axis=1)[None, :, None, None]
        zw_b = zw[None, :, None, None] if zw.size > 1 else zw[0]
    acc = raw.astype(np.int64) - zw_b * sum_x - zx * sum_w + taps * zx * zw_b
    return acc.astype(np.int32)


def accumulate_matmul(
    a: np.ndarray, b: np.ndarray, prog: LayerProgram, products: np.ndarray | None = None
) -> np.ndarray:
    """Exact int32 accumulators of an activation × activation matmul.

    ``acc = Σ_c M(a, b) − z_b Σ_c a − z_a Σ_c b + C z_a z_b`` over the codes ``a`` (..., M, C)
    (table rows) and ``b`` (..., C, K) (table columns), broadcast to one batch shape.
    """
    q = prog.schedule.quant
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, (*lead, *a.shape[-2:]))
    b = np.broadcast_to(b, (*lead, *b.shape[-2:]))
    za, zb = q.input_zero_point, q.weight_zero_points[0]
    raw = matmul_products(a, b, prog.multiplier, path=prog.path, cache=prog.cache) if products is None else products
    sum_a = a.astype(np.int64).sum(axis=-1, keepdims=True)
    sum_b = b.astype(np.int64).sum(axis=-2, keepdims=True)
    acc = raw.astype(np.int64) - zb * sum_a - za * sum_b + a.shape[-1] * za * zb
    return acc.astype(np.int32)


def tile_ranges(prog: LayerProgram, level: str = "PE") -> list[dict[str, tuple[int, int]]]:
    """Index ranges per dim of every ``level`` tile, in the loop nest's order (outermost first).

    Walks the loops of the levels above ``level`` exactly as the schedule orders them; each step
    is one tile that the level below receives.
    """
    m = prog.schedule.mapping
    ext = m.dim_extents(level)
    loops = [lp for lp in m.loops_above(level)]
    strides: dict[str, int] = {}
    loop_stride = []
    for lp in reversed(loops):  # inner loops step by the tile extent, outer ones by inner products
        st = strides.get(lp.dim, ext[lp.dim])
        loop_stride.append(st)
        strides[lp.dim] = st * lp.bound
    loop_stride.reverse()
    out = []
    for idx in np.ndindex(*[lp.bound for lp in loops]) if loops else [()]:
        start = dict.fromkeys(ext, 0)
        for lp, i, st in zip(loops, idx, loop_stride, strict=True):
            start[lp.dim] += i * st
        out.append({d: (start[d], start[d] + ext[d]) for d in ext})
    return out


def tiled_products(x: np.ndarray, prog: LayerProgram, level: str = "PE") -> np.ndarray:
    """``Σ M(x, w)`` computed tile by tile in the schedule's loop order (the reference semantics).

    Each ``level`` tile multiplies its slice of the padded input by its slice of the weights and
    adds into its output slice; partial sums over C, R, S tiles accumulate in int64. Equal to the
    whole-layer kernel for a fault-free run; faults act per tile (DESIGN §5).
    """
    sched = prog.schedule
    s = sched.shape
    zx = sched.quant.input_zero_point
    if s.op == "matmul":
        raise ScheduleError(
            f"layer {sched.layer_id}: tiled execution of an activation × activation matmul",
            expected="a conv2d or dense layer",
            found="matmul",
            fix="use accumulate_matmul",
        )
    if s.op == "dense":
        x4 = x.reshape(s.n, s.c, 1, 1)
        w4 = prog.weight.reshape(s.k, s.c, 1, 1)
    else:
        x4 = np.pad(x, ((0, 0), (0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right)), constant_values=zx)
        w4 = prog.weight
    acc = np.zeros((s.n, s.k, s.p, s.q), np.int64)
    kg, cg = s.k_per_group, s.c_per_group
    for t in tile_ranges(prog, level):
        for grp in range(*t["G"]):
            _tile_products(x4, w4, prog, t, acc, grp * kg, grp * cg)
    acc = acc.astype(np.int32)  # int32 accumulator semantics (wraps like the hardware's)
    return acc.reshape(s.n, s.k) if s.op == "dense" else acc


def _tile_products(
    x4: np.ndarray,
    w4: np.ndarray,
    prog: LayerProgram,
    t: dict[str, tuple[int, int]],
    acc: np.ndarray,
    k_base: int,
    c_base: int,
) -> None:
    """Add one tile's products into ``acc`` (group offsets ``k_base``/``c_base`` into K and C)."""
    s = prog.schedule.shape
    (n0, n1), (k0, k1), (c0, c1) = t["N"], t["K"], t["C"]
    (p0, p1), (q0, q1), (r0, r1), (t0, t1) = t["P"], t["Q"], t["R"], t["S"]
    h0 = p0 * s.stride_h + r0 * s.dilation_h
    h1 = h0 + (p1 - p0 - 1) * s.stride_h + (r1 - r0 - 1) * s.dilation_h + 1
    v0 = q0 * s.stride_w + t0 * s.dilation_w
    v1 = v0 + (q1 - q0 - 1) * s.stride_w + (t1 - t0 - 1) * s.dilation_w + 1
    part = conv2d_products(
        np.ascontiguousarray(x4[n0:n1, c_base + c0 : c_base + c1, h0:h1, v0:v1]),
        np.ascontiguousarray(w4[k_base + k0 : k_base + k1, c0:c1, r0:r1, t0:t1]),
        prog.multiplier,
        strides=(s.stride_h, s.stride_w),
        dilations=(s.dilation_h, s.dilation_w),
        path=prog.path,
        cache=prog.cache,
    )
    acc[n0:n1, k_base + k0 : k_base + k1, p0:p1, q0:q1] += part


def to_float(acc: np.ndarray, prog: LayerProgram) -> np.ndarray:
    """``acc · s_x · s_w (+ dequantized bias)`` as float32, the graph's dequantized layer output."""
    sched = prog.schedule
    q = sched.quant
    scale = q.input_scale * np.asarray(q.weight_scales, np.float64)
    bshape = {"dense": (1, -1), "conv2d": (1, -1, 1, 1)}.get(sched.shape.op, (-1,))
    out = (acc.astype(np.float64) * scale.reshape(bshape)).astype(np.float32)
    if prog.bias is not None:
        bz = np.asarray(q.bias_zero_points, np.int64)
        bias = ((prog.bias.astype(np.int64) - bz).astype(np.float32) * np.asarray(q.bias_scales, np.float32)).astype(
            np.float32
        )
        out = out + bias.reshape(bshape)
    return out


def dequantize_input(x: np.ndarray, prog: LayerProgram) -> np.ndarray:
    """``(x − z_x) · s_x`` as float32 (a dequantize shared with another graph user)."""
    q = prog.schedule.quant
    return (x.astype(np.int32) - q.input_zero_point).astype(np.float32) * np.float32(q.input_scale)


def dequantize_second(b: np.ndarray, prog: LayerProgram) -> np.ndarray:
    """``(b − z_b) · s_b`` for the second operand of an activation × activation matmul."""
    q = prog.schedule.quant
    return (b.astype(np.int32) - q.weight_zero_points[0]).astype(np.float32) * np.float32(q.weight_scales[0])


@dataclass
class CallLog:
    """What a run executed: one entry per offloaded call, in order (filled by the runners)."""

    calls: list[str] = field(default_factory=list)
    #: When set, each call also records ``(layer_id, x_q, acc)`` in :attr:`traces` (tests, debugging).
    trace: bool = False
    traces: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    #: The run's fault injector (:class:`approxtvm.runtime.faults.FaultSession`); ``None``: fault-free.
    faults: FaultSession | None = None

    def clear(self) -> None:
        """Forget previous calls."""
        self.calls.clear()
        self.traces.clear()


def _has_faults(log: CallLog, layer_id: str) -> bool:
    """Whether the run's fault model corrupts anything in this layer."""
    if log.faults is None:
        return False
    plan = log.faults.faults.plans.get(layer_id)
    return plan is not None and not plan.trivial


def execute_layer(prog: LayerProgram, log: CallLog, x: np.ndarray, *operands: np.ndarray) -> np.ndarray:
    """One call of an offloaded layer on activation codes ``x`` (and, for an activation ×
    activation matmul, the second operand's codes): exact accumulators through the layer's kernel,
    the run's faults, the trace if enabled; returns the float layer output."""
    sched = prog.schedule
    if (sched.shape.op == "matmul" or sched.shape.groups > 1) and _has_faults(log, sched.layer_id):
        # the fault sampler walks ungrouped conv/dense tiles; these layers need their own walk
        raise ScheduleError(
            f"layer {sched.layer_id}: fault injection on a {sched.shape.op} layer with groups",
            expected="NoC / SRAM faults on ungrouped conv2d and dense layers",
            found=f"a scaled NoC swing or buffer voltage on {sched.shape.op} (groups = {sched.shape.groups})",
            fix="keep nominal NoC swing and buffer voltages on grouped convs and attention matmuls in the policy",
        )
    if sched.shape.op == "matmul":
        acc = accumulate_matmul(x, operands[0], prog)
    else:
        acc = accumulate(x, prog)
        if log.faults is not None:
            acc = log.faults.apply(sched.layer_id, x, prog, acc)
    if log.trace:
        log.traces.append((sched.layer_id, x.copy(), acc))
    return to_float(acc, prog)


def make_runner(prog: LayerProgram, log: CallLog) -> Callable[..., None]:
    """The VM entry of one layer: DPS call ``(x_q[, y_q], out_0[, out_1 ...])``."""
    kinds = prog.schedule.outputs
    order = prog.schedule.inputs
    n_out = len(kinds)
    layer_id = prog.schedule.layer_id

    def run(*tensors: object) -> None:
        ins, outs = tensors[:-n_out], tensors[-n_out:]
        xs = [t.numpy() for t in ins]  # type: ignore[attr-defined]
        if order != ("x",) and order[0] == "b":
            xs.reverse()  # the partitioner passed the second operand first
        log.calls.append(layer_id)
        result = None
        for kind, out in zip(kinds, outs, strict=True):
            if kind == "input_dequantized":
                val = dequantize_input(xs[0], prog)
            elif kind == "input2_dequantized":
                val = dequantize_second(xs[1], prog)
            else:
                if result is None:
                    result = execute_layer(prog, log, *xs)
                val = result
            shape = tuple(int(d) for d in out.shape)  # type: ignore[attr-defined]
            out.copyfrom(np.ascontiguousarray(val.reshape(shape)))  # type: ignore[attr-defined]

    return run
