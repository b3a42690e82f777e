"""A whole model on a spec with another level count (no global buffer, or an extra L2): same code, same arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from tests.onnx_builders import calibration, small_cnn

pytestmark = pytest.mark.tvm


def _no_gb() -> AcceleratorSpec:
    d = AcceleratorSpec.load("simba_like").to_dict()
    del d["memories"]["global_buffer"]
    return AcceleratorSpec.from_dict({**d, "name": "simba_no_gb"})


def test_model_without_global_buffer_compiles_runs_prices_and_injects() -> None:
    x = calibration(4, seed=3)
    base = compile_onnx(small_cnn(), calibration=calibration(16), batch_size=2)
    spec = _no_gb()
    model = compile_onnx(small_cnn(), accelerator=spec, calibration=calibration(16), batch_size=2)
    r0, r1 = base.run(x), model.run(x)
    # the arithmetic does not depend on the memory hierarchy; the energy does
    np.testing.assert_array_equal(r0.outputs["logits"], r1.outputs["logits"])
    comp = r1.energy.by_component()
    assert comp["global_buffer"] == 0 and r0.energy.by_component()["global_buffer"] > 0
    assert all(s.mapping.levels[1].level == "PE" for s in model.schedules.values())
    # faults at the PE buffers and on the NoC, with the same code
    policy = ApproxPolicy.uniform(noc_swing_v=0.3, sram_v={"input_buffer": 0.55, "weight_buffer": 0.55})
    faulty = compile_onnx(small_cnn(), policy, accelerator=spec, calibration=calibration(16), batch_size=2)
    res = faulty.run(x, seed=1)
    flips = sum(c[t]["bits_flipped"] for c in res.counters["faults"].values() for t in ("weight", "input"))
    assert flips > 0
    assert not np.array_equal(res.outputs["logits"], r1.outputs["logits"])
    assert res.energy.total_pj < r1.energy.total_pj


def test_model_with_an_extra_level_compiles_runs_prices_and_injects() -> None:
    x = calibration(4, seed=3)
    d = AcceleratorSpec.load("simba_like").to_dict()
    l2 = {"capacity_bytes": 262144, "width_bits": 256, "read_energy_pj": 80.0, "write_energy_pj": 80.0}
    mems = {**d["memories"], "l2_buffer": {**l2, "tensors": ["weight", "input", "output"], "level": "L2"}}
    spec = AcceleratorSpec.from_dict({**d, "memories": mems, "name": "simba_l2"})
    base = compile_onnx(small_cnn(), calibration=calibration(16), batch_size=2)
    model = compile_onnx(small_cnn(), accelerator=spec, calibration=calibration(16), batch_size=2)
    r0, r1 = base.run(x), model.run(x)
    np.testing.assert_array_equal(r0.outputs["logits"], r1.outputs["logits"])
    comp = r1.energy.by_component()
    assert comp["l2_buffer"] > 0 and "l2_buffer" not in r0.energy.by_component()
    assert r1.energy.total_pj == sum(comp.values())
    assert all(
        [n.level for n in s.mapping.levels][:3] == ["DRAM", "L2", "GlobalBuffer"] for s in model.schedules.values()
    )
    policy = ApproxPolicy.uniform(noc_swing_v=0.3, sram_v={"input_buffer": 0.55, "weight_buffer": 0.55})
    faulty = compile_onnx(small_cnn(), policy, accelerator=spec, calibration=calibration(16), batch_size=2)
    res = faulty.run(x, seed=1)
    flips = sum(c[t]["bits_flipped"] for c in res.counters["faults"].values() for t in ("weight", "input"))
    assert flips > 0
    assert not np.array_equal(res.outputs["logits"], r1.outputs["logits"])
