"""Experiments 1–3: approximate multipliers, NoC swing and SRAM voltage, each knob in isolation."""

from __future__ import annotations

import time
from typing import Any

from approxtvm.explore.experiments.console import say
from approxtvm.explore.experiments.results import Sweep
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.genome import Configuration
from approxtvm.explore.nsga import Point, Study

#: Buffers scaled in experiment 3.
SRAM_BUFFERS = ("input_buffer", "weight_buffer")


def sweep_configs(knob: str, s: ExperimentSettings) -> tuple[tuple[str, ...], dict[str, list[Configuration]]]:
    """Labels and, per sub-series, one configuration per label (layer-independent: uniform knobs)."""
    if knob == "noc_swing":
        labels = ("nominal", *(f"{v:g} V" for v in s.swings_v))
        series = {
            f"{m} MSBs protected": [
                Configuration(),
                *(Configuration.make(noc_swing_v=v, noc_protected_msbs=m) for v in s.swings_v),
            ]
            for m in s.swing_protected_msbs
        }
        return labels, series
    if knob == "sram":
        labels = ("nominal", *(f"{v:g} V" for v in s.sram_v))
        series = {b: [Configuration(), *(Configuration.make(sram_v={b: v}) for v in s.sram_v)] for b in SRAM_BUFFERS}
        series["both"] = [Configuration(), *(Configuration.make(sram_v={b: v for b in SRAM_BUFFERS}) for v in s.sram_v)]
        return labels, series
    raise ValueError(knob)


def multiplier_configs(study: Study, s: ExperimentSettings) -> list[Configuration]:
    """Experiment 1: one configuration per multiplier, on every layer of the study's model."""
    lids = study.reference.layer_ids
    return [Configuration.make({lid: m for lid in lids}) for m in s.multipliers]


def isolation_sweeps(
    studies: dict[str, Study], energy_only: dict[str, Study], s: ExperimentSettings, console: Any
) -> list[Sweep]:
    """Experiments 1–3: every knob alone, per accuracy model and (energy only) on ResNet-50."""
    sweeps: list[Sweep] = []
    # prefetch: one batch per model keeps every worker busy
    for name, st in {**studies, **energy_only}.items():
        configs = multiplier_configs(st, s) if name in studies or "multipliers" in s.resnet50_sweeps else []
        for knob in ("noc_swing", "sram"):
            if name in studies or knob in s.resnet50_sweeps:
                configs += [c for cs in sweep_configs(knob, s)[1].values() for c in cs]
        t0 = time.perf_counter()
        st.points(list(dict.fromkeys(configs)))
        say(
            console,
            f"  isolation sweeps on {name}: {len(set(configs))} configurations ({time.perf_counter() - t0:.0f} s)",
        )
    mult_series = {name: st.points(multiplier_configs(st, s)) for name, st in studies.items()}
    if "multipliers" in s.resnet50_sweeps:
        mult_series.update(
            {f"{n} (energy only)": st.points(multiplier_configs(st, s)) for n, st in energy_only.items()}
        )
    sweeps.append(Sweep("multipliers", tuple(s.multipliers), mult_series))
    for knob in ("noc_swing", "sram"):
        labels, sub = sweep_configs(knob, s)
        series: dict[str, list[Point]] = {}
        for name, st in studies.items():
            for sname, configs in sub.items():
                series[f"{name}, {sname}"] = st.points(configs)
        if knob in s.resnet50_sweeps:
            for name, st in energy_only.items():
                for sname, configs in sub.items():
                    series[f"{name} (energy only), {sname}"] = st.points(configs)
        sweeps.append(Sweep(knob, labels, series))
    return sweeps


__all__ = ["SRAM_BUFFERS", "isolation_sweeps", "multiplier_configs", "sweep_configs"]
