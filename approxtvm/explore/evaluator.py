"""Evaluate one configuration: compile the model with its policy, run the dataset, score it.

This is the function the executors ship to worker processes (local or Dask), so everything it
receives is plain picklable data (:class:`EvalContext`, :class:`EvalTask`) and everything it
returns is an :class:`~approxtvm.explore.journal.EvalRecord`. A worker keeps the quantized model
and the dataset of the contexts it has seen, the kernels, sessions, access counts and fault
geometry its compiled models share (:class:`~approxtvm.runtime.shared_caches.SharedCaches`), and
its most recently used compiled models (an LRU bounded by :data:`COMPILED_CACHE_BYTES`, so a
configuration that goes on to a later stage of a staged study is compiled once per worker);
:func:`clear_worker_cache` empties all of it. The result depends only on the task.

Every evaluation with data runs its samples in one fixed, label-stratified order of the context's
seed (a stage runs a prefix of it; :mod:`approxtvm.explore.stage_runs`), so a sample sits in the
same batch call at the same row in every stage. A task may carry the predictions of the same
configuration on an earlier stage (:class:`StagePrior`): only the samples the stage adds are run,
from the global batch call where the earlier stage ended, and the earlier predictions are merged
in — the record equals a run of the whole stage, with or without faults (faults are drawn per
(seed, layer, batch call); energy does not depend on the data). A faulty model reruns the stage
only when the earlier stage is not a whole number of batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import EvalRecord, evaluation_key
from approxtvm.explore.worker_memory import settled_resident_bytes

#: Samples used to quantize a float model when no calibration set is named.
CALIBRATION_SAMPLES = 256
#: Bytes of compiled models a worker keeps for later stages (least recently used evicted first;
#: the most recent one always stays). A model's size is what the worker's resident memory grew by
#: from before its compile to after its first evaluation (freed heap given back first): a faulty
#: ResNet-50 genome holds ≈ 1.7 GB after a run (its layers' second sessions, corrupted-weight
#: copies, fault arrays), four times what the static estimate said. With the shared caches a
#: ResNet-50 recompile after an eviction costs a few seconds, ≈ 1 % of a later stage on hundreds
#: of images, so the bound favours memory.
COMPILED_CACHE_BYTES = 2 << 30


@dataclass(frozen=True, slots=True)
class EvalContext:
    """Everything but the configuration that an evaluation depends on.

    Attributes
    ----------
    model
        Shipped model name (``digits_cnn``) or ONNX path.
    data
        Dataset spec (``digits:test``, ``.npz``, image folder); ignored when ``energy_only``.
    limit
        First ``limit`` samples only (0 = all).
    batch_size
        Batch the model is compiled for.
    calibration
        Dataset spec used to quantize a float model (default: ``digits:train`` for the digits
        models, random inputs otherwise).
    seed
        Fault-injection seed of the runs.
    accelerator
        Accelerator spec name or YAML path.
    energy_only
        Compile only and report the energy of one inference (models without meaningful data,
        e.g. ResNet-50 with random weights).
    subset
        Evaluate only the first ``subset`` samples of a seeded, label-stratified order of the
        (limited) data (0 = all samples in their order): the screening stages of staged
        evaluation (:mod:`approxtvm.explore.staged`).
    ber_scale
        Factor on every fault model's bit error rate (``FaultOptions.ber_scale``; the sensitivity
        report moves it by a decade). 1 leaves the fingerprint as it was without the field.
    """

    model: str
    data: str = "digits:test"
    limit: int = 0
    batch_size: int = 8
    calibration: str | None = None
    seed: int = 0
    accelerator: str = "simba_like"
    energy_only: bool = False
    subset: int = 0
    ber_scale: float = 1.0

    def fingerprint(self) -> str:
        """SHA-256 of the model bytes, the data bytes, the settings and the code that evaluates
        (the journal context): a journal never serves results of another version of the runtime."""
        h = hashlib.sha256()
        fields = asdict(self)
        if fields["ber_scale"] == 1.0:  # the models' own rates: the fingerprint of earlier journals
            del fields["ber_scale"]
        h.update(json.dumps(fields, sort_keys=True).encode())
        h.update(code_fingerprint().encode())
        h.update(_load_proto(self.model).SerializeToString(deterministic=True))
        if not self.energy_only:
            data = _load_data(self)
            h.update(np.ascontiguousarray(data.x).tobytes())
            if data.y is not None:
                h.update(np.ascontiguousarray(data.y).tobytes())
        return h.hexdigest()


def code_fingerprint() -> str:
    """SHA-256 of the package files that determine an evaluation's result.

    The source and data files of the compiler, passes, targets, runtime and models packages, plus
    this module and ``explore/evaluate.py``: editing the compiler, the runtime, a spec or a
    multiplier table changes the journal keys; editing the search, the report or the CLI does not.
    """
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or path.suffix not in _CODE_SUFFIXES or "__pycache__" in rel:
            continue
        if not (rel.split("/")[0] in _CODE_PACKAGES or rel in _CODE_MODULES):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


_CODE_PACKAGES = ("compiler", "passes", "targets", "runtime", "models")
#: Modules outside those packages that determine a record (what runs, in which order).
_CODE_MODULES = ("explore/evaluator.py", "explore/evaluate.py", "explore/stage_runs.py", "explore/subsets.py")


_CODE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".tsv", ".onnx", ".c", ".bin")


@dataclass(frozen=True, slots=True)
class StagePrior:
    """The same configuration's predictions on an earlier stage of a staged study.

    Attributes
    ----------
    subset
        That stage's ``EvalContext.subset`` (≥ 1; its samples are part of every later stage's).
    predictions_i16
        Its top-1 class per sample (``EvalRecord.predictions_i16``), in the stage's order.
    """

    subset: int
    predictions_i16: bytes


@dataclass(frozen=True, slots=True)
class EvalTask:
    """One configuration to evaluate in one context.

    Attributes
    ----------
    context
        The evaluation context.
    context_fingerprint
        ``context.fingerprint()``, computed once by the driver.
    config_json
        Canonical configuration JSON.
    prior
        The configuration's predictions on an earlier, nested stage (a staged study's later
        stages): the worker may then run only the samples this stage adds. The result (and the
        journal key) is the same with or without it.
    """

    context: EvalContext
    context_fingerprint: str
    config_json: str
    prior: StagePrior | None = None

    @property
    def key(self) -> str:
        """Journal key of this task."""
        return evaluation_key(self.config_json, self.context_fingerprint)


def make_task(
    context: EvalContext, fingerprint: str, config: Configuration, prior: StagePrior | None = None
) -> EvalTask:
    """Task for one configuration (``prior``: see :attr:`EvalTask.prior`)."""
    if prior is not None and not (prior.subset >= 1 and (context.subset == 0 or prior.subset < context.subset)):
        raise ExplorationError(
            "a stage prior must come from a smaller, earlier stage",
            expected=f"1 ≤ prior subset < {context.subset or 'the whole set'}",
            found=f"prior subset {prior.subset}",
            fix="pass the record of an earlier stage of the same staged study",
        )
    return EvalTask(context, fingerprint, config.to_json(), prior)


# ------------------------------------------------------------------------------------------------
# worker side
# ------------------------------------------------------------------------------------------------

_PREPARED: dict[EvalContext, tuple[Any, Any]] = {}
"""Per-process cache: context → (quantized ModelProto, Dataset or None). See clear_worker_cache."""

_QUANTIZED: dict[tuple[str, str | None], Any] = {}
"""Per-process cache: (model, calibration) → quantized ModelProto, shared by the stage contexts
of one model (they differ only in ``subset``), so a model is quantized once per worker."""


_COMPILED: OrderedDict[tuple[EvalContext, str], tuple[Any, int, int | None]] = OrderedDict()
"""Per-process LRU: (context without its subset, configuration JSON) → (compiled model, bytes,
the worker's settled resident bytes before its compile while it is not measured yet). The stage
contexts of one study differ only in ``subset``, so they share entries."""

_SHARED: list[Any] = []
"""Per-process :class:`~approxtvm.runtime.shared_caches.SharedCaches` (created on first use)."""


def clear_worker_cache() -> None:
    """Forget the quantized models, datasets, compiled models and shared kernel caches of this process."""
    _PREPARED.clear()
    _QUANTIZED.clear()
    _COMPILED.clear()
    _SHARED.clear()


def _shared_caches() -> Any:
    if not _SHARED:
        from approxtvm.runtime.shared_caches import SharedCaches

        _SHARED.append(SharedCaches())
    return _SHARED[0]


def _model_bytes(model: Any) -> int:
    """Rough resident size of a compiled model after a run: the QDQ graph plus 15 × its layers'
    int8 weights (onnxruntime's folded float copies, the kernels' padded int16 copies and tables,
    the fault arrays). Measured: ResNet-50 random genomes of experiment 4's space grow a worker by
    290–450 MiB each; this gives ≈ 390 MiB."""
    return int(model.proto.ByteSize()) + 15 * sum(int(p.weight.nbytes) for p in model.programs.values())


def _cache_key(ctx: EvalContext, config_json: str) -> tuple[EvalContext, str]:
    return (replace(ctx, subset=0), config_json)


def compiled_model(ctx: EvalContext, proto: Any, config: Configuration, config_json: str) -> Any:
    """The model compiled for ``config`` in ``ctx``, from this worker's LRU if it has it."""
    from approxtvm.compiler.driver import compile_onnx

    key = _cache_key(ctx, config_json)
    hit = _COMPILED.get(key)
    if hit is not None:
        _COMPILED.move_to_end(key)
        return hit[0]
    before = settled_resident_bytes()
    model = compile_onnx(
        proto, config.policy(), accelerator=ctx.accelerator, batch_size=ctx.batch_size, caches=_shared_caches()
    )
    if ctx.ber_scale != 1.0:
        from approxtvm.runtime.faults import FaultOptions

        model.set_fault_options(FaultOptions(ber_scale=ctx.ber_scale))
    _COMPILED[key] = (model, _model_bytes(model), before)
    _fit_budget()
    return model


def _measure(key: tuple[EvalContext, str]) -> None:
    """After an evaluation: freed heap goes back to the system; after a model's first one, its
    size is what the worker grew by since before its compile (never less than the static
    estimate); then the LRU is fitted to its budget."""
    after = settled_resident_bytes()
    hit = _COMPILED.get(key)
    if hit is not None and hit[2] is not None and after is not None:
        _COMPILED[key] = (hit[0], max(hit[1], after - hit[2]), None)
    _fit_budget()


def _fit_budget() -> None:
    """Evict least recently used models until the kept ones fit :data:`COMPILED_CACHE_BYTES`
    (the most recent one always stays: a later stage of it is the likeliest next task)."""
    while len(_COMPILED) > 1 and sum(e[1] for e in _COMPILED.values()) > COMPILED_CACHE_BYTES:
        _COMPILED.popitem(last=False)


def limit_threads(core: int | None = None) -> None:
    """Give a worker process one compute thread (call before TVM or onnxruntime is imported).

    Several workers on one machine would otherwise each spawn a thread per core and fight.

    Parameters
    ----------
    core
        Also pin the process to this CPU (modulo the CPUs available to it; Linux only): thread
        pools that size themselves by the core count then stay on one core.
    """
    for var in ("OMP_NUM_THREADS", "TVM_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if core is not None and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[core % len(cpus)]})


def pin_next_core(counter: Any) -> None:
    """Pool initializer: :func:`limit_threads` pinned to the next core of a shared counter."""
    with counter.get_lock():
        core = counter.value
        counter.value += 1
    limit_threads(core)


def load_model_proto(model: str) -> Any:
    """A shipped model by name, or an ONNX file."""
    return _load_proto(model)


def _load_proto(model: str) -> Any:
    from approxtvm.compiler.frontend import load_model
    from approxtvm.models import get_model, list_models

    return get_model(model) if model in list_models() else load_model(model)


def load_context_data(ctx: EvalContext) -> Any:
    """The dataset an evaluation in ``ctx`` runs on (limit, then the stratified subset)."""
    from approxtvm.explore.subsets import stratified_subset
    from approxtvm.models import load_dataset

    data = load_dataset(ctx.data)
    data = data.take(ctx.limit) if ctx.limit else data
    return stratified_subset(data, ctx.subset, ctx.seed) if ctx.subset else data


_load_data = load_context_data


def _prepare(ctx: EvalContext) -> tuple[Any, Any]:
    if ctx not in _PREPARED:
        from approxtvm.compiler import frontend
        from approxtvm.models import calibration_data, load_dataset

        qkey = (ctx.model, ctx.calibration)
        if qkey not in _QUANTIZED:
            proto = _load_proto(ctx.model)
            if not frontend.is_quantized(proto):
                if ctx.calibration:
                    calib = load_dataset(ctx.calibration).x[:CALIBRATION_SAMPLES]
                elif ctx.model.startswith("digits"):
                    calib = load_dataset("digits:train").x[:CALIBRATION_SAMPLES]
                else:
                    calib = calibration_data(proto, n=8)
                proto = frontend.quantize(proto, calib, frontend.QuantOptions())
            _QUANTIZED[qkey] = proto
        _PREPARED[ctx] = (_QUANTIZED[qkey], None if ctx.energy_only else _load_data(ctx))
    return _PREPARED[ctx]


def run_task(task: EvalTask) -> EvalRecord:
    """Compile and evaluate one configuration (the function executors run on workers).

    Raises
    ------
    ExplorationError
        The configuration cannot be compiled or run (the message names it).
    """
    from approxtvm.errors import ApproxTvmError

    t0 = time.perf_counter()
    ctx = task.context
    proto = _prepare(replace(ctx, subset=0))[0]  # stage contexts share the whole set (no copies)
    config = Configuration.from_dict(json.loads(task.config_json))
    try:
        model = compiled_model(ctx, proto, config, task.config_json)
        if ctx.energy_only:
            energy = model.energy_per_batch()
            samples, per = 0, float(ctx.batch_size)
            pred = np.zeros(0, dtype=np.int64)
            correct = None
        else:
            energy, pred, per = _run_data(model, ctx, task.prior)
            samples = len(pred)
            y = _stage_labels(ctx)
            correct = None if y is None else int(np.sum(pred == y))
    except ApproxTvmError as exc:
        raise ExplorationError(
            f"evaluating configuration {config.label()!r} failed",
            expected="a configuration that compiles and runs",
            found=str(exc),
            fix="remove the offending knob value from the search space",
        ) from exc
    _measure(_cache_key(ctx, task.config_json))
    detail = {
        "by_component_pj": {k: v / per for k, v in energy.by_component().items()},
        "by_layer_pj": {k: v / per for k, v in energy.by_layer().items()},
        "layer_ids": list(model.layer_ids),
        "macs_per_inference": energy.macs / per,
    }
    return EvalRecord(
        key=task.key,
        context=task.context_fingerprint,
        config_json=task.config_json,
        samples=samples,
        correct=correct,
        energy_per_inference_pj=float(energy.total_pj / per),
        predictions_i16=np.asarray(pred, dtype="<i2").tobytes(),
        detail_json=json.dumps(detail, sort_keys=True),
        eval_s=time.perf_counter() - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def _run_data(model: Any, ctx: EvalContext, prior: StagePrior | None) -> tuple[Any, np.ndarray, float]:
    """Energy, predictions (ascending sample index) and executed slots of ``ctx``'s samples, run
    in the context's fixed order (:mod:`approxtvm.explore.stage_runs`), after a prior's samples
    when it can be reused."""
    from approxtvm.explore.stage_runs import run_stage, stage_order

    full = _prepare(replace(ctx, subset=0))[1]
    order = stage_order(full.y, len(full), ctx.subset, ctx.seed)
    if prior is not None and prior.subset >= len(order):
        raise ExplorationError(
            "a stage prior does not match the stage's samples",
            expected=f"an earlier stage of fewer than {len(order)} samples",
            found=f"prior subset {prior.subset}",
            fix="pass the record of an earlier stage of the same study (same data, limit and seed)",
        )
    return run_stage(model, full.x, order, ctx.seed, None if prior is None else (prior.subset, prior.predictions_i16))


def _stage_labels(ctx: EvalContext) -> np.ndarray | None:
    """Labels of ``ctx``'s samples in ascending sample index (``None`` without labels)."""
    full = _prepare(replace(ctx, subset=0))[1]
    if full.y is None:
        return None
    from approxtvm.explore.stage_runs import stage_order

    return full.y[np.sort(stage_order(full.y, len(full), ctx.subset, ctx.seed))]
