"""Models as torch's legacy exporter writes them compile, run and agree with onnxruntime.

The exporter shares zero biases through ``Identity`` nodes and names parameters
``onnx::Conv_<n>`` (before the preparation step this gave "offloaded call has 2 runtime
inputs" and ``layer_<i>`` ids); the channel shuffle's ``Reshape`` shapes are computed.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.errors import ModelError, PolicyError
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.e2e.test_exact_vs_references import _output_step
from tests.onnx_builders import calibration
from tests.torch_exports import tiny_net

pytestmark = pytest.mark.tvm

LAYERS = [
    "/stem/stem.0/Conv",
    "/l1/c1/Conv",
    "/l1/c2/Conv",
    "/l2/c1/Conv",
    "/l2/sc/sc.0/Conv",
    "/l2/c2/Conv",
    "/dw/dw.0/Conv",
    "/dw/dw.3/Conv",
    "/fc/Gemm",
]


def _vs_ort(model: object, x: np.ndarray) -> np.ndarray:
    ours = model.run(x).outputs["logits"]  # type: ignore[attr-defined]
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    ref = sess.run(None, {"input": x})[0]
    return np.abs(ours - ref) / _output_step(model.proto)  # type: ignore[attr-defined]


def test_legacy_export_with_shared_zero_biases_compiles_and_agrees(caplog: pytest.LogCaptureFixture) -> None:
    proto = tiny_net()
    assert sum(n.op_type == "Identity" for n in proto.graph.node) >= 2  # the exporter shares biases
    with caplog.at_level(logging.INFO, logger="approxtvm.vacc"):
        model = compile_onnx(proto, calibration=calibration(16))
    # layer ids are the ONNX node names, not the parameter names (onnx::Conv_…)
    assert model.layer_ids == LAYERS
    assert model.host_reasons == {}  # the depthwise conv (groups = 16) is offloaded too
    assert model.schedules["/dw/dw.0/Conv"].shape.groups == 16
    d = _vs_ort(model, calibration(8, seed=5))
    assert np.mean(d <= 1 + 1e-4) >= 0.99 and d.max() <= 2 + 1e-4


def test_policy_by_node_name_glob_and_regex() -> None:
    policy = ApproxPolicy.from_dict(
        {
            "layers": {"/l1/c1/Conv": "mul8u_2HH", "/l2/*": {"multiplier": "drum:k=4"}, "re:/fc/.*": "bam:h=2,v=0"},
            "host": ["re:/l2/sc/.*"],
        }
    )
    model = compile_onnx(tiny_net(), policy, calibration=calibration(16))
    mult = {lid: s.config.multiplier for lid, s in model.schedules.items()}
    assert mult["/l1/c1/Conv"] == "mul8u_2HH" and mult["/fc/Gemm"] == "bam:h=2,v=0"
    assert mult["/l2/c1/Conv"] == mult["/l2/c2/Conv"] == "drum:k=4"
    assert mult["/stem/stem.0/Conv"] == "exact"
    assert "/l2/sc/sc.0/Conv" not in model.layer_ids
    assert model.host_reasons["/l2/sc/sc.0/Conv"] == "the policy keeps it on the host"
    assert model.run(calibration(2)).outputs["logits"].shape == (2, 10)


def test_policy_typo_names_the_node_ids() -> None:
    with pytest.raises(PolicyError) as info:
        compile_onnx(tiny_net(), ApproxPolicy.per_layer({"/l1/c9/Conv": "mul8u_2HH"}), calibration=calibration(8))
    assert "/l1/c1/Conv" in str(info.value)  # the message lists the real ids


def test_fixed_batch_is_honoured_and_a_conflicting_batch_is_an_error() -> None:
    proto = tiny_net(dynamic_batch=False, batch=4)
    model = compile_onnx(proto, calibration=calibration(8))
    assert model.batch_size == 4
    x = calibration(6, seed=7)  # 6 samples: one full batch and a padded one
    out = model.run(x).outputs["logits"]
    assert out.shape == (6, 10)
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    padded = np.r_[x[4:], x[5:], x[5:]]  # the last batch padded by repetition, as run() does
    ref = np.concatenate([sess.run(None, {"input": x[:4]})[0], sess.run(None, {"input": padded})[0][:2]])
    d = np.abs(out - ref) / _output_step(model.proto)
    assert np.mean(d <= 1 + 1e-4) >= 0.99 and d.max() <= 2 + 1e-4
    with pytest.raises(ModelError, match="fixed batch of 4"):
        compile_onnx(proto, calibration=calibration(8), batch_size=1)


def test_symbolic_batch_compiles_for_the_requested_batch() -> None:
    model = compile_onnx(tiny_net(), calibration=calibration(8), batch_size=3)
    assert model.batch_size == 3
    assert model.run(calibration(5)).outputs["logits"].shape == (5, 10)
