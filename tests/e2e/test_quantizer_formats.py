"""QDQ models as onnxruntime's quantizer writes them, signed and mixed, are offloaded exactly.

The reference for the accumulators is a plain numpy integer convolution on the codes the QDQ
model itself holds (weights, zero points read from the ONNX file, not from our schedules).
onnxruntime is the output reference only where its u8×s8 kernels are exact (VNNI hosts): on
AVX2-only CPUs they sum pairs in saturating int16 (DESIGN §2).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.errors import PolicyError
from approxtvm.runtime.kernels.cpu import detect_cpu
from approxtvm.targets.vacc.config import ApproxPolicy
from tests.e2e.test_exact_vs_references import _output_step
from tests.onnx_builders import calibration, numpy_conv_acc, small_cnn

pytestmark = pytest.mark.tvm


class _Reader:
    def __init__(self, data: np.ndarray) -> None:
        self._it = iter({"input": data[i : i + 1]} for i in range(len(data)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _ort_quantize(model: onnx.ModelProto, **kwargs: object) -> onnx.ModelProto:
    """onnxruntime ``quantize_static`` (QDQ) with the given options, as a user would call it."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, _Reader(calibration(16)), quant_format=QuantFormat.QDQ, **kwargs)
        return onnx.load(dst)


def _model_codes(proto: onnx.ModelProto, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight codes and zero points of ``layer`` as stored in the QDQ model."""
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    node = next(n for n in proto.graph.node if n.name == layer)
    deq = producer[node.input[1]]
    return inits[deq.input[0]], np.atleast_1d(inits[deq.input[2]]).astype(np.int64)


def _check_against_model_codes(model: CompiledModel, x: np.ndarray) -> set[str]:
    res = model.run(x, trace=True)
    traces = res.traces
    dtypes = set()
    for lid, xq, acc in traces:
        s, q = model.schedules[lid].shape, model.schedules[lid].quant
        w, zw = _model_codes(model.proto, lid)
        dtypes.add(f"{xq.dtype}x{w.dtype}")
        if s.op == "dense":
            wk = w.T if w.shape[0] != s.k else w  # Gemm transB=0 stores (C, K)
            ref = (xq.astype(np.int64) - q.input_zero_point) @ (wk.astype(np.int64) - zw.reshape(-1, 1)).T
        else:
            ref = numpy_conv_acc(
                xq,
                w,
                q.input_zero_point,
                zw,
                stride=(s.stride_h, s.stride_w),
                dilation=(s.dilation_h, s.dilation_w),
                pads=(s.pad_top, s.pad_left, s.pad_bottom, s.pad_right),
            )
        np.testing.assert_array_equal(acc, ref, err_msg=f"layer {lid}")
    return dtypes


@pytest.mark.parametrize(
    ("options", "pair"),
    [
        ({}, "int8xint8"),  # onnxruntime's defaults: int8 activations and weights
        ({"per_channel": True}, "int8xint8"),
        ({"activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True}, "uint8xint8"),
        ({"activation_type": "QUInt8", "weight_type": "QInt8"}, "uint8xint8"),
    ],
)
def test_onnxruntime_quantizer_models_are_offloaded_exactly(options: dict[str, object], pair: str) -> None:
    from onnxruntime.quantization import QuantType

    kw = {k: getattr(QuantType, v) if k.endswith("_type") else v for k, v in options.items()}
    q = _ort_quantize(small_cnn(), **kw)
    model = compile_onnx(q, batch_size=2)
    assert set(model.layer_ids) == {"conv1", "conv2", "conv3", "conv4", "fc"}
    x = calibration(2, seed=9)
    assert _check_against_model_codes(model, x) == {pair}
    if detect_cpu().vnni:  # onnxruntime's u8×s8 kernels are exact here
        sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
        d = np.abs(model.run(x).outputs["logits"] - sess.run(None, {"input": x})[0]) / _output_step(model.proto)
        assert np.mean(d <= 1 + 1e-4) >= 0.99 and d.max() <= 2 + 1e-4


def test_mixed_operands_with_an_approximate_table_is_an_error() -> None:
    from onnxruntime.quantization import QuantType

    q = _ort_quantize(small_cnn(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    with pytest.raises(PolicyError) as info:
        compile_onnx(q, ApproxPolicy.per_layer({"conv2": "mul8u_2HH"}))
    msg = str(info.value)
    assert "conv2" in msg and "uint8 activations × int8 weights" in msg and "exact" in msg
