"""Which table kernel runs an ungrouped conv: measured once per layer shape, not predicted.

Two exact kernels serve the ``table`` path on AVX-512 BW hosts with 16-bit tables: the
register-LUT kernel of :mod:`.table_perm` and the weight-stationary per-weight tables of
:mod:`.table_tvm` (when the layer's tables fit the cache). Their speed depends on the layer's
shape, not on the table's values (neither branches or indexes by a product value), so one
measurement per shape serves every multiplier. A cost model of fixed rates chose wrongly on a
third of ResNet-50's candidate layers at batch 8 on one thread (e.g. the 7×7 stem: tables
119–127 ms, register LUT 81–85 ms; 1×1 256→128 at 56×56: 92–104 against 68 ms), because the
table kernel's rate varies with the shape by 2× (9–26 G MAC/s).

:func:`measured_kernel` runs both on the layer's first call (after one warm-up call each, which
builds the layer's tables and compiles both kernels), alternating, and keeps the faster per
``(geometry, table type, threads)`` in the kernel cache; both results must be equal. The
executor uses it the same way for a low-rank layer's one-session accumulators against its
kernel-by-kernel path (:mod:`.lowrank_layer`), keyed by the layer.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager

import numpy as np

#: Timed runs of each kernel (after a warm-up each); the minimum counts.
CHOICE_RUNS: int = 2


def measured_kernel(
    key: tuple,
    candidates: dict[str, Callable[[], np.ndarray]],
    choices: MutableMapping[tuple, object],
    lock: AbstractContextManager,
) -> tuple[str, np.ndarray | None]:
    """The fastest of ``candidates`` for this shape, and (when measured now) this call's result.

    Parameters
    ----------
    key
        What the candidates' speeds depend on (for the table kernels: padded geometry, table
        element type, threads); the choice is kept under ``(key, candidate names)``.
    candidates
        Name → a call computing the layer's result (every one the same numbers); the first is
        used if they disagree.
    choices, lock
        Where the choice is kept (e.g. :attr:`~.table_tvm.TvmKernelCache.choices`), and the lock
        that guards it.

    Returns
    -------
    tuple
        The chosen name and, when the choice was measured by this call, its result (``None``
        when it was known: the caller runs the chosen kernel).
    """
    key = ("measured_kernel", key, tuple(sorted(candidates)))
    with lock:
        known = choices.get(key)
    if known is not None:
        return str(known), None
    outs = {name: run() for name, run in candidates.items()}  # warm-up: tables built, kernels compiled
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(CHOICE_RUNS):
        for name, run in candidates.items():
            t0 = time.perf_counter()
            outs[name] = run()
            best[name] = min(best[name], time.perf_counter() - t0)
    first = next(iter(candidates))
    if not all(np.array_equal(outs[first], o) for o in outs.values()):
        warnings.warn(
            f"kernels {sorted(candidates)} disagree on a layer ({str(key)[:200]}); "
            f"using {first!r} (please report this)",
            RuntimeWarning,
            stacklevel=3,
        )
        choice = first
    else:
        choice = min(best, key=best.__getitem__)
    with lock:
        choices[key] = choice
    return choice, outs[choice]


__all__ = ["CHOICE_RUNS", "measured_kernel"]
