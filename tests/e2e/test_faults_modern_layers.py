"""Whole-model fault runs on zoo models with depthwise convolutions (MobileNet-V2) and attention
matmuls (ViT): every offloaded layer kind is injected, its flips counted, runs deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.runtime.faults import FaultOptions
from approxtvm.targets.vacc.config import ApproxPolicy
from tests import zoo_models

pytestmark = pytest.mark.tvm

#: NoC swing 0.35 V (BER ≈ 3e-4 per link) and PE buffers at 0.6 V (BER 1e-4): flips in every layer kind.
POLICY = ApproxPolicy.uniform(noc_swing_v=0.35, sram_v={"input_buffer": 0.6, "weight_buffer": 0.6})


def _kind(shape) -> str:  # type: ignore[no-untyped-def]
    if shape.op == "matmul":
        return "matmul"
    return "grouped" if shape.groups > 1 else "plain"


@pytest.mark.parametrize(("name", "kind"), [("mobilenet_v2_trained", "grouped"), ("vit_trained", "matmul")])
def test_zoo_model_fault_run_counts_flips_on_every_layer_kind(name: str, kind: str) -> None:
    e = zoo_models.entry(name)
    model = compile_onnx(
        zoo_models.load(name), POLICY, calibration=zoo_models.calibration_inputs(e, 8), batch_size=e.fixed_batch or 1
    )
    x = zoo_models.eval_inputs(e, 1)
    res = model.run(x, seed=3)
    kinds = {lid: _kind(p.schedule.shape) for lid, p in model.programs.items()}
    assert kind in kinds.values()
    counters = res.counters["faults"]
    for want in (kind, "plain"):
        layers = [lid for lid, k in kinds.items() if k == want]
        assert set(layers) <= set(counters), "every scaled layer reports its counters"
        for t in ("weight", "input"):
            assert sum(counters[lid][t]["bits_exposed"] for lid in layers) > 0
            assert sum(counters[lid][t]["bits_flipped"] for lid in layers) > 0, (want, t)
    again = model.run(x, seed=3)
    out = model.output_names[0]
    assert again.outputs[out].tobytes() == res.outputs[out].tobytes()
    assert again.counters["faults"] == counters
    model.set_fault_options(FaultOptions(ber_scale=0.0))
    clean = model.run(x, seed=3)
    assert not np.array_equal(clean.outputs[out], res.outputs[out])  # the corrupted operands reach the output
