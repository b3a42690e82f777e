"""Every test-zoo model compiles, runs and agrees with onnxruntime on the same QDQ model.

The zoo (``tests/data/zoo``, written by ``scripts/make_zoo.py``) holds small versions of eleven
classifier families as torch's legacy and dynamo exporters write them, with torch's random
initialisation and with trained-looking weights, plus fixed-batch, symbolic-batch and
pre-quantized (onnxruntime ``quantize_static``) variants. Float models are quantized by our front
end on calibration images; the reference is onnxruntime running the very QDQ model we compiled
(``CompiledModel.proto``) on 100 evaluation images from a different seed.

Criteria (issue 11, item 4), on both exact paths (the default, where exact layers compute inside
the onnxruntime host segments, and ``exact_layers="kernels"``, every offloaded layer on our integer
kernels): top-1 identical on all 100 images; for CNNs ≥ 99 % of the outputs within one
quantization step of the output (ViT: :data:`TRANSFORMER_WITHIN_ONE_STEP`). Models that do not
meet them yet are listed in :data:`KNOWN_FAILING` with the reason (the error or the measured
numbers): they run as strict xfails, so whoever fixes one sees an XPASS and removes its entry.

Whatever happens, compiling a zoo model raises nothing but project errors
(:class:`~approxtvm.errors.ApproxTvmError`): that is checked on every model, listed or not.
Each model is compiled once per session; the models in :data:`SLOW` are ``slow``
(``pytest -m slow tests/compiler/test_zoo.py`` runs them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel, RunResult
from approxtvm.errors import ApproxTvmError
from tests import zoo_models
from tests.zoo_models import Agreement

pytestmark = pytest.mark.tvm

N_EVAL = 100
"""Evaluation images per model (issue 11: top-1 identical on ≥ 100 inputs)."""
RUN_BATCH = 25
"""Batch a symbolic-batch model is compiled for (four runs cover the 100 images)."""
WITHIN_ONE_STEP = 0.99
"""Share of CNN outputs that must be within one output quantization step of onnxruntime."""
TRANSFORMER_WITHIN_ONE_STEP = 0.95
"""The same for ViT. Measured: the zoo ViTs 99.2–100 % on the kernel path (only the patch embedding
and the head are offloaded today); ``host`` measured 98.1 % (max 3) on its small ViT with every
layer on the kernels. Transformers amplify one-step requantization differences (README, "Host
layers"), hence the lower floor."""

_KERNEL = "numerics, kernel path (exact_layers='kernels') vs onnxruntime, measured on main at 64e5ffd:"
KNOWN_FAILING: dict[str, str] = {
    "densenet_trained": f"{_KERNEL} top-1 100 %, 97.7 % within one step, max 5 steps",
    "densenet_trained_qdq_u8s8": "numerics, default AND kernel path: top-1 99 %, 76.6 % within one step, max 10 steps "
    "(u8 activations × s8 weights, per-tensor; the default path is not onnxruntime's whole-graph result here)",
    "mobilenet_v2_trained": f"{_KERNEL} top-1 97 %, 91.2 % within one step, max 5 steps",
    "mobilenet_v2_trained_symbatch": f"{_KERNEL} top-1 97 %, 91.2 % within one step, max 5 steps",
    "mobilenet_v2_trained_dynamo": f"{_KERNEL} top-1 97 %, 91.3 % within one step, max 5 steps",
    "mobilenet_v2_trained_qdq_s8s8": f"{_KERNEL} top-1 100 %, 98.6 % within one step, max 4 steps",
    "efficientnet_exported": f"{_KERNEL} top-1 41 %, 47.1 % within one step, max 4 steps (output step 7.7e-4)",
}
"""Model → why it does not compile or agree yet: a strict xfail of the agreement test (remove the
entry when it passes). Reasons starting with ``escapes:`` name a non-project exception, which
also makes the error-type test a strict xfail for that model."""

SLOW: frozenset[str] = frozenset(
    {
        "mobilenet_v2_trained_dynamo",
        "shufflenet_trained_dynamo",
        "convnext_trained_dynamo",
        "vit_trained_dynamo",
        "convnext_trained_qdq_s8s8",
    }
)
"""Variants that repeat what a fast model covers (dynamo: ``resnet_trained_dynamo``; QDQ s8s8:
``resnet``/``mobilenet_v2``); they run with ``-m slow``. The whole zoo takes ~3 min on 2 busy cores."""


@dataclass(frozen=True)
class Outcome:
    """One model's compile: the compiled model or the exception, and the time it took."""

    model: CompiledModel | None
    error: BaseException | None
    compile_s: float


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Compile results shared by the two tests of a model (the agreement test, defined last, frees them)."""
    return {}


def compiled(name: str, cache: dict[str, Outcome]) -> Outcome:
    """Compile a zoo model once per module run."""
    if name not in cache:
        e = zoo_models.entry(name)
        proto = zoo_models.load(name)
        batch = e.fixed_batch or RUN_BATCH  # a batch fixed in the file is honoured (static batch 1 included)
        calib = None if e.quantization else zoo_models.calibration_inputs(e)
        t0 = time.perf_counter()
        try:
            model = compile_onnx(proto, calibration=calib, batch_size=batch)
        except Exception as exc:  # kept: the error test judges its type, the agreement test reports it
            cache[name] = Outcome(None, exc, time.perf_counter() - t0)
        else:
            cache[name] = Outcome(model, None, time.perf_counter() - t0)
    return cache[name]


def agreement(model: CompiledModel, x: np.ndarray, ref: np.ndarray, exact_layers: str) -> tuple[Agreement, RunResult]:
    """Our outputs on ``x`` with exact layers computed by ``exact_layers`` against ``ref``.

    ``"onnxruntime"`` (the default) keeps exact, fault-free layers inside the onnxruntime host
    segments; ``"kernels"`` sends every offloaded layer through the project's integer kernels, so
    that comparison tests our arithmetic.
    """
    model.exact_layers = exact_layers
    try:
        res = model.run(x)
    finally:
        model.exact_layers = "onnxruntime"
    ours = res.outputs[model.output_names[0]]
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return zoo_models.compare(ours, ref, zoo_models.output_step(model.proto, model.output_names[0])), res


def _params(test: str) -> list[object]:
    out = []
    for name in zoo_models.names():
        marks = []
        reason = KNOWN_FAILING.get(name, "")
        if reason and (test == "agreement" or reason.startswith("escapes:")):
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        if name in SLOW:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def test_manifest_matches_files() -> None:
    """The manifest lists every file, with its size, and the zoo stays small (≤ 10 MB)."""
    files = {p.stem for p in zoo_models.ZOO_DIR.glob("*.onnx")}
    assert files == set(zoo_models.names())
    for e in zoo_models.entries():
        assert e.path.stat().st_size == e.file_bytes, e.name
    assert sum(e.file_bytes for e in zoo_models.entries()) <= 10_000_000
    archs = {e.arch for e in zoo_models.entries()}
    assert len(archs) == 11
    for arch in archs:  # both weight kinds of every family
        assert {e.weights for e in zoo_models.entries() if e.arch == arch} >= {"exported", "trained"}
    assert set(KNOWN_FAILING) | SLOW <= files  # no stale or misspelt entries


@pytest.mark.parametrize("name", _params("errors"))
def test_zoo_compile_raises_only_project_errors(name: str, outcomes: dict[str, Outcome]) -> None:
    """Compiling a zoo model either works or raises an ApproxTvmError, never a TVM/numpy error."""
    out = compiled(name, outcomes)
    if out.error is not None and not isinstance(out.error, ApproxTvmError):
        pytest.fail(f"{name}: {type(out.error).__module__}.{type(out.error).__name__} escaped: {out.error}")


@pytest.mark.parametrize("name", _params("agreement"))
def test_zoo_model_agrees_with_onnxruntime(name: str, outcomes: dict[str, Outcome]) -> None:
    """Both exact paths vs onnxruntime on the same QDQ model, 100 evaluation images."""
    e = zoo_models.entry(name)
    out = outcomes.pop(name, None) or compiled(name, {})  # freed after this test: 36 models add up
    if out.error is not None:
        pytest.fail(f"{name} does not compile: {type(out.error).__name__}: {out.error}")
    model = out.model
    assert model is not None
    x = zoo_models.eval_inputs(e, N_EVAL)
    ref = zoo_models.onnxruntime_outputs(model.proto, x, e.fixed_batch or N_EVAL)
    assert ref.shape == (N_EVAL, 10)
    default, _ = agreement(model, x, ref, "onnxruntime")
    kernels, res = agreement(model, x, ref, "kernels")
    print(f"{name}: compile {out.compile_s:.1f} s, {len(model.layer_ids)} offloaded layers")
    print(f"  default path: {default}\n  kernel path:  {kernels}")
    assert set(res.counters["calls"]) == set(model.layer_ids)  # every offloaded layer ran on our kernels
    for path, fig in (("default", default), ("kernel", kernels)):
        assert fig.top1_equal == 1.0, f"{name}, {path} path: top-1 differs ({fig})"
        floor = TRANSFORMER_WITHIN_ONE_STEP if e.is_transformer else WITHIN_ONE_STEP
        assert fig.within_one_step >= floor, f"{name}, {path} path: {fig}"


# ---------------------------------------------------------------- damaged real exports
# tests/compiler/test_malformed_models.py (front) holds hand-built malformed graphs; these are
# zoo exports damaged the way a broken pipeline damages files, so the graphs are otherwise real.


def _drop_conv_weight(m: onnx.ModelProto) -> onnx.ModelProto:
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    keep = [t for t in m.graph.initializer if t.name != conv.input[1]]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return m


def _bad_shuffle_reshape(m: onnx.ModelProto) -> onnx.ModelProto:
    # the channel shuffle's Reshape gets a target that cannot hold the tensor
    reshape = next(n for n in m.graph.node if n.op_type == "Reshape")
    shape = numpy_helper.from_array(np.array([1, 7, 5, 3, 3], np.int64), reshape.input[1] + "_bad")
    m.graph.initializer.append(shape)
    reshape.input[1] = shape.name
    return m


def _softmax_axis_out_of_range(m: onnx.ModelProto) -> onnx.ModelProto:
    sm = next(n for n in m.graph.node if n.op_type == "Softmax")
    del sm.attribute[:]
    sm.attribute.append(onnx.helper.make_attribute("axis", 9))
    return m


def _conv_weight_channels_swapped(m: onnx.ModelProto) -> onnx.ModelProto:
    # a weight saved with its output and input channel axes exchanged (a layout bug in a converter)
    convs = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    for t in m.graph.initializer:
        w = numpy_helper.to_array(t)
        if t.name in convs and w.shape[0] != w.shape[1]:
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.transpose(1, 0, 2, 3)), t.name))
            return m
    raise AssertionError("no non-square conv weight")


DAMAGED = {
    "resnet_exported-missing-conv-weight": ("resnet_exported", _drop_conv_weight),
    "shufflenet_trained-impossible-shuffle-reshape": ("shufflenet_trained", _bad_shuffle_reshape),
    "vit_trained-softmax-axis-9": ("vit_trained", _softmax_axis_out_of_range),
    "vgg_trained-conv-weight-axes-swapped": ("vgg_trained", _conv_weight_channels_swapped),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_zoo_export_raises_a_project_error(case: str) -> None:
    name, damage = DAMAGED[case]
    e = zoo_models.entry(name)
    proto = damage(zoo_models.load(name))
    with pytest.raises(ApproxTvmError) as info:
        compile_onnx(proto, calibration=zoo_models.calibration_inputs(e, 8))
    assert "fix" in str(info.value), str(info.value)
