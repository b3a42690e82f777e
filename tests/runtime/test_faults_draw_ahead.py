"""Fault draws on a background thread (``FaultSession.draw_ahead``): the same faults as drawn on demand."""

from __future__ import annotations

import numpy as np
import pytest

from approxtvm.runtime import faults
from approxtvm.runtime.exact_layer import usable_cores
from approxtvm.runtime.executor import accumulate
from approxtvm.runtime.faults import session as fsession
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.workload import LayerShape
from tests.runtime.layers import EXACT_U, SPEC, _program

_TWO = pytest.mark.skipif(usable_cores() < 2, reason="draw_ahead draws on a second core only (this process has one)")


def _layers() -> tuple[faults.ModelFaults, dict[str, tuple[object, np.ndarray]]]:
    shapes = {
        "a": LayerShape.conv2d(1, 16, 8, 10, 10, 3, 3, pads=(1, 1, 1, 1)),
        "b": LayerShape.conv2d(1, 8, 16, 10, 10, 3, 3, pads=(1, 1, 1, 1)),
        "c": LayerShape.dense(1, 12, 32),
    }
    progs = {}
    for i, (lid, s) in enumerate(shapes.items()):
        progs[lid] = _program(s, map_layer(s, SPEC), EXACT_U, seed=i)
    mf = faults.ModelFaults({lid: p.schedule for lid, (p, _) in progs.items()}, SPEC, faults.FaultOptions())
    for i, lid in enumerate(progs):
        mf.plans[lid] = faults.FaultPlan(lid, i, 0.002, 0, (("weight", 0.003), ("input", 0.003)), "write")
    return mf, progs  # type: ignore[return-value]


def _run(mf: faults.ModelFaults, progs: dict, ahead: int, first: int) -> tuple[list[np.ndarray], dict]:
    s = mf.session(seed=11, first_call=first)
    assert s is not None
    if ahead:
        s.draw_ahead(ahead)  # the blocks of the first ``ahead`` calls
        assert set(s._ahead) == set(progs)  # every layer's first block is being drawn on the thread
    outs = []
    for _ in range(2):  # two calls per layer: the second may need a block drawn on demand
        for lid, (prog, x) in progs.items():
            outs.append(s.apply(lid, x, prog, accumulate(x, prog).copy()))
    return outs, s.counters()


@_TWO
@pytest.mark.parametrize("first, calls", [(0, 1), (5, 1), (5, 2), (0, 3)])
def test_draws_ahead_equal_draws_on_demand(first: int, calls: int) -> None:
    mf, progs = _layers()
    want, want_counters = _run(mf, progs, ahead=0, first=first)
    got, got_counters = _run(mf, progs, ahead=calls, first=first)
    clean = [accumulate(x, prog) for prog, x in progs.values()] * 2
    assert any(not np.array_equal(w, c) for w, c in zip(want, clean, strict=True))  # faults did land
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    assert got_counters == want_counters
    assert sum(c[t]["words_corrupted"] for c in got_counters.values() for t in ("weight", "input")) > 0


@_TWO
def test_a_failed_draw_is_raised_where_the_block_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    mf, progs = _layers()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("draw failed")

    monkeypatch.setattr(fsession, "sample_blocks_stacked", fail)
    s = mf.session(seed=11)
    assert s is not None
    s.draw_ahead()
    prog, x = progs["a"]
    with pytest.raises(RuntimeError, match="draw failed"):
        s.apply("a", x, prog, np.zeros(1, np.int32))


def test_no_thread_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    mf, _ = _layers()
    monkeypatch.setattr(fsession, "usable_cores", lambda: 1)
    s = mf.session(seed=11)
    assert s is not None
    s.draw_ahead()
    assert not s._ahead
