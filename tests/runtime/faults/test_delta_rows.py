"""Input-fault deltas in the GEMM's layouts (``faults.delta_rows``) against the ``(N, K, P, Q)`` kernels
(which ``test_faults*`` hold to the emulator), on random layers, mappings and samples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from approxtvm.errors import ScheduleError
from approxtvm.runtime import faults
from approxtvm.runtime.faults import delta_rows
from approxtvm.runtime.faults.boxes import for_deltas
from approxtvm.runtime.multipliers import Multiplier
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.mapping import Loop, Mapping
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_U, SPEC, _mapping, _program, layers, uneven_layers

_BUILT = pytest.mark.skipif(delta_rows.rows_kernel() is None, reason="TVM cannot build the rows kernel here")


def _rows_to_nchw(out: np.ndarray, s: object, n: int) -> np.ndarray:
    p, q = (1, 1) if s.op == "dense" else (s.p, s.q)  # type: ignore[attr-defined]
    return out.reshape(n, p, q, s.k).transpose(0, 3, 1, 2)  # type: ignore[attr-defined]


def _check(m: Mapping, seed: int) -> np.ndarray:
    s = m.shape
    if s.groups != 1:
        reject()
    prog, x = _program(s, m, EXACT_U, seed=seed % 1000, zx=seed % 256, zw=7)
    g = faults.tile_geometry(m, SPEC)
    plan = faults.FaultPlan("L", 0, 0.03, 0, (("weight", 0.0), ("input", 0.05)), "write")
    # the NoC corrupts weights too: keep the inputs' words only (the rows kernel adds input deltas)
    sample = replace(faults.sample_faults(plan, g, seed=seed), weight=faults.CorruptedWords.empty())
    la = faults.layer_arrays(prog, g)
    kernels = faults.compiled_kernels()
    prep = kernels.prepare(prog, g, la)
    assert delta_rows.applies(prep)
    # the (N, K, P, Q) kernels (held to the emulator elsewhere) on the same sample
    ref = np.zeros(s.n * s.k * (1 if s.op == "dense" else s.p * s.q), np.int32)
    kernels.delta_calls(x, prog, g, la, prep, [for_deltas(g, sample, m)[1]], ref, la.wflat)
    # the rows kernel: weights as (R·S·C, K) int8 codes w − 128
    w = prog.weight.astype(np.int16) - 128
    w2 = (w.T if s.op == "dense" else w.transpose(2, 3, 1, 0).reshape(-1, s.k)).astype(np.int8)
    words = for_deltas(g, sample, m)[1].input
    for fixed in (delta_rows.FIXED_TILE_K, ()):  # the fixed-width kernels where they apply, then the generic one
        out = np.zeros((s.n * (1 if s.op == "dense" else s.p * s.q), s.k), np.int32)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(delta_rows, "FIXED_TILE_K", fixed)
            delta_rows.add_input_rows(x, prep, words, np.ascontiguousarray(w2), out)
        got = _rows_to_nchw(out, s, s.n)
        np.testing.assert_array_equal(got.reshape(-1), ref)
    return ref


@_BUILT
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(layers(kinds=("conv2d", "dense")))
def test_rows_kernel_equals_the_nkpq_kernel(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    _check(m, seed)


@_BUILT
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(uneven_layers(kinds=("conv2d", "dense")))
def test_rows_kernel_equals_the_nkpq_kernel_on_uneven_mappings(layer: tuple[Mapping, Multiplier, int]) -> None:
    m, _, seed = layer
    try:
        m.validate(SPEC)
    except ScheduleError:
        reject()
    _check(m, seed)


@_BUILT
def test_rows_kernel_adds_the_deltas_of_a_mapped_layer() -> None:
    """A mapper-chosen mapping of a padded 3×3 conv: many corrupted words, nonzero deltas, equal."""
    shape = LayerShape.conv2d(1, 32, 16, 14, 14, 3, 3, pads=(1, 1, 1, 1))
    ref = _check(map_layer(shape, SPEC), 3)
    assert np.count_nonzero(ref) > 100


@_BUILT
@pytest.mark.parametrize("tile_k", delta_rows.FIXED_TILE_K)
@pytest.mark.parametrize("n, pad, stride", [(1, 1, 1), (2, 0, 1), (1, 1, 2)])
def test_fixed_width_kernels_equal_the_nkpq_kernel(tile_k: int, n: int, pad: int, stride: int) -> None:
    """PE tiles of 8, 16, 32 and 64 output channels (the widths with their own kernel) over two
    fills of the channels and two PEs (a channel split across them): the fixed-width kernel runs, and its sums equal the
    ``(N, K, P, Q)`` kernel's (and the generic rows kernel's, in ``_check``)."""
    h = 6 * stride
    shape = LayerShape.conv2d(n, 4 * tile_k, 4, h, h, 3, 3, strides=(stride, stride), pads=(pad,) * 4)
    p = shape.p
    m = _mapping(
        shape,
        dram=[Loop("K", 2), Loop("N", n)],
        gb=[Loop("P", p // 2), Loop("K", 2, True)],
        pe=[Loop("K", tile_k), Loop("C", 4), Loop("R", 3), Loop("S", 3)],
        reg=[Loop("P", 2), Loop("Q", shape.q)],
    )
    m.validate(SPEC)
    assert faults.tile_geometry(m, SPEC).tile_dims("weight", m)[1] == tile_k
    calls: list[int] = []
    real = delta_rows._fixed_kernel

    def spy(tk: int) -> object:
        calls.append(tk)
        return real(tk)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(delta_rows, "_fixed_kernel", spy)
        ref = _check(m, 11 + tile_k)
    assert calls and set(calls) == {tile_k}
    assert np.count_nonzero(ref) > 20
