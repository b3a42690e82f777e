"""partition_for_vacc on a module imported straight from ONNX, with one weight/bias dequantize
and one activation dequantize shared by two layers (as after quantizing torch's shared zero
biases): every layer is offloaded on its own and the VM output equals onnxruntime's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
import tvm.relax.frontend.onnx
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.ir.instrument import WellFormedInstrument

import approxtvm as at
from approxtvm.targets.vacc.partition import params_by_name
from approxtvm.targets.vacc.split_shared import SplitSharedDequantize

pytestmark = pytest.mark.tvm


def _shared_dequantize_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, (4, 4, 3, 3), dtype=np.uint8), "wq"),
        numpy_helper.from_array(np.array(0.02, np.float32), "ws"),
        numpy_helper.from_array(np.array(128, np.uint8), "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(rng.integers(-500, 500, 4, dtype=np.int32), "bq"),
        numpy_helper.from_array(np.array(0.001, np.float32), "bs"),
    ]
    n = helper.make_node
    nodes = [
        n("QuantizeLinear", ["input", "xs", "xz"], ["xq"], name="q"),
        n("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq"),
        n("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq"),
        n("DequantizeLinear", ["bq", "bs"], ["bd"], name="bdq"),
        n("Conv", ["xd", "wd", "bd"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        n("Conv", ["xd", "wd", "bd"], ["b"], name="conv_b", strides=[2, 2]),
        n("ReduceMean", ["a"], ["am"], name="mean_a", axes=[2, 3], keepdims=0),
        n("ReduceMean", ["b"], ["bm"], name="mean_b", axes=[2, 3], keepdims=0),
        n("Add", ["am", "bm"], ["s"], name="add"),
        n("Add", ["s", "xd_sum"], ["y"], name="add_x"),
        n("ReduceMean", ["xd"], ["xd_sum"], name="mean_x", axes=[2, 3], keepdims=0),
    ]
    nodes = [*nodes[:-2], nodes[-1], nodes[-2]]  # the activation dequantize also has a host reader
    g = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 4, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_shared_dequantizes_are_split_per_layer() -> None:
    m = _shared_dequantize_model()
    mod = tvm.relax.frontend.onnx.from_onnx(m, keep_params_in_input=True)
    mod, params = relax.frontend.detach_params(mod)
    bound = relax.transform.BindParams("main", params_by_name(mod, params["main"]))(mod)
    with tvm.transform.PassContext(instruments=[WellFormedInstrument()]):
        SplitSharedDequantize()(bound)  # the rewrite alone yields a well-formed module
    mod = at.partition_for_vacc(mod, params["main"])
    offloaded = [
        f for f in mod.functions.values() if isinstance(f, relax.Function) and (f.attrs or {}).get("Codegen") == "vacc"
    ]
    assert len(offloaded) == 2 and all(len(f.params) == 1 for f in offloaded)  # codes in, nothing else
    mod = relax.transform.RunCodegen()(mod)
    vm = relax.VirtualMachine(relax.build(mod, "llvm"), tvm.cpu())
    x = np.random.default_rng(2).standard_normal((2, 4, 7, 7)).astype(np.float32)
    ours = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
