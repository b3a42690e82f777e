"""Uniform-multiplier sweep: every layer on one multiplier, accuracy vs compute energy."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.evaluate import evaluate
from approxtvm.explore.genome import EVOAPPROX_MULTIPLIERS
from approxtvm.models.datasets import Dataset
from approxtvm.runtime.multipliers import resolve_multiplier
from approxtvm.targets.vacc.config import ApproxPolicy

#: Multipliers the project implements itself (parametric families), accurate to aggressive.
FAMILY_SWEEP: tuple[str, ...] = (
    "exact",
    "trunc:k=2",
    "trunc:k=4",
    "trunc:k=6",
    "trunc:k=8",
    "optrunc:ka=1,kb=1",
    "optrunc:ka=2,kb=2",
    "bam:h=2,v=0",
    "bam:h=4,v=0",
    "bam:h=6,v=2",
    "drum:k=6",
    "drum:k=4",
    "mitchell",
    "kulkarni",
)
#: The default sweep, as in the study: EvoApproxLib's unsigned power–MAE Pareto set plus exact
#: (shipped tables, most power first).
DEFAULT_SWEEP: tuple[str, ...] = EVOAPPROX_MULTIPLIERS
#: Named sweeps for the command line (``--multipliers evoapprox`` / ``families``).
NAMED_SWEEPS: dict[str, tuple[str, ...]] = {"evoapprox": EVOAPPROX_MULTIPLIERS, "families": FAMILY_SWEEP}


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One multiplier of a uniform sweep.

    Attributes
    ----------
    multiplier
        Multiplier spec.
    mae_pct, wce_pct
        Error metrics of the table (EvoApproxLib normalisation).
    power_mw
        Published or estimated power of the circuit.
    top1
        Top-1 accuracy (``None`` without labels).
    agreement
        Top-1 agreement with the exact multiplier.
    compute_energy_pj
        Multiply + accumulate energy per inference.
    total_energy_pj
        Whole-accelerator energy per inference.
    """

    multiplier: str
    mae_pct: float
    wce_pct: float
    power_mw: float | None
    top1: float | None
    agreement: float
    compute_energy_pj: float
    total_energy_pj: float


def multiplier_sweep(
    model: onnx.ModelProto,
    data: Dataset,
    calibration: Any,
    multipliers: tuple[str, ...] = DEFAULT_SWEEP,
    *,
    batch_size: int = 8,
    progress: Any = None,
) -> list[SweepRow]:
    """Compile and run ``model`` with each multiplier on every layer.

    Parameters
    ----------
    model
        Float or QDQ ONNX model.
    data
        Evaluation data (labels optional: then only agreement with exact is meaningful).
    calibration
        Float inputs for quantizing a float model (the same quantization for every multiplier).
    multipliers
        Specs to sweep; the first must be ``exact`` (the reference for agreement).
    progress
        Optional callable ``(i, n, spec)`` called before each configuration.
    """
    if not multipliers or multipliers[0] != "exact":
        multipliers = ("exact", *[m for m in multipliers if m != "exact"])
    from approxtvm.compiler import frontend

    proto = frontend.load_model(model)
    if not frontend.is_quantized(proto):  # quantize once: every row sees the same integer model
        proto = frontend.quantize(proto, calibration)
    rows: list[SweepRow] = []
    exact_eval = None
    for i, spec in enumerate(multipliers):
        if progress is not None:
            progress(i, len(multipliers), spec)
        compiled = compile_onnx(proto, ApproxPolicy.uniform(spec), batch_size=batch_size)
        ev = evaluate(compiled, data)
        exact_eval = exact_eval or ev
        m = resolve_multiplier(spec, signed=next(iter(compiled.programs.values())).schedule.quant.signed)
        comp = ev.energy.by_component()
        rows.append(
            SweepRow(
                spec,
                float(m.metrics.mae_pct),
                float(m.metrics.wce_pct),
                m.power_mw,
                ev.top1,
                ev.agreement(exact_eval),
                comp.get("mac", 0.0) / ev.slots,
                ev.energy_per_inference_pj,
            )
        )
    return rows


def print_sweep(console: Any, rows: list[SweepRow], title: str) -> None:
    """Rich table of a sweep."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("multiplier", "MAE %", "WCE %", "power mW", "top-1 %", "agree %", "compute nJ", "vs exact", "total nJ"):
        t.add_column(col, justify="right")
    base = rows[0].compute_energy_pj
    for r in rows:
        t.add_row(
            r.multiplier,
            f"{r.mae_pct:.4g}",
            f"{r.wce_pct:.4g}",
            "?" if r.power_mw is None else f"{r.power_mw:.3f}",
            "n/a" if r.top1 is None else f"{100 * r.top1:.2f}",
            f"{100 * r.agreement:.1f}",
            f"{r.compute_energy_pj / 1e3:.2f}",
            f"{r.compute_energy_pj / base:.3f}",
            f"{r.total_energy_pj / 1e3:.1f}",
        )
    console.print(t)


def plot_sweep(rows: list[SweepRow], path: Path, title: str) -> Path:
    """Accuracy (or agreement) vs compute energy, one labelled point per multiplier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    y = np.array([100 * (r.top1 if r.top1 is not None else r.agreement) for r in rows])
    x = np.array([r.compute_energy_pj / 1e3 for r in rows])
    ax.scatter(x, y, c=["tab:red" if r.multiplier == "exact" else "tab:blue" for r in rows])
    for r, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(r.multiplier, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("compute (multiply + accumulate) energy per inference (nJ)")
    ax.set_ylabel("top-1 accuracy (%)" if rows[0].top1 is not None else "agreement with exact (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_sweep(rows: list[SweepRow], path: Path) -> Path:
    """Rows as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return path
