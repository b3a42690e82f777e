"""A compiled model's layer entry points (TVM global functions) live exactly as long as the model."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from approxtvm.compiler.driver import compile_onnx, load_compiled
from approxtvm.compiler.entry_points import registered
from approxtvm.models import get_model, load_dataset
from approxtvm.runtime.shared_caches import SharedCaches
from approxtvm.targets.vacc.config import ApproxPolicy


def _symbols(model) -> list[str]:
    return [p.schedule.symbol for p in model.programs.values()]


def test_entry_points_are_unregistered_and_layer_programs_freed_with_their_model():
    test = load_dataset("digits:test")
    caches = SharedCaches()
    policy = ApproxPolicy.uniform("bam:h=4,v=0")  # low-rank: per-layer sessions and weight plans
    kept = compile_onnx(get_model("digits_cnn"), policy, batch_size=8, caches=caches, calibration=test.x[:64])
    expected = kept.run(test.x[:8]).outputs["logits"]
    names = _symbols(kept)
    assert names and all(registered(s) for s in names)
    for _ in range(3):
        m = compile_onnx(get_model("digits_cnn"), policy, batch_size=8, caches=caches, calibration=test.x[:64])
        mine = _symbols(m)
        assert set(mine).isdisjoint(names) and all(registered(s) for s in mine)
        m.run(test.x[:8])
        # the registry held each runner and through it the layer's program (weights, plans,
        # onnxruntime sessions): every compile kept them alive for good (ResNet-18: 12-540 MB)
        programs = [weakref.ref(p) for p in m.programs.values()]
        del m
        gc.collect()
        assert not any(registered(s) for s in mine)  # gone with the model
        assert all(p() is None for p in programs)
    # the model compiled first still runs (its own entry points were not touched)
    assert all(registered(s) for s in names)
    assert np.array_equal(kept.run(test.x[:8]).outputs["logits"], expected)


def test_two_loads_of_one_saved_model_share_names_and_the_later_one_keeps_them(tmp_path):
    test = load_dataset("digits:test")
    m = compile_onnx(
        get_model("digits_cnn"), ApproxPolicy.uniform("mitchell"), batch_size=8, calibration=test.x[:64], host="tvm"
    )
    expected = m.run(test.x[:8]).outputs["logits"]
    m.save(tmp_path / "saved")
    del m
    gc.collect()
    a = load_compiled(tmp_path / "saved")
    b = load_compiled(tmp_path / "saved")
    names = _symbols(a)
    assert names == _symbols(b) and all(registered(s) for s in names)
    del a
    gc.collect()
    assert all(registered(s) for s in names)  # b registered them last: they stay
    assert np.array_equal(b.run(test.x[:8]).outputs["logits"], expected)
    del b
    gc.collect()
    assert not any(registered(s) for s in names)
