"""Experiment 2 on a package: the on-chip and the package link swing, separately and together.

On one chiplet the NoC is a few percent of the energy, so the swing knob's answer is set by the
missing package. When the settings name a package spec, experiment 2 also runs
:func:`approxtvm.explore.fault_sweeps.link_swing_sweep` on it: every point compiles the model on
the package with the on-chip links, the package links, or both at a fraction of their nominal
swing, and evaluates it with the runtime's fault injection (NoC faults on the chiplets' tiles,
package faults on each receiving chiplet's copy).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from approxtvm.errors import PolicyError
from approxtvm.explore.experiments.console import say
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.fault_sweeps import FaultSweepRow, link_swing_sweep
from approxtvm.targets.vacc.hardware import AcceleratorSpec

TITLE = "2b. On-chip and package link swing on a multi-chip package (exact multipliers)"


def package_link_sweep(s: ExperimentSettings, console: Any = None) -> tuple[FaultSweepRow, ...]:
    """The link sweep of ``s.pareto_model`` on ``s.package_accelerator`` (``()`` when it is ``None``).

    Raises
    ------
    PolicyError
        If ``package_accelerator`` names a spec without a package.
    """
    if s.package_accelerator is None:
        return ()
    from approxtvm.explore.evaluator import EvalContext, load_context_data
    from approxtvm.models import load_dataset

    spec = AcceleratorSpec.load(s.package_accelerator)
    if spec.package is None:
        raise PolicyError(
            "experiment 2's package sweep needs a package spec",
            expected="package_accelerator with a `package` section (simba_package_2x2, simba_package_6x6)",
            found=spec.name,
            fix="set package_accelerator=None or name a package spec",
        )
    data = load_context_data(EvalContext(s.pareto_model, s.data, s.limit, s.batch_size, s.calibration))
    calib = load_dataset(s.calibration).x[:256] if s.calibration else None
    say(console, f"experiment 2b: link swing on {spec.name} ({len(s.link_fractions)} swings × 3 series)")
    rows = link_swing_sweep(
        s.pareto_model,
        s.link_fractions,
        data,
        protected_msbs=s.link_protected_msbs,
        calibration=calib,
        accelerator=spec,
        batch_size=s.batch_size,
    )
    return tuple(rows)


def package_link_md(rows: tuple[FaultSweepRow, ...], accelerator: str) -> list[str]:
    """The report section: one row per point, energies against the nominal row."""
    base = rows[0]
    top0 = base.top1
    lines = [
        f"## {TITLE}",
        "",
        f"Model on `{accelerator}`; each series scales the named links to a fraction of their nominal swing "
        f"(NoC: supply, package: ground-referenced swing), {rows[1].seeds if len(rows) > 1 else 1} seed(s). "
        "Link energy is the NoC plus the package (links and routers) per inference.",
        "",
        "| series | × nominal | NoC BER | package BER | top-1 % | loss pp | agree % | link nJ | vs nominal "
        "| total nJ | vs nominal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        top = "n/a" if r.top1 is None else f"{100 * r.top1:.2f}"
        loss = "n/a" if r.top1 is None or top0 is None else f"{100 * (top0 - r.top1):+.2f}"
        lines.append(
            f"| {r.series} | {'1' if r.voltage_v is None else f'{r.voltage_v:g}'} | {r.ber:.2g} | "
            f"{r.package_ber:.2g} | {top} | {loss} | {100 * r.agreement:.1f} | {r.component_energy_pj / 1e3:,.3f} | "
            f"{r.component_energy_pj / (base.component_energy_pj or 1.0):.4f} | {r.total_energy_pj / 1e3:,.2f} | "
            f"{r.total_energy_pj / base.total_energy_pj:.4f} |"
        )
    lines += [""] + [f"- {n}" for n in sorted({r.note for r in rows if r.note})]
    return [*lines, ""]


def package_link_json(rows: tuple[FaultSweepRow, ...]) -> list[dict[str, Any]]:
    """Rows as plain dicts (``summary.json``)."""
    return [asdict(r) for r in rows]


__all__ = ["TITLE", "package_link_json", "package_link_md", "package_link_sweep"]
