"""Repeated positions inside the sampler's rows (``faults.repeats``): compiled pass, numpy pass, a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.runtime.faults.repeats import repeat_flags, repeat_flags_numpy


def _plain(pos: np.ndarray, begin: np.ndarray, end: np.ndarray) -> list[int]:
    """The definition: in each row, a flip whose position an earlier flip of the row holds."""
    out = []
    for b, e in zip(begin.tolist(), end.tolist(), strict=True):
        seen = set()
        for j in range(b, e):
            if int(pos[j]) in seen:
                out.append(j)
            seen.add(int(pos[j]))
    return sorted(out)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 12), min_size=0, max_size=40),  # flips per row (some rows skipped below)
    st.integers(1, 30),  # positions per row: small spans repeat often
    st.integers(0, 2**16),
)
def test_compiled_and_numpy_passes_mark_the_later_copies_of_each_row(lens: list[int], span: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = sum(lens)
    pos = rng.integers(0, span, n).astype(np.int64)
    start = np.cumsum(lens, dtype=np.int64) - np.array(lens, np.int64)
    keep = rng.random(len(lens)) < 0.8  # not every row is looked at: the others stay unmarked
    begin, end = start[keep], (start + np.array(lens, np.int64))[keep]
    want = _plain(pos, begin, end)
    assert repeat_flags_numpy(pos, begin, end).tolist() == want
    assert repeat_flags(pos, begin, end, span).tolist() == want
    # the scratch table is cleared row by row: a second call on the same rows gives the same marks
    assert repeat_flags(pos, begin, end, span).tolist() == want


def test_rows_with_no_flips_or_a_single_flip() -> None:
    pos = np.array([4], np.int64)
    assert repeat_flags(pos, np.array([0]), np.array([1]), 5).tolist() == []
    assert repeat_flags(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 1).tolist() == []


@pytest.mark.tvm
def test_the_compiled_pass_builds_where_tvm_does() -> None:
    from approxtvm.runtime.faults.repeats import _compiled

    assert _compiled() is not None  # else every run silently takes the slower numpy pass
