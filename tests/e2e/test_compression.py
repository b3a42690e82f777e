"""Compressed weights: lossless, smaller, and DRAM/NoC weight energy lower by the byte ratio."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.weight_transforms import WeightTransforms
from approxtvm.models import get_model, load_dataset
from approxtvm.targets.vacc.config import ApproxPolicy

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def pair() -> tuple[object, object, np.ndarray]:
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    wt = WeightTransforms(sparsity=0.5, prune_scope="global", cluster_bits=4)
    kw = {"calibration": train.x[:128], "batch_size": 8, "weight_transforms": wt}
    plain = compile_onnx(get_model("digits_cnn"), ApproxPolicy.exact(), **kw)
    packed = compile_onnx(get_model("digits_cnn"), ApproxPolicy.uniform(compression="auto"), **kw)
    return plain, packed, test.x[:64]


def test_compressed_run_is_identical_to_uncompressed_run_of_same_weights(pair) -> None:  # type: ignore[no-untyped-def]
    plain, packed, x = pair
    for lid in plain.layer_ids:
        np.testing.assert_array_equal(plain.programs[lid].weight, packed.programs[lid].weight)
    np.testing.assert_array_equal(plain.run(x).outputs["logits"], packed.run(x).outputs["logits"])


def test_pruned_and_clustered_weights(pair) -> None:  # type: ignore[no-untyped-def]
    plain, _, _ = pair
    total = zero = 0
    for p in plain.programs.values():
        zw = p.schedule.quant.weight_zero_points[0]
        assert len(np.unique(p.weight)) <= 16  # 4-bit clustering
        total += p.weight.size
        zero += int(np.sum(p.weight == zw))
    assert zero / total >= 0.5  # global 50 % sparsity (clustering can only add zeros)


def test_energy_scales_with_measured_bytes(pair) -> None:  # type: ignore[no-untyped-def]
    plain, packed, _ = pair
    for lid in plain.layer_ids:
        dense_bytes = plain.programs[lid].weight.size
        layout = packed.schedules[lid].weight_layout
        ratio = layout.total_bytes / dense_bytes
        assert ratio < 1.0, (lid, ratio)
        assert set(layout.encoding) <= {"dense", "bitmask", "rle", "codebook", "codebook_bitmask"}
        e0 = next(e for e in plain.energy_per_batch().layers if e.layer_id == lid)
        e1 = next(e for e in packed.energy_per_batch().layers if e.layer_id == lid)
        w0, w1 = dict(((c, t), v) for c, t, v in e0.entries), dict(((c, t), v) for c, t, v in e1.entries)
        for comp in ("dram", "noc_link", "noc_router"):
            assert w1[(comp, "weight")] == pytest.approx(w0[(comp, "weight")] * ratio, rel=1e-12)
        assert w1[("decoder", "weight")] > 0 and ("decoder", "weight") not in w0
        # everything else is untouched
        for key, v in w0.items():
            if key[1] != "weight" or key[0] not in ("dram", "noc_link", "noc_router"):
                assert w1[key] == pytest.approx(v, rel=1e-12)
    assert packed.energy_per_batch().total_pj < plain.energy_per_batch().total_pj


def test_compression_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from approxtvm.explore.compression_report import compression_study, write_compression_report

    data = load_dataset("digits:test").take(32)
    s = compression_study(
        get_model("digits_cnn"),
        ApproxPolicy.exact(),
        WeightTransforms(0.5, "global", 4),
        data,
        load_dataset("digits:train").x[:64],
    )
    assert s.footprint_ratio < 0.7
    assert s.bytes_after["dram"] < s.bytes_before["dram"]
    assert s.bytes_after["accum_buffer"] == s.bytes_before["accum_buffer"]
    assert s.compressed.top1 == s.transformed.top1  # lossless
    assert s.compressed.energy_per_inference_pj < s.transformed.energy_per_inference_pj
    path = write_compression_report(s, tmp_path, "digits_cnn")
    assert "Footprint" in path.read_text() and (tmp_path / "compression_energy.png").stat().st_size > 1000
