"""EvoApproxLib 8-bit multipliers: the shipped catalogue of published figures and the table loader.

The catalogue (``evoapprox_catalog.tsv``, shipped with the package) lists every 8×8 multiplier of
the library's v1 and v2022 releases with its published power, area, delay and error figures, the
sha256 of its table and where its C model lives in https://github.com/ehw-fit/evoapproxlib. Every
table ships with the package as well (:mod:`~approxtvm.runtime.multipliers.evoapprox_tables`,
checked against its hash and published figures on load), so every catalogue name resolves
offline. :class:`EvoApproxLibrary` finds a table, in this order:

1. the package's own tables (unless ``packaged=False``);
2. the user's cache (``<cache>/evoapprox/<release>/<name>.bin``, verified against the sha256);
3. a local copy given as ``root`` (or ``$APPROXTVM_EVOAPPROX``): a table pack with
   ``luts/<name>.bin`` and/or ``c/<name>.c``, or a clone of the library (``<source_path>``);
4. the public GitHub repository (the C model at the catalogue's commit, fetched with ``urllib``),
   compiled with the system C compiler.

Names: ``mul8u_2HH`` means the v1 circuit (the papers', TFApprox's and DESIGN's names). Three
v2022 names denote other circuits than in v1 (``mul8s_1KV8``, ``mul8s_1KVA``, ``mul8u_17C8``);
ask for ``v2022/<name>`` to get the v2022 meaning.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.cmodel import compile_c_table, default_cache_dir
from approxtvm.runtime.multipliers.evoapprox_tables import (
    CHECKED_METRICS,
    load_packaged_table,
    packaged_table_available,
)
from approxtvm.runtime.multipliers.lutio import decode_table, table_file_bytes
from approxtvm.runtime.multipliers.multiplier import Multiplier

#: Raw-file URL template of the public repository; ``{commit}`` and ``{path}`` are filled in.
GITHUB_RAW_URL: str = "https://raw.githubusercontent.com/ehw-fit/evoapproxlib/{commit}/{path}"

CATALOG_FILE: str = "evoapprox_catalog.tsv"


def _num(s: str) -> float | None:
    s = s.strip()
    if not s:
        return None
    return float(s)


@dataclass(frozen=True)
class CatalogEntry:
    """One EvoApproxLib multiplier: published figures and where its model lives.

    Attributes
    ----------
    name, release
        Circuit name and release (``v1`` or ``v2022``).
    signed
        ``True`` for ``mul8s_*``.
    power_mw, area_um2, delay_ns
        Published 45 nm synthesis results.
    mae_pct, wce_pct, ep_pct, mre_pct, wcre_pct, mse
        Published error figures (MAE%/WCE% normalised by 2^16).
    lut_sha256
        sha256 of the table in the ``.bin`` layout.
    same_circuit_as
        Other ``release/name`` entries with the identical table ("" if none).
    source_commit, source_path
        The C model in the GitHub repository.
    citation
        The paper the C header asks to cite.
    printed
        The published error figures as printed (``(column, text)`` pairs), for checks at the
        printed precision.
    published_slips
        Columns whose published figure the library derived from a rounded intermediate.
    """

    name: str
    release: str
    signed: bool
    power_mw: float | None
    area_um2: float | None
    delay_ns: float | None
    mae_pct: float | None
    wce_pct: float | None
    ep_pct: float | None
    mre_pct: float | None
    wcre_pct: float | None
    mse: float | None
    lut_sha256: str
    same_circuit_as: str
    source_commit: str
    source_path: str
    citation: str
    printed: tuple[tuple[str, str], ...] = ()
    published_slips: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """``release/name``."""
        return f"{self.release}/{self.name}"


def load_catalog() -> tuple[CatalogEntry, ...]:
    """All catalogue entries (v1 and v2022), as shipped with the package."""
    text = resources.files("approxtvm.runtime.multipliers").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    out = []
    for row in csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t"):
        out.append(
            CatalogEntry(
                name=row["name"],
                release=row["release"],
                signed=row["signedness"] == "signed",
                power_mw=_num(row["power_mw"]),
                area_um2=_num(row["area_um2"]),
                delay_ns=_num(row["delay_ns"]),
                mae_pct=_num(row["mae_pct"]),
                wce_pct=_num(row["wce_pct"]),
                ep_pct=_num(row["ep_pct"]),
                mre_pct=_num(row["mre_pct"]),
                wcre_pct=_num(row["wcre_pct"]),
                mse=_num(row["mse"]),
                lut_sha256=row["lut_sha256"],
                same_circuit_as=row["same_circuit_as"],
                source_commit=row["source_commit"],
                source_path=row["source_path"],
                citation=row["citation"],
                printed=tuple((c, row[c].strip()) for c in CHECKED_METRICS),
                published_slips=frozenset(x for x in row["published_slips"].split(",") if x),
            )
        )
    return tuple(out)


def find_entry(name: str, catalog: tuple[CatalogEntry, ...] | None = None) -> CatalogEntry | None:
    """Catalogue entry for ``name`` (v1 meaning) or ``v2022/name`` / ``v1/name``; ``None`` if absent."""
    cat = catalog if catalog is not None else load_catalog()
    release, _, base = name.rpartition("/")
    matches = [e for e in cat if e.name == base and (not release or e.release == release)]
    if not matches:
        return None
    matches.sort(key=lambda e: e.release != "v1")  # v1 meaning first
    return matches[0]


def select(
    *,
    signed: bool,
    max_mae_pct: float | None = None,
    max_wce_pct: float | None = None,
    max_power_mw: float | None = None,
    release: str = "v1",
    catalog: tuple[CatalogEntry, ...] | None = None,
) -> list[CatalogEntry]:
    """Catalogue entries within error/power budgets (published figures), cheapest power first.

    Parameters
    ----------
    signed
        Operand signedness.
    max_mae_pct, max_wce_pct
        Upper bounds on the published MAE% / WCE% (normalised by 2^16), inclusive.
    max_power_mw
        Upper bound on the published power, inclusive.
    release
        ``v1`` (default), ``v2022`` or ``all``.
    """
    cat = catalog if catalog is not None else load_catalog()
    out = []
    for e in cat:
        if e.signed != signed or (release != "all" and e.release != release):
            continue
        if max_mae_pct is not None and (e.mae_pct is None or e.mae_pct > max_mae_pct):
            continue
        if max_wce_pct is not None and (e.wce_pct is None or e.wce_pct > max_wce_pct):
            continue
        if max_power_mw is not None and (e.power_mw is None or e.power_mw > max_power_mw):
            continue
        out.append(e)
    return sorted(out, key=lambda e: (e.power_mw if e.power_mw is not None else float("inf"), e.name))


def pareto_set(
    *,
    signed: bool = False,
    release: str = "v1",
    max_mae_pct: float = 10.0,
    catalog: tuple[CatalogEntry, ...] | None = None,
) -> list[CatalogEntry]:
    """The library's power–error Pareto set: circuits no other circuit beats on both published
    power and published MAE%, most power first (neighbours are similar circuits).

    Parameters
    ----------
    signed
        Operand signedness.
    release
        ``v1`` (default: the papers' and TFApprox's names) or ``v2022``.
    max_mae_pct
        Drop circuits above this MAE% (the default 10 drops the constant-zero "multipliers"
        ``mul8u_199Z``/``E9R``, which sit on the front only because they cost nothing).

    Circuits with byte-identical tables (e.g. ``mul8u_EXZ`` = ``mul8u_LM7``) appear once, under the
    first name in alphabetical order.
    """
    cat = catalog if catalog is not None else load_catalog()
    pool = [
        e
        for e in cat
        if e.signed == signed
        and e.release == release
        and e.power_mw is not None
        and e.mae_pct is not None
        and e.mae_pct <= max_mae_pct
    ]
    front: dict[str, CatalogEntry] = {}
    for e in sorted(pool, key=lambda e: e.name):
        dominated = any(
            o.power_mw <= e.power_mw and o.mae_pct <= e.mae_pct and (o.power_mw < e.power_mw or o.mae_pct < e.mae_pct)
            for o in pool
        )
        if not dominated:
            front.setdefault(e.lut_sha256, e)
    return sorted(front.values(), key=lambda e: (-e.power_mw, e.mae_pct, e.name))


def is_catalog_name(spec: str) -> bool:
    """``True`` for strings shaped like an EvoApprox 8×8 name (``mul8u_*``, ``mul8s_*``, ``v2022/...``)."""
    base = spec.rpartition("/")[2]
    return base.startswith(("mul8u_", "mul8s_"))


@dataclass
class EvoApproxLibrary:
    """Finds (and caches) EvoApproxLib tables; see the module docstring for the search order.

    Attributes
    ----------
    root
        Local copy: a table pack (``luts/``, ``c/``) or a clone of the library; default
        ``$APPROXTVM_EVOAPPROX`` if set.
    cache_dir
        Where fetched/compiled tables are kept (default :func:`default_cache_dir`).
    allow_network
        Fetch missing C models from GitHub.
    packaged
        Use the tables shipped with the package first (``False``: only cache, local copy, network).
    url_template
        Raw-file URL template (``{commit}``, ``{path}``); a ``file://`` template works offline.
    timeout_s
        Network timeout per request, in seconds.
    """

    root: Path | str | None = None
    cache_dir: Path | str | None = None
    allow_network: bool = True
    url_template: str = GITHUB_RAW_URL
    timeout_s: float = 20.0
    packaged: bool = True
    catalog: tuple[CatalogEntry, ...] = field(default_factory=load_catalog, repr=False)

    def __post_init__(self) -> None:
        if self.root is None and os.environ.get("APPROXTVM_EVOAPPROX"):
            self.root = Path(os.environ["APPROXTVM_EVOAPPROX"])
        if self.root is not None:
            self.root = Path(self.root)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)

    def entry(self, name: str) -> CatalogEntry:
        """Catalogue entry or a :class:`MultiplierError` listing close names."""
        e = find_entry(name, self.catalog)
        if e is None:
            base = name.rpartition("/")[2]
            close = sorted({c.name for c in self.catalog if c.name[:6] == base[:6]})[:8]
            raise MultiplierError(
                f"{name!r} is not in the EvoApproxLib catalogue",
                expected="an 8×8 EvoApproxLib name such as mul8u_2HH or mul8s_1L2H",
                found=name,
                fix=f"see `approxtvm multipliers list`; e.g. {', '.join(close)}",
            )
        return e

    def cache_path(self, e: CatalogEntry) -> Path:
        """Where the table of ``e`` is (or would be) cached."""
        return (self.cache_dir or default_cache_dir()) / "evoapprox" / e.release / f"{e.name}.bin"

    def _verified(self, data: bytes, e: CatalogEntry, origin: str) -> bytes:
        got = hashlib.sha256(data).hexdigest()
        if got != e.lut_sha256:
            raise MultiplierError(
                f"{origin}: table of {e.key} does not match the catalogue",
                expected=f"sha256 {e.lut_sha256[:16]}…",
                found=f"sha256 {got[:16]}…",
                fix="the file is corrupted or another circuit of the same name (v1 vs v2022 names)",
            )
        return data

    def _store(self, e: CatalogEntry, data: bytes) -> None:
        p = self.cache_path(e)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(p)

    def _from_local(self, e: CatalogEntry) -> bytes | None:
        if self.root is None:
            return None
        names = [e.name] + [k.rpartition("/")[2] for k in e.same_circuit_as.split(",") if k]
        for n in names:
            for cand in (self.root / "luts" / f"{n}.bin", self.root / f"{n}.bin"):
                if cand.is_file():
                    data = cand.read_bytes()
                    if hashlib.sha256(data).hexdigest() == e.lut_sha256:
                        return data
        mismatch: MultiplierError | None = None
        cands = [self.root / "c" / f"{n}.c" for n in names] + [self.root / e.source_path]
        for cand, fn in zip(cands, [*names, e.name], strict=True):
            if cand.is_file():
                data, _ = compile_c_table(
                    cand.read_text(),
                    signed=e.signed,
                    function=fn,
                    cache_dir=self.cache_dir,
                    origin=f"C model {str(cand)!r}",
                )
                try:
                    return self._verified(data, e, str(cand))
                except MultiplierError as exc:  # same name, other release's circuit: keep looking
                    mismatch = exc
        if mismatch is not None:
            raise mismatch
        return None

    def fetch_c_source(self, e: CatalogEntry) -> str:
        """Download the C model of ``e`` (``urllib``); raises :class:`MultiplierError` when offline."""
        url = self.url_template.format(commit=e.source_commit, path=e.source_path, name=e.name)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                return resp.read().decode("utf-8")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise MultiplierError(
                f"cannot fetch the C model of {e.key}",
                expected=f"network access to {url}",
                found=str(getattr(exc, "reason", exc)),
                fix=self._howto(e),
            ) from None

    def _howto(self, e: CatalogEntry) -> str:
        return (
            f"import the table yourself: `approxtvm multipliers import {e.name}.bin` "
            f"(TFApprox/EvoApprox .bin) or `... import {e.name}.c` (C model from "
            f"https://github.com/ehw-fit/evoapproxlib/blob/{e.source_commit[:7]}/{e.source_path}); "
            "or set APPROXTVM_EVOAPPROX to a local copy of the library; or go online"
        )

    def is_packaged(self, name: str) -> bool:
        """``True`` when the table of ``name`` ships with the package (and ``packaged`` is on)."""
        return self.packaged and packaged_table_available(self.entry(name).lut_sha256)

    def packaged_table(self, name: str) -> tuple[np.ndarray, CatalogEntry]:
        """The shipped int32 table of ``name`` (hash and published figures checked) and its entry."""
        e = self.entry(name)
        table = load_packaged_table(
            e.lut_sha256, signed=e.signed, key=e.key, printed=dict(e.printed), slips=e.published_slips
        )
        return table, e

    def packaged_multiplier(self, name: str) -> Multiplier:
        """The :class:`Multiplier` of ``name`` from the package's own tables (see :meth:`packaged_table`)."""
        table, e = self.packaged_table(name)
        return self._multiplier(e, table)

    def _multiplier(self, e: CatalogEntry, table: np.ndarray) -> Multiplier:
        return Multiplier(
            name=e.name if e.release == "v1" else e.key,
            table=table,
            signed=e.signed,
            source=f"evoapprox:{e.key}",
            power_mw=e.power_mw,
            area_um2=e.area_um2,
            citation=e.citation,
        )

    def table_bytes(self, name: str) -> tuple[bytes, CatalogEntry]:
        """``.bin`` bytes of ``name`` (verified against the catalogue's sha256) and its entry."""
        e = self.entry(name)
        if self.is_packaged(name):
            table, _ = self.packaged_table(name)
            return table_file_bytes(table, e.signed), e
        cp = self.cache_path(e)
        if cp.is_file():
            data = cp.read_bytes()
            if hashlib.sha256(data).hexdigest() == e.lut_sha256:
                return data, e
        data = self._from_local(e)
        if data is None:
            if not self.allow_network:
                raise MultiplierError(
                    f"the table of {e.key} is not available offline",
                    expected="a cached table, a local copy of EvoApproxLib, or network access",
                    found=f"nothing in {cp.parent}" + (f" or {self.root}" if self.root else ""),
                    fix=self._howto(e),
                )
            src = self.fetch_c_source(e)
            data, _ = compile_c_table(
                src, signed=e.signed, function=e.name, cache_dir=self.cache_dir, origin=f"C model of {e.key}"
            )
            data = self._verified(data, e, f"C model of {e.key}")
        self._store(e, data)
        return data, e

    def multiplier(self, name: str) -> Multiplier:
        """The :class:`Multiplier` of a catalogue name, with its published power and area."""
        if self.is_packaged(name):
            return self.packaged_multiplier(name)
        data, e = self.table_bytes(name)
        table, _ = decode_table(data, signed=e.signed, origin=e.key)
        return self._multiplier(e, table)
