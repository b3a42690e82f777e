"""compile_onnx: ONNX → QDQ → Relax → annotated, partitioned → vacc schedules → VM executable."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import tvm
from tvm import relax

from approxtvm.compiler import fold, frontend, prepare
from approxtvm.compiler.diagnose import import_onnx, phase
from approxtvm.compiler.frontend import QuantOptions
from approxtvm.compiler.host import host_target
from approxtvm.compiler.model import HOSTS, CompiledModel
from approxtvm.compiler.pipeline import annotate, partition
from approxtvm.compiler.weight_transforms import WeightTransforms, apply_weight_transforms
from approxtvm.errors import ModelError, PolicyError
from approxtvm.runtime.executor import CallLog, LayerProgram, make_runner
from approxtvm.runtime.kernels import KernelCache
from approxtvm.runtime.multipliers.resolver import MultiplierResolver
from approxtvm.runtime.shared_caches import SharedCaches
from approxtvm.targets.vacc.codegen import CodegenSession, LoweredLayer, run_codegen
from approxtvm.targets.vacc.compression import decompress_layer
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.partition import host_reasons

LOG = logging.getLogger("approxtvm")


def build_vm(mod: tvm.IRModule) -> tuple[relax.VMExecutable, relax.VirtualMachine]:
    """Build the host part with the host's own llvm target and create the VM."""
    target = host_target()
    ex = relax.build(mod, target, relax_pipeline=relax.get_default_pipeline(target))
    return ex, relax.VirtualMachine(ex, tvm.cpu())


def compile_onnx(
    model: str | os.PathLike[str] | onnx.ModelProto,
    policy: ApproxPolicy | str | os.PathLike[str] | None = None,
    *,
    accelerator: str | os.PathLike[str] | AcceleratorSpec = "simba_like",
    calibration: np.ndarray | None = None,
    quantization: QuantOptions | None = None,
    batch_size: int | None = None,
    weight_transforms: WeightTransforms | None = None,
    host: str = "onnxruntime",
    caches: SharedCaches | None = None,
) -> CompiledModel:
    """Compile an ONNX model for the virtual accelerator.

    Parameters
    ----------
    model
        Path or ``ModelProto``; float (quantized here on ``calibration``) or QDQ (used as is).
    policy
        :class:`ApproxPolicy`, a path to a policy YAML file, or ``None`` (exact everywhere).
    accelerator
        Spec name (``simba_like``), path to a YAML file, or an :class:`AcceleratorSpec`.
    calibration
        Float inputs for static quantization of a float model.
    quantization
        Signedness, per-channel weights, calibration method (float models only).
    batch_size
        Batch the model is compiled for (schedules are per batch size). ``None``: the batch the
        model fixes, or 1 when its batch is symbolic. A value that conflicts with a batch fixed
        in the model is an error.
    weight_transforms
        Pruning / clustering of the quantized weights (their accuracy cost is measured by running
        the compiled model); compression itself is the policy's ``compression`` knob.
    host
        Engine of the host part (everything not offloaded): ``"onnxruntime"`` runs the QDQ graph
        itself in segments around the offloaded layers (onnxruntime's speed and arithmetic);
        ``"tvm"`` builds the Relax VM (``relax.build``). A graph the onnxruntime host cannot cut
        falls back to ``"tvm"`` with a warning.
    caches
        Kernels, sessions, access counts and fault geometry to share with other models compiled
        in this process (:class:`~approxtvm.runtime.shared_caches.SharedCaches`; an exploration
        worker passes one for all its configurations). ``None``: this model's own.
    """
    if host not in HOSTS:
        raise ModelError(
            f"unknown host {host!r}",
            expected=" or ".join(HOSTS),
            found=repr(host),
            fix="host='onnxruntime' (default) or host='tvm'",
        )
    proto = frontend.load_model(model)
    fold.check_shapes(proto)
    batch = prepare.resolve_batch(proto, batch_size)
    proto = phase("prepare", prepare.prepare, proto)  # names, constants, identities, own params
    frontend.check_supported(proto)
    if not frontend.is_quantized(proto):
        if calibration is None:
            raise ModelError(
                "a float model needs calibration data to be quantized",
                expected="calibration=<float array shaped like the input>",
                found="calibration=None",
                fix="pass a few hundred representative inputs, or a QDQ model",
            )
        proto = frontend.quantize(proto, calibration, quantization or QuantOptions())
    proto = phase("prepare", prepare.prepare, proto)  # per-layer dequantizes (batch stays as exported)
    if isinstance(policy, str | os.PathLike):
        policy = ApproxPolicy.from_spec(policy)
    policy = policy or ApproxPolicy.exact()
    spec = accelerator if isinstance(accelerator, AcceleratorSpec) else AcceleratorSpec.load(accelerator)
    # the imported copy has the batch fixed, so shape arithmetic folds and every layer has static shapes
    view, weight_to_layer, layer_order = prepare.import_view(phase("prepare", prepare.prepare, proto, batch))
    mod = import_onnx(view, frontend.fix_batch(view, batch))
    mod, detached = relax.frontend.detach_params(mod)
    n_in = int(mod["main"].attrs["num_input"])
    params = {p.name: t for p, t in zip(mod["main"].params[n_in:], detached["main"], strict=True)}
    mod = phase("annotate", annotate, mod, weight_to_layer, policy, layer_order)
    mod = phase("bind", relax.transform.BindParams("main", params), mod)  # weights become constants
    if weight_transforms is not None and weight_transforms.active:
        mod = apply_weight_transforms(mod, weight_transforms)
    uid = uuid.uuid4().hex[:10]
    mod = phase("partition", partition, mod, {}, f"vacc_{uid}_")
    return _finish(mod, proto, policy, spec, uid, batch, host, caches)


def _finish(
    mod: tvm.IRModule,
    proto: onnx.ModelProto,
    policy: ApproxPolicy,
    spec: AcceleratorSpec,
    uid: str,
    batch_size: int,
    host: str = "onnxruntime",
    caches: SharedCaches | None = None,
) -> CompiledModel:
    resolver = MultiplierResolver(spec)
    log = CallLog()
    # ORT sessions, TVM kernels, weight tables: the caller's (shared by its models) or this model's
    cache = caches.kernels if caches is not None else KernelCache()
    programs: dict[str, LayerProgram] = {}

    def factory(lowered: LoweredLayer) -> Callable[..., None]:
        sch = lowered.schedule
        # weights reach the PE compressed and are decoded there: run with the decoded tiles
        weight = (
            lowered.weight
            if lowered.compressed is None
            else decompress_layer(lowered.compressed).reshape(lowered.weight.shape)  # grouped: 5-D tiles
        )
        prog = LayerProgram.build(
            sch, weight, lowered.bias, resolver.multiplier(sch.config.multiplier, sch.quant.signed), cache
        )
        programs[sch.layer_id] = prog
        return make_runner(prog, log)

    reasons = host_reasons(mod)
    session = CodegenSession(spec, resolver.info, factory)
    mod = phase("codegen", run_codegen, mod, session)
    common = {
        "proto": proto,
        "policy": policy,
        "spec": spec,
        "uid": uid,
        "batch_size": batch_size,
        "programs": programs,
        "log": log,
        "host_reasons": reasons,
        "caches": caches,
    }
    if host == "onnxruntime":
        try:
            return CompiledModel(**common, executable=None, vm=None, host="onnxruntime")
        except PolicyError:
            raise
        except Exception as exc:  # a graph the segmenter cannot cut still runs, on the Relax VM
            LOG.warning(
                "onnxruntime host unavailable for this model (%s: %s); building the TVM host instead",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
    ex, vm = phase("build", build_vm, mod)
    return CompiledModel(**common, executable=ex, vm=vm, host="tvm")


def load_compiled(path: str | os.PathLike[str]) -> CompiledModel:
    """Load a model saved with :meth:`CompiledModel.save` (re-registers its layer entries)."""
    return CompiledModel.load(Path(path), MultiplierResolver)
