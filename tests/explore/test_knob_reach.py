"""Knob reach: the share of MACs / weights each knob can change, against counts taken from the ONNX graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.knob_reach import KNOB_ROWS, knob_reach, reach_table_md
from approxtvm.models import get_model, load_dataset
from approxtvm.targets.vacc.config import ApproxPolicy
from tests import zoo_models

BATCH = 4


def _conv_facts(proto: onnx.ModelProto, batch: int) -> dict[str, tuple[int, int, int]]:
    """Node name → (MACs per batch, weight elements, groups) of every Conv/Gemm, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    dims = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in (*inferred.graph.value_info, *inferred.graph.output)
    }
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w = inits[node.input[1]]
        y = dims[node.output[0]]
        per_output = int(np.prod(w.shape[1:]))  # C/G·R·S (conv) or C (Gemm, transB)
        spatial = int(np.prod(y[2:])) if node.op_type == "Conv" else 1
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        out[node.name] = (batch * w.shape[0] * per_output * spatial, int(w.size), groups)
    return out


@pytest.fixture(scope="module")
def digits():
    proto = get_model("digits_cnn")
    calib = load_dataset("digits:train").x[:32]
    return proto, calib, _conv_facts(proto, BATCH)


def test_a_host_rule_lowers_every_share_by_exactly_that_layer(digits) -> None:
    proto, calib, facts = digits
    full = knob_reach(compile_onnx(proto, None, calibration=calib, batch_size=BATCH), "digits_cnn")
    assert full.total_macs == sum(m for m, _, _ in facts.values())  # analytic count from the graph
    assert full.total_weight_elements == sum(w for _, w, _ in facts.values())
    assert full.shares() == dict.fromkeys(KNOB_ROWS, 1.0) and not full.host_layers
    assert full.applied_shares() == dict.fromkeys(full.applied_shares(), 0.0)  # exact policy changes nothing

    kept = "conv2"
    policy = ApproxPolicy.from_dict({"default": {"multiplier": "drum:k=4", "noc_swing_v": 0.6}, "host": [kept]})
    part = knob_reach(compile_onnx(proto, policy, calibration=calib, batch_size=BATCH), "digits_cnn")
    macs, weights, _ = facts[kept]
    assert part.total_macs == full.total_macs  # the host layer still counts in the whole
    assert full.offloaded_macs - part.offloaded_macs == macs
    assert full.compressible_weight_elements - part.compressible_weight_elements == weights
    assert part.shares()["approximate multiplier"] == pytest.approx(1 - macs / full.total_macs, abs=0)
    assert part.shares()["weight compression"] == pytest.approx(1 - weights / full.total_weight_elements, abs=0)
    assert [h.node for h in part.host_layers] == [kept] and "policy" in part.host_layers[0].reason
    # the policy approximates and scales the swing of every layer it can reach, nothing else
    assert part.applied_multiplier_macs == part.applied_noc_macs == part.offloaded_macs
    assert part.applied_sram_macs == 0 == part.applied_compression_weight_elements
    table = "\n".join(reach_table_md([full, part]))
    assert "| approximate multiplier | MACs | 100.0 % | " in table and "`conv2` (" in table


def test_applied_shares_follow_per_layer_rules(digits) -> None:
    proto, calib, facts = digits
    policy = ApproxPolicy.from_dict(
        {"layers": {"conv1": {"sram_v": {"weight_buffer": 0.6}}, "fc": {"compression": "auto"}}}
    )
    r = knob_reach(compile_onnx(proto, policy, calibration=calib, batch_size=BATCH), "digits_cnn")
    assert r.applied_sram_macs == facts["conv1"][0]
    assert r.applied_compression_weight_elements == facts["fc"][1]
    assert r.applied_multiplier_macs == r.applied_noc_macs == 0


def test_depthwise_layers_count_and_a_kept_depthwise_layer_is_subtracted_exactly() -> None:
    """MobileNet-V2: every MAC offloaded (depthwise included); keeping one depthwise conv on the host
    lowers the multiplier and NoC/SRAM shares by its MACs and the compression share by its weights."""
    e = zoo_models.entry("mobilenet_v2_trained")
    proto = zoo_models.load(e.name)
    facts = _conv_facts(proto, 1)
    calib = zoo_models.calibration_inputs(e, 8)
    full = knob_reach(compile_onnx(proto, None, calibration=calib, batch_size=1), e.name)
    assert full.total_macs == e.macs_per_image  # the zoo generator's own count
    assert full.offloaded_macs == full.total_macs and not full.host_layers
    depthwise = next(name for name, (_, _, g) in facts.items() if g > 1)
    kept = ApproxPolicy.from_dict({"host": [depthwise]})
    part = knob_reach(compile_onnx(proto, kept, calibration=calib, batch_size=1), e.name)
    macs, weights, _ = facts[depthwise]
    assert full.offloaded_macs - part.offloaded_macs == macs
    assert full.compressible_weight_elements - part.compressible_weight_elements == weights
    assert [h.node for h in part.host_layers] == [depthwise]
    s = part.shares()
    assert s["NoC swing (energy and faults)"] == s["approximate multiplier"]
    assert s["approximate multiplier"] == pytest.approx(1 - macs / full.total_macs, rel=1e-12)
