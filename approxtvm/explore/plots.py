"""Exploration plots (matplotlib, Agg): Pareto front, knob sweeps, energy breakdown, multiplier map.

Every function writes one PNG and returns its path; nothing here changes matplotlib's global
style, and figures are closed after saving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.explore.genome import Configuration
from approxtvm.explore.nsga import Point


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(
    path: Path,
    points: Sequence[Point],
    front: Sequence[Point],
    uniform: Sequence[Point],
    title: str,
    budget: float | None = None,
    highlight: Point | None = None,
) -> Path:
    """All evaluated points, the Pareto front (steps) and the uniform-multiplier baselines.

    x: energy per inference relative to the exact model; y: accuracy loss in percentage points.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    if points:
        ax.scatter(
            [p.energy_rel for p in points],
            [100 * p.accuracy_loss for p in points],
            s=10,
            c="0.75",
            label=f"evaluated ({len(points)})",
            zorder=1,
        )
    if front:
        fs = sorted(front, key=lambda p: p.energy_rel)
        ax.step([p.energy_rel for p in fs], [100 * p.accuracy_loss for p in fs], where="post", c="tab:blue", zorder=2)
        ax.scatter(
            [p.energy_rel for p in fs],
            [100 * p.accuracy_loss for p in fs],
            s=28,
            c="tab:blue",
            label=f"NSGA-II Pareto set ({len(fs)})",
            zorder=3,
        )
    if uniform:
        ax.scatter(
            [p.energy_rel for p in uniform],
            [100 * p.accuracy_loss for p in uniform],
            marker="x",
            s=40,
            c="tab:red",
            label="uniform multiplier",
            zorder=4,
        )
        for p in uniform:
            name = p.config.multipliers[0][1] if p.config.multipliers else "exact"
            ax.annotate(
                name,
                (p.energy_rel, 100 * p.accuracy_loss),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
                color="tab:red",
            )
    if highlight is not None:
        ax.scatter(
            [highlight.energy_rel],
            [100 * highlight.accuracy_loss],
            s=120,
            facecolors="none",
            edgecolors="k",
            label="knee point",
            zorder=5,
        )
    if budget is not None:
        ax.axhline(100 * budget, ls="--", c="0.4", lw=0.8, label="accuracy-loss budget")
    ax.set_xlabel("energy per inference (relative to exact)")
    ax.set_ylabel("accuracy loss (percentage points)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweep(
    path: Path, labels: Sequence[str], series: Mapping[str, Sequence[Point]], title: str, xlabel: str
) -> Path:
    """A knob in isolation: accuracy loss (left) and relative energy (right) per knob value.

    ``series`` maps a curve name (one model, or one sub-knob) to one point per label.
    """
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(labels))
    for name, pts in series.items():
        a1.plot(x, [100 * p.accuracy_loss for p in pts], marker="o", label=name)
        a2.plot(x, [p.energy_rel for p in pts], marker="o", label=name)
    for ax, yl in ((a1, "accuracy loss (pp)"), (a2, "energy (relative to exact)")):
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_energy_breakdown(path: Path, rows: Sequence[tuple[str, Mapping[str, float]]], title: str) -> Path:
    """Stacked bars: energy per inference (nJ) per component, one bar per named configuration."""
    plt = _plt()
    comps: list[str] = []
    for _, d in rows:
        comps += [c for c in d if c not in comps]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) + 3), 4.2))
    bottom = np.zeros(len(rows))
    names = [n for n, _ in rows]
    for c in comps:
        vals = np.array([d.get(c, 0.0) / 1e3 for _, d in rows])
        if not vals.any():
            continue
        ax.bar(names, vals, bottom=bottom, label=c)
        bottom += vals
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_multiplier_map(
    path: Path, layer_ids: Sequence[str], rows: Sequence[tuple[str, Configuration]], library: Sequence[str], title: str
) -> Path:
    """Heat map: one row per configuration, one column per layer, colour = multiplier."""
    plt = _plt()
    lib = list(library)
    grid = np.array(
        [
            [lib.index(c.multiplier_for(lid)) if c.multiplier_for(lid) in lib else -1 for lid in layer_ids]
            for _, c in rows
        ],
        dtype=float,
    )
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(layer_ids) + 3), max(2.0, 0.45 * len(rows) + 1.2)))
    im = ax.imshow(np.ma.masked_less(grid, 0), cmap="viridis_r", vmin=0, vmax=max(1, len(lib) - 1), aspect="auto")
    for r, (_, c) in enumerate(rows):
        for k, lid in enumerate(layer_ids):
            ax.text(
                k,
                r,
                c.multiplier_for(lid).replace(",", ",\n"),
                ha="center",
                va="center",
                fontsize=5.5,
                color="w" if grid[r, k] > len(lib) / 2 else "k",
            )
    ax.set_xticks(range(len(layer_ids)), layer_ids, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=7)
    cb = fig.colorbar(im, ax=ax, fraction=0.04)
    cb.set_ticks(range(len(lib)), labels=lib, fontsize=6)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
