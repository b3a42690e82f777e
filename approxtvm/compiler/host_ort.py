"""Host execution on onnxruntime: the QDQ graph itself, cut around the layers our kernels run.

Host ops run as onnxruntime sessions of the original QDQ graph (its arithmetic, its speed); each
offloaded layer that needs our kernels (an approximate multiplier, faults, tracing, transformed
weights) runs through :func:`approxtvm.runtime.executor.execute_layer` between them. An exact,
fault-free layer whose weights are the graph's own may stay inside the onnxruntime segment
(``exact_layers="onnxruntime"``): with ``M(a, b) = a·b`` onnxruntime's integer kernels compute the
same exact int32 accumulators (u8×u8 everywhere; signed operands only on VNNI CPUs, whose integer
dot products do not saturate, DESIGN §2), so only the requantization rounding may differ by one
step from the kernel path. Energy never depends on where a layer's arithmetic runs: every offloaded
layer is counted from its schedule once per batch.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from approxtvm.compiler.host_fused import fuse_sites, fused_layer
from approxtvm.compiler.host_graph import LayerSite, Segment, initializer_codes, layer_sites, split_graph
from approxtvm.errors import PolicyError
from approxtvm.runtime.exact_layer import ExactLayer, RowsAccumulators
from approxtvm.runtime.executor import CallLog, LayerProgram, Requantizer, execute_layer, layer_accumulators
from approxtvm.runtime.kernels.lowrank_qconv import QConvLayer
from approxtvm.runtime.kernels.ort_session import runtime_session
from approxtvm.runtime.requant_tvm import compiled_requantize, compiled_requantize_rows

#: Values of ``exact_layers``: where exact, fault-free offloaded layers compute.
EXACT_LAYER_MODES = ("onnxruntime", "kernels")


#: Rows of one grouped call (:meth:`OrtHost.run_batches`): enough to amortise the per-call costs of
#: small batches (digits at batch 1: one call instead of 360), bounded with ...
GROUP_ROWS = 512
#: ... the accumulator bytes of the largest layer of one grouped call.
GROUP_ACC_BYTES = 64 << 20


#: Timed runs of each form when a low-rank layer's form is chosen (:meth:`OrtHost._lowrank`).
LOWRANK_CHOICE_RUNS = 3

#: Whether approximate layers that onnxruntime can compute itself (:mod:`approxtvm.compiler.host_fused`)
#: run inside the host graph in fault-free, untraced runs (tests of the other forms turn it off).
FUSE_LAYERS = True


#: Node types that carry a layer's MACs: a segment without one is light (elementwise, pooling).
_MAC_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"})


def _session(model: onnx.ModelProto, spinning: bool) -> object:
    # a segment that alternates with our kernels cannot spin; if it is light, waking a sleeping pool
    # costs more than it saves (see exact_layer.SINGLE_THREAD_MACS): it runs on the calling thread
    light = not spinning and not any(n.op_type in _MAC_OPS for n in model.graph.node)
    return runtime_session(model, 1 if light else os.cpu_count() or 1, spinning=spinning)


@dataclass(frozen=True)
class _Step:
    segment: Segment | None
    site: LayerSite | None
    session: object | None


class OrtHost:
    """Runs batches of a compiled model with onnxruntime host segments.

    Parameters
    ----------
    proto
        The QDQ model the layers were compiled from.
    programs
        Offloaded layers (id → program), in program order.
    log
        The model's call log (calls, traces, the run's fault session).
    located
        Layer id → node index (:func:`approxtvm.compiler.host_graph.locate_layers`).
    vnni
        Whether this CPU's integer dot products are exact for signed operands.
    batch_size
        The compiled batch size (segments get static shapes for it).
    """

    def __init__(
        self,
        proto: onnx.ModelProto,
        programs: Mapping[str, LayerProgram],
        log: CallLog,
        located: Mapping[str, int],
        vnni: bool,
        batch_size: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.proto = proto
        self.programs = dict(programs)
        self.log = log
        index = dict(located)
        self.sites = layer_sites(
            proto,
            index,
            [(lid, p.schedule.has_bias) for lid, p in self.programs.items()],
            frozenset(lid for lid, p in self.programs.items() if p.schedule.shape.op == "matmul"),
        )
        self.input_name = next(i.name for i in proto.graph.input if i.name not in _init_names(proto))
        self.output_names = [o.name for o in proto.graph.output]
        self._fusable = frozenset(
            lid
            for lid, p in self.programs.items()
            if p.multiplier.is_exact
            and (not p.schedule.quant.signed or vnni)
            and _same_weights(p.weight, initializer_codes(proto, index[lid]))
        )
        self._plans: dict[tuple[frozenset[str], int | None], list[_Step]] = {}
        self._order = tuple(self.programs)
        self._grouped: dict[tuple[str, int], ExactLayer] = {}
        self._requant: dict[str, Requantizer] = {}
        self._rows_independent = rows_independent(proto)
        self._scratch: dict[tuple[str, str, tuple[int, ...]], np.ndarray] = {}
        self._lowrank_choice: dict[tuple[str, tuple[int, ...]], bool] = {}
        self._fused: dict[str, QConvLayer] | None = None  # layer id → its nodes inside the graph (found once)

    def kernel_layers(self, exact_layers: str, faulty: frozenset[str], faults: bool | None = None) -> frozenset[str]:
        """Layers that run on our kernels under ``exact_layers``, the layers with a fault model
        (``faulty``, always on our kernels), the current trace setting and whether the run draws
        faults (``faults``; ``None``: whether the call log has a fault session now)."""
        if exact_layers not in EXACT_LAYER_MODES:
            raise PolicyError(
                f"unknown exact_layers mode {exact_layers!r}",
                expected=" or ".join(EXACT_LAYER_MODES),
                found=repr(exact_layers),
                fix="use 'onnxruntime' (fast) or 'kernels' (every layer through the project's kernels)",
            )
        if exact_layers == "kernels" or self.log.trace:
            return frozenset(self.programs)
        kernels = frozenset(self.programs) - (self._fusable - faulty)
        if not (self.log.faults is not None if faults is None else faults):  # fault hooks need our kernels
            kernels -= self.fused_layers()
        return kernels

    def fused_layers(self) -> frozenset[str]:
        """Approximate layers that run inside the host graph when they are not kernel layers
        (:func:`~approxtvm.compiler.host_fused.fused_layer`; found once, at the first call)."""
        opset = next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not FUSE_LAYERS or opset < 13:  # the nodes use opset-13 forms (Pad, Slice, Reshape inputs)
            return frozenset()
        if self._fused is None:
            found: dict[str, QConvLayer] = {}
            for i, lid in enumerate(self._order):
                layer = fused_layer(self.programs[lid], self.sites[lid], f"fused{i}_")
                if layer is not None:
                    found[lid] = layer
            self._fused = found  # whole, at once: a concurrent run never sees part of it
        return frozenset(self._fused)

    def plan(self, kernels: frozenset[str], batch_size: int | None = None) -> list[_Step]:
        """Executable steps for a set of kernel layers (built once per batch size, then cached)."""
        rows = self.batch_size if batch_size is None else batch_size
        plan = self._plans.get((kernels, rows))
        if plan is None:
            proto, sites = self.proto, [self.sites[lid] for lid in self._order if lid in kernels]
            # layers kernel_layers left out as fused (found there, so only for plans that fuse)
            fused = {lid: layer for lid, layer in (self._fused or {}).items() if lid not in kernels}
            if fused:  # these layers' nodes go into the graph in place of theirs
                proto, sites = fuse_sites(self.proto, self.sites, fused, sites)
            steps = split_graph(proto, sites, rows)
            spinning = not kernels
            plan = [
                _Step(s, None, _session(s.model, spinning)) if isinstance(s, Segment) else _Step(None, s, None)
                for s in steps
            ]
            self._plans[(kernels, rows)] = plan
        return plan

    def group_size(self, kernels: frozenset[str], batches: int) -> int:
        """Batches of a run of ``batches`` that :meth:`run_batches` takes at once (0: it does not
        apply, every batch goes through :meth:`run_batch`).

        Grouping applies when every kernel layer is an exact integer conv/dense layer requantized by
        the graph (its accumulators do not depend on how many rows one call holds), the graph treats
        every batch row on its own (:func:`rows_independent`) and the run is not traced. At most
        :data:`GROUP_ROWS` rows and :data:`GROUP_ACC_BYTES` of accumulators of one layer per group
        (and at least one batch).
        """
        b = self.batch_size
        if b is None or not kernels or self.log.trace or not self._rows_independent:
            return 0
        acc_bytes = 0
        for lid in kernels:
            prog, site = self.programs[lid], self.sites[lid]
            s = prog.schedule.shape
            if prog.fused_exact is None or s.op not in ("conv2d", "dense") or site.requant is None:
                return 0
            acc_bytes = max(acc_bytes, 4 * s.n * s.k * s.p * s.q)
        return max(1, min(batches, GROUP_ROWS // b, GROUP_ACC_BYTES // max(1, acc_bytes)))

    def run_batches(self, x: np.ndarray, kernels: frozenset[str], calls: int) -> list[np.ndarray]:
        """Outputs of ``calls`` consecutive batches stacked in ``x`` (``calls`` × the compiled size),
        computed with one call per layer and host segment; only valid when :meth:`groupable`.

        Each batch stays its own layer call for the accumulator hook (faults), called in batch order
        per layer with that batch's rows: the results equal ``calls`` runs of :meth:`run_batch`.
        """
        env: dict[str, np.ndarray] = {self.input_name: x}
        hook = self.log.faults
        for step in self.plan(kernels, len(x)):
            site = step.site
            if site is None:
                seg = step.segment
                assert seg is not None
                res = step.session.run(seg.outputs, {n: env[n] for n in seg.inputs})  # type: ignore[attr-defined]
                env.update(zip(seg.outputs, res, strict=True))
                continue
            prog = self.programs[site.layer_id]
            xin = env[site.input_name]
            shape = prog.schedule.shape
            xm = xin.reshape(-1, shape.c) if shape.op == "dense" else xin
            exact = prog.fused_exact if len(xm) == shape.n else self._grouped.get((site.layer_id, len(xm)))
            if exact is None:
                exact = self._grouped[(site.layer_id, len(xm))] = ExactLayer(prog.schedule, prog.weight, len(xm))
            if self.log.faults_exact is not None:  # faults and accumulators together (corrupted weights)
                acc = self.log.faults_exact(site.layer_id, xin, prog, exact, xm, calls, gemm_rows=True)
            elif self.log.faults_calls is not None:
                acc = self.log.faults_calls(site.layer_id, xin, prog, exact(xm), calls)
            else:
                acc = exact(xm)
                rows, xrows = len(acc) // calls, len(xin) // calls
                for c in range(calls) if hook is not None else ():
                    part = acc[c * rows : (c + 1) * rows]
                    faulty = hook(site.layer_id, xin[c * xrows : (c + 1) * xrows], prog, part)
                    if faulty is not part:
                        part[...] = faulty
            y = self._requantize(site, prog, acc, in_place=True)
            if shape.op == "dense" and xin.ndim > 2:  # rows of a rank ≥ 3 input
                y = y.reshape(*xin.shape[:-1], shape.k)
            env[site.output_name] = y
        self.log.calls.extend(self._order * calls)
        return [env[n] for n in self.output_names]

    def _requantize(
        self, site: LayerSite, prog: LayerProgram, acc: np.ndarray | RowsAccumulators, in_place: bool
    ) -> np.ndarray:
        """:func:`~approxtvm.runtime.executor.requantize` of a site's accumulators, with the site's
        constants and a float32 buffer kept per layer and size (fresh large temporaries page-fault:
        digits_cnn at batch 360, 2.2 → 0.9 ms of process CPU per batch in this function); one compiled
        pass (:func:`~approxtvm.runtime.requant_tvm.compiled_requantize`) where TVM builds. Accumulators
        in the GEMM's rows (fault injection's corrupted-weight path) are transposed and their bias
        added in that same pass (:func:`~approxtvm.runtime.requant_tvm.compiled_requantize_rows`)."""
        rq = self._requant.get(site.layer_id)
        if rq is None:
            assert site.requant is not None
            rq = self._requant[site.layer_id] = Requantizer.of(prog, *site.requant)
        if isinstance(acc, RowsAccumulators):
            fused_rows = compiled_requantize_rows(rq, acc)
            if fused_rows is not None:
                return fused_rows
            acc = acc.standard()
        fused = compiled_requantize(rq, acc)  # one compiled pass, the same numbers
        if fused is not None:
            return fused
        return rq(acc, in_place=in_place, scratch=self._buffer(("requant", site.layer_id), (acc.size,), np.float32))

    def _lowrank(self, site: LayerSite, prog: LayerProgram, x: np.ndarray) -> np.ndarray | None:
        """A low-rank conv layer's requantized output by its one-session form
        (:meth:`~approxtvm.runtime.executor.LayerProgram.lowrank_layer`), or ``None`` where that
        form does not apply or was measured slower than the kernel-by-kernel path for this layer.

        The choice is made on the layer's first input (or taken from an earlier model of the
        process that shares the kernel cache and had the same layer): one warm-up and
        :data:`LOWRANK_CHOICE_RUNS` alternating timed runs of each (their outputs must be equal;
        if not, the kernel-by-kernel path is kept and a warning names the layer). On ResNet-50,
        conv1 (3 channels: the im2col gathers 3-byte pixels) keeps the kernels; with 1–3 byte
        terms nearly every other layer takes the session; with 5, some stage-1 layers are within
        noise of each other."""
        assert site.requant is not None
        key = (site.layer_id, x.shape)
        choice = self._lowrank_choice.get(key)
        if choice is False:
            return None
        layer = prog.lowrank_layer(x.shape, site.requant)
        if layer is None:
            self._lowrank_choice[key] = False
            return None
        if choice is None:  # measured by an earlier model of this process for the same layer?
            shared = prog.cache.sessions.sessions
            choice = self._lowrank_choice[key] = shared.get(("lowrank_choice", layer.key))  # type: ignore[assignment]
            if choice is False:
                return None
        if choice is None:

            def kernels() -> np.ndarray:
                return self._requantize(site, prog, layer_accumulators(prog, self.log, x), in_place=True)

            best = {"layer": float("inf"), "kernels": float("inf")}
            outs = {}
            for i in range(1 + LOWRANK_CHOICE_RUNS):
                for name, run in (("layer", layer), ("kernels", kernels)):
                    t0 = time.perf_counter()
                    outs[name] = run(x) if name == "layer" else run()  # type: ignore[operator]
                    if i:
                        best[name] = min(best[name], time.perf_counter() - t0)
            same = np.array_equal(outs["layer"], outs["kernels"])
            if not same:
                warnings.warn(
                    f"layer {site.layer_id}: the one-session low-rank form differs from the kernels; "
                    "using the kernels (please report this)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._lowrank_choice[key] = same and best["layer"] < best["kernels"]
            with prog.cache.sessions.lock:
                prog.cache.sessions.sessions[("lowrank_choice", layer.key)] = self._lowrank_choice[key]
            return outs["layer"] if self._lowrank_choice[key] else outs["kernels"]
        return layer(x)

    def _buffer(self, key: tuple[str, str], shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A buffer kept across batches (per layer, purpose and shape) for intermediates that never
        leave a batch (fresh large arrays page-fault)."""
        buf = self._scratch.get((*key, shape))
        if buf is None:
            buf = self._scratch[(*key, shape)] = np.empty(shape, dtype)
        return buf

    def run_batch(self, x: np.ndarray, kernels: frozenset[str]) -> list[np.ndarray]:
        """Outputs of one batch (of the compiled size); logs one call per offloaded layer."""
        env: dict[str, np.ndarray] = {self.input_name: x}
        for step in self.plan(kernels):
            if step.site is not None:
                site = step.site
                prog = self.programs[site.layer_id]
                operands = [env[site.input_name]] + ([env[site.input2_name]] if site.input2_name else [])
                shape = prog.schedule.shape
                if site.requant is not None and prog.column_fused and self.log.faults is None and not self.log.trace:
                    # products, zero-point correction and requantization in one kernel call
                    env[site.output_name] = prog.fused_call(operands[0], site.requant)
                elif (
                    site.requant is not None
                    and self.log.faults is None
                    and not self.log.trace
                    and (y_lr := self._lowrank(site, prog, operands[0])) is not None
                ):
                    env[site.output_name] = y_lr
                elif site.requant is not None and shape.op in ("conv2d", "dense"):
                    exact = prog.fused_exact
                    if exact is not None and self.log.faults is not None and not self.log.trace:
                        xm = operands[0].reshape(-1, shape.c) if shape.op == "dense" else operands[0]
                        if self.log.faults_exact is not None:  # faults and accumulators together
                            acc = self.log.faults_exact(site.layer_id, operands[0], prog, exact, xm, 1, gemm_rows=True)
                        else:
                            acc = exact(xm)
                            if self.log.faults_calls is not None and _in_place_ok(acc):  # our own array: no copy
                                acc = self.log.faults_calls(site.layer_id, operands[0], prog, acc, 1)
                            else:
                                acc = self.log.faults(site.layer_id, operands[0], prog, acc)
                    else:
                        acc = layer_accumulators(prog, self.log, *operands)
                    y = self._requantize(site, prog, acc, in_place=not self.log.trace)  # traces keep acc
                    if shape.op == "dense" and operands[0].ndim > 2:  # rows of a rank ≥ 3 input
                        y = y.reshape(*operands[0].shape[:-1], shape.k)
                    env[site.output_name] = y
                elif site.requant is not None:  # the graph's QuantizeLinear on the float result
                    scale, zp, dtype = site.requant
                    v = np.rint(execute_layer(prog, self.log, *operands) / np.float32(scale)) + zp
                    info = np.iinfo(np.dtype(dtype))
                    env[site.output_name] = np.clip(v, info.min, info.max).astype(dtype)
                else:
                    env[site.output_name] = execute_layer(prog, self.log, *operands)
            else:
                seg = step.segment
                assert seg is not None
                res = step.session.run(seg.outputs, {n: env[n] for n in seg.inputs})  # type: ignore[attr-defined]
                env.update(zip(seg.outputs, res, strict=True))
        self.log.calls.extend(self._order)
        return [env[n] for n in self.output_names]


#: Ops that compute each batch row on its own, whatever their attributes (elementwise, pooling,
#: per-sample convs and GEMMs); a few more are checked by :func:`rows_independent`.
_ROW_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "Conv", "ConvInteger", "QLinearConv", "MatMul", "MatMulInteger",
        "QLinearMatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
        "HardSwish", "Max", "Min", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Identity",
        "BatchNormalization", "Cast", "Sqrt", "Exp", "Erf", "Neg", "Abs",
    }
)  # fmt: skip


def rows_independent(proto: onnx.ModelProto) -> bool:
    """Whether the graph computes every batch row on its own, so that ``g`` batches stacked into
    one run give the rows of ``g`` runs: a symbolic batch dimension in and out, and only ops that
    keep rows apart (:data:`_ROW_OPS`; Gemm without a transposed input; Flatten, Softmax, Concat
    not over axis 0; Transpose keeping axis 0 first; Reshape to a constant shape that keeps or
    infers axis 0 over at least two axes). Anything else: ``False`` (one batch at a time)."""

    def symbolic(v: onnx.ValueInfoProto) -> bool:
        dims = v.type.tensor_type.shape.dim
        return bool(dims) and (bool(dims[0].dim_param) or not dims[0].HasField("dim_value"))

    inits = {t.name: t for t in proto.graph.initializer}
    ins = [i for i in proto.graph.input if i.name not in inits]
    if not all(symbolic(v) for v in [*ins, *proto.graph.output]):
        return False
    for n in proto.graph.node:
        at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type in _ROW_OPS:
            continue
        if n.op_type == "Gemm" and not at.get("transA", 0):
            continue
        axis = at.get("axis", 1)  # a negative axis other than -1 may be axis 0: refused
        if n.op_type in ("Flatten", "Softmax", "LogSoftmax", "Concat") and (axis > 0 or axis == -1):
            continue
        if n.op_type == "Transpose" and list(at.get("perm", [1]))[:1] == [0]:
            continue
        if n.op_type == "Reshape" and n.input[1] in inits:
            shape = onnx.numpy_helper.to_array(inits[n.input[1]]).tolist()
            if len(shape) >= 2 and shape[0] in (0, -1):
                continue
        return False
    return True


def _in_place_ok(acc: np.ndarray) -> bool:
    """Whether the fault hook may add into ``acc`` in place (a writeable C-contiguous int32 array)."""
    return acc.dtype == np.int32 and acc.flags.c_contiguous and acc.flags.writeable


def _init_names(proto: onnx.ModelProto) -> set[str]:
    return {t.name for t in proto.graph.initializer}


def _same_weights(weight: np.ndarray, codes: np.ndarray | None) -> bool:
    """Whether the program's weight codes are the graph's (pruning/clustering change them)."""
    if codes is None:
        return False
    if codes.shape == weight.shape and np.array_equal(codes, weight):
        return True
    return codes.ndim == 2 and codes.T.shape == weight.shape and np.array_equal(codes.T, weight)
