"""NameLayers: Before/Expected structural tests."""

from __future__ import annotations

import tvm
from tvm.script import ir as I  # noqa: N812
from tvm.script import relax as R  # noqa: N812

from approxtvm.passes.name_layers import NameLayers
from approxtvm.targets.vacc.partition import LAYER_NAMES_ATTR


@I.ir_module
class Before:
    @R.function
    def main(
        x: R.Tensor((1, 4, 8, 8), "uint8"),  # noqa: N805
        w1_q: R.Tensor((8, 4, 3, 3), "uint8"),
        wf_q: R.Tensor((10, 8), "uint8"),
    ) -> R.Tensor((1, 10), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            xd = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            wd = R.dequantize(w1_q, R.const(0.2, "float32"), R.const(128, "uint8"))
            c = R.nn.conv2d(xd, wd, padding=[1, 1, 1, 1])
            m = R.mean(c, axis=[2, 3])
            fd = R.dequantize(wf_q, R.const(0.3, "float32"), R.const(128, "uint8"))
            ft = R.permute_dims(fd)
            y = R.matmul(m, ft)
            R.output(y)
        return y


@I.ir_module
class Expected:
    @R.function
    def main(
        x: R.Tensor((1, 4, 8, 8), "uint8"),  # noqa: N805
        w1_q: R.Tensor((8, 4, 3, 3), "uint8"),
        wf_q: R.Tensor((10, 8), "uint8"),
    ) -> R.Tensor((1, 10), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            xd = R.dequantize(x, R.const(0.1, "float32"), R.const(3, "uint8"))
            wd = R.dequantize(w1_q, R.const(0.2, "float32"), R.const(128, "uint8"))
            conv1 = R.nn.conv2d(xd, wd, padding=[1, 1, 1, 1])
            m = R.mean(conv1, axis=[2, 3])
            fd = R.dequantize(wf_q, R.const(0.3, "float32"), R.const(128, "uint8"))
            ft = R.permute_dims(fd)
            fc = R.matmul(m, ft)
            R.output(fc)
        return fc


def _names(mod: tvm.IRModule) -> list[str]:
    return [b.var.name for b in mod["main"].body.blocks[0].bindings]


def test_names_follow_weights_through_dequantize_and_permute() -> None:
    after = NameLayers({"w1_q": "conv1", "wf_q": "fc"})(Before)
    tvm.ir.assert_structural_equal(after["main"], Expected["main"])
    assert dict(after.attrs[LAYER_NAMES_ATTR]) == {"conv1": "conv1", "fc": "fc"}


def test_dotted_ids_survive_name_sanitizing() -> None:
    after = NameLayers({"w1_q": "layer1.0.conv1", "wf_q": "fc"})(Before)
    names = {str(k): str(v) for k, v in after.attrs[LAYER_NAMES_ATTR].items()}
    assert "layer1.0.conv1" in names.values()
    assert all(k in _names(after) for k in names)  # keys are the IR variable names


def test_without_a_table_ids_are_weight_names_and_input_is_not_mutated() -> None:
    before_text = Before.script()
    after = NameLayers({})(Before)
    ids = {str(v) for v in after.attrs[LAYER_NAMES_ATTR].values()}
    assert ids == {"w1_q", "wf_q"}  # the module's own weight parameter names
    assert Before.script() == before_text


def test_weights_missing_from_a_table_get_positional_ids() -> None:
    after = NameLayers({"other": "x"})(Before)  # a table that names neither weight
    names = _names(after)
    assert "layer_0" in names and "layer_1" in names
