"""ClusterWeights and cluster_codes: ≤ 2^b shared values, zeros kept, deterministic, Before/Expected."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm.script import ir as I  # noqa: N812
from tvm.script import relax as R  # noqa: N812

from approxtvm.errors import PolicyError
from approxtvm.passes.cluster_weights import ClusterWeights, cluster_codes
from approxtvm.passes.prune_weights import PruneWeights
from approxtvm.targets.vacc.compression import encode_tile

# fc: zero point 5, 2 bits → the zero code + 3 free centroids. Quantile init on the non-zero codes
# {0, 1, 10, 11, 20, 21} gives 0, 10, 20; Lloyd moves them to 0.5, 10.5, 20.5; rounding (half to
# even) gives 0, 10, 20.
W_FC = np.array([[0, 10, 5, 20], [21, 5, 11, 1]], dtype="uint8")
W_FC_2BIT = np.array([[0, 10, 5, 20], [20, 5, 10, 0]], dtype="uint8")
W_CONV = np.array([[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]], dtype="uint8")


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 1, 2, 2), "float32")) -> R.Tensor((1, 2), "float32"):  # noqa: N805 (TVMScript function, not a method)
        with R.dataflow():
            wd = R.dequantize(R.const(W_CONV), R.const(0.1, "float32"), R.const(4, "uint8"))
            conv1 = R.nn.conv2d(x, wd)
            m = R.reshape(conv1, R.shape([1, 2]))
            fd = R.dequantize(R.const(W_FC), R.const(0.5, "float32"), R.const(5, "uint8"))
            ft = R.permute_dims(fd)
            fc = R.matmul(R.concat([m, m], axis=1), ft)
            R.output(fc)
        return fc


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 1, 2, 2), "float32")) -> R.Tensor((1, 2), "float32"):  # noqa: N805 (TVMScript function, not a method)
        with R.dataflow():
            wd = R.dequantize(R.const(W_CONV), R.const(0.1, "float32"), R.const(4, "uint8"))
            conv1 = R.nn.conv2d(x, wd)
            m = R.reshape(conv1, R.shape([1, 2]))
            fd = R.dequantize(R.const(W_FC_2BIT), R.const(0.5, "float32"), R.const(5, "uint8"))
            ft = R.permute_dims(fd)
            fc = R.matmul(R.concat([m, m], axis=1), ft)
            R.output(fc)
        return fc


def test_cluster_weights_before_expected() -> None:
    before_text = Before.script(show_meta=True)
    # conv1 has 8 distinct codes: 3 bits leave it unchanged; fc is clustered to 2 bits
    after = ClusterWeights({"conv1": 3, "fc": 2})(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert Before.script(show_meta=True) == before_text


def test_prune_then_cluster_keeps_pruned_zeros() -> None:
    after = tvm.transform.Sequential([PruneWeights(0.5), ClusterWeights(2)])(Before)
    deq = after["main"].body.blocks[0].bindings[3].value
    codes = deq.args[0].value.numpy()
    assert int((codes == 5).sum()) >= 4 and len(np.unique(codes)) <= 4


def test_bad_options_raise_policy_error() -> None:
    for bad in (1, 7, 4.0, True):
        with pytest.raises(PolicyError, match="out of range"):
            ClusterWeights(bad)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="quantized constant"):
        ClusterWeights({"fc2": 4})(Before)


@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.integers(1, 8),
    dtype=st.sampled_from([np.uint8, np.int8]),
    sparsity=st.sampled_from([0.0, 0.5, 0.9]),
    spread=st.sampled_from([2, 10, 60, 128]),
)
@settings(max_examples=80, deadline=None)
def test_cluster_codes_properties(seed: int, bits: int, dtype: type, sparsity: float, spread: int) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    zero = int(rng.integers(int(info.min), int(info.max) + 1))
    codes = np.clip(zero + rng.normal(0, spread, size=(8, 3, 3, 3)), info.min, info.max).astype(dtype)
    codes[rng.random(codes.shape) < sparsity] = zero
    original = codes.copy()
    out = cluster_codes(codes, bits, zero)
    np.testing.assert_array_equal(codes, original)
    values = np.unique(out)
    assert len(values) <= 2**bits and out.dtype == codes.dtype
    assert np.all(out[codes == zero] == zero)  # pruned zeros stay zero
    np.testing.assert_array_equal(cluster_codes(out, bits, zero), out)  # idempotent
    np.testing.assert_array_equal(cluster_codes(codes, bits, zero), out)  # deterministic
    # every code goes to a nearest shared value
    dist = np.abs(codes.astype(int)[..., None] - values.astype(int))
    np.testing.assert_array_equal(np.abs(codes.astype(int) - out.astype(int)), dist.min(axis=-1))
    # and a codebook with b-bit indices then represents the layer
    assert encode_tile(out, zero, "codebook", codebook_bits=bits).encoding == "codebook"


def test_few_distinct_values_are_returned_unchanged() -> None:
    codes = np.array([3, 3, 9, 200], dtype=np.uint8)
    np.testing.assert_array_equal(cluster_codes(codes, 2, 3), codes)
    with pytest.raises(PolicyError, match="one zero point"):
        cluster_codes(codes, 2, np.array([3, 4]))
