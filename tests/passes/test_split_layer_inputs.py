"""SplitLayerInputs: Before/Expected structural test."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.script import ir as I  # noqa: N812
from tvm.script import relax as R  # noqa: N812

from approxtvm.passes.split_layer_inputs import SplitLayerInputs


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "uint8"), w: R.Tensor((4, 4, 1, 1), "uint8")) -> R.Tensor(  # noqa: N805
        (1, 4, 8, 8), "float32"
    ):
        with R.dataflow():
            xd = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            wd = R.dequantize(w, R.const(0.2, "float32"), R.const(128, "uint8"))
            c = R.nn.conv2d(xd, wd)
            d = R.nn.conv2d(xd, wd)
            s = R.add(c, d)
            t = R.add(s, xd)
            R.output(t)
        return t


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "uint8"), w: R.Tensor((4, 4, 1, 1), "uint8")) -> R.Tensor(  # noqa: N805
        (1, 4, 8, 8), "float32"
    ):
        with R.dataflow():
            xd = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            wd = R.dequantize(w, R.const(0.2, "float32"), R.const(128, "uint8"))
            xd1 = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            c = R.nn.conv2d(xd1, wd)
            xd2 = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            d = R.nn.conv2d(xd2, wd)
            s = R.add(c, d)
            t = R.add(s, xd)  # the host add keeps the original
            R.output(t)
        return t


def test_each_layer_gets_its_own_input_dequantize() -> None:
    after = tvm.transform.Sequential([SplitLayerInputs(), relax.transform.DeadCodeElimination()])(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_weight_dequantize_is_not_duplicated() -> None:
    after = SplitLayerInputs()(Before)
    deqs = [
        b
        for b in after["main"].body.blocks[0].bindings
        if isinstance(b.value, relax.Call) and b.value.op.name == "relax.dequantize"
    ]
    assert sum(isinstance(b.value.args[0], relax.Var) and b.value.args[0].name == "w" for b in deqs) == 1
