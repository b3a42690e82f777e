"""One schema mechanism for every file the project reads: accelerator specs, policies, saved models.

The conversion between plain data (YAML/JSON values) and the frozen dataclasses is cattrs', driven
by the type hints. This module is the thin adapter around it that keeps the project's error style:

* types are strict: a string is not an integer (``capacity_bytes: 2MiB`` is rejected: units are in
  the key names), a bool is not a number, a scalar is not a list;
* unknown keys are rejected with a "did you mean" hint, missing fields are named;
* every error is the caller's :class:`~approxtvm.errors.ApproxTvmError` subclass, names the file and
  the full key path (``memories.input_buffer.capacity_bytes``), and says what was expected, what
  was found and how to fix it;
* a dataclass's own ``__post_init__`` checks raise ``"<field>: <what>"`` errors (see :func:`check`)
  that the adapter re-keys with the file and the path to that dataclass.

Per-field conversions that plain types cannot express (a voltage written ``'600 mV'``, buffers keyed
by name) are declared as :class:`FieldHook` s on the :class:`Schema`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    StructureHandlerNotFoundError,
)
from cattrs.gen import make_dict_structure_fn, override

from approxtvm.errors import ApproxTvmError, ConfigError

__all__ = ["OMIT", "FieldHook", "Invalid", "Schema", "check", "check_energies", "nested"]

T = TypeVar("T")

#: Returned by a :class:`FieldHook`'s ``unstructure`` to leave the field out of the plain data
#: (a section written only when it differs from its default).
OMIT: Any = object()


class Invalid(Exception):  # noqa: N818 (an internal signal, re-raised as the schema's error class)
    """A value does not fit its field: raised inside conversion hooks, turned into the schema's error
    (with the file and the key path) by :meth:`Schema.structure`. ``key`` is a sub-key of the value
    being converted, when the error is about one of its entries (``input_buffer`` of ``memories``)."""

    def __init__(self, what: str, *, expected: str, found: str, fix: str, key: str = "") -> None:
        super().__init__(what)
        self.what, self.expected, self.found, self.fix, self.key = what, expected, found, fix, key


class _At(Exception):  # noqa: N818 (internal: carries a key segment up to the adapter)
    def __init__(self, segment: str, error: BaseException) -> None:
        super().__init__(segment)
        self.segment, self.error = segment, error


def nested(segment: str, convert: Callable[[], T]) -> T:
    """Run ``convert`` (a conversion of the value under key ``segment``); errors get the segment.

    For field hooks that convert sub-values themselves (``memories.<name>``, ``sram_v.<buffer>``).
    """
    try:
        return convert()
    except Exception as exc:
        raise _At(segment, exc) from None


@dataclass(frozen=True)
class FieldHook:
    """A custom conversion of one dataclass field.

    Attributes
    ----------
    cls
        The dataclass.
    field
        The field's name.
    structure
        ``(plain value, schema) -> field value``; raise :class:`Invalid` on bad input.
    unstructure
        ``(field value, schema) -> plain value`` (or :data:`OMIT`: no key); ``None`` keeps the default.
    omit
        ``(the whole object) -> bool``: leave the field out when true (a key written only together
        with another one).
    """

    cls: type
    field: str
    structure: Callable[[Any, Schema], Any]
    unstructure: Callable[[Any, Schema], Any] | None = None
    omit: Callable[[Any], bool] | None = None


def _type_name(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__


class Schema:
    """Strict plain-data ↔ dataclass conversion whose errors are ``error`` instances.

    Parameters
    ----------
    error
        Error class raised on bad input (:class:`ConfigError` for specs, ``PolicyError`` for
        policies, ...).
    hooks
        Per-field conversions.
    implied
        ``(dataclass, field)`` pairs a file never spells (a parent's hook fills them in, e.g. a
        buffer's name from its key): left out of the "allowed keys" of error messages.
    """

    def __init__(
        self,
        error: type[ApproxTvmError] = ConfigError,
        hooks: tuple[FieldHook, ...] = (),
        implied: tuple[tuple[type, str], ...] = (),
    ) -> None:
        self.error = error
        self._implied = frozenset(implied)
        self._conv = cattrs.Converter(forbid_extra_keys=True, unstruct_collection_overrides={tuple: list})
        self._hooks: dict[type, dict[str, FieldHook]] = {}
        for h in hooks:
            self._hooks.setdefault(h.cls, {})[h.field] = h
        c = self._conv
        c.register_structure_hook(bool, _strict_bool)
        c.register_structure_hook(int, _strict_int)
        c.register_structure_hook(float, _strict_float)
        c.register_structure_hook(str, _strict_str)
        c.register_structure_hook_factory(lambda t: typing.get_origin(t) is tuple, self._tuple_hook)
        c.register_structure_hook_factory(lambda t: typing.get_origin(t) is dict, self._dict_hook)
        c.register_structure_hook_factory(dataclasses.is_dataclass, self._dataclass_hook)
        for cls, by_field in self._hooks.items():
            unstructurers = {n: h.unstructure for n, h in by_field.items() if h.unstructure is not None}
            omits = {n: h.omit for n, h in by_field.items() if h.omit is not None}
            if unstructurers or omits:
                c.register_unstructure_hook(cls, self._dataclass_unstructurer(cls, unstructurers, omits))

    # -- public -------------------------------------------------------------------------------------

    def structure(self, data: Any, cls: type[T], *, source: str, path: str = "") -> T:
        """``data`` as a ``cls``; bad input raises :attr:`error` naming ``source`` and the key path.

        Parameters
        ----------
        data
            Plain data (what YAML or JSON gave).
        cls
            Target type (usually a frozen dataclass).
        source
            The file (or object) the data came from, named in every error.
        path
            Key path of ``data`` inside the source (``""``: the top level).
        """
        try:
            return self._conv.structure(data, cls)
        except Exception as exc:
            raise self._translate(exc, source, path) from None

    def convert(self, data: Any, tp: Any) -> Any:
        """Structure a sub-value inside a :class:`FieldHook` (errors travel up to :meth:`structure`)."""
        return self._conv.structure(data, tp)

    def unstructure(self, obj: Any) -> Any:
        """Plain data (dicts, lists, scalars) of ``obj``, accepted back by :meth:`structure`."""
        return self._conv.unstructure(obj)

    def fail(self, source: str, key: str, what: str, *, expected: str, found: str, fix: str) -> ApproxTvmError:
        """An :attr:`error` in the schema's format (``<source>: key '<key>': <what>``)."""
        where = f"{source}: key {key!r}" if key else source
        err = self.error(f"{where}: {what}", expected=expected, found=found, fix=fix)
        err.schema_key, err.schema_what = key, what  # type: ignore[attr-defined]  # for a schema nesting this one
        return err

    # -- hooks ----------------------------------------------------------------------------------------

    def _tuple_hook(self, tp: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(tp)
        homogeneous = len(args) == 2 and args[1] is Ellipsis

        def structure(value: Any, _: Any) -> tuple[Any, ...]:
            if not isinstance(value, (list, tuple)):
                raise Invalid("wrong type", expected=f"a list ({tp})", found=_type_name(value), fix="write a YAML list")
            if homogeneous:
                return tuple(nested(f"[{i}]", lambda v=v: self.convert(v, args[0])) for i, v in enumerate(value))
            if len(value) != len(args):
                raise Invalid(
                    "wrong length",
                    expected=f"{len(args)} items",
                    found=repr(value),
                    fix=f"give exactly {len(args)} items",
                )
            return tuple(
                nested(f"[{i}]", lambda v=v, a=a: self.convert(v, a))
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )

        return structure

    def _dict_hook(self, tp: Any) -> Callable[[Any, Any], Any]:
        kt, vt = typing.get_args(tp)

        def structure(value: Any, _: Any) -> dict[Any, Any]:
            if not isinstance(value, Mapping):
                raise Invalid(
                    "wrong type", expected="a mapping", found=_type_name(value), fix="write `key: value` pairs"
                )
            return {
                nested(str(k), lambda k=k: self.convert(k, kt)): nested(str(k), lambda v=v: self.convert(v, vt))
                for k, v in value.items()
            }

        return structure

    def _dataclass_hook(self, cls: type) -> Callable[[Any, Any], Any]:
        by_field = self._hooks.get(cls, {})
        overrides = {
            name: override(struct_hook=lambda v, _t, h=h: h.structure(v, self)) for name, h in by_field.items()
        }
        inner = make_dict_structure_fn(cls, self._conv, _cattrs_forbid_extra_keys=True, **overrides)

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, Mapping):
                raise Invalid(
                    "wrong type",
                    expected=f"a mapping for {cls.__name__}",
                    found=_type_name(value),
                    fix="write `key: value` pairs",
                )
            return inner(value, cls)

        return structure

    def _dataclass_unstructurer(
        self,
        cls: type,
        custom: dict[str, Callable[[Any, Schema], Any]],
        omits: dict[str, Callable[[Any], bool]],
    ) -> Callable[[Any], Any]:
        names = [f.name for f in dataclasses.fields(cls)]

        def unstructure(obj: Any) -> dict[str, Any]:
            out = {}
            for n in names:
                if n in omits and omits[n](obj):
                    continue
                v = getattr(obj, n)
                plain = custom[n](v, self) if n in custom else self._conv.unstructure(v)
                if plain is not OMIT:
                    out[n] = plain
            return out

        return unstructure

    # -- errors -----------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, source: str, path: str) -> ApproxTvmError:
        leaf, key, cls = _leaf(exc, path, None)
        where = key or "<top level>"
        if isinstance(leaf, ForbiddenExtraKeysError):
            allowed = sorted(f.name for f in dataclasses.fields(leaf.cl) if (leaf.cl, f.name) not in self._implied)
            bad = sorted(map(str, leaf.extra_fields))[0]
            full = f"{key}.{bad}" if key else bad
            close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"remove it; allowed keys: {allowed}"
            return self.fail(
                source,
                full,
                f"unknown key in {leaf.cl.__name__}",
                expected=f"one of {allowed}",
                found=repr(bad),
                fix=hint + " (every quantity carries its unit in the key name)",
            )
        if isinstance(leaf, KeyError) and cls is not None:
            name = str(leaf.args[0]) if leaf.args else "?"
            parent = key.rpartition(".")[0] if key.endswith(f".{name}") or key == name else key
            return self.fail(
                source,
                key,
                f"missing field of {cls.__name__}",
                expected=f"a value for {name!r}",
                found="nothing",
                fix=f"add `{name}: ...` under {parent or '<top level>'}",
            )
        if isinstance(leaf, Invalid):
            where = ".".join(p for p in (key, leaf.key) if p) or "<top level>"
            return self.fail(source, where, leaf.what, expected=leaf.expected, found=leaf.found, fix=leaf.fix)
        if isinstance(leaf, ApproxTvmError) and hasattr(leaf, "schema_key"):
            # another schema's error, raised by a field hook: its key continues this one's
            full = ".".join(p for p in (key, leaf.schema_key) if p)
            return self.fail(source, full, leaf.schema_what, expected=leaf.expected, found=leaf.found, fix=leaf.fix)
        if isinstance(leaf, ApproxTvmError):  # a __post_init__ check: "<field>: <what>"
            field, sep, what = leaf.what.partition(": ")
            if not sep:
                field, what = "", leaf.what
            full = ".".join(p for p in (key, field) if p)
            return self.fail(source, full, what, expected=leaf.expected, found=leaf.found, fix=leaf.fix)
        if isinstance(leaf, StructureHandlerNotFoundError):
            raise exc  # a programming error (an unsupported field type), not a user error
        # a field hook's own parser failed on a malformed value (a KeyError in a nested form, ...)
        return self.fail(
            source,
            where,
            "malformed value",
            expected="a value of the documented form",
            found=f"{type(leaf).__name__}: {leaf}",
            fix="correct the value, or regenerate the file with this approxtvm",
        )


def _segment(exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", ()):
        name = getattr(note, "name", None)
        if isinstance(name, str):
            return f".{name}"
        index = getattr(note, "index", None)
        if isinstance(index, int):
            return f"[{index}]"
    return ""


def _join(path: str, segment: str) -> str:
    if not segment:
        return path
    if segment.startswith("["):
        return path + segment
    return f"{path}{segment}" if path else segment.lstrip(".")


def _leaf(exc: BaseException, path: str, cls: type | None) -> tuple[BaseException, str, type | None]:
    """The first user error inside cattrs' exception groups, with its key path and dataclass.

    Unknown keys are reported before anything else at the same level (a misspelt key usually also
    leaves a required field missing).
    """
    if isinstance(exc, _At):
        return _leaf(exc.error, _join(path, "." + exc.segment if not exc.segment.startswith("[") else exc.segment), cls)
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        subs = list(exc.exceptions)
        subs.sort(key=lambda e: not isinstance(e, ForbiddenExtraKeysError))
        owner = getattr(exc, "cl", None) if isinstance(exc, ClassValidationError) else cls
        first = subs[0]
        return _leaf(first, _join(path, _segment(first)), owner)
    return exc, path, cls


# ---------------------------------------------------------------------------------------------
# Strict scalars (cattrs' defaults would call int("3") and str(3))
# ---------------------------------------------------------------------------------------------


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("wrong type", expected="true or false", found=_type_name(value), fix="write true/false")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(
            "wrong type",
            expected="an integer",
            found=_type_name(value),
            fix="write a whole number (units are in the key name)",
        )
    return value


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(
            "wrong type",
            expected="a number",
            found=_type_name(value),
            fix="write a plain number (units are in the key name)",
        )
    return float(value)


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("wrong type", expected="a string", found=_type_name(value), fix="quote the value")
    return value


# ---------------------------------------------------------------------------------------------
# Checks for __post_init__
# ---------------------------------------------------------------------------------------------


def check(
    cond: bool,
    field: str,
    what: str,
    *,
    expected: str,
    found: object,
    fix: str,
    error: type[ApproxTvmError] = ConfigError,
) -> None:
    """Raise ``error("<field>: <what>")`` unless ``cond``; :meth:`Schema.structure` adds file and path."""
    if not cond:
        raise error(f"{field}: {what}", expected=expected, found=repr(found), fix=fix)


def check_energies(obj: object, names: tuple[str, ...], *, expected: str, fix: str) -> None:
    """Each named field of ``obj`` must be a finite, non-negative energy."""
    for name in names:
        v = getattr(obj, name)
        check(math.isfinite(v) and v >= 0, name, "impossible energy", expected=expected, found=v, fix=fix)
