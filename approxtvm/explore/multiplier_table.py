"""Experiment 1 at a glance: each multiplier's published figures, the shipped models' accuracy
loss and the energy of the study's network (ResNet-50, energy only) side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from approxtvm.runtime.multipliers import resolve_multiplier

#: Series names ending with this are energy-only contexts (no accuracy column).
ENERGY_ONLY_SUFFIX = " (energy only)"


class _PointLike(Protocol):
    accuracy_loss: float
    energy_rel: float
    energy_per_inference_pj: float


def multiplier_table_md(labels: Sequence[str], series: Mapping[str, Sequence[_PointLike]]) -> list[str]:
    """Markdown table: multiplier, power, MAE%, WCE%, accuracy loss per model, energy per model.

    Parameters
    ----------
    labels
        Multiplier specs, one per row (the sweep's labels).
    series
        Model name → one point per label; names ending with ``" (energy only)"`` get an energy
        column only (ResNet-50), the others an accuracy-loss and an energy column.
    """
    acc = [n for n in series if not n.endswith(ENERGY_ONLY_SUFFIX)]
    heads = ["multiplier", "power mW", "MAE %", "WCE %"]
    heads += [f"{n} loss pp" for n in acc]
    heads += [f"{n.removesuffix(ENERGY_ONLY_SUFFIX)} energy × exact" for n in series]
    lines = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    for i, label in enumerate(labels):
        m = resolve_multiplier(label)
        me = m.metrics
        power = "?" if m.power_mw is None else f"{m.power_mw:.4g}" + ("*" if m.power_is_estimate else "")
        row = [label, power, f"{me.mae_pct:.3g}", f"{me.wce_pct:.3g}"]
        row += [f"{100 * series[n][i].accuracy_loss:+.2f}" for n in acc]
        row += [f"{series[n][i].energy_rel:.4f}" for n in series]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Power: EvoApproxLib's published 45 nm figure (* = the project's estimate for a family member); "
        "MAE%/WCE% from the table (normalised by 2^16, as the library does). Energy is the whole "
        "accelerator's energy per inference relative to the exact multiplier.",
    ]
    return lines


__all__ = ["ENERGY_ONLY_SUFFIX", "multiplier_table_md"]
