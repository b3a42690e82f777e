"""onnxruntime sessions the runtime builds for its own small graphs (per-layer and per-segment).

One place for the options they all need: several sessions alternate with our Python and TVM
kernels, so an idle pool must not spin (it would steal the cores from the active one), and one
inter-op thread suffices for graphs of a node or a chain.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def runtime_session(model: Any, threads: int | None, *, spinning: bool = False, arena: bool = True) -> Any:
    """A CPU ``InferenceSession`` of ``model`` (an ``onnx.ModelProto``).

    Parameters
    ----------
    model
        The graph.
    threads
        Intra-op threads (``None`` or 0: onnxruntime's default, every core).
    spinning
        Let the intra-op pool busy-wait between runs (only for a session that runs alone).
    arena
        Keep onnxruntime's CPU memory arena (its intermediate buffers stay allocated between
        runs). ``False`` for sessions kept in a cache across compiled models: each kept arena
        holds about its largest run's intermediates, which a weight-bytes budget does not see
        (measured: a worker's settled size grew 0.6–1.6 GiB per ResNet-50 configuration with
        them, and stayed at 2–3 GiB without).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads) if threads else 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = arena
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def integer_op_session(
    op: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    threads: int | None,
    *,
    zero_point: int | None = None,
    w_signed: bool = False,
    **attrs: object,
) -> Any:
    """Session of one ``ConvInteger`` / ``MatMulInteger`` node on uint8 inputs ``x`` and ``w``.

    ``zero_point``: a uint8 zero point subtracted from both operands (``None``: none).
    ``w_signed``: the second input is int8 instead of uint8 (see
    :mod:`approxtvm.runtime.kernels.lowrank_gemm` for when that is exact).
    """
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["x", "w"]
    initializers = []
    if zero_point is not None:
        initializers.append(numpy_helper.from_array(np.array(zero_point, np.uint8), "z"))
        inputs += ["z", "z"]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], **attrs)],
        f"approxtvm_{op}",
        [
            helper.make_tensor_value_info("x", TensorProto.UINT8, list(x_shape)),
            helper.make_tensor_value_info("w", TensorProto.INT8 if w_signed else TensorProto.UINT8, list(w_shape)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return runtime_session(model, threads)
