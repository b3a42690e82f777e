"""Outputs of explorations and experiments: Pareto set (JSON/CSV), Markdown and HTML reports.

The HTML report is the Markdown one rendered by markdown-it-py (CommonMark plus pipe tables).
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path

from markdown_it import MarkdownIt

from approxtvm.explore.nsga import ExploreResult, Point, hypervolume
from approxtvm.explore.plots import plot_pareto


def knee_point(front: Sequence[Point]) -> Point:
    """The front point farthest from the line joining its extremes (normalised objectives).

    With one or two points, the one of lower accuracy loss.
    """
    pts = sorted(front, key=lambda p: (p.energy_rel, p.accuracy_loss, p.config.to_json()))
    if not pts:
        raise ValueError("knee_point of an empty front")
    if len(pts) <= 2:
        return min(pts, key=lambda p: (p.accuracy_loss, p.energy_rel))
    e = [p.energy_rel for p in pts]
    loss = [p.accuracy_loss for p in pts]
    de = (max(e) - min(e)) or 1.0
    dl = (max(loss) - min(loss)) or 1.0
    x = [(v - min(e)) / de for v in e]
    y = [(v - min(loss)) / dl for v in loss]
    x0, y0, x1, y1 = x[0], y[0], x[-1], y[-1]
    norm = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 or 1.0
    dist = [abs((y1 - y0) * xi - (x1 - x0) * yi + x1 * y0 - y1 * x0) / norm for xi, yi in zip(x, y, strict=True)]
    return pts[max(range(len(pts)), key=lambda i: (dist[i], -i))]


def save_explore(result: ExploreResult, out: Path, title: str) -> dict[str, Path]:
    """Write ``pareto.json``, ``pareto.csv`` and ``pareto.png`` for one exploration."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "pareto.json", "csv": out / "pareto.csv", "png": out / "pareto.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1))
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "accuracy_loss",
                "top1",
                "agreement",
                "energy_per_inference_pj",
                "energy_rel",
                "noc_swing_v",
                "noc_protected_msbs",
                "input_buffer_v",
                "weight_buffer_v",
                *result.space.layer_ids,
                "key",
            ]
        )
        for p in result.pareto:
            sv = dict(p.config.sram_v)
            w.writerow(
                [
                    p.accuracy_loss,
                    p.top1,
                    p.agreement,
                    p.energy_per_inference_pj,
                    p.energy_rel,
                    p.config.noc_swing_v,
                    p.config.noc_protected_msbs,
                    sv.get("input_buffer"),
                    sv.get("weight_buffer"),
                    *[p.config.multiplier_for(lid) for lid in result.space.layer_ids],
                    p.key,
                ]
            )
    plot_pareto(
        paths["png"],
        result.points,
        result.pareto,
        result.uniform,
        title,
        budget=result.settings.accuracy_budget,
        highlight=knee_point(result.pareto) if result.pareto else None,
    )
    return paths


def front_table(points: Sequence[Point], limit: int = 0) -> list[str]:
    """Markdown table rows of points (loss, top-1, energy, configuration)."""
    rows = [
        "| # | accuracy loss pp | top-1 % | agreement % | energy/inf nJ | vs exact | configuration |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, p in enumerate(points[:limit] if limit else points):
        top1 = "n/a" if p.top1 is None else f"{100 * p.top1:.2f}"
        rows.append(
            f"| {i} | {100 * p.accuracy_loss:+.2f} | {top1} | {100 * p.agreement:.1f} | "
            f"{p.energy_per_inference_pj / 1e3:.2f} | {p.energy_rel:.4f} | {p.config.label()} |"
        )
    return rows


def hv_line(result: ExploreResult) -> str:
    """One sentence comparing the front's hypervolume with the uniform baselines'."""
    return (
        f"Hypervolume (reference: loss 100 pp, energy 1.0 × exact): NSGA-II front "
        f"{result.hypervolume:.5f} vs uniform multipliers {hypervolume(result.uniform):.5f}."
    )


# ------------------------------------------------------------------------------------------------
# Markdown → HTML
# ------------------------------------------------------------------------------------------------


def markdown_to_html(md: str, title: str) -> str:
    """A standalone HTML page of the Markdown report ``md`` (raw HTML in ``md`` is escaped)."""
    out = [
        "<!doctype html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px}td{text-align:right}td:last-child{text-align:left}"
        "img{max-width:100%}code{background:#f3f3f3}</style></head><body>",
    ]
    out.append(MarkdownIt("commonmark", {"html": False}).enable("table").render(md))
    out.append("</body></html>")
    return "\n".join(out)
