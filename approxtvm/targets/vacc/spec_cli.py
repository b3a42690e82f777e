"""``approxtvm spec list|show|technologies``: the shipped specs and fault-model presets, with sources."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the ``spec`` sub-command on the CLI's sub-parsers."""
    p = sub.add_parser("spec", help="accelerator specs and technology presets, every number with its source")
    p.add_argument("action", choices=["list", "show", "technologies"])
    p.add_argument("name", nargs="?", help="(show) spec name or YAML path; with --technology, a preset too")
    p.add_argument("--technology", help="(show) also show this technology preset or YAML, applied to the spec")
    p.add_argument("--json", action="store_true", help="one JSON document: {spec: [{key, value, source}], ...}")
    p.set_defaults(func=cmd_spec)


def cmd_spec(args: argparse.Namespace) -> int:
    """List specs / presets, or print a spec's numbers with their sources."""
    from rich.console import Console
    from rich.table import Table

    from approxtvm.errors import ConfigError
    from approxtvm.targets.vacc.provenance import shipped_specs, spec_sources
    from approxtvm.targets.vacc.technology import load_technology, shipped_technologies, technology_sources

    console = Console()
    if args.action == "list":
        names = shipped_specs()
        print(json.dumps({"specs": names}) if args.json else "\n".join(names))
        return 0
    if args.action == "technologies":
        rows = [(n, load_technology(n)) for n in shipped_technologies()]
        if args.json:
            print(json.dumps({"technologies": [{"name": n, "description": t.description} for n, t in rows]}))
        else:
            for n, t in rows:
                console.print(f"[bold]{n}[/bold] ({t.node_nm} nm): {t.description}")
        return 0
    if not args.name:
        raise ConfigError("spec show needs a spec", expected="approxtvm spec show NAME", found="no name", fix="add one")
    spec_rows = [(r.key, r.value, r.source) for r in spec_sources(args.name)]
    tech_rows = technology_sources(args.technology) if args.technology else []
    if args.json:
        doc: dict[str, Any] = {"spec": [{"key": k, "value": v, "source": s} for k, v, s in spec_rows]}
        if tech_rows:
            doc["technology"] = [{"key": k, "value": v, "source": s} for k, v, s in tech_rows]
        print(json.dumps(doc, default=str))
        return 0
    for title, rows in ((f"spec {args.name}", spec_rows), (f"technology {args.technology}", tech_rows)):
        if not rows:
            continue
        table = Table(title=title, show_lines=False)
        table.add_column("key")
        table.add_column("value")
        table.add_column("source", overflow="fold")
        for k, v, s in rows:
            label = s if s else "[red]no source given[/red]"
            table.add_row(k, str(v), f"[yellow]{label}[/yellow]" if s.lower().startswith("estimate") else label)
        console.print(table)
    if tech_rows:
        console.print("the technology replaces the spec's sram.* (and noc.sigma_v / swing_model where it sets them)")
    return 0
