"""The experiments' report: ``report.md``, ``report.html``, ``summary.json`` and the plots."""

from __future__ import annotations

import json
from pathlib import Path

from approxtvm.explore.experiments.package_links import package_link_json, package_link_md
from approxtvm.explore.experiments.results import ExperimentsReport, ExperimentsResult, Sweep
from approxtvm.explore.knob_reach import reach_table_md

_TITLES = {
    "multipliers": "1. Approximate multipliers in isolation (same multiplier on every layer)",
    "noc_swing": "2. NoC link voltage swing in isolation (exact multipliers)",
    "sram": "3. SRAM voltage scaling in isolation (input/weight buffers, exact multipliers)",
}
_XLABEL = {"multipliers": "multiplier", "noc_swing": "NoC swing", "sram": "buffer supply"}


def _sweep_md(sw: Sweep, plot: str) -> list[str]:
    lines = [f"## {_TITLES[sw.knob]}", "", f"![{sw.knob}]({plot})", ""]
    if sw.knob == "multipliers":
        from approxtvm.explore.multiplier_table import multiplier_table_md

        lines += [*multiplier_table_md(sw.labels, sw.series), ""]
    for name, pts in sw.series.items():
        lines += [
            f"**{name}**",
            "",
            "| value | accuracy loss pp | top-1 % | energy/inf nJ | vs exact |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, p in zip(sw.labels, pts, strict=True):
            top1 = "n/a" if p.top1 is None else f"{100 * p.top1:.2f}"
            lines.append(
                f"| {label} | {100 * p.accuracy_loss:+.2f} | {top1} | {p.energy_per_inference_pj / 1e3:,.2f} "
                f"| {p.energy_rel:.4f} |"
            )
        lines.append("")
    return lines


def _pareto_md(result: ExperimentsResult, out_dir: Path) -> list[str]:
    """Experiments 4 and 5: the Pareto set, the search comparison, breakdowns, re-evaluation, compression."""
    from approxtvm.explore.plots import plot_energy_breakdown, plot_multiplier_map, plot_pareto
    from approxtvm.explore.report import front_table, save_explore

    s = result.settings
    pe = result.pareto
    assert pe is not None
    r = pe.result
    md: list[str] = []
    save_explore(r, out_dir / "pareto", f"{s.pareto_model}: NSGA-II Pareto set")
    plot_pareto(
        out_dir / "pareto_front.png",
        r.points,
        r.pareto,
        r.uniform,
        f"{s.pareto_model}: NSGA-II ({len(r.points)} evaluations) vs uniform multipliers",
        budget=r.settings.accuracy_budget,
        highlight=pe.knee,
    )
    md += [
        "## 4. Combined Pareto set (NSGA-II over per-layer multiplier, NoC swing, buffer voltages, protected MSBs)",
        "",
        f"Population {r.settings.pop_size} × {r.settings.generations} generations, seed {r.settings.seed}; "
        f"genome: {len(r.space.layer_ids)} per-layer multipliers from {len(r.space.multipliers)}, "
        f"{len(r.space.swings_v)} swings, {len(r.space.input_buffer_v)}/{len(r.space.weight_buffer_v)} "
        f"input/weight buffer voltages, {len(r.space.protected_msbs)} protected-MSB settings"
        + (
            f"; at most {r.space.max_distinct_multipliers} distinct multipliers in the network"
            if r.space.max_distinct_multipliers
            else ""
        )
        + f". This run: {len(r.points)} evaluations, {len(r.pareto)} Pareto points, hypervolume "
        f"{r.hypervolume:.5f}.",
        "",
        "![Pareto front](pareto_front.png)",
        "",
        "**Does NSGA-II beat simpler searches with the same number of evaluations?**",
        "",
        *(pe.comparison.markdown() if pe.comparison is not None else ["Cut by the wall-clock budget."]),
        "",
        "Pareto set (files: [pareto.json](pareto/pareto.json), [pareto.csv](pareto/pareto.csv)):",
        "",
    ]
    md += [*front_table(r.pareto), ""]
    names = list(pe.breakdown)
    plot_energy_breakdown(
        out_dir / "energy_breakdown.png",
        [(n, pe.breakdown[n]) for n in names],
        "energy per inference of selected points",
    )
    comps = sorted({c for d in pe.breakdown.values() for c in d}, key=lambda c: -pe.breakdown["exact"].get(c, 0))
    md += [
        "**Energy breakdown of selected points** (nJ per inference)",
        "",
        "![energy breakdown](energy_breakdown.png)",
        "",
        "| component | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for c in comps:
        md.append(f"| {c} | " + " | ".join(f"{pe.breakdown[n].get(c, 0.0) / 1e3:.2f}" for n in names) + " |")
    md.append("| **total** | " + " | ".join(f"{sum(pe.breakdown[n].values()) / 1e3:.2f}" for n in names) + " |")
    md += ["", "Selected points: " + "; ".join(f"{n}: {p.config.label()}" for n, p in pe.selected.items()), ""]
    rows = [(f"#{i} {100 * p.accuracy_loss:+.1f} pp, {p.energy_rel:.3f}", p.config) for i, p in enumerate(r.pareto)]
    plot_multiplier_map(
        out_dir / "multiplier_map.png",
        r.space.layer_ids,
        rows,
        r.space.multipliers,
        "per-layer multipliers of the Pareto set",
    )
    md += [
        "**Per-layer multiplier map of the Pareto set**",
        "",
        "![multiplier map](multiplier_map.png)",
        "",
        "**Re-evaluation** (compiled and run again from scratch, outside the journal):",
        "",
        "| point | energy/inf pJ (journal) | energy/inf pJ (again) | loss pp (journal) | loss pp (again) | identical |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n, (a, b) in pe.reevaluated.items():
        same = (a.energy_per_inference_pj, a.accuracy_loss, a.agreement) == (
            b.energy_per_inference_pj,
            b.accuracy_loss,
            b.agreement,
        )
        md.append(
            f"| {n} | {a.energy_per_inference_pj:.3f} | {b.energy_per_inference_pj:.3f} | "
            f"{100 * a.accuracy_loss:+.2f} | {100 * b.accuracy_loss:+.2f} | {'yes' if same else 'NO'} |"
        )
    md += ["", "## 5. Weight compression on the knee point", ""]
    if result.compression is None:
        md += ["Skipped (see the notes above).", ""]
    else:
        d = result.compression
        md += [
            f"Knee point (of the Pareto points within {100 * s.knee_max_loss:g} pp accuracy loss): "
            f"{pe.knee.config.label()} ({100 * pe.knee.accuracy_loss:+.2f} pp, {pe.knee.energy_rel:.4f} × exact "
            f"energy). Magnitude pruning {100 * s.compression_sparsity:.0f} % "
            f"(global) and {2**s.compression_cluster_bits}-value clustering per layer, then per-tile "
            f"encoding (auto). Footprint {d['compressed_weight_bytes']:,} B of {d['dense_weight_bytes']:,} B "
            f"dense (ratio {d['footprint_ratio']:.3f}, metadata included); tile encodings "
            f"{d['tile_encodings']}.",
            "",
            "![compression](compression_energy.png)",
            "",
            "| variant | top-1 % | energy/inf nJ | DRAM nJ | NoC nJ | decoder nJ |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for n in ("baseline", "pruned_clustered", "compressed"):
            c = d[n]["by_component_pj"]
            top1 = d[n]["top1"]
            md.append(
                f"| {n} | {'n/a' if top1 is None else f'{100 * top1:.2f}'} | "
                f"{d[n]['energy_per_inference_pj'] / 1e3:.2f} | {c.get('dram', 0) / 1e3:.2f} | "
                f"{(c.get('noc_link', 0) + c.get('noc_router', 0)) / 1e3:.2f} | "
                f"{c.get('decoder', 0) / 1e3:.3f} |"
            )
        plot_energy_breakdown(
            out_dir / "compression_energy.png",
            [(n, d[n]["by_component_pj"]) for n in ("baseline", "pruned_clustered", "compressed")],
            "knee point: energy before and after compression",
        )
        md.append("")
    return md


def write_report(result: ExperimentsResult, out_dir: Path) -> ExperimentsReport:
    """Write ``report.md``, ``report.html``, ``summary.json`` and the plots into ``out_dir``."""
    from approxtvm.explore.plots import plot_sweep
    from approxtvm.explore.report import markdown_to_html

    out_dir = Path(out_dir)
    s = result.settings
    pe = result.pareto
    r = None if pe is None else pe.result
    md = [
        "# approxtvm: the study's five experiments",
        "",
        f"Models: {', '.join(s.models)} ({'digits test split' if s.data == 'digits:test' else s.data}, "
        f"{s.limit or 'all'} images, batch {s.batch_size})"
        + (f"; ResNet-50 energy only ({', '.join(s.resnet50_sweeps)})" if s.resnet50_sweeps else "")
        + f". {result.evaluations} evaluations in the journal, {result.wall_s:.0f} s. Energy is per inference "
        "on the Simba-like vacc; accuracy loss is the top-1 drop against the labels in percentage points "
        "(the exact quantized model is the reference).",
        "",
    ]
    if result.notes:
        md += [f"- {n}" for n in result.notes] + [""]
    if result.reach:
        md += [
            "## Knob reach: the share of each model a knob can change",
            "",
            "An approximation knob acts only on the layers it reaches: the multiplier, the NoC swing and the "
            "SRAM voltages (energy and faults) on the offloaded layers, compression on the stored weights of "
            "offloaded layers. Layers on the host reach no knob, so the results below are about this share of "
            "each model.",
            "",
            *reach_table_md(list(result.reach)),
            "",
        ]
    if "experiments 1–3" in result.cut:
        md += ["## 1–3. Knobs in isolation", "", "Cut by the wall-clock budget (see the notes above).", ""]
    for sw in result.sweeps:
        plot = f"sweep_{sw.knob}.png"
        plot_sweep(out_dir / plot, sw.labels, sw.series, _TITLES[sw.knob], _XLABEL[sw.knob])
        md += _sweep_md(sw, plot)
    if result.link_sweep:
        md += package_link_md(result.link_sweep, s.package_accelerator or "")

    if pe is None:
        md += [
            "## 4. Combined Pareto set",
            "",
            "Cut by the wall-clock budget (see the notes above): its finished evaluations are in the journal.",
            "",
            "## 5. Weight compression on the knee point",
            "",
            "Cut by the wall-clock budget (it needs experiment 4's knee point).",
            "",
        ]
    else:
        md += _pareto_md(result, out_dir)
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))
    html_path = out_dir / "report.html"
    html_path.write_text(markdown_to_html("\n".join(md), "approxtvm experiments"))
    summary = {
        "settings": {
            "models": list(s.models),
            "limit": s.limit,
            "batch_size": s.batch_size,
            "multipliers": list(s.multipliers),
            "nsga": None if r is None else r.to_dict()["settings"],
            "resnet50_sweeps": list(s.resnet50_sweeps),
        },
        "sweeps": {
            sw.knob: {"labels": list(sw.labels), "series": {k: [p.to_dict() for p in v] for k, v in sw.series.items()}}
            for sw in result.sweeps
        },
        "pareto": None if r is None else r.to_dict(),
        "search_comparison": None if pe is None or pe.comparison is None else pe.comparison.to_dict(),
        "knee": None if pe is None else pe.knee.to_dict(),
        "breakdown_pj": None if pe is None else pe.breakdown,
        "reevaluated_identically": {}
        if pe is None
        else {
            n: (a.energy_per_inference_pj, a.accuracy_loss) == (b.energy_per_inference_pj, b.accuracy_loss)
            for n, (a, b) in pe.reevaluated.items()
        },
        "compression": result.compression,
        "notes": result.notes,
        "knob_reach": {r.model: r.to_dict() for r in result.reach},
        "package_link_sweep": package_link_json(result.link_sweep),
        "cut_by_budget": list(result.cut),
        "wall_s": result.wall_s,
        "evaluations": result.evaluations,
    }
    js = out_dir / "summary.json"
    js.write_text(json.dumps(summary, indent=1))
    return ExperimentsReport(md_path, html_path, js)


__all__ = ["write_report"]
