"""Lifetime of the layer entry points a compiled model registers as TVM global functions.

The vacc codegen (and :meth:`CompiledModel.load`) registers one global function per offloaded
layer, named by the layer's schedule symbol, which the Relax VM calls. TVM's registry is
process-wide and holds each runner — and through it the layer's program: weights, kernel plans,
onnxruntime sessions, fault arrays — for as long as the name is registered. Measured before this
module existed: every compile of ResNet-18 left 12–540 MB behind (exact … low-rank BAM), an
exploration worker grew by ≈ 0.8 GB per ResNet-50 genome. A model therefore *claims* its symbols
when it is built and releases them when it is garbage-collected; a symbol is removed only if no
model built later claimed the same name (two loads of one saved model register the same names).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterable

import tvm_ffi

__all__ = ["claim_entry_points", "registered"]

_tokens = itertools.count(1)
_lock = threading.Lock()
_owner: dict[str, int] = {}  # symbol -> token of the model that registered it last


def claim_entry_points(model: object, symbols: Iterable[str]) -> None:
    """Make ``model`` the owner of ``symbols``; unregister them when ``model`` is collected
    (unless a later model claimed them meanwhile)."""
    names = tuple(symbols)
    token = next(_tokens)
    with _lock:
        for s in names:
            _owner[s] = token
    fin = weakref.finalize(model, _release, names, token)
    fin.atexit = False  # at interpreter exit TVM may already be gone; the process frees it all


def _release(names: tuple[str, ...], token: int) -> None:
    with _lock:
        mine = [s for s in names if _owner.get(s) == token]
        for s in mine:
            del _owner[s]
    for s in mine:
        if registered(s):
            tvm_ffi.remove_global_func(s)


def registered(symbol: str) -> bool:
    """Whether ``symbol`` is a registered TVM global function."""
    return tvm_ffi.get_global_func(symbol, allow_missing=True) is not None
