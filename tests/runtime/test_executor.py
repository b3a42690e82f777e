"""Layers on the fused column kernel give a whole model the same outputs and accumulators as the
unfused kernels plus the host's window sums, corrections and requantization."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.runtime.kernels import tvm_available
from approxtvm.targets.vacc.config import ApproxPolicy
from tests import zoo_models

pytestmark = [pytest.mark.tvm, pytest.mark.skipif(not tvm_available(), reason="the fused kernel is a TVM kernel")]


def _compile(name: str, spec: str, batch: int) -> tuple[CompiledModel, np.ndarray]:
    e = zoo_models.entry(name)
    calib = None if e.quantization else zoo_models.calibration_inputs(e, 16)
    model = compile_onnx(
        zoo_models.load(name), ApproxPolicy.uniform(spec), calibration=calib, batch_size=e.fixed_batch or batch
    )
    return model, zoo_models.eval_inputs(e, 3)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("mobilenet_v2_trained_symbatch", "mitchell"),  # table path, unsigned codes
        ("mobilenet_v2_trained_qdq_s8s8", "bam:h=4,v=0"),  # low-rank path, signed codes (onnxruntime's QDQ)
    ],
)
def test_fused_layers_equal_the_unfused_path(name: str, spec: str) -> None:
    model, x = _compile(name, spec, 2)
    on = [lid for lid, p in model.programs.items() if p.column_fused]
    grouped = [lid for lid, p in model.programs.items() if p.schedule.shape.groups > 1]
    assert set(grouped) <= set(on) and len(on) > len(grouped)  # depthwise and narrow 1×1 layers
    a = model.run(x)  # 3 images: a full and a padded batch (batch 2)
    ta = model.run(x[:2], trace=True)  # the layers return int32 accumulators, the host requantizes
    assert any(key[0] == "fused" for p in model.programs.values() for key in p.store.entries)
    for prog in model.programs.values():
        prog.__dict__["column_fused"] = False  # now the unfused kernels and host passes
    b = model.run(x)
    tb = model.run(x[:2], trace=True)
    for k in a.outputs:
        assert np.array_equal(a.outputs[k], b.outputs[k])
        assert np.array_equal(ta.outputs[k], a.outputs[k][:2])
    assert [t[0] for t in ta.traces] == [t[0] for t in tb.traces]
    for (_, xa, acc_a), (_, xb, acc_b) in zip(ta.traces, tb.traces, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(acc_a, acc_b)
