"""Execute a LayerSchedule: the accelerator's arithmetic, bit-exact (DESIGN §3).

``acc = Σ M(x_q, w_q) − z_w Σ x_q − z_x Σ w_q + K z_x z_w`` in exact integers, where only the
raw products go through the multiplier ``M`` and padded taps hold ``z_x`` and go through ``M``
like any other tap. The float result ``acc · s_x · s_w + bias`` is what the graph's next
``quantize`` expects, the same value the QDQ graph computes in float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from approxtvm.errors import DataError
from approxtvm.runtime import exact_layer
from approxtvm.runtime.kernels import KernelCache, LayerStore, choose_path, conv2d_products, dense_products
from approxtvm.runtime.kernels.act_matmul import choose_matmul_path, matmul_products
from approxtvm.runtime.kernels.column_fused import FusedColumn, Requant, column_pays
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.grouped import grouped_conv2d_products
from approxtvm.runtime.kernels.lowrank_layer import LayerQuant, LowRankLayer, shared_layer
from approxtvm.runtime.kernels.table_choice import measured_kernel
from approxtvm.runtime.kernels.weight_swap import conv2d_weight_kernel
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.runtime.window_sums import WindowSums
from approxtvm.targets.vacc.schedule import LayerSchedule


@dataclass(frozen=True, eq=False)
class LayerProgram:
    """A schedule with the constants and the multiplier it runs with.

    Attributes
    ----------
    schedule
        The layer schedule.
    weight
        Weight codes (OIHW for conv2d, (K, C / groups, R, S) when grouped, (K, C) for dense; empty
        for an activation × activation matmul, whose second operand arrives with each call).
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
        path = _choose(multiplier, schedule, weight, cache)
        return LayerProgram(schedule, weight, bias, multiplier, cache, path)

    @cached_property
    def kernel_path(self) -> str:
        """The kernel path the layer runs on: :attr:`path` if given, else chosen on first use."""
        if self.path:
            return self.path
        return _choose(self.multiplier, self.schedule, self.weight, self.cache)

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
    def zero_point_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``z_w`` and ``z_x Σ w − C·R·S z_x z_w`` per output channel as int32 (wrapped modulo
        2^32), shaped to broadcast against the layer's accumulators."""
        s, q = self.schedule.shape, self.schedule.quant
        zx = int(q.input_zero_point)
        zw = np.asarray(q.weight_zero_points, np.int64)
        taps = s.c_per_group * s.r * s.s
        const = zx * self.weight_sums - taps * zx * zw
        bshape = (1, -1) if s.op == "dense" else (1, -1, 1, 1)
        zw_b = np.broadcast_to(zw, (s.k,)) if zw.size > 1 else zw
        const_b = np.broadcast_to(const, (s.k,))
        return zw_b.astype(np.int32).reshape(bshape), const_b.astype(np.int32).reshape(bshape)

    def weight_kernel(self, x: np.ndarray) -> Callable[..., np.ndarray] | None:
        """The accumulators of ``x`` as a function of the weight bytes the layer computes with
        (OIHW uint8 of the layer's weight shape; ``None``: its own; or ``(weights, rows)`` pairs,
        each batch-row range computed with its own weights), where its prepared kernel can
        take other weights at no cost beyond a relayout: an ungrouped conv on the register-LUT kernel,
        after its first call (:func:`~approxtvm.runtime.kernels.weight_swap.conv2d_weight_kernel`);
        else ``None``. The zero-point correction stays that of the layer's own weights (computed off
        the array, DESIGN §5), as under faults."""
        s = self.schedule.shape
        if s.op != "conv2d" or s.groups != 1 or self.column_fused:
            return None
        geo = {
            "strides": (s.stride_h, s.stride_w),
            "dilations": (s.dilation_h, s.dilation_w),
            "pads": (s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
            "pad_value": self.schedule.quant.input_zero_point,
        }
        products = conv2d_weight_kernel(x, self.weight, self.multiplier, path=self.kernel_path, store=self.store, **geo)
        if products is None:
            return None

        def run(weights: np.ndarray | Sequence[tuple[np.ndarray, slice]] | None) -> np.ndarray:
            if weights is None:
                return accumulate(x, self)
            if isinstance(weights, np.ndarray):
                return accumulate(x, self, products=products(weights, None))
            raw = np.empty((len(x), s.k, s.p, s.q), np.int32)
            for wb, rows in weights:
                raw[rows] = products(wb, rows)
            return accumulate(x, self, products=raw)

        return run

    @cached_property
    def window_sums(self) -> WindowSums:
        """The layer's window-sum operator (conv layers; built on first use)."""
        return WindowSums(self.schedule)

    @cached_property
    def float_constants(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``s_x · s_w`` (float64, broadcastable to the output) and the dequantized bias (float32),
        computed once: they depend on the weights only."""
        sched = self.schedule
        q = sched.quant
        bshape = {"dense": (1, -1), "conv2d": (1, -1, 1, 1)}.get(sched.shape.op, (-1,))
        scale = (q.input_scale * np.asarray(q.weight_scales, np.float64)).reshape(bshape)
        if self.bias is None:
            return scale, None
        bz = np.asarray(q.bias_zero_points, np.int64)
        bias = ((self.bias.astype(np.int64) - bz).astype(np.float32) * np.asarray(q.bias_scales, np.float32)).astype(
            np.float32
        )
        return scale, bias.reshape(bshape)

    @cached_property
    def column_fused(self) -> bool:
        """Whether the layer runs as one fused column-kernel call (products, zero-point correction
        and, on the onnxruntime host, requantization: :mod:`approxtvm.runtime.kernels.column_fused`)."""
        s = self.schedule.shape
        path = self.kernel_path
        if s.op != "conv2d" or path not in ("table", "table_perm", "table_gather", "lowrank"):
            return False
        from approxtvm.runtime.kernels.dispatch import _factors_stored, tvm_available

        if not tvm_available():
            return False
        from approxtvm.runtime.kernels.table_perm import perm_available, perm_dtype

        if perm_dtype(self.multiplier.table) is None:
            return False
        bt = None
        if path == "lowrank" and s.groups == 1:
            wb = np.ascontiguousarray(self.weight).view(np.uint8)
            bt = _factors_stored(self.multiplier, wb, self.cache, path, self.store).byte_terms()
        register_lut = perm_available(self.cache.tvm_kernels().cpu)
        return column_pays(self.geometry, s.groups, path, bt, register_lut)

    @property
    def geometry(self) -> ConvGeometry:
        """The conv layer's kernel geometry (with its pads)."""
        s = self.schedule.shape
        return ConvGeometry(
            s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w,
            s.pad_top, s.pad_left, s.pad_bottom, s.pad_right,
        )  # fmt: skip

    def fused_call(self, x: np.ndarray, requant: tuple[float, int, str] | None = None) -> np.ndarray:
        """The layer as one fused column-kernel call (:attr:`column_fused` must hold) on activation
        codes ``x``: int32 accumulators, or with ``requant = (y_scale, y_zero_point, dtype)`` the
        codes :func:`requantize` gives. Prepared once per input shape and output quantization."""
        key = ("fused", f"{x.shape}:{requant}")
        layer = self.store.entries.get(key)
        if layer is None:
            import dataclasses

            rq = None if requant is None else requant_constants(self, *requant)
            g = dataclasses.replace(self.geometry, n=int(x.shape[0]))
            s = self.schedule.shape
            wb = np.ascontiguousarray(self.weight).view(np.uint8)
            layer = FusedColumn(
                wb, self.multiplier.table, s.groups, g, int(self.schedule.quant.input_zero_point),
                self.zero_point_terms, bool(self.schedule.quant.signed), rq, self.cache.tvm_kernels(),
                self.multiplier.table_hash,
            )  # fmt: skip
            self.store.entries[key] = layer
        return layer(x)  # type: ignore[operator]

    def lowrank_layer(self, x_shape: tuple[int, ...], requant: tuple[float, int, str] | None) -> LowRankLayer | None:
        """The layer as one :class:`~approxtvm.runtime.kernels.lowrank_layer.LowRankLayer` (activation
        codes to requantized codes ``requant = (y_scale, y_zero_point, dtype)``, or with ``requant``
        ``None`` to the int32 accumulators :func:`accumulate` gives) for inputs of
        ``x_shape``, or ``None`` where it does not apply: not an ungrouped conv on the low-rank path,
        no GEMM plan, a divisor other than 1, or an output type other than 8 bits. Built once per
        input shape and output quantization; the session itself lives in the model's kernel cache
        among the sessions that carry weights (:func:`~approxtvm.runtime.kernels.lowrank_layer.shared_layer`:
        bounded, shared by the models of a process)."""
        key = ("lowrank_layer", f"{x_shape}:{requant}")
        if key in self.store.entries:
            args = self.store.entries[key]
            return None if args is None else shared_layer(self.cache.sessions, *args)  # type: ignore[misc]
        args = None
        s = self.schedule.shape
        if (
            s.op == "conv2d"
            and s.groups == 1
            and self.kernel_path == "lowrank"
            and (requant is None or requant[2] in ("uint8", "int8"))
        ):
            from approxtvm.runtime.kernels.dispatch import lowrank_gemm_plan

            plan, divisor = lowrank_gemm_plan(self.multiplier, self.weight, self.cache, self.store)
            if plan is not None and divisor == 1:
                import dataclasses

                q = self.schedule.quant
                rq = Requantizer.of(self, *(requant or (1.0, 0, "uint8")))  # accumulators: unused
                zx = int(q.input_zero_point)
                zw = np.asarray(q.weight_zero_points, np.int64)
                taps = s.c_per_group * s.r * s.s
                quant = LayerQuant(
                    input_zero_point=zx,
                    weight_zero_points=zw,
                    channel_const=np.broadcast_to(zx * self.weight_sums - taps * zx * zw, (s.k,)).astype(np.int64),
                    bias=np.zeros(s.k, np.int64) if rq.bias is None else rq.bias.reshape(-1).astype(np.int64),
                    scale=np.broadcast_to(rq.scale.reshape(-1), (s.k,)).astype(np.float32),
                    output_zero_point=0 if requant is None else int(requant[1]),
                    output_dtype="int32" if requant is None else str(rq.dtype),
                    signed=bool(q.signed),
                )
                args = (plan, dataclasses.replace(self.geometry, n=int(x_shape[0])), quant)
        self.store.entries[key] = args
        return None if args is None else shared_layer(self.cache.sessions, *args)

    @cached_property
    def fused_exact(self) -> exact_layer.ExactLayer | None:
        """One-call exact path (zero points folded into the integer kernel), when it applies."""
        if (
            self.kernel_path == "exact"
            and self.schedule.shape.op != "matmul"
            and exact_layer.supports(self.schedule, self.weight)
        ):
            return exact_layer.ExactLayer(self.schedule, self.weight)
        return None


#: A hook that may change a layer call's int32 accumulators: ``(layer_id, x_q, program, acc, *operands)
#: -> acc`` (``operands``: an activation × activation matmul's second operand).
AccumulatorHook = Callable[..., np.ndarray]


def _choose(multiplier: Multiplier, schedule: LayerSchedule, weight: np.ndarray, cache: KernelCache) -> str:
    """Kernel path of a layer: specialised to its weights, or for a matmul to any second operand."""
    if schedule.shape.op == "matmul":
        return choose_matmul_path(multiplier, cache)
    return choose_path(multiplier, schedule.shape, weights=weight, cache=cache).path


def accumulate(
    x: np.ndarray, prog: LayerProgram, products: np.ndarray | None = None, *, one_session: bool = False
) -> np.ndarray:
    """Exact int32 accumulators of the layer for activation codes ``x``.

    Parameters
    ----------
    x
        Activation codes, (N, C, H, W) for conv2d or (N, C) for dense.
    prog
        The layer program.
    products
        Precomputed ``Σ M(x, w)`` (e.g. from a tiled or faulty execution); computed here if ``None``.
    one_session
        Allow a low-rank conv layer's one-session accumulators (:meth:`LayerProgram.lowrank_layer`
        with no requantization), where measured faster than the kernel-by-kernel path: for calls
        whose accumulators are changed or kept (faults, traces); a plain call's layer takes the
        host's requantizing session instead (:mod:`approxtvm.compiler.host_ort`).
    """
    sched = prog.schedule
    s, q = sched.shape, sched.quant
    if s.op == "dense":
        x = x.reshape(-1, s.c)  # a rank ≥ 3 input is a batch of rows
    if products is None and prog.fused_exact is not None:
        return prog.fused_exact(x)
    if products is None and prog.column_fused:
        return prog.fused_call(x)
    if products is None and one_session and s.op == "conv2d" and prog.kernel_path == "lowrank":
        layer = prog.lowrank_layer(x.shape, None)
        if layer is not None:  # the faster form, measured once per layer shape and plan structure
            ses = prog.cache.sessions
            candidates = {"kernels": lambda: accumulate(x, prog, one_session=False), "session": lambda: layer(x)}
            choice, first = measured_kernel(layer.speed_key, candidates, ses.sessions, ses.lock)
            return first if first is not None else candidates[choice]()
    zx = q.input_zero_point
    zw = np.asarray(q.weight_zero_points, np.int64)
    if s.op == "dense":
        raw = (
            dense_products(x, prog.weight, prog.multiplier, path=prog.kernel_path, cache=prog.cache, store=prog.store)
            if products is None
            else products
        )
        zw_b, const = prog.zero_point_terms
        sum_x = x.sum(axis=1, dtype=np.int32, keepdims=True) if zw.any() else None  # (N, 1)
    else:
        if products is None and s.groups > 1:
            raw = grouped_conv2d_products(
                x,
                prog.weight,
                prog.multiplier,
                groups=s.groups,
                strides=(s.stride_h, s.stride_w),
                dilations=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
                pad_value=zx,
                path=prog.kernel_path,
                cache=prog.cache,
                store=prog.store,
            )
        elif products is None:
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
        zw_b, const = prog.zero_point_terms
        sum_x = prog.window_sums(x) if zw.any() else None
    # int32 ring arithmetic: every term wraps modulo 2^32 like the int32 accumulator, so this equals
    # the exact int64 sum wrapped once (and moves half the bytes of int64 temporaries)
    acc = np.array(raw, dtype=np.int32, copy=True)
    if sum_x is not None:
        acc -= zw_b * sum_x
    acc -= const
    return acc


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
    raw = (
        matmul_products(a, b, prog.multiplier, path=prog.kernel_path, cache=prog.cache)
        if products is None
        else products
    )
    sum_a = a.astype(np.int64).sum(axis=-1, keepdims=True)
    sum_b = b.astype(np.int64).sum(axis=-2, keepdims=True)
    acc = raw.astype(np.int64) - zb * sum_a - za * sum_b + a.shape[-1] * za * zb
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
    #: The run's accumulator hook ``(layer_id, x_q, program, acc, *operands) -> acc`` (e.g. the ``apply`` of an
    #: :class:`approxtvm.runtime.faults.FaultSession`); ``None``: the fault-free accumulators are used.
    faults: AccumulatorHook | None = None
    #: The same hook for several consecutive calls of a layer stacked along ``N``, in place:
    #: ``(layer_id, x_q, program, acc, calls) -> acc`` (:meth:`~approxtvm.runtime.faults.FaultSession.apply_calls`).
    faults_calls: Callable[..., np.ndarray] | None = None
    #: The same for an exact conv/dense layer whose fault-free accumulators its :class:`ExactLayer` computes:
    #: ``(layer_id, x_q, program, exact, rows, calls) -> acc`` (``rows``: ``x_q`` as ``exact`` reads it;
    #: :meth:`~approxtvm.runtime.faults.FaultSession.apply_exact`, which may run ``exact`` on corrupted weights;
    #: with ``gemm_rows=True`` it may return :class:`~approxtvm.runtime.exact_layer.RowsAccumulators`).
    faults_exact: Callable[..., np.ndarray | exact_layer.RowsAccumulators] | None = None
    #: The same for a layer call whose kernel can run on other weights: ``(layer_id, x_q, program,
    #: kernel) -> acc | None`` (``kernel``: :meth:`LayerProgram.weight_kernel`; ``None``: not taken,
    #: the call goes through the kernel and :attr:`faults`;
    #: :meth:`~approxtvm.runtime.faults.FaultSession.apply_kernel`).
    faults_kernel: Callable[..., np.ndarray | None] | None = None

    def clear(self) -> None:
        """Forget previous calls."""
        self.calls.clear()
        self.traces.clear()


def layer_accumulators(prog: LayerProgram, log: CallLog, x: np.ndarray, *operands: np.ndarray) -> np.ndarray:
    """One call of an offloaded layer on activation codes ``x`` (and, for an activation ×
    activation matmul, the second operand's codes): exact accumulators through the layer's kernel,
    after the run's accumulator hook (faults); traced if enabled."""
    layer_id = prog.schedule.layer_id
    if prog.schedule.shape.op == "matmul":
        acc = accumulate_matmul(x, operands[0], prog)
    elif (
        log.faults_kernel is not None
        and not log.trace
        and (kernel := prog.weight_kernel(x)) is not None
        and (faulty := log.faults_kernel(layer_id, x, prog, kernel)) is not None
    ):
        return faulty
    else:
        acc = accumulate(x, prog, one_session=log.faults is not None or log.trace)
    if (
        log.faults_calls is not None
        and not operands
        and acc.dtype == np.int32
        and acc.flags.c_contiguous
        and acc.flags.writeable
    ):
        acc = log.faults_calls(layer_id, x, prog, acc, 1)  # in place: the kernels' accumulators are ours
    elif log.faults is not None:
        acc = log.faults(layer_id, x, prog, acc, *operands)
    if log.trace:
        log.traces.append((layer_id, x.copy(), acc))
    return acc


def execute_layer(prog: LayerProgram, log: CallLog, x: np.ndarray, *operands: np.ndarray) -> np.ndarray:
    """:func:`layer_accumulators` as the float layer output (:func:`to_float`)."""
    out = to_float(layer_accumulators(prog, log, x, *operands), prog)
    s = prog.schedule.shape
    if s.op == "dense" and x.ndim > 2:  # rows of a rank ≥ 3 input: give the output its leading dims back
        out = out.reshape(*x.shape[:-1], s.k)
    return out


def requantize(acc: np.ndarray, prog: LayerProgram, y_scale: float, y_zero_point: int, dtype: str) -> np.ndarray:
    """8-bit layer output from the accumulators, with onnxruntime's integer-kernel arithmetic.

    onnxruntime runs ``DequantizeLinear → Conv/Gemm/MatMul → QuantizeLinear`` as one integer
    kernel (QLinearConv, QGemm, QLinearMatMul) that adds the int32 bias codes to the accumulator,
    multiplies by the float32 scale ``s_x · s_w / s_y`` (evaluated in that order, in float32),
    clamps to the output range, rounds half to even and adds ``z_y``. Following it keeps a layer
    computed by our kernels bit-identical to onnxruntime's when the multiplier is exact.
    """
    return Requantizer.of(prog, y_scale, y_zero_point, dtype)(acc)


@dataclass(frozen=True, eq=False)
class Requantizer:
    """:func:`requantize` of one layer and output quantization, its constants computed once.

    Attributes
    ----------
    scale
        ``s_x · s_w / s_y`` as float32, broadcast over the output channels.
    bias
        int32 bias codes minus their zero point (broadcast), or ``None``.
    low, high
        The output range minus ``z_y`` (the clamp before the rounding), float32.
    zero_point
        ``z_y`` as float32.
    dtype
        The 8-bit output type.
    """

    scale: np.ndarray
    bias: np.ndarray | None
    low: np.float32
    high: np.float32
    zero_point: np.float32
    dtype: np.dtype

    @staticmethod
    def of(prog: LayerProgram, y_scale: float, y_zero_point: int, dtype: str) -> Requantizer:
        """The requantizer of ``prog``'s accumulators to ``(y_scale, y_zero_point, dtype)``."""
        q = prog.schedule.quant
        bshape = (1, -1, 1, 1) if prog.schedule.shape.op == "conv2d" else (1, -1)
        scale = (np.float32(q.input_scale) * np.asarray(q.weight_scales, np.float32)) / np.float32(y_scale)
        bias = None
        if prog.bias is not None:
            bz = np.asarray(q.bias_zero_points, np.int64)
            bias = (prog.bias.astype(np.int64) - bz).astype(np.int32).reshape(bshape)
        info = np.iinfo(np.dtype(dtype))
        return Requantizer(
            scale.astype(np.float32).reshape(bshape),
            bias,
            np.float32(info.min - y_zero_point),
            np.float32(info.max - y_zero_point),
            np.float32(y_zero_point),
            np.dtype(dtype),
        )

    def __call__(self, acc: np.ndarray, *, in_place: bool = False, scratch: np.ndarray | None = None) -> np.ndarray:
        """The 8-bit output of int32 accumulators ``acc``.

        ``in_place``: the bias is added into ``acc`` (the caller's array, changed); ``scratch``: a
        float32 buffer of ``acc``'s size for the intermediate (fresh large temporaries page-fault).
        """
        total = (
            acc if self.bias is None else np.add(acc, self.bias, out=acc if in_place and acc.flags.writeable else None)
        )
        if scratch is not None and scratch.size == total.size:
            v = np.multiply(total, self.scale, out=scratch.reshape(total.shape), dtype=np.float32)
        else:  # float32(total) · scale: the int32 → float32 cast, then the float32 product
            v = np.multiply(total, self.scale, dtype=np.float32)
        # in place on one float32 buffer; adding z_y after the rounding is exact in float32 (|v| ≤ 2^9)
        np.clip(v, self.low, self.high, out=v)
        np.rint(v, out=v)
        if self.zero_point:
            v += self.zero_point
        return v.astype(self.dtype)


def requant_constants(prog: LayerProgram, y_scale: float, y_zero_point: int, dtype: str) -> Requant:
    """The constants of :func:`requantize` per output channel for the fused kernel: int32 bias codes
    ``bias − z_bias`` (zeros without a bias) and the float32 scale ``(s_x · s_w) / s_y``."""
    rq = Requantizer.of(prog, y_scale, y_zero_point, dtype)
    k = prog.schedule.shape.k
    bias = np.zeros(k, np.int32) if rq.bias is None else rq.bias.reshape(-1)
    return Requant(bias, rq.scale.reshape(-1), int(y_zero_point), str(rq.dtype))


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
