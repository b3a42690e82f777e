"""Layers on the fused column kernel give a whole model the same outputs and accumulators as the
unfused kernels plus the host's window sums, corrections and requantization; a low-rank layer's
one-session accumulators equal its kernel-by-kernel ones and the reference's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.compiler.driver import compile_onnx
from approxtvm.compiler.model import CompiledModel
from approxtvm.runtime.kernels import tvm_available
from approxtvm.targets.vacc.config import ApproxPolicy
from tests import zoo_models

pytestmark = [pytest.mark.tvm, pytest.mark.skipif(not tvm_available(), reason="the fused kernel is a TVM kernel")]


def _compile(name: str, spec: str, batch: int) -> tuple[CompiledModel, np.ndarray]:
    e = zoo_models.entry(name)
    calib = None if e.quantization else zoo_models.calibration_inputs(e, 16)
    model = compile_onnx(
        zoo_models.load(name), ApproxPolicy.uniform(spec), calibration=calib, batch_size=e.fixed_batch or batch
    )
    return model, zoo_models.eval_inputs(e, 3)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("mobilenet_v2_trained_symbatch", "mitchell"),  # table path, unsigned codes
        ("mobilenet_v2_trained_qdq_s8s8", "bam:h=4,v=0"),  # low-rank path, signed codes (onnxruntime's QDQ)
    ],
)
def test_fused_layers_equal_the_unfused_path(name: str, spec: str) -> None:
    model, x = _compile(name, spec, 2)
    on = [lid for lid, p in model.programs.items() if p.column_fused]
    grouped = [lid for lid, p in model.programs.items() if p.schedule.shape.groups > 1]
    assert set(grouped) <= set(on) and len(on) > len(grouped)  # depthwise and narrow 1×1 layers
    a = model.run(x)  # 3 images: a full and a padded batch (batch 2)
    ta = model.run(x[:2], trace=True)  # the layers return int32 accumulators, the host requantizes
    assert any(key[0] == "fused" for p in model.programs.values() for key in p.store.entries)
    for prog in model.programs.values():
        prog.__dict__["column_fused"] = False  # now the unfused kernels and host passes
    b = model.run(x)
    tb = model.run(x[:2], trace=True)
    for k in a.outputs:
        assert np.array_equal(a.outputs[k], b.outputs[k])
        assert np.array_equal(ta.outputs[k], a.outputs[k][:2])
    assert [t[0] for t in ta.traces] == [t[0] for t in tb.traces]
    for (_, xa, acc_a), (_, xb, acc_b) in zip(ta.traces, tb.traces, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(acc_a, acc_b)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 2),
    st.sampled_from([1, 2]),
    st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3)]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**16),
)
def test_lowrank_accumulators_in_one_session_equal_the_kernels_and_a_reference(n, stride, pads, zx, zw, seed) -> None:  # type: ignore[no-untyped-def]
    """A low-rank conv layer's accumulators (what fault injection changes before requantizing):
    the one-session form, the kernel-by-kernel path and the reference products with numpy's
    corrections agree, on the measuring call and on a call with the kept choice; a layer of the
    same shape and plan structure with other weights reuses the choice."""
    from approxtvm.runtime.executor import LayerProgram, accumulate
    from approxtvm.runtime.kernels import KernelCache, conv2d_products_reference
    from approxtvm.runtime.multipliers import Multiplier
    from approxtvm.runtime.multipliers.multiplier import operand_values
    from approxtvm.targets.vacc.mapper import map_layer
    from approxtvm.targets.vacc.workload import LayerShape
    from tests.runtime.layers import SPEC, _program

    v = operand_values(False)
    mult = Multiplier("optrunc23", ((v >> 2) << 2)[:, None] * ((v >> 3) << 3)[None, :], False)  # not symmetric
    shape = LayerShape.conv2d(n, 64, 32, 24, 24, 3, 2, strides=(stride, 1), pads=pads)  # not column-fused
    base, x = _program(shape, map_layer(shape, SPEC), mult, zx=zx, zw=zw, seed=seed)
    prog = LayerProgram(base.schedule, base.weight, None, mult, KernelCache(), "lowrank")
    s = shape
    products = conv2d_products_reference(
        x, prog.weight, mult, strides=(s.stride_h, s.stride_w), pads=pads, pad_value=zx
    )
    want = accumulate(x, prog, products)
    assert not prog.column_fused and prog.lowrank_layer(x.shape, None) is not None  # the one-session form applies
    assert not any(k[0] == "measured_kernel" for k in prog.cache.sessions.sessions if isinstance(k, tuple))
    first = accumulate(x, prog, one_session=True)  # measures both forms
    kept = [k for k in prog.cache.sessions.sessions if isinstance(k, tuple) and k[0] == "measured_kernel"]
    assert len(kept) == 1
    assert np.array_equal(first, want)
    assert np.array_equal(accumulate(x, prog, one_session=True), want)
    assert np.array_equal(accumulate(x, prog), want)
    # other weights, same shape and plan structure: the kept choice serves it (no new measurement)
    other, x2 = _program(shape, map_layer(shape, SPEC), mult, zx=zx, zw=zw, seed=seed + 1)
    prog2 = LayerProgram(other.schedule, other.weight, None, mult, prog.cache, "lowrank")
    layer2 = prog2.lowrank_layer(x2.shape, None)
    assert layer2 is not None
    products2 = conv2d_products_reference(
        x2, prog2.weight, mult, strides=(s.stride_h, s.stride_w), pads=pads, pad_value=zx
    )
    assert np.array_equal(accumulate(x2, prog2, one_session=True), accumulate(x2, prog2, products2))
    kept2 = [k for k in prog.cache.sessions.sessions if isinstance(k, tuple) and k[0] == "measured_kernel"]
    same = layer2.speed_key == prog.lowrank_layer(x.shape, None).speed_key
    assert len(kept2) == (1 if same else 2)
