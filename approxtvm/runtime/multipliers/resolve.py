"""One entry point from a user's string to a :class:`Multiplier`."""

from __future__ import annotations

from pathlib import Path

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.cmodel import default_cache_dir, load_c_model
from approxtvm.runtime.multipliers.evoapprox import EvoApproxLibrary, is_catalog_name
from approxtvm.runtime.multipliers.families import FAMILIES, family_multiplier, parse_spec
from approxtvm.runtime.multipliers.lutio import load_lut
from approxtvm.runtime.multipliers.multiplier import Multiplier


def _check_signed(m: Multiplier, signed: bool | None, spec: str) -> Multiplier:
    if signed is not None and m.signed != signed:
        want = "a signed (int8)" if signed else "an unsigned (uint8)"
        got = "a signed (int8)" if m.signed else "an unsigned (uint8)"
        raise MultiplierError(
            f"multiplier {spec!r} has the wrong signedness",
            expected=f"{want} multiplier",
            found=f"{got} multiplier",
            fix=(
                "pick a mul8s_* multiplier or a family spec for signed mode"
                if signed
                else "pick a mul8u_* multiplier or a family spec for unsigned mode, or quantize the model "
                "in signed int8 mode (`--signed`, QuantOptions(signed=True)) to use mul8s_* circuits"
            ),
        )
    return m


def resolve_multiplier(
    spec: str, *, signed: bool | None = None, transposed: bool = False, library: EvoApproxLibrary | None = None
) -> Multiplier:
    """Turn a user's multiplier spec into a :class:`Multiplier`.

    Parameters
    ----------
    spec
        One of: a family spec (``exact``, ``trunc:k=6``, ``optrunc:ka=2,kb=2``, ``bam:h=4,v=0``,
        ``drum:k=4``, ``mitchell``, ``kulkarni``); an EvoApproxLib name (``mul8u_2HH``,
        ``v2022/mul8u_0AB``); a path to a ``.bin`` table; a path to a ``.c`` model; the name of a
        table imported with ``approxtvm multipliers import`` (``<cache>/user/<name>.bin``).
    signed
        Required signedness (``None``: the spec's own; families default to unsigned).
    transposed
        For ``.bin`` files stored ``lut[weight][activation]`` (TorchApprox, AdaPT).
    library
        Where EvoApprox tables come from (default: :class:`EvoApproxLibrary()` — user cache,
        ``$APPROXTVM_EVOAPPROX``, then GitHub).

    Raises
    ------
    MultiplierError
        Unknown spec, bad file, wrong signedness, or a catalogue table that cannot be obtained.
    """
    s = spec.strip()
    low = s.lower()
    if low.endswith(".bin"):
        return _check_signed(load_lut(s, signed=signed, transposed=transposed), signed, s)
    if low.endswith(".c"):
        return _check_signed(load_c_model(s, signed=signed), signed, s)
    if parse_spec(s) is not None:
        return family_multiplier(s, signed=bool(signed))
    if is_catalog_name(s):
        lib = library or EvoApproxLibrary()
        return _check_signed(lib.multiplier(s), signed, s)
    user = (library.cache_dir if library and library.cache_dir else default_cache_dir()) / "user" / f"{s}.bin"
    if "/" not in s and user.is_file():  # imported with `approxtvm multipliers import`
        return _check_signed(load_lut(user, signed=signed, name=s), signed, s)
    hint = "a file that does not exist" if ("/" in s or "\\" in s) and not Path(s).exists() else repr(s)
    raise MultiplierError(
        f"unknown multiplier {spec!r}",
        expected=(
            f"a family spec ({', '.join(FAMILIES)}; e.g. bam:h=4,v=0), an EvoApproxLib name "
            "(mul8u_2HH), or a path to a .bin table or .c model"
        ),
        found=hint,
        fix="`approxtvm multipliers list` shows the catalogue and the families",
    )
