"""Functions behind ``approxtvm multipliers list|show|import`` (no argument parsing here).

* :func:`list_multipliers` — the EvoApproxLib catalogue and the parametric families, sortable by
  power or error, with whether the table is available offline;
* :func:`show_multiplier` — metrics of one multiplier and an error heat-map PNG (matplotlib, Agg);
* :func:`import_multiplier` — store a ``.bin`` table or ``.c`` model in the user's cache so that
  its catalogue name (or its file name) resolves offline afterwards;
* ``print_list`` / ``print_show`` / ``print_import`` — the same, rendered with rich.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers.cmodel import default_cache_dir, load_c_model
from approxtvm.runtime.multipliers.evoapprox import EvoApproxLibrary, load_catalog
from approxtvm.runtime.multipliers.families import family_multiplier
from approxtvm.runtime.multipliers.lutio import load_lut, save_lut, table_file_sha256
from approxtvm.runtime.multipliers.multiplier import ErrorMetrics, Multiplier, exact_table
from approxtvm.runtime.multipliers.resolve import resolve_multiplier

#: Family specs shown by :func:`list_multipliers` (any parameters work in a policy).
FAMILY_EXAMPLES: tuple[str, ...] = (
    "exact",
    "trunc:k=4",
    "trunc:k=6",
    "trunc:k=8",
    "optrunc:ka=1,kb=1",
    "optrunc:ka=2,kb=2",
    "bam:h=4,v=0",
    "bam:h=6,v=0",
    "bam:h=8,v=2",
    "drum:k=4",
    "drum:k=6",
    "mitchell",
    "kulkarni",
)

SORT_KEYS: tuple[str, ...] = ("power", "mae", "wce", "name")


@dataclass(frozen=True)
class MultiplierRow:
    """One line of :func:`list_multipliers`.

    Attributes
    ----------
    name
        Name or spec to use in a policy.
    kind
        ``evoapprox`` or ``family``.
    signed
        Operand signedness.
    power_mw, area_um2
        Published (EvoApprox) or estimated (families) figures; ``None`` if unknown.
    power_is_estimate
        ``True`` for the families' estimate rule.
    mae_pct, wce_pct
        MAE and WCE in percent of 2^16 (published for EvoApprox, computed for families).
    available
        Whether the table can be built right now without network (families: always).
    """

    name: str
    kind: str
    signed: bool
    power_mw: float | None
    area_um2: float | None
    power_is_estimate: bool
    mae_pct: float | None
    wce_pct: float | None
    available: bool


def _sort_key(sort_by: str) -> Callable[[MultiplierRow], tuple[float, str] | str]:
    if sort_by not in SORT_KEYS:
        raise MultiplierError(
            f"cannot sort multipliers by {sort_by!r}", expected=f"one of {', '.join(SORT_KEYS)}", found=sort_by
        )
    inf = float("inf")
    return {
        "power": lambda r: (r.power_mw if r.power_mw is not None else inf, r.name),
        "mae": lambda r: (r.mae_pct if r.mae_pct is not None else inf, r.name),
        "wce": lambda r: (r.wce_pct if r.wce_pct is not None else inf, r.name),
        "name": lambda r: r.name,
    }[sort_by]


def list_multipliers(
    sort_by: str = "power",
    *,
    signed: bool | None = None,
    include_v2022: bool = False,
    library: EvoApproxLibrary | None = None,
) -> list[MultiplierRow]:
    """Catalogue and family multipliers, sorted.

    Parameters
    ----------
    sort_by
        ``power`` (mW, ascending), ``mae``, ``wce`` (percent, ascending) or ``name``.
    signed
        ``True``: signed only; ``False``: unsigned only; ``None``: both.
    include_v2022
        Also list the v2022 release (as ``v2022/<name>``); v1 names are the default meaning.
    library
        Used to tell whether a catalogue table is available offline (cache or local copy).
    """
    lib = library or EvoApproxLibrary(allow_network=False)
    rows: list[MultiplierRow] = []
    for e in load_catalog():
        if e.release != "v1" and not include_v2022:
            continue
        if signed is not None and e.signed != signed:
            continue
        rows.append(
            MultiplierRow(
                name=e.name if e.release == "v1" else e.key,
                kind="evoapprox",
                signed=e.signed,
                power_mw=e.power_mw,
                area_um2=e.area_um2,
                power_is_estimate=False,
                mae_pct=e.mae_pct,
                wce_pct=e.wce_pct,
                available=_available(lib, e.key),
            )
        )
    for sg in (False, True):
        if signed is not None and sg != signed:
            continue
        for spec in FAMILY_EXAMPLES:
            m = family_multiplier(spec, signed=sg)
            me = m.metrics
            rows.append(
                MultiplierRow(
                    name=m.name if not sg else f"{m.name} (signed)",
                    kind="family",
                    signed=sg,
                    power_mw=m.power_mw,
                    area_um2=m.area_um2,
                    power_is_estimate=m.power_is_estimate,
                    mae_pct=me.mae_pct,
                    wce_pct=me.wce_pct,
                    available=True,
                )
            )
    return sorted(rows, key=_sort_key(sort_by))


def _available(lib: EvoApproxLibrary, key: str) -> bool:
    offline = EvoApproxLibrary(
        root=lib.root, cache_dir=lib.cache_dir, allow_network=False, catalog=lib.catalog, packaged=lib.packaged
    )
    e = offline.entry(key)
    if lib.is_packaged(key) or offline.cache_path(e).is_file():
        return True
    if lib.root is None:
        return False
    names = [e.name] + [k.rpartition("/")[2] for k in e.same_circuit_as.split(",") if k]
    return any((lib.root / sub / f"{n}{ext}").is_file() for n in names for sub, ext in (("luts", ".bin"), ("c", ".c")))


@dataclass(frozen=True)
class MultiplierReport:
    """What :func:`show_multiplier` returns.

    Attributes
    ----------
    name, signed, source, citation
        Identity.
    power_mw, area_um2, power_is_estimate
        Cost figures.
    metrics
        Computed error metrics.
    exact, commutative
        Table properties.
    table_hash
        sha256 of the table (as recorded in schedules).
    published
        Published figures from the catalogue, if it is an EvoApprox circuit (else empty).
    png_path
        The heat-map written, or ``None``.
    """

    name: str
    signed: bool
    source: str
    citation: str
    power_mw: float | None
    area_um2: float | None
    power_is_estimate: bool
    metrics: ErrorMetrics
    exact: bool
    commutative: bool
    table_hash: str
    published: dict[str, Any]
    png_path: Path | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        d = asdict(self)
        d["png_path"] = str(self.png_path) if self.png_path else None
        return d


def show_multiplier(
    spec: str,
    png_path: str | Path | None = None,
    *,
    signed: bool | None = None,
    library: EvoApproxLibrary | None = None,
) -> MultiplierReport:
    """Metrics of one multiplier and (optionally) a PNG heat-map of its error ``M(a, b) − a·b``.

    The heat-map has the activation on the vertical axis (table row) and the weight on the
    horizontal axis (column), operand values (not bytes) on the axes, a diverging colour scale
    symmetric around 0.
    """
    m = resolve_multiplier(spec, signed=signed, library=library)
    published: dict[str, Any] = {}
    key = m.source.removeprefix("evoapprox:") if m.source.startswith("evoapprox:") else None
    if key:
        e = next(c for c in load_catalog() if c.key == key)
        published = {
            k: getattr(e, k)
            for k in ("power_mw", "area_um2", "delay_ns", "mae_pct", "wce_pct", "ep_pct", "mre_pct", "wcre_pct", "mse")
        }
    out = Path(png_path) if png_path else None
    if out is not None:
        _heatmap(m, out)
    return MultiplierReport(
        name=m.name,
        signed=m.signed,
        source=m.source,
        citation=m.citation,
        power_mw=m.power_mw,
        area_um2=m.area_um2,
        power_is_estimate=m.power_is_estimate,
        metrics=m.metrics,
        exact=m.is_exact,
        commutative=m.is_commutative,
        table_hash=m.table_hash,
        published=published,
        png_path=out,
    )


def _heatmap(m: Multiplier, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state (Agg canvas)

    err = m.table.astype(np.int64) - exact_table(m.signed).astype(np.int64)
    if m.signed:  # reorder bytes to values -128..127
        order = np.r_[128:256, 0:128]
        err = err[np.ix_(order, order)]
        lo, hi = -128, 127
    else:
        lo, hi = 0, 255
    lim = max(1, int(np.abs(err).max()))
    fig = Figure(figsize=(6.4, 5.4), dpi=110)
    ax = fig.add_subplot()
    im = ax.imshow(
        err, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(lo, hi, lo, hi), interpolation="nearest"
    )
    ax.set_xlabel("weight (table column)")
    ax.set_ylabel("activation (table row)")
    me = m.metrics
    ax.set_title(
        f"{m.name}: error M(a,b) − a·b\nMAE {me.mae:.4g} ({me.mae_pct:.3g} %), WCE {me.wce} "
        f"({me.wce_pct:.3g} %), EP {me.ep_pct:.3g} %",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="error")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :func:`import_multiplier`.

    Attributes
    ----------
    multiplier
        The imported multiplier.
    stored_at
        The cached table file.
    catalogue_key
        ``release/name`` if the table is a known EvoApprox circuit (its name now resolves offline).
    use_as
        The string to put in a policy.
    """

    multiplier: Multiplier
    stored_at: Path
    catalogue_key: str | None
    use_as: str


def import_multiplier(
    path: str | Path, *, transposed: bool = False, signed: bool | None = None, cache_dir: Path | None = None
) -> ImportResult:
    """Import a ``.bin`` table or ``.c`` model into the user's cache.

    A table whose sha256 matches an EvoApproxLib circuit is stored as that circuit (its catalogue
    name then resolves offline); any other table is stored as ``<cache>/user/<stem>.bin`` and
    resolves by its stem (see :func:`approxtvm.runtime.multipliers.resolve_multiplier`).
    """
    p = Path(path)
    cdir = cache_dir or default_cache_dir()
    if p.suffix.lower() == ".c":
        m = load_c_model(p, signed=signed, cache_dir=cdir)
    elif p.suffix.lower() == ".bin":
        m = load_lut(p, signed=signed, transposed=transposed)
    else:
        raise MultiplierError(
            f"cannot import {str(p)!r}",
            expected="a .bin table or a .c model",
            found=p.suffix or "no extension",
            fix="rename or convert the file",
        )
    digest = table_file_sha256(m.table, m.signed) if (m.signed or m.table.min() >= 0) else ""
    match = [e for e in load_catalog() if e.lut_sha256 == digest and e.signed == m.signed]
    if match:
        e = sorted(match, key=lambda c: c.release != "v1")[0]
        lib = EvoApproxLibrary(cache_dir=cdir, allow_network=False)
        target = lib.cache_path(e)
        for e2 in match:
            save_lut(m, lib.cache_path(e2))
        use = e.name if e.release == "v1" else e.key
        return ImportResult(multiplier=lib.multiplier(use), stored_at=target, catalogue_key=e.key, use_as=use)
    target = cdir / "user" / f"{p.stem}.bin"
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    save_lut(m, tmp)
    tmp.replace(target)
    return ImportResult(multiplier=m, stored_at=target, catalogue_key=None, use_as=p.stem)


# ----------------------------------------------------------------------------- rich renderers
def print_list(console: Any, sort_by: str = "power", signed: bool | None = None) -> None:
    """Render :func:`list_multipliers` as a rich table on ``console``."""
    from rich.table import Table

    rows = list_multipliers(sort_by, signed=signed)
    t = Table(
        title=f"multipliers ({'signed' if signed else 'unsigned' if signed is False else 'all'}), sorted by {sort_by}"
    )
    for col in ("name", "kind", "power mW", "area µm²", "MAE %", "WCE %", "offline"):
        t.add_column(col, justify="left" if col in ("name", "kind") else "right")
    for r in rows:
        est = "~" if r.power_is_estimate else ""
        t.add_row(
            r.name,
            r.kind,
            f"{est}{r.power_mw:.4g}" if r.power_mw is not None else "—",
            f"{est}{r.area_um2:.4g}" if r.area_um2 is not None else "—",
            f"{r.mae_pct:.3g}" if r.mae_pct is not None else "—",
            f"{r.wce_pct:.3g}" if r.wce_pct is not None else "—",
            "yes" if r.available else "import",
        )
    console.print(t)
    console.print(
        "~ = estimate (surviving partial-product bits); 'import': "
        "`approxtvm multipliers import <name>.bin|.c`, or set APPROXTVM_EVOAPPROX"
    )


def print_show(console: Any, name: str, png: Path | None = None) -> None:
    """Render :func:`show_multiplier` on ``console``."""
    from rich.table import Table

    rep = show_multiplier(name, png)
    t = Table(title=f"{rep.name} ({'signed' if rep.signed else 'unsigned'}, {rep.source})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("published", justify="right")
    me = asdict(rep.metrics)
    pub_key = {
        "mae_pct": "mae_pct",
        "wce_pct": "wce_pct",
        "ep_pct": "ep_pct",
        "mre_pct": "mre_pct",
        "wcre_pct": "wcre_pct",
        "mse": "mse",
    }
    for k, v in me.items():
        pv = rep.published.get(pub_key.get(k, ""), None)
        t.add_row(k, f"{v:.6g}", "" if pv is None else f"{pv:g}")
    est = " (estimate)" if rep.power_is_estimate else ""
    t.add_row("power mW" + est, "—" if rep.power_mw is None else f"{rep.power_mw:g}", "")
    t.add_row("area µm²" + est, "—" if rep.area_um2 is None else f"{rep.area_um2:g}", "")
    t.add_row("exact / commutative", f"{rep.exact} / {rep.commutative}", "")
    t.add_row("table sha256", rep.table_hash[:16] + "…", "")
    console.print(t)
    if rep.citation:
        console.print(f"cite: {rep.citation}")
    if rep.png_path:
        console.print(f"error heat-map → {rep.png_path}")


def print_import(console: Any, name: str, transposed: bool = False) -> None:
    """Render :func:`import_multiplier` on ``console``."""
    res = import_multiplier(name, transposed=transposed)
    what = f"EvoApproxLib {res.catalogue_key}" if res.catalogue_key else "a user table"
    console.print(f"imported {name} as {what} → {res.stored_at}")
    console.print(f"use it as: multiplier: {res.use_as}")
