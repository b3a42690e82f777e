"""Test-zoo models: as exported they compile; corrupted, they give project errors naming the node.

The zoo (``tests/data/zoo``, written by ``scripts/make_zoo.py``) holds the exports that used to
fail with TVM internal errors (shared zero biases through ``Identity``, ``onnx::Conv_<n>``
parameter names, computed channel-shuffle shapes, fixed batches, onnxruntime's quantizer
output). Each one is also handed in with its first convolution's weight given one input
channel too many: the compiler must answer with an :class:`~approxtvm.errors.ApproxTvmError`
that names that node, whichever phase notices (onnxruntime's calibration for a float model,
the Relax importer for a QDQ model), never with a TVM or onnxruntime exception.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.errors import ApproxTvmError
from tests import zoo_models

pytestmark = pytest.mark.tvm

#: Exports whose import failed before the preparation step (one per failure kind); all zoo
#: models are compiled, run and compared with onnxruntime by the zoo's own tests.
FORMER_FAILURES = (
    "resnet_exported",  # "offloaded call has 2 runtime inputs" (shared zero biases)
    "mobilenet_v2_exported",  # "Variable lvNN used before its definition"
    "shufflenet_exported",  # convs after the channel-shuffle Reshape had no static shape
    "resnet_trained_batch4",  # a fixed batch of 4 compiled for batch 1
)


def _calibration(e: zoo_models.ZooEntry) -> np.ndarray | None:
    return None if e.quantization else zoo_models.calibration_inputs(e, 8)


@pytest.mark.parametrize("name", FORMER_FAILURES)
def test_former_failures_compile_with_node_name_ids(name: str) -> None:
    e = zoo_models.entry(name)
    proto = zoo_models.load(name)
    model = compile_onnx(proto, calibration=_calibration(e))
    conv_names = {n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    assert model.layer_ids and set(model.layer_ids) <= conv_names  # ids are the ONNX node names
    assert set(model.host_reasons) <= conv_names and set(model.layer_ids).isdisjoint(model.host_reasons)
    assert model.batch_size == (e.fixed_batch or 1)


def _corrupt_first_conv(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The model with its first Conv's weight widened by one input channel, and that Conv's name."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    producer = {o: n for n in g.node for o in n.output}
    node = next(n for n in g.node if n.op_type == "Conv")
    src = node.input[1]
    if src in producer and producer[src].op_type == "DequantizeLinear":
        src = producer[src].input[0]
    inits = {t.name: t for t in g.initializer}
    if src not in inits:  # Constant-fed or Identity-fed weight: follow one more hop
        src = producer[src].input[0]
    t = inits[src]
    w = numpy_helper.to_array(t)
    wider = np.concatenate([w, w[:, :1]], axis=1)
    t.CopyFrom(numpy_helper.from_array(wider, t.name))
    return out, node.name


@pytest.mark.parametrize("name", zoo_models.names())
def test_corrupted_zoo_model_gives_a_project_error_naming_the_node(name: str) -> None:
    e = zoo_models.entry(name)
    bad, conv = _corrupt_first_conv(zoo_models.load(name))
    with pytest.raises(ApproxTvmError) as info:
        compile_onnx(bad, calibration=_calibration(e))
    assert info.value.fix
    assert conv in str(info.value), str(info.value)
