"""A strict dataclass builder for YAML specs: unknown, missing or ill-typed keys raise ConfigError.

Every error names the file and the key path, and says what was expected and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from approxtvm.errors import ConfigError

__all__ = ["build", "check", "check_energies", "rekey"]


def _fail(file: str, key: str, what: str, *, expected: str, found: str, fix: str) -> ConfigError:
    return ConfigError(f"{file}: key {key!r}: {what}", expected=expected, found=found, fix=fix)


def _convert(value: Any, tp: Any, file: str, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise naming ``file`` and ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], file, key)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _fail(file, key, "wrong type", expected=f"a list ({tp})", found=repr(value), fix="write a YAML list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], file, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(
                file,
                key,
                "wrong length",
                expected=f"{len(args)} items",
                found=repr(value),
                fix=f"give exactly {len(args)} items",
            )
        return tuple(_convert(v, a, file, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(file, key, "wrong type", expected="true or false", found=repr(value), fix="write true/false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(
                file,
                key,
                "wrong type",
                expected="an integer",
                found=repr(value),
                fix="write a whole number (units are in the key name)",
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(
                file,
                key,
                "wrong type",
                expected="a number",
                found=repr(value),
                fix="write a plain number (units are in the key name)",
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(file, key, "wrong type", expected="a string", found=repr(value), fix="quote the value")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # programming error, not a user error


def build(cls: type[Any], data: Any, file: str, path: str, **extra: Any) -> Any:
    """Build dataclass ``cls`` from mapping ``data``: unknown/missing keys raise :class:`ConfigError`."""
    where = path or "<top level>"
    if not isinstance(data, dict):
        raise _fail(
            file,
            where,
            "wrong type",
            expected=f"a mapping for {cls.__name__}",
            found=repr(data),
            fix="write `key: value` pairs",
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in extra}
    kwargs: dict[str, Any] = dict(extra)
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"remove it; allowed keys: {sorted(fields)}"
            raise _fail(
                file,
                full,
                f"unknown key in {cls.__name__}",
                expected=f"one of {sorted(fields)}",
                found=repr(key),
                fix=hint + " (every quantity carries its unit in the key name)",
            )
        kwargs[key] = _convert(value, hints[key], file, full)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            full = f"{path}.{name}" if path else name
            raise _fail(
                file,
                full,
                f"missing field of {cls.__name__}",
                expected=f"a value for {name!r}",
                found="nothing",
                fix=f"add `{name}: ...` under {where}",
            )
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise rekey(exc, file, path) from None


def rekey(exc: ConfigError, file: str, path: str) -> ConfigError:
    """Prefix a ``"field: what"`` error from ``__post_init__`` with the file and the full key."""
    field, _, what = exc.what.partition(": ")
    key = f"{path}.{field}" if path else field
    return ConfigError(f"{file}: key {key!r}: {what}", expected=exc.expected, found=exc.found, fix=exc.fix)


def check(cond: bool, field: str, what: str, *, expected: str, found: object, fix: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {what}", expected=expected, found=repr(found), fix=fix)


def check_energies(obj: object, names: tuple[str, ...], *, expected: str, fix: str) -> None:
    """Each named field of ``obj`` must be a finite, non-negative energy."""
    for name in names:
        v = getattr(obj, name)
        check(math.isfinite(v) and v >= 0, name, "impossible energy", expected=expected, found=v, fix=fix)
