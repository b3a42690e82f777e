"""Uneven mappings at run time: the emulator, the fault residencies and the deltas follow each buffer's cut."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import accumulate, accumulate_matmul
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapping import LEVELS, Boundary, LevelNest, Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.onnx_builders import numpy_conv_acc
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _program, matmul_operand, uneven_layers
from tests.runtime.test_emulator import check_emulation
from tests.runtime.test_faults import _compiled, _corruption, _plan, check_stacked_calls


def _hand() -> Mapping:
    """A conv whose input buffer keeps the whole image height across K and P (cut above them) while
    the weight buffer holds one kernel row (cut below R): the two buffers refill at different steps,
    and the PE steps at the weight buffer's finer cut."""
    shape = LayerShape.conv2d(2, 16, 8, 9, 9, 3, 3, pads=(1, 1, 1, 1))
    loops = (
        [Loop("N", 2)],
        [Loop("K", 2), Loop("P", 3), Loop("K", 2, True)],
        [Loop("R", 3), Loop("S", 3), Loop("K", 4, True), Loop("C", 8, True)],
        [Loop("P", 3), Loop("Q", 9)],
    )
    levels = tuple(LevelNest(n, tuple(lv)) for n, lv in zip(LEVELS, loops, strict=True))
    return Mapping(shape, levels, (Boundary("input", "PE", 1), Boundary("weight", "PE", 4)))


def test_exact_emulation_of_an_uneven_mapping_equals_a_plain_integer_convolution() -> None:
    m = _hand()
    m.validate(SPEC)
    assert m.tile_extent("PE", "input")["H"] == 11 and m.tile_extent("PE", "weight")["R"] == 1
    prog, x = _program(m.shape, m, EXACT_U, zx=5, zw=9)
    q = prog.schedule.quant
    ref = numpy_conv_acc(
        x,
        prog.weight,
        q.input_zero_point,
        np.asarray(q.weight_zero_points),
        stride=(1, 1),
        dilation=(1, 1),
        pads=(1, 1, 1, 1),
    )
    run = emulate(x, prog)
    np.testing.assert_array_equal(run.acc, ref)
    # per PE: the input buffer fills once per image (2), the weight buffer once per (N, K, P, R) step
    assert run.fills == {"input": 2, "weight": 2 * 2 * 3 * 3}
    counts = simulate_counts(m, SPEC)
    assert run.words_filled["weight"] == counts.writes("weight_buffer", "weight")
    assert run.words_filled["input"] == counts.writes("input_buffer", "input")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(("conv2d", "dense", "grouped")))
def test_uneven_mappings_emulate_to_the_whole_layer_result(layer: tuple[Mapping, Multiplier, int]) -> None:
    check_emulation(layer)


def _check_faults(m: Mapping, mult: Multiplier, seed: int) -> None:
    prog, x = _program(m.shape, m, mult, seed=seed % 1000)
    b = matmul_operand(prog, seed % 1000) if m.shape.op == "matmul" else None  # its weight role
    g = faults.tile_geometry(m, SPEC)
    # faults live in the buffers' own residencies: one per fill of each PE's tile
    for t, buf in (("weight", "weight_buffer"), ("input", "input_buffer")):
        assert len(g.fills[t]) * g.instances * g.words[t] == simulate_counts(m, SPEC).writes(buf, t)
    plan = _plan(noc=0.02, w=0.03, x=0.03, msbs=seed % 3, mode=("write", "read", "both")[seed % 3])
    sample = faults.sample_faults(plan, g, seed=seed)
    clean = accumulate_matmul(x, b, prog) if b is not None else accumulate(x, prog)
    np.testing.assert_array_equal(emulate(x, prog, second=b).acc, clean)
    ref = emulate(x, prog, corruption=_corruption(sample), second=b).acc
    np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g, second=b), ref)
    if _compiled() is not None:
        np.testing.assert_array_equal(faults.inject(x, prog, clean, sample, g, kernels=_compiled(), second=b), ref)
    if len(sample.weight) or len(sample.input):
        delta = faults.products_delta(x, prog, g, sample, second=b).reshape(ref.shape)
        np.testing.assert_array_equal(delta, ref.astype(np.int64) - clean)


def test_faults_of_the_hand_mapping_equal_the_emulator() -> None:
    for seed in range(4):
        _check_faults(_hand(), RAND_U, seed)
    check_stacked_calls(_hand())  # several calls injected at once


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uneven_layers(("conv2d", "dense", "grouped", "matmul")))
def test_sparse_injection_equals_the_emulator_on_uneven_mappings(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, mult, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    _check_faults(m, mult, seed)
