"""Shipped models and ResNets: outputs agree with onnxruntime on the same uint8 QDQ model.

Requantization rounding may differ by one output step between the engines (onnxruntime folds
``s_x s_w / s_y`` into one multiplier, the QDQ graph divides by ``s_y`` after a float multiply).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.models import calibration_data, get_model, load_dataset
from tests.e2e.test_exact_vs_references import _output_step

pytestmark = pytest.mark.tvm


def _compare(model_name: str, x: np.ndarray, calib: np.ndarray, batch: int) -> tuple[float, float, float]:
    q = frontend.quantize(get_model(model_name), calib)
    model = compile_onnx(q, batch_size=batch)
    assert len(model.layer_ids) >= 4
    ours = model.run(x).outputs[model.output_names[0]]
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {model.input_name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])
    d = np.abs(ours - ref) / _output_step(q)
    top1 = float(np.mean(ours.argmax(1) == ref.argmax(1)))
    return float(np.mean(d <= 1 + 1e-4)), float(d.max()), top1


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_shipped_model_matches_onnxruntime_on_every_test_image(name: str) -> None:
    test, train = load_dataset("digits:test"), load_dataset("digits:train")
    within1, worst, top1 = _compare(name, test.x, train.x[:256], batch=8)
    assert within1 >= 0.99 and worst <= 2 + 1e-4
    assert top1 == 1.0  # same top-1 on all 360 test images


# resnet8 guards the default path in the fast suite; resnet18 (~11 M MACs per layer) is slow
@pytest.mark.parametrize("name", ["resnet8", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_resnet_matches_onnxruntime(name: str) -> None:
    m = get_model(name)
    within1, worst, top1 = _compare(name, calibration_data(m, n=2, seed=3), calibration_data(m, n=4), batch=1)
    assert within1 >= 0.99 and worst <= 2 + 1e-4 and top1 == 1.0
