"""Exact multiplier: accumulators equal a plain numpy integer convolution; outputs agree with
onnxruntime on the same uint8 QDQ model.

onnxruntime fuses each QDQ group into an integer kernel and requantizes as
``round((acc + b) · (s_x s_w / s_y)) + z_y`` with one float multiplier, while the QDQ graph we
execute computes ``acc · s_x s_w + b · s_b`` in float and then ``round(v / s_y) + z_y``: the two
roundings can differ by one output step on ties, which is why the output test allows 1 step.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.runtime.emulator import emulate
from tests.onnx_builders import calibration, numpy_conv_acc, single_conv, small_cnn

pytestmark = pytest.mark.tvm


def _ort(model: CompiledModel, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {model.input_name: x})[0]


def _output_step(proto: onnx.ModelProto) -> float:
    """Scale of the DequantizeLinear that produces the graph output (one quantization step)."""
    out = proto.graph.output[0].name
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and out in n.output:
            return float(inits[n.input[1]])
    raise AssertionError("output is not dequantized")


def _check_accumulators(model: CompiledModel, x: np.ndarray) -> int:
    res = model.run(x, trace=True)
    traces = res.traces
    for lid, xq, acc in traces:
        sch = model.schedules[lid]
        prog = model.programs[lid]
        q, s = sch.quant, sch.shape
        if s.op == "dense":
            ref = (xq.astype(np.int64) - q.input_zero_point) @ (
                prog.weight.astype(np.int64) - np.asarray(q.weight_zero_points).reshape(-1, 1)
            ).T
        else:
            ref = numpy_conv_acc(
                xq,
                prog.weight,
                q.input_zero_point,
                np.asarray(q.weight_zero_points),
                stride=(s.stride_h, s.stride_w),
                dilation=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
            )
        assert acc.dtype == np.int32
        np.testing.assert_array_equal(acc, ref, err_msg=f"layer {lid}")
        # the emulator (the schedule executed tile by tile, in its loop order) gives the same accumulators
        tiled = emulate(xq, prog).acc
        np.testing.assert_array_equal(tiled, ref, err_msg=f"layer {lid} (tiled)")
    return len(traces)


@pytest.fixture(scope="module")
def cnn() -> CompiledModel:
    return compile_onnx(small_cnn(), calibration=calibration(32), batch_size=4)


def test_small_cnn_accumulators_exact(cnn: CompiledModel) -> None:
    x = calibration(4, seed=7)
    assert _check_accumulators(cnn, x) == 5  # conv1..conv4 + fc
    assert set(cnn.layer_ids) == {"conv1", "conv2", "conv3", "conv4", "fc"}


def test_small_cnn_matches_onnxruntime(cnn: CompiledModel) -> None:
    x = calibration(40, seed=3)  # 40 = 10 batches of 4
    ours = cnn.run({"input": x}).outputs["logits"]
    ref = _ort(cnn, x)
    step = _output_step(cnn.proto)
    d = np.abs(ours - ref) / step
    assert np.mean(d <= 1.0 + 1e-4) >= 0.99, np.mean(d <= 1.0 + 1e-4)
    assert d.max() <= 2.0 + 1e-4, d.max()
    assert np.array_equal(ours.argmax(1), ref.argmax(1))


def test_batch_padding_does_not_change_results(cnn: CompiledModel) -> None:
    x = calibration(6, seed=11)  # not a multiple of the compiled batch of 4
    full = cnn.run(x).outputs["logits"]
    one_by_one = np.concatenate([cnn.run(x[i : i + 1]).outputs["logits"] for i in range(6)])
    np.testing.assert_array_equal(full, one_by_one)


@pytest.mark.parametrize(
    ("k", "c", "size", "r", "stride", "pad", "dil"),
    [
        (8, 3, 20, 7, 2, (3, 3, 3, 3), 1),  # ResNet stem-like 7×7 stride 2
        (16, 8, 9, 1, 1, (0, 0, 0, 0), 1),  # 1×1
        (8, 5, 12, 3, 1, (2, 2, 2, 2), 2),  # dilated
        (12, 4, 11, 3, 3, (0, 1, 2, 0), 1),  # stride 3, asymmetric pads
    ],
)
def test_single_conv_accumulators(
    k: int, c: int, size: int, r: int, stride: int, pad: tuple[int, int, int, int], dil: int
) -> None:
    m = single_conv(k, c, size, r, stride=stride, pad=pad, dilation=dil)
    x = calibration(3, size=size, channels=c, seed=5)
    model = compile_onnx(m, calibration=calibration(16, size=size, channels=c), batch_size=3)
    assert _check_accumulators(model, x) == 1
    ours = model.run(x).outputs[model.output_names[0]]
    ref = _ort(model, x)
    d = np.abs(ours - ref) / _output_step(model.proto)
    assert d.max() <= 2.0 + 1e-4 and np.mean(d <= 1.0 + 1e-4) >= 0.99


def test_runtime_counts_equal_schedule_predictions(cnn: CompiledModel) -> None:
    """The runtime's counted accesses (simulated over the loop nest) equal the analytic counts
    the codegen wrote into every schedule; the energy report's parts add up to its total."""
    from approxtvm.runtime.counting import simulate_counts
    from approxtvm.targets.vacc.counts import AccessCounts

    for lid, sch in cnn.schedules.items():
        predicted = AccessCounts.from_dict(sch.predicted["counts"])
        assert simulate_counts(sch.mapping, cnn.spec) == predicted, lid
        assert predicted.macs == sch.shape.macs
    rep = cnn.run(calibration(8, seed=1)).energy
    assert len(rep.layers) == 2 * len(cnn.schedules)  # 8 samples = 2 batches of 4
    assert rep.total_pj == pytest.approx(sum(pj for layer in rep.layers for _, _, pj in layer.entries), rel=1e-12)
    assert sum(rep.by_layer().values()) == pytest.approx(rep.total_pj, rel=1e-12)
    assert rep.macs == 2 * sum(s.shape.macs for s in cnn.schedules.values())


def test_energy_per_inference_ignores_batch_padding(cnn: CompiledModel) -> None:
    full = cnn.run(calibration(8, seed=1))  # 2 full batches of 4
    padded = cnn.run(calibration(6, seed=1))  # 2 batches, the last one padded with 2 repeats
    assert padded.energy.total_pj == full.energy.total_pj  # the padding is executed and counted
    assert padded.energy_per_inference_pj == full.energy_per_inference_pj == cnn.energy_per_batch().total_pj / 4
