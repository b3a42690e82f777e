"""PruneWeights and prune_codes: exact sparsity, tie rule, kept weights untouched, Before/Expected."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm.script import ir as I  # noqa: N812
from tvm.script import relax as R  # noqa: N812

from approxtvm.errors import PolicyError
from approxtvm.passes.prune_weights import PruneWeights, layer_weights, prune_codes
from approxtvm.targets.vacc.compression.transforms import prune_codes_global

# conv1: zero point 128, per-output-channel scales (1.0, 0.5); magnitudes
#   channel 0: |0, 2, 3, 1| · 1.0        channel 1: |12, 1, 0, 4| · 0.5 = 6, 0.5, 0, 2
# 50 % of 8 → 4 pruned: the two zero codes, then 0.5 (ch1), then 1.0 (ch0).
W_CONV = np.array([[[[128, 130], [125, 129]]], [[[140, 127], [128, 132]]]], dtype="uint8")
W_CONV_50 = np.array([[[[128, 130], [125, 128]]], [[[140, 128], [128, 132]]]], dtype="uint8")
W_FC = np.array([[1, 9, 5, 3], [7, 5, 4, 6]], dtype="uint8")
SCALES = np.array([1.0, 0.5], dtype="float32")


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 1, 3, 3), "float32")) -> R.Tensor((1, 2), "float32"):  # noqa: N805 (TVMScript function, not a method)
        with R.dataflow():
            wd = R.dequantize(R.const(W_CONV), R.const(SCALES), R.const(128, "uint8"), axis=0)
            conv1 = R.nn.conv2d(x, wd)
            m = R.reshape(conv1, R.shape([1, 8]))
            fd = R.dequantize(R.const(W_FC), R.const(0.5, "float32"), R.const(5, "uint8"))
            ft = R.permute_dims(fd)
            fc = R.matmul(R.strided_slice(m, axes=[1], begin=[0], end=[4]), ft)
            R.output(fc)
        return fc


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 1, 3, 3), "float32")) -> R.Tensor((1, 2), "float32"):  # noqa: N805 (TVMScript function, not a method)
        with R.dataflow():
            wd = R.dequantize(R.const(W_CONV_50), R.const(SCALES), R.const(128, "uint8"), axis=0)
            conv1 = R.nn.conv2d(x, wd)
            m = R.reshape(conv1, R.shape([1, 8]))
            fd = R.dequantize(R.const(W_FC), R.const(0.5, "float32"), R.const(5, "uint8"))
            ft = R.permute_dims(fd)
            fc = R.matmul(R.strided_slice(m, axes=[1], begin=[0], end=[4]), ft)
            R.output(fc)
        return fc


def _codes(mod: tvm.IRModule) -> dict[str, np.ndarray]:
    return {lid: w.codes for lid, w in layer_weights(mod["main"])[0].items()}


def test_per_layer_dict_prunes_only_the_named_layer() -> None:
    before_text = Before.script(show_meta=True)
    after = PruneWeights({"conv1": 0.5})(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert Before.script(show_meta=True) == before_text  # input not mutated


def test_float_sparsity_prunes_every_layer_through_permute_dims() -> None:
    codes = _codes(PruneWeights(0.5)(Before))
    np.testing.assert_array_equal(codes["conv1"], W_CONV_50)
    # fc: zero point 5, |−4, 4, 0, −2 | 2, 0, −1, 1| → zeros, then the two 1s (lower index first)
    np.testing.assert_array_equal(codes["fc"], [[1, 9, 5, 3], [7, 5, 5, 5]])


def test_global_scope_compares_magnitudes_across_layers() -> None:
    codes = _codes(PruneWeights(0.25, scope="global")(Before))
    # 16 weights → 4: conv1 zeros (2), fc zeros (2): nothing else changes
    np.testing.assert_array_equal(codes["conv1"], W_CONV)
    np.testing.assert_array_equal(codes["fc"], W_FC)
    codes = _codes(PruneWeights(0.5, scope="global")(Before))
    assert sum(int((c == zp).sum()) for c, zp in ((codes["conv1"], 128), (codes["fc"], 5))) == 8


def test_bad_options_and_unknown_layers_raise_policy_error() -> None:
    with pytest.raises(PolicyError, match="without a quantized constant weight"):
        PruneWeights({"conv9": 0.5})(Before)
    with pytest.raises(PolicyError, match="out of range"):
        PruneWeights(1.5)
    with pytest.raises(PolicyError, match="scope"):
        PruneWeights(0.5, scope="model")
    with pytest.raises(PolicyError, match="one sparsity"):
        PruneWeights({"conv1": 0.5}, scope="global")


@st.composite
def layers(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray | int, np.ndarray, float]:
    dtype = draw(st.sampled_from([np.uint8, np.int8]))
    info = np.iinfo(dtype)
    k = draw(st.integers(1, 6))
    shape = (k, draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([1, 3, 40, 128]))  # small spreads force magnitude ties
    if draw(st.booleans()):
        zp: np.ndarray | int = rng.integers(int(info.min) + 20, int(info.max) - 20, size=k)
        centre = np.asarray(zp).reshape(k, 1, 1, 1)
    else:
        zp = int(rng.integers(int(info.min), int(info.max) + 1))
        centre = np.asarray(zp)
    codes = np.clip(centre + rng.integers(-spread, spread + 1, size=shape), info.min, info.max).astype(dtype)
    scales = rng.choice([0.5, 1.0, 2.0], size=k) if draw(st.booleans()) else np.array(0.25)
    return codes, zp, scales, draw(st.sampled_from([0.0, 0.1, 0.5, 0.8, 0.97, 1.0]))


@given(case=layers())
@settings(max_examples=80, deadline=None)
def test_prune_codes_hits_the_target_exactly_and_keeps_other_weights(
    case: tuple[np.ndarray, np.ndarray | int, np.ndarray, float],
) -> None:
    codes, zp, scales, s = case
    original = codes.copy()
    out = prune_codes(codes, zp, scales, s)
    np.testing.assert_array_equal(codes, original)  # input not mutated
    zero = np.broadcast_to(np.asarray(zp).reshape(-1, *[1] * (codes.ndim - 1)) if np.ndim(zp) else zp, codes.shape)
    k = int(np.floor(s * codes.size + 0.5))
    assert int((out == zero).sum()) == max(k, int((codes == zero).sum()))
    changed = out != codes
    assert np.all(out[changed] == zero[changed])  # only prunes, never alters kept weights
    mag = np.abs(codes.astype(float) - zero) * np.broadcast_to(
        np.asarray(scales).reshape(-1, *[1] * (codes.ndim - 1)) if np.ndim(scales) else scales, codes.shape
    )
    if changed.any() and (~changed & (codes != zero)).any():
        assert mag[changed].max() <= mag[~changed & (codes != zero)].min()


def test_ties_prune_the_lower_index_first() -> None:
    codes = np.array([10, 12, 8, 12, 8], dtype=np.uint8)  # all at distance 2 from 10, except index 0
    np.testing.assert_array_equal(prune_codes(codes, 10, 1.0, 0.6), [10, 10, 10, 12, 8])


def test_global_pruning_counts_over_all_layers() -> None:
    a = np.array([100, 101, 102, 103], dtype=np.uint8)
    b = np.array([0, 50, -50, 1], dtype=np.int8)
    out = prune_codes_global([(a, 100, 1.0, 0), (b, 0, 0.01, 0)], 0.5)
    # magnitudes: a = 0, 1, 2, 3; b = 0, 0.5, 0.5, 0.01 → prune a0, b0, b3, then b1 (tie, lower index)
    np.testing.assert_array_equal(out[0], [100, 101, 102, 103])
    np.testing.assert_array_equal(out[1], [0, 0, -50, 0])
    with pytest.raises(PolicyError, match="out of range"):
        prune_codes(a, 100, 1.0, -0.1)
    with pytest.raises(PolicyError, match="wrong shape"):
        prune_codes(a, 100, np.ones(3), 0.5)
