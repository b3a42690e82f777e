"""Sensitivity of the study's conclusions to the fault and energy models' assumptions.

Experiments 2-4 rest on numbers that are partly estimates (``approxtvm spec show``). This report
re-derives their conclusions with each assumption moved:

- every fault model's bit error rate ×0.1 and ×10 (one decade down and up: ``FaultOptions.ber_scale``);
- each energy group (compute, buffers, NoC, DRAM) ×0.75 and ×1.25 (±25 %, one group at a time:
  scaling every energy alike would change no ratio and could not move a conclusion).

Conclusions checked per scenario: the knee of the NoC-swing sweep (experiment 2) and of the SRAM
sweep of both PE buffers (experiment 3): the lowest voltage whose accuracy loss stays within the
limit, and its saving of total energy; and for the combined set (experiment 4), the Pareto front
of a fixed grid of combined configurations (multiplier × swing × SRAM voltage): which points are on
it and their energy order. Experiment 4's search itself is re-run per scenario by
:mod:`approxtvm.explore.sensitivity_search` (``search.md``): the grid says whether fixed combined
points keep their order, the re-run whether a search would find another knee.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.evaluate import Evaluation, evaluate
from approxtvm.explore.fault_sweeps import _setup
from approxtvm.models.datasets import Dataset
from approxtvm.runtime.faults import FaultOptions
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec

#: Energy groups moved one at a time.
ENERGY_GROUPS = ("compute", "buffers", "noc", "dram")


@dataclass(frozen=True)
class Scenario:
    """One moved assumption.

    Attributes
    ----------
    name
        Label in the report.
    ber_scale
        Factor on every bit error rate.
    energy_group, energy_scale
        Energy group scaled and its factor (``""`` and 1: none).
    """

    name: str
    ber_scale: float = 1.0
    energy_group: str = ""
    energy_scale: float = 1.0


def scenarios() -> list[Scenario]:
    """Baseline, BER ×0.1 / ×10, and each energy group ×0.75 / ×1.25."""
    out = [Scenario("baseline"), Scenario("BER x0.1", ber_scale=0.1), Scenario("BER x10", ber_scale=10.0)]
    for g in ENERGY_GROUPS:
        for f in (0.75, 1.25):
            out.append(Scenario(f"{g} energy x{f:g}", energy_group=g, energy_scale=f))
    return out


def scale_energy(spec: AcceleratorSpec, group: str, factor: float) -> AcceleratorSpec:
    """``spec`` with the energies of one group multiplied by ``factor``."""
    if group == "compute":
        e = spec.energy
        return dataclasses.replace(
            spec,
            energy=dataclasses.replace(
                e,
                mul_energy_pj=e.mul_energy_pj * factor,
                add_energy_pj=e.add_energy_pj * factor,
                decoder_energy_pj_per_weight=e.decoder_energy_pj_per_weight * factor,
            ),
        )
    if group == "buffers":
        mems = tuple(
            dataclasses.replace(m, read_energy_pj=m.read_energy_pj * factor, write_energy_pj=m.write_energy_pj * factor)
            for m in spec.memories
        )
        return dataclasses.replace(spec, memories=mems)
    if group == "noc":
        n = spec.noc
        return dataclasses.replace(
            spec,
            noc=dataclasses.replace(
                n,
                link_energy_pj_per_bit=n.link_energy_pj_per_bit * factor,
                router_energy_pj_per_bit=n.router_energy_pj_per_bit * factor,
            ),
        )
    if group == "dram":
        return dataclasses.replace(
            spec, dram=dataclasses.replace(spec.dram, energy_pj_per_bit=spec.dram.energy_pj_per_bit * factor)
        )
    raise ValueError(f"unknown energy group {group!r}")


@dataclass
class ConfigResult:
    """Accuracy loss (pp) and total energy per inference (pJ) of one configuration in one scenario."""

    label: str
    loss_pp: float
    energy_pj: float


@dataclass
class SensitivityReport:
    """Per scenario: sweep knees and the combined grid's front."""

    loss_limit_pp: float
    noc_knee: dict[str, tuple[float | None, float]] = field(default_factory=dict)  # scenario -> (V, saving)
    sram_knee: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    front: dict[str, list[str]] = field(default_factory=dict)  # scenario -> front labels by energy
    results: dict[str, dict[str, ConfigResult]] = field(default_factory=dict)  # scenario -> label -> result

    def holds(self) -> dict[str, dict[str, bool]]:
        """Conclusion → scenario → whether it matches the baseline's."""
        base = "baseline"
        out: dict[str, dict[str, bool]] = {"NoC knee swing": {}, "SRAM knee voltage": {}, "combined front": {}}
        for s in self.noc_knee:
            out["NoC knee swing"][s] = self.noc_knee[s][0] == self.noc_knee[base][0]
            out["SRAM knee voltage"][s] = self.sram_knee[s][0] == self.sram_knee[base][0]
            out["combined front"][s] = self.front[s] == self.front[base]
        return out

    def to_markdown(self) -> str:
        """The report's table: one row per scenario, each conclusion and whether it holds."""
        lines = [
            f"Accuracy-loss limit {self.loss_limit_pp:g} pp. Knee = lowest voltage within the limit; saving = "
            "1 − total energy at the knee / at nominal. Combined front = Pareto set of a fixed grid of combined "
            "configurations (experiment 4's search re-run per scenario: search.md).",
            "",
            "| scenario | NoC knee (saving) | SRAM knee (saving) | combined front (by energy) | conclusions held |",
            "|---|---|---|---|---|",
        ]
        holds = self.holds()
        for s in self.noc_knee:
            nv, ns = self.noc_knee[s]
            sv, ss = self.sram_knee[s]
            changed = [c for c in holds if not holds[c][s]]
            note = f" (changed: {', '.join(changed)})" if changed else ""
            lines.append(
                f"| {s} | {_v(nv)} ({ns:.1%}) | {_v(sv)} ({ss:.1%}) | {', '.join(self.front[s])} | "
                f"{len(holds) - len(changed)}/{len(holds)}{note} |"
            )
        return "\n".join(lines) + "\n"


def _v(v: float | None) -> str:
    return "none" if v is None else f"{v:g} V"


def _knee(
    points: Sequence[tuple[float, ConfigResult]], nominal: ConfigResult, limit: float
) -> tuple[float | None, float]:
    ok = [(v, r) for v, r in points if r.loss_pp <= limit]
    if not ok:
        return None, 0.0
    v, r = min(ok, key=lambda t: t[0])
    return v, 1.0 - r.energy_pj / nominal.energy_pj


def _front(results: Sequence[ConfigResult]) -> list[str]:
    pts = [(r.loss_pp, r.energy_pj, r.label) for r in results]
    front = [p for p in pts if not any(q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1]) for q in pts)]
    return [p[2] for p in sorted(front, key=lambda p: (p[1], p[0]))]


def sensitivity_report(
    model_name: str = "digits_cnn",
    data: Dataset | None = None,
    *,
    swings: Sequence[float] = (0.9, 0.6, 0.5, 0.45, 0.4, 0.35),
    sram_volts: Sequence[float] = (0.9, 0.8, 0.7, 0.65, 0.6, 0.55),
    multipliers: Sequence[str] = ("exact", "mul8u_2HH", "mul8u_FTA"),
    loss_limit_pp: float = 1.0,
    seed: int = 0,
    accelerator: str | AcceleratorSpec = "simba_like",
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SensitivityReport:
    """Re-derive the knees of experiments 2-3 and the combined front under every :func:`scenarios`.

    Accuracy is re-measured wherever a scenario can change it: a BER scenario, or an energy scenario
    under which the mapper chose another mapping (faults follow the mapping's tile residencies);
    otherwise the configuration's faults, hence its accuracy, are those already measured.
    ``only`` restricts the run to the named scenarios (the baseline is always included).
    """
    s = _setup(model_name, data, None, accelerator, 64)
    configs: list[tuple[str, str, float | None, ApproxPolicy]] = [("nominal", "nominal", None, ApproxPolicy.exact())]
    configs += [
        ("noc", f"swing {v:g} V", v, ApproxPolicy.uniform(noc_swing_v=v))
        for v in swings
        if v < s.spec.noc.nominal_vdd_v
    ]
    both = ("input_buffer", "weight_buffer")
    configs += [
        ("sram", f"sram {v:g} V", v, ApproxPolicy.uniform(sram_v=dict.fromkeys(both, v)))
        for v in sram_volts
        if v < s.spec.sram.nominal_vdd_v
    ]
    grid_swing = (None, min(swings))
    grid_sram = (None, min(sram_volts))
    for m in multipliers:
        for sw in grid_swing:
            for sv in grid_sram:
                label = f"{m}/{'nom' if sw is None else f'{sw:g}V'}/{'nom' if sv is None else f'{sv:g}V'}"
                pol = ApproxPolicy.uniform(m, noc_swing_v=sw, sram_v=dict.fromkeys(both, sv) if sv else None)
                configs.append(("grid", label, None, pol))
    accuracy: dict[tuple[float, str, str], float] = {}  # (ber_scale, label, mappings) -> top1 or agreement
    energy: dict[tuple[str, str], float] = {}  # (scenario, label) -> pJ
    reference: dict[str, Evaluation] = {}
    report = SensitivityReport(loss_limit_pp)
    chosen = [sc for sc in scenarios() if only is None or sc.name == "baseline" or sc.name in only]
    for sc in chosen:
        spec = s.spec if not sc.energy_group else scale_energy(s.spec, sc.energy_group, sc.energy_scale)
        results: dict[str, ConfigResult] = {}
        for _kind, label, _volts, pol in configs:
            if progress:
                progress(f"{sc.name}: {label}")
            model = compile_onnx(s.proto, pol, accelerator=spec, batch_size=s.batch_size)
            energy[(sc.name, label)] = float(model.energy_per_batch().total_pj) / s.batch_size
            mappings = repr([sch.mapping for sch in model.schedules.values()])
            key = (sc.ber_scale, label, mappings)
            if key not in accuracy:
                model.set_fault_options(FaultOptions(ber_scale=sc.ber_scale))
                ev = evaluate(model, s.data, seed=seed)
                if label == "nominal":
                    reference[sc.name] = ev
                ref = reference.get(sc.name) or reference["baseline"]
                accuracy[key] = ev.top1 if ev.top1 is not None else ev.agreement(ref)
            if label == "nominal":
                base_key = key
            base_acc = accuracy[base_key]
            results[label] = ConfigResult(label, 100.0 * (base_acc - accuracy[key]), energy[(sc.name, label)])
        report.results[sc.name] = results
        nominal = results["nominal"]
        noc_pts = [(v, results[label]) for kind, label, v, _ in configs if kind == "noc" and v is not None]
        sram_pts = [(v, results[label]) for kind, label, v, _ in configs if kind == "sram" and v is not None]
        report.noc_knee[sc.name] = _knee(noc_pts, nominal, loss_limit_pp)
        report.sram_knee[sc.name] = _knee(sram_pts, nominal, loss_limit_pp)
        report.front[sc.name] = _front([results[label] for kind, label, _, _ in configs if kind == "grid"])
    return report


def save_report(report: SensitivityReport, out: str | Path) -> Path:
    """Write ``sensitivity.md`` and ``sensitivity.json`` into ``out``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "sensitivity.md").write_text("# Sensitivity of the conclusions\n\n" + report.to_markdown())
    doc: dict[str, Any] = {
        "loss_limit_pp": report.loss_limit_pp,
        "noc_knee": report.noc_knee,
        "sram_knee": report.sram_knee,
        "front": report.front,
        "holds": report.holds(),
        "results": {sc: {k: dataclasses.asdict(r) for k, r in rs.items()} for sc, rs in report.results.items()},
    }
    (d / "sensitivity.json").write_text(json.dumps(doc, indent=1))
    return d / "sensitivity.md"


__all__ = [
    "ENERGY_GROUPS",
    "Scenario",
    "SensitivityReport",
    "save_report",
    "scale_energy",
    "scenarios",
    "sensitivity_report",
]
