"""Energy views of a compiled model: per-layer table and a stacked-bar chart per component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from approxtvm.runtime.energy import EnergyReport


def energy_table(console: Any, report: EnergyReport, title: str, macs_per_cycle: int | None = None) -> None:
    """Per-layer energy (µJ), pJ/MAC, estimated cycles (and MAC utilisation) and the largest component.

    ``macs_per_cycle``: MAC units of the accelerator (all chiplets); without it the utilisation
    column is left out. Latency sits beside energy so an energy-optimal mapping that idles most of
    the array is visible.
    """
    from rich.table import Table

    def util(macs: int, cycles: int) -> str:
        return f"{100 * macs / (cycles * macs_per_cycle):.0f} %" if macs_per_cycle and cycles else "-"

    cols = ["layer", "MACs", "energy µJ", "pJ/MAC", "cycles"] + (["util"] if macs_per_cycle else [])
    t = Table(title=title)
    for col in (*cols, "largest component"):
        t.add_column(col, justify="right")
    for le in report.layers:
        comp = le.by_component()
        top = max(comp, key=lambda k: comp[k])
        row = [le.layer_id, f"{le.macs:,}", f"{le.total_pj / 1e6:.3f}", f"{le.pj_per_mac:.3f}"]
        row.append(f"{le.latency_cycles:,}")
        row += [util(le.macs, le.latency_cycles)] if macs_per_cycle else []
        t.add_row(*row, f"{top} ({100 * comp[top] / le.total_pj:.0f} %)")
    total = ["total", f"{report.macs:,}", f"{report.total_pj / 1e6:.3f}", f"{report.pj_per_mac:.3f}"]
    total += [f"{report.latency_cycles:,}"] + ([util(report.macs, report.latency_cycles)] if macs_per_cycle else [])
    t.add_row(*total, "")
    console.print(t)
    parts = ", ".join(f"{k} {v / report.macs:.3f}" for k, v in report.by_component().items() if v)
    console.print(f"pJ/MAC by component: {parts}")


def plot_energy_by_layer(report: EnergyReport, path: Path, title: str) -> Path:
    """Stacked bars: one bar per layer, one colour per component (pJ/MAC or µJ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = report.layers
    comps = [c for c, v in report.by_component().items() if v > 0]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 3), 4.2))
    bottom = np.zeros(len(layers))
    x = np.arange(len(layers))
    for c in comps:
        vals = np.array([le.by_component().get(c, 0.0) / 1e6 for le in layers])
        ax.bar(x, vals, bottom=bottom, label=c, width=0.8)
        bottom += vals
    ax.set_xticks(x, [le.layer_id for le in layers], rotation=90, fontsize=6)
    ax.set_ylabel("energy (µJ)")
    ax.set_title(f"{title}: {report.total_pj / 1e6:.1f} µJ, {report.pj_per_mac:.2f} pJ/MAC")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
