"""Runtime onnxruntime sessions: the options that keep cached sessions from growing a worker."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from approxtvm.runtime.kernels.ort_session import runtime_session


def _add_one() -> object:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.INT32, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [4])],
        [helper.make_tensor("one", TensorProto.INT32, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_cached_sessions_can_run_without_the_memory_arena() -> None:
    x = np.arange(4, dtype=np.int32)
    with_arena = runtime_session(_add_one(), 1)
    without = runtime_session(_add_one(), 1, arena=False)
    assert with_arena.get_session_options().enable_cpu_mem_arena
    assert not without.get_session_options().enable_cpu_mem_arena
    for s in (with_arena, without):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x + 1)
