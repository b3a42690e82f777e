"""Compile an EvoApproxLib-style C behavioural model into a product table (system C compiler).

The model is one C function ``mul(first, second)``; the table row is the **first positional
argument** (the activation), whatever the C file calls it (most ``mul8u_*`` files name it ``B``).
Unsigned models are called with 0..255 and must return at most 0xFFFF; signed models are called
with int8 operands and their 16-bit result is read as int16. Tables are cached by the sha256 of
the source under the user's cache directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.lutio import decode_table, table_file_bytes
from approxtvm.runtime.multipliers.multiplier import Multiplier

_DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include APPROXTVM_MODEL
/* approxtvm table driver: row = first argument = activation, col = second = weight. */
int main(int argc, char **argv) {
    FILE *out;
    unsigned a, b;
    if (argc != 2) return 2;
    out = fopen(argv[1], "wb");
    if (!out) return 3;
    for (a = 0; a < 256; ++a) {
        for (b = 0; b < 256; ++b) {
#if APPROXTVM_SIGNED
            int32_t v = (int16_t)(uint16_t)APPROXTVM_FN((int8_t)(uint8_t)a, (int8_t)(uint8_t)b);
            uint32_t u = (uint32_t)v;
            unsigned char le[4];
            le[0] = u & 255u; le[1] = (u >> 8) & 255u; le[2] = (u >> 16) & 255u; le[3] = (u >> 24) & 255u;
            if (fwrite(le, 1, 4, out) != 4) return 4;
#else
            uint64_t v = (uint64_t)APPROXTVM_FN(a, b);
            unsigned char le[2];
            if (v > 0xFFFFu) { fprintf(stderr, "value %llu at (%u, %u) exceeds 16 bits\n",
                                       (unsigned long long)v, a, b); return 5; }
            le[0] = v & 255u; le[1] = (v >> 8) & 255u;
            if (fwrite(le, 1, 2, out) != 2) return 4;
#endif
        }
    }
    return fclose(out) == 0 ? 0 : 4;
}
"""


def default_cache_dir() -> Path:
    """``$APPROXTVM_CACHE_DIR``, else ``$XDG_CACHE_HOME/approxtvm``, else ``~/.cache/approxtvm``."""
    env = os.environ.get("APPROXTVM_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "approxtvm"


def function_name(source: str, hint: str | None = None) -> str:
    """Name of the multiplier function defined in ``source`` (``hint`` if it is defined there)."""
    names = re.findall(
        r"^\s*(?:static\s+)?(?:u?int(?:8|16|32|64)_t|unsigned|int|long)\s+(\w+)\s*\(", source, flags=re.MULTILINE
    )
    names = [n for n in names if n != "main"]
    if hint and hint in names:
        return hint
    if len(names) == 1:
        return names[0]
    raise MultiplierError(
        "cannot tell which C function is the multiplier",
        expected="exactly one function, or one named after the file",
        found=f"functions {names or 'none'}",
        fix="pass function=<name>",
    )


def compile_c_table(
    source: str,
    *,
    signed: bool,
    function: str | None = None,
    cache_dir: Path | None = None,
    origin: str = "C model",
    compiler: str | None = None,
) -> tuple[bytes, Path]:
    """Compile ``source`` with the system C compiler and return the ``.bin`` bytes and their cache path.

    Raises
    ------
    MultiplierError
        No compiler, compilation failure, or a model output that does not fit the layout.
    """
    fn = function_name(source, function)
    key = hashlib.sha256(f"{fn}|{int(signed)}|".encode() + source.encode()).hexdigest()[:24]
    cdir = (cache_dir or default_cache_dir()) / "tables"
    out = cdir / f"{fn}-{'s' if signed else 'u'}-{key}.bin"
    if out.is_file():
        return out.read_bytes(), out
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise MultiplierError(
            f"{origin}: no C compiler found",
            expected="`cc` (or $CC) on PATH",
            found="none",
            fix="install a C compiler (e.g. apt-get install gcc), or import the table as a .bin file",
        )
    with tempfile.TemporaryDirectory(prefix="approxtvm-c-") as tmp:
        t = Path(tmp)
        (t / "model.c").write_text(source)
        (t / "driver.c").write_text(_DRIVER)
        exe = t / "gen"
        cmd = [
            cc,
            "-O1",
            "-w",
            '-DAPPROXTVM_MODEL="model.c"',
            f"-DAPPROXTVM_FN={fn}",
            f"-DAPPROXTVM_SIGNED={int(signed)}",
            "-o",
            str(exe),
            str(t / "driver.c"),
        ]
        res = subprocess.run(cmd, cwd=t, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise MultiplierError(
                f"{origin}: the C model does not compile",
                expected="a C file defining the multiplier function",
                found=(res.stderr.strip().splitlines() or ["(no output)"])[-1][:300],
                fix="check the file; it must compile as C99 with <stdint.h>",
            )
        run = subprocess.run([str(exe), str(t / "table.bin")], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise MultiplierError(
                f"{origin}: running the compiled model failed (exit {run.returncode})",
                expected="products that fit 16 bits",
                found=run.stderr.strip()[:300] or "no message",
                fix="an unsigned model must return at most 0xFFFF; use a signed model otherwise",
            )
        data = (t / "table.bin").read_bytes()
    cdir.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(f".tmp{os.getpid()}")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)  # atomic: concurrent processes never see a partial table
    return data, out


def load_c_model(
    path: str | Path,
    *,
    signed: bool | None = None,
    function: str | None = None,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> Multiplier:
    """Compile a C model file into a :class:`Multiplier` (cached).

    ``signed`` defaults to the file name (``mul8s_*`` signed, otherwise unsigned).
    """
    p = Path(path)
    if not p.is_file():
        raise MultiplierError(
            f"C model {str(p)!r} not found", expected="an existing .c file", found="no such file", fix="check the path"
        )
    if signed is None:
        signed = p.stem.startswith("mul8s_")
    data, _ = compile_c_table(
        p.read_text(), signed=signed, function=function or p.stem, cache_dir=cache_dir, origin=f"C model {str(p)!r}"
    )
    table, _ = decode_table(data, signed=signed, origin=f"C model {str(p)!r}")
    return Multiplier(name=name or p.stem, table=table, signed=signed, source=f"c:{p}")


__all__ = ["compile_c_table", "default_cache_dir", "function_name", "load_c_model", "table_file_bytes"]
