"""Malformed or unusual graphs never surface a TVM/numpy/onnx exception: only project errors.

Each case is a small graph a user could hand in by mistake (wrong weight ranks, channel
mismatches, bad attributes, impossible reshapes, symbolic spatial sizes...). Whatever phase
catches it (loading, preparation, import, partition, codegen, build), the user gets an
:class:`~approxtvm.errors.ApproxTvmError` that says what to do, and where the importer failed
on a node, the node's name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxtvm.compiler.driver import compile_onnx
from approxtvm.errors import ApproxTvmError

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(0)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _model(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    in_shape: list[int | str],
    out: str = "y",
    out_shape: list[int | str] | None = None,
) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


N = helper.make_node


def conv_weight_wrong_rank() -> onnx.ModelProto:
    return _model(
        [N("Conv", ["input", "w"], ["y"], name="conv_bad_rank")],
        [_w("w", 4, 3, 3)],
        ["N", 3, 8, 8],
        out_shape=["N", 4, 6, 6],
    )


def conv_channel_mismatch() -> onnx.ModelProto:
    return _model(
        [N("Conv", ["input", "w"], ["y"], name="conv_bad_c")],
        [_w("w", 4, 5, 3, 3)],
        ["N", 3, 8, 8],
        out_shape=["N", 4, 6, 6],
    )


def conv_bad_pads() -> onnx.ModelProto:
    return _model(
        [N("Conv", ["input", "w"], ["y"], name="conv_pads", pads=[1, 1, 1])],
        [_w("w", 4, 3, 3, 3)],
        ["N", 3, 8, 8],
        out_shape=["N", 4, 8, 8],
    )


def conv_kernel_larger_than_input() -> onnx.ModelProto:
    return _model(
        [N("Conv", ["input", "w"], ["y"], name="conv_big")],
        [_w("w", 4, 3, 9, 9)],
        ["N", 3, 4, 4],
        out_shape=["N", 4, 1, 1],
    )


def impossible_reshape() -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([1, 7, 7], np.int64), "shape")
    return _model(
        [
            N("Conv", ["input", "w"], ["c"], name="conv"),
            N("Reshape", ["c", "shape"], ["y"], name="reshape_bad"),
        ],
        [_w("w", 4, 3, 3, 3), shape],
        ["N", 3, 8, 8],
        out_shape=[1, 7, 7],
    )


def matmul_mismatch() -> onnx.ModelProto:
    return _model([N("MatMul", ["input", "w"], ["y"], name="mm_bad")], [_w("w", 5, 4)], ["N", 6], out_shape=["N", 4])


def gemm_mismatch() -> onnx.ModelProto:
    return _model(
        [N("Gemm", ["input", "w", "b"], ["y"], name="gemm_bad", transB=1)],
        [_w("w", 4, 5), _w("b", 4)],
        ["N", 6],
        out_shape=["N", 4],
    )


def symbolic_spatial_size() -> onnx.ModelProto:
    return _model(
        [N("Conv", ["input", "w"], ["y"], name="conv")],
        [_w("w", 4, 3, 3, 3)],
        ["N", 3, "H", "W"],
        out_shape=["N", 4, "P", "Q"],
    )


def undefined_tensor() -> onnx.ModelProto:
    return _model([N("Relu", ["nowhere"], ["y"], name="relu")], [], ["N", 3], out_shape=["N", 3])


def unknown_operator() -> onnx.ModelProto:
    return _model([N("NotAnOnnxOp", ["input"], ["y"], name="mystery")], [], ["N", 3], out_shape=["N", 3])


def concat_mismatch() -> onnx.ModelProto:
    return _model(
        [
            N("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            N("Concat", ["c", "input"], ["y"], name="cat_bad", axis=2),
        ],
        [_w("w", 4, 3, 3, 3)],
        ["N", 3, 8, 8],
        out_shape=["N", 4, 19, 8],
    )


def _qdq_conv(w_shape: tuple[int, ...], n_scales: int, name: str) -> onnx.ModelProto:
    """A QDQ conv as a quantizer writes it (no calibration: the model goes straight to import)."""
    codes = numpy_helper.from_array(RNG.integers(0, 255, w_shape, dtype=np.uint8), "wq")
    scale = numpy_helper.from_array(np.full(n_scales, 0.01, np.float32), "ws")
    zp = numpy_helper.from_array(np.full(n_scales, 128, np.uint8), "wz")
    xs = numpy_helper.from_array(np.array(0.05, np.float32), "xs")
    xz = numpy_helper.from_array(np.array(128, np.uint8), "xz")
    return _model(
        [
            N("QuantizeLinear", ["input", "xs", "xz"], ["xq"], name="q"),
            N("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq"),
            N("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq", axis=0),
            N("Conv", ["xd", "wd"], ["y"], name=name),
        ],
        [codes, scale, zp, xs, xz],
        ["N", 3, 8, 8],
        out_shape=["N", 4, 6, 6],
    )


def qdq_bad_axis_scale() -> onnx.ModelProto:
    return _qdq_conv((4, 3, 3, 3), 7, "conv_q")  # 7 scales for 4 output channels


def qdq_channel_mismatch() -> onnx.ModelProto:
    return _qdq_conv((4, 5, 3, 3), 4, "conv_q_bad_c")  # 5 input channels for a 3-channel input


def empty_graph() -> onnx.ModelProto:
    return _model([], [], ["N", 3], out="input", out_shape=["N", 3])


CASES: list[Callable[[], onnx.ModelProto]] = [
    conv_weight_wrong_rank,
    conv_channel_mismatch,
    conv_bad_pads,
    conv_kernel_larger_than_input,
    impossible_reshape,
    matmul_mismatch,
    gemm_mismatch,
    symbolic_spatial_size,
    undefined_tensor,
    unknown_operator,
    concat_mismatch,
    qdq_bad_axis_scale,
    qdq_channel_mismatch,
    empty_graph,
]


def _calibration(model: onnx.ModelProto) -> np.ndarray:
    dims = [d.dim_value if d.HasField("dim_value") else 8 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return RNG.standard_normal((4, *dims[1:])).astype(np.float32)


@pytest.mark.parametrize("build", CASES, ids=[c.__name__ for c in CASES])
def test_malformed_model_gives_a_project_error(build: Callable[[], onnx.ModelProto]) -> None:
    model = build()
    with pytest.raises(ApproxTvmError) as info:
        compile_onnx(model, calibration=_calibration(model))
    err = info.value
    assert err.fix, f"{type(err).__name__} without a fix: {err}"
    assert "InternalError" not in err.what and "Traceback" not in str(err)


@pytest.mark.parametrize(
    ("build", "node"), [(matmul_mismatch, "mm_bad"), (qdq_bad_axis_scale, "wdq"), (conv_channel_mismatch, "conv_bad_c")]
)
def test_the_error_names_the_onnx_node(build: Callable[[], onnx.ModelProto], node: str) -> None:
    with pytest.raises(ApproxTvmError) as info:
        compile_onnx(build(), calibration=_calibration(build()))
    assert node in str(info.value)
