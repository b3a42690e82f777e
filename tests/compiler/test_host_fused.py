"""Approximate layers inside the host graph (host_fused): which layers go there and when, every such
layer's output equal to our kernels' on the same input inside the whole graph, and the whole
model's outputs against the cut graph's (equal where the cut changes no host op; within one output
step where onnxruntime fuses a residual add it left in float before)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import approxtvm.compiler.host_ort as host_ort
from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.host_fused import fuse_sites
from approxtvm.models import get_model, load_dataset
from approxtvm.runtime.executor import layer_accumulators
from approxtvm.runtime.kernels.ort_session import runtime_session
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.e2e.test_exact_vs_references import _output_step
from tests.onnx_builders import calibration, small_cnn

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def qdq_cnn() -> object:
    return frontend.quantize(small_cnn(), calibration(32))


@pytest.fixture(scope="module")
def digits_resnet() -> object:
    return frontend.quantize(get_model("digits_resnet"), load_dataset("digits:train").x[:128])


def test_bam_layers_run_inside_the_host_graph_and_equal_the_kernels(qdq_cnn: object) -> None:
    """Every layer of small_cnn under BAM has the form: the fault-free plan has no kernel layer
    (one session); with a trace or with faults every layer is back on our kernels; the outputs equal
    the traced (kernel-by-kernel) run's — this graph's cut changes no host op."""
    model = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=4,v=0"), batch_size=2)
    host = model._ort
    assert host is not None
    assert host.fused_layers() == frozenset(model.programs)
    kernels = host.kernel_layers(model.exact_layers, model._faulty())
    assert kernels == frozenset()
    plan = host.plan(kernels)
    assert len(plan) == 1 and plan[0].site is None
    x = calibration(4, seed=3)
    fused = model.run(x).outputs["logits"]
    traced = model.run(x, trace=True).outputs["logits"]
    np.testing.assert_array_equal(fused, traced)
    host.log.trace = True
    try:
        assert host.kernel_layers(model.exact_layers, model._faulty()) == frozenset(model.programs)
    finally:
        host.log.trace = False


def test_the_switch_and_the_forms_that_stay_on_the_kernels(qdq_cnn: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables without the form (Mitchell) and uint8 outputs aside, nothing is fused; the switch off
    keeps every approximate layer on our kernels."""
    mitchell = compile_onnx(qdq_cnn, ApproxPolicy.uniform("mitchell"), batch_size=2)
    assert mitchell._ort is not None and mitchell._ort.fused_layers() == frozenset()
    monkeypatch.setattr(host_ort, "FUSE_LAYERS", False)
    bam = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=2,v=0"), batch_size=2)
    assert bam._ort is not None and bam._ort.fused_layers() == frozenset()
    assert bam._ort.kernel_layers(bam.exact_layers, bam._faulty()) == frozenset(bam.programs)


def test_each_fused_layer_equals_the_kernels_inside_a_residual_graph(digits_resnet: object) -> None:
    """digits_resnet under BAM h=4 (residual adds): the whole fused graph with every layer's input
    and output exposed; each layer's output equals our kernels' requantized output on the input
    the graph gave it."""
    model = compile_onnx(digits_resnet, ApproxPolicy.uniform("bam:h=4,v=0"), batch_size=8)
    host = model._ort
    assert host is not None
    fused = host.fused_layers()
    assert fused == frozenset(model.programs)
    proto, _ = fuse_sites(host.proto, host.sites, {lid: host._fused[lid] for lid in fused}, [])  # type: ignore[index]
    names = list(dict.fromkeys(n for lid in fused for n in (host.sites[lid].input_name, host.sites[lid].output_name)))
    del proto.graph.output[:]
    proto.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.UINT8, None) for n in names)
    x = load_dataset("digits:test").x[:8]
    env = dict(zip(names, runtime_session(proto, None).run(names, {host.input_name: x}), strict=True))
    for lid in fused:
        site, prog = host.sites[lid], model.programs[lid]
        xin = env[site.input_name]
        want = host._requantize(site, prog, layer_accumulators(prog, model._log, xin), in_place=True)
        np.testing.assert_array_equal(env[site.output_name].reshape(want.shape), want, err_msg=lid)


def test_whole_model_outputs_stay_within_one_step_of_the_cut_graph(
    digits_resnet: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On all 360 digits test images: the fused graph's outputs and the cut graph's (switch off)
    differ only where onnxruntime fuses a residual add into ``QLinearAdd`` in one graph and keeps
    it in float in the other: within one output step on ≥ 99 % of the outputs, never more than 2,
    and the same top-1 on ≥ 99 % of the images."""
    model = compile_onnx(digits_resnet, ApproxPolicy.uniform("bam:h=4,v=0"), batch_size=8)
    x = load_dataset("digits:test").x
    out = model.output_names[0]
    fused = model.run(x).outputs[out]
    monkeypatch.setattr(host_ort, "FUSE_LAYERS", False)
    cut = model.run(x).outputs[out]
    d = np.abs(fused.astype(np.float64) - cut) / _output_step(digits_resnet)
    assert np.mean(d <= 1 + 1e-4) >= 0.99 and d.max() <= 2 + 1e-4
    assert np.mean(fused.argmax(1) == cut.argmax(1)) >= 0.99


def test_a_model_that_draws_faults_keeps_every_approximate_layer_on_the_kernels(qdq_cnn: object) -> None:
    """Fault hooks change accumulators: a model whose runs draw faults builds no fused layer, not
    even for its compile-time plan, and its runs report every layer as a kernel layer."""
    model = compile_onnx(qdq_cnn, ApproxPolicy.uniform("bam:h=4,v=0", noc_swing_v=0.35), batch_size=2)
    host = model._ort
    assert host is not None and model.draws_faults
    assert host._fused is None  # never looked for
    res = model.run(calibration(2, seed=4), seed=1)
    assert res.counters["kernel_layers"] == list(model.programs)
    assert host._fused is None
