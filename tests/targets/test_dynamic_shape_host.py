"""A layer whose shape is not static (symbolic batch left in the module) stays on the host with a
reason; it never reaches the codegen (which needs integer shapes)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

import approxtvm as at
from approxtvm.targets.vacc.partition import host_reasons

pytestmark = pytest.mark.tvm


def _module(batch: object) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 3, 8, 8), "uint8"))
    w = relax.const(np.random.default_rng(0).integers(0, 255, (4, 3, 3, 3), dtype=np.uint8))
    with bb.function("main", [x]):
        with bb.dataflow():
            xd = bb.emit(relax.op.dequantize(x, relax.const(0.05, "float32"), relax.const(128, "uint8")))
            wd = bb.emit(relax.op.dequantize(w, relax.const(0.02, "float32"), relax.const(128, "uint8")))
            y = bb.emit(relax.op.nn.conv2d(xd, wd), name_hint="conv")
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def test_symbolic_shape_layer_stays_on_host_with_reason() -> None:
    mod = at.partition_for_vacc(_module(tirx.Var("n", "int64")))
    assert not [f for f in mod.functions.values() if (f.attrs or {}).get("Codegen") == "vacc"]
    (reason,) = host_reasons(mod).values()
    assert "not static" in reason


def test_the_same_layer_with_a_static_batch_is_offloaded() -> None:
    mod = at.partition_for_vacc(_module(2))
    assert [f for f in mod.functions.values() if (f.attrs or {}).get("Codegen") == "vacc"]
    assert host_reasons(mod) == {}
