"""Frozen dataclasses ↔ plain JSON values, driven by type hints (used to save compiled models)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def to_plain(obj: Any) -> Any:
    """Dataclass trees → dicts/lists/scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def from_plain(tp: Any, data: Any) -> Any:
    """Inverse of :func:`to_plain` for the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{
                f.name: from_plain(hints[f.name], data[f.name])
                for f in dataclasses.fields(tp)
                if f.init and f.name in data
            }
        )
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return from_plain(args[0], data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in data)
        return tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        return {from_plain(kt, k): from_plain(vt, v) for k, v in data.items()}
    if tp is float:
        return float(data)
    return data
