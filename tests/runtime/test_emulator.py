"""The emulator (the accelerator's specification) against the fast paths, numpy references and the counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ScheduleError
from approxtvm.runtime.counting import simulate_counts
from approxtvm.runtime.emulator import emulate
from approxtvm.runtime.executor import LayerProgram, accumulate
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.onnx_builders import numpy_conv_acc
from tests.runtime.layers import EXACT_U, RAND_U, SPEC, _program, layers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_whole_layer_kernels_equal_the_emulator(layer: tuple[Mapping, Multiplier, int]) -> None:
    check_emulation(layer)


def check_emulation(layer: tuple[Mapping, Multiplier, int]) -> None:
    """The emulator's accumulators equal the whole-layer kernels', and the words it filled into the
    PE buffers equal the energy model's counted writes (skipped for a mapping the spec rejects)."""
    m, mult, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()  # an invalid mapping: hypothesis counts it as rejected, not as a pass
    prog, x = _program(m.shape, m, mult, seed=seed % 1000)
    run = emulate(x, prog)
    np.testing.assert_array_equal(accumulate(x, prog), run.acc)
    # what the emulator wrote into the PE buffers is what the energy model counts
    counts = simulate_counts(m, SPEC)
    assert run.words_filled["weight"] == counts.writes("weight_buffer", "weight")
    assert run.words_filled["input"] == counts.writes("input_buffer", "input")


def test_exact_emulation_equals_a_plain_integer_convolution() -> None:
    shape = LayerShape.conv2d(2, 24, 8, 7, 7, 3, 3, strides=(2, 2), pads=(1, 0, 1, 2))
    prog, x = _program(shape, map_layer(shape, SPEC), EXACT_U, zx=5, zw=9)
    q = prog.schedule.quant
    ref = numpy_conv_acc(
        x,
        prog.weight,
        q.input_zero_point,
        np.asarray(q.weight_zero_points),
        stride=(2, 2),
        dilation=(1, 1),
        pads=(1, 0, 1, 2),
    )
    np.testing.assert_array_equal(emulate(x, prog).acc, ref)


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape.conv2d(1, 32, 16, 9, 9, 3, 3, pads=(1, 1, 1, 1)),
        LayerShape.conv2d(2, 16, 8, 8, 8, 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2)),
        LayerShape.dense(3, 40, 64),
    ],
)
def test_the_kernel_path_chosen_at_build_equals_the_emulator(shape: LayerShape) -> None:
    # the fast path the compiler would pick (TVM tables, low-rank or exact) on a non-commutative table
    prog, x = _program(shape, map_layer(shape, SPEC), RAND_U, seed=3)
    built = LayerProgram.build(prog.schedule, prog.weight, None, RAND_U)
    np.testing.assert_array_equal(accumulate(x, built), emulate(x, built).acc)
