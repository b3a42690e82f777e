"""Regenerate the packaged EvoApproxLib tables from the library's C models and verify them bit for bit.

Usage::

    python scripts/build_evoapprox_tables.py [--source DIR] [--check]

``DIR`` is a local copy of the C models: a table pack with ``c/<name>.c`` (such as
``../shared/evoapprox``), a folder of ``<name>.c`` files, or a checkout/clone of
https://github.com/ehw-fit/evoapproxlib (files taken at each catalogue row's ``source_path``; in a
git repository, at the row's ``source_commit``). Default: ``$APPROXTVM_EVOAPPROX``, else
the nearest ``shared/evoapprox`` above the repository.

For every distinct table of the shipped catalogue (66 tables behind 103 names) the script compiles
the C model with the system C compiler (row = first argument = activation), checks the table's
sha256 against the catalogue, encodes it as a compressed error table
(:mod:`approxtvm.runtime.multipliers.evoapprox_tables`), decodes it back and compares all 65536
entries. Without ``--check`` it writes the files into the package; with ``--check`` it only
compares the shipped files with the regenerated tables. Either way it then loads every catalogue
name through the package loader (hash and published-metric checks) and prints one JSON summary line.
Exit status 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from approxtvm.errors import MultiplierError  # noqa: E402
from approxtvm.runtime.multipliers.cmodel import compile_c_table  # noqa: E402
from approxtvm.runtime.multipliers.evoapprox import CatalogEntry, EvoApproxLibrary, load_catalog  # noqa: E402
from approxtvm.runtime.multipliers.evoapprox_tables import (  # noqa: E402
    TABLES_DIR,
    decode_error_table,
    encode_error_table,
    table_file_name,
)
from approxtvm.runtime.multipliers.lutio import decode_table  # noqa: E402

OUT = REPO / "approxtvm" / "runtime" / "multipliers" / TABLES_DIR


def _default_source() -> Path:
    env = os.environ.get("APPROXTVM_EVOAPPROX")
    if env:
        return Path(env)
    for up in REPO.parents:  # ../shared beside the checkout (or beside a worktree's parent)
        if (up / "shared" / "evoapprox").is_dir():
            return up / "shared" / "evoapprox"
    return REPO.parent / "shared" / "evoapprox"


def _git_show(root: Path, commit: str, path: str) -> str | None:
    res = subprocess.run(
        ["git", "-C", str(root), "show", f"{commit}:{path}"], capture_output=True, text=True, check=False
    )
    return res.stdout if res.returncode == 0 else None


def _sources(root: Path, group: list[CatalogEntry]) -> list[tuple[str, str, str]]:
    """Candidate (origin, C source, function name) for a group of entries sharing one table."""
    out = []
    is_git = (root / ".git").exists() or (root / "HEAD").is_file()
    for e in group:
        for p in (root / "c" / f"{e.name}.c", root / f"{e.name}.c", root / e.source_path):
            if p.is_file():
                out.append((str(p), p.read_text(), e.name))
        if is_git:
            src = _git_show(root, e.source_commit, e.source_path)
            if src is not None:
                out.append((f"{root}@{e.source_commit[:7]}:{e.source_path}", src, e.name))
    return out


def _table(root: Path, group: list[CatalogEntry], cache: Path) -> tuple[np.ndarray, str]:
    want = group[0].lut_sha256
    tried = []
    for origin, src, fn in _sources(root, group):
        data, _ = compile_c_table(src, signed=group[0].signed, function=fn, cache_dir=cache, origin=origin)
        if hashlib.sha256(data).hexdigest() == want:
            table, _ = decode_table(data, signed=group[0].signed, origin=origin)
            return table, origin
        tried.append(origin)  # same name, other release's circuit: try the next candidate
    raise MultiplierError(
        f"no C model reproduces the table of {', '.join(e.key for e in group)}",
        expected=f"a C model whose table has sha256 {want[:16]}…",
        found=f"tried {tried or 'nothing'} under {root}",
        fix="point --source at a pack with c/<name>.c or at a clone of EvoApproxLib",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=_default_source(), help="local copy of the C models")
    ap.add_argument("--check", action="store_true", help="verify the shipped files, write nothing")
    args = ap.parse_args(argv)

    groups: dict[str, list[CatalogEntry]] = {}
    for e in sorted(load_catalog(), key=lambda e: (e.release != "v1", e.name)):
        groups.setdefault(e.lut_sha256, []).append(e)
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="approxtvm-evo-") as tmp:
        for sha, group in groups.items():
            table, origin = _table(args.source, group, Path(tmp))
            signed = group[0].signed
            blob = encode_error_table(table, signed)
            back = decode_error_table(blob, signed, origin=origin)
            if not np.array_equal(back, table):
                problems.append(f"{group[0].key}: encoding does not round-trip")
            path = OUT / table_file_name(sha)
            if args.check:
                if not path.is_file():
                    problems.append(f"{group[0].key}: {path.name} missing")
                elif not np.array_equal(decode_error_table(path.read_bytes(), signed, origin=str(path)), table):
                    problems.append(f"{group[0].key}: shipped {path.name} differs from the C model")
            else:
                path.write_bytes(blob)
    compile_s = time.perf_counter() - t0
    expected = {table_file_name(sha) for sha in groups}
    stray = sorted(p.name for p in OUT.glob("*.xz") if p.name not in expected)
    problems += [f"stray file {s}" for s in stray]

    lib = EvoApproxLibrary(allow_network=False, cache_dir=None, root=None)
    t1 = time.perf_counter()
    for e in load_catalog():
        try:
            lib.packaged_multiplier(e.key)
        except MultiplierError as exc:
            problems.append(str(exc))
    load_s = time.perf_counter() - t1
    size = sum(p.stat().st_size for p in OUT.glob("*.xz"))
    print(
        json.dumps(
            {
                "tables": len(groups),
                "catalogue_names": sum(len(g) for g in groups.values()),
                "package_bytes": size,
                "compile_and_verify_s": round(compile_s, 2),
                "load_and_check_all_s": round(load_s, 3),
                "mode": "check" if args.check else "write",
                "problems": problems,
            }
        )
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
