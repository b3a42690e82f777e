"""The main job (`approxtvm demo` / `make demo`): shipped model, exact vs approximate, report."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.evaluate import Evaluation, evaluate
from approxtvm.explore.knob_reach import KNOB_ROWS, KnobReach, knob_reach
from approxtvm.explore.multiplier_sweep import DEFAULT_SWEEP, multiplier_sweep, plot_sweep, print_sweep, save_sweep
from approxtvm.explore.plots import plot_energy_breakdown
from approxtvm.models import get_model, load_dataset
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec

#: The approximate configurations the demo shows, with EvoApproxLib circuits (shipped tables):
#: mul8u_2HH (0.302 mW vs 0.391 exact) on every layer but the first, whose 1-channel input makes
#: it the most error-sensitive, and mul8u_FTA (0.084 mW, not commutative) on every layer.
DEMO_MODEL = "digits_cnn"
#: Mapper objective of the demo (energy × latency; see :func:`run_demo`).
DEMO_OBJECTIVE = "edp"
DEMO_POLICIES: dict[str, ApproxPolicy] = {
    "exact": ApproxPolicy.exact(),
    "mul8u_2HH (conv1 exact)": ApproxPolicy.per_layer(
        {"conv1": "exact"}, default=ApproxPolicy.uniform("mul8u_2HH").default
    ),
    "mul8u_FTA": ApproxPolicy.uniform("mul8u_FTA"),
}


@dataclass(frozen=True)
class DemoRow:
    """One configuration of the demo."""

    name: str
    policy: ApproxPolicy
    evaluation: Evaluation
    compile_s: float
    run_s: float
    reach: KnobReach
    latency_cycles_per_batch: int = 0


def _ort_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of onnxruntime on the same QDQ model (the reference engine)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {model.input_name: x})[0]
    return float(np.mean(logits.argmax(axis=1) == y))


def run_demo(out: Path, console: Any, limit: int = 0) -> dict[str, Any]:
    """Compile the shipped model exact and approximate, run the digits test split, write a report."""
    from rich.table import Table

    test = load_dataset("digits:test")
    calib = load_dataset("digits:train").x[:256]
    if limit:
        test = test.take(limit)
    assert test.y is not None
    proto = get_model(DEMO_MODEL)
    # the mapper minimises energy × latency: it costs the digits models no energy (same nests) and
    # ResNet-18/50 1.7 % for 29-39 % fewer cycles (README, "Latency beside energy")
    spec = dataclasses.replace(AcceleratorSpec.load("simba_like"), mapping_objective=DEMO_OBJECTIVE)
    rows: list[DemoRow] = []
    ort_top1 = None
    with console.status("compiling and running") as status:
        for name, policy in DEMO_POLICIES.items():
            status.update(f"compiling {DEMO_MODEL} with policy {name}")
            t0 = time.perf_counter()
            model = compile_onnx(proto, policy, accelerator=spec, calibration=calib, batch_size=8)
            t1 = time.perf_counter()
            status.update(f"running {len(test)} digits with policy {name}")
            ev = evaluate(model, test)
            run_s = time.perf_counter() - t1
            reach = knob_reach(model, DEMO_MODEL)
            latency = model.energy_per_batch().latency_cycles
            rows.append(DemoRow(name, policy, ev, t1 - t0, run_s, reach, latency))
            if ort_top1 is None:
                ort_top1 = _ort_accuracy(model, test.x, test.y)
    exact = rows[0].evaluation
    table = Table(title=f"{DEMO_MODEL} on digits test split ({len(test)} images), Simba-like vacc")
    for col in (
        "policy",
        "top-1 %",
        "Δ top-1 pp",
        "agree w/ exact %",
        "energy/inf nJ",
        "vs exact",
        "cycles/batch",
        "approx. MACs %",
        "MAC nJ",
        "NoC nJ",
        "mem nJ",
    ):
        table.add_column(col, justify="right")
    summary: dict[str, Any] = {
        "model": DEMO_MODEL,
        "samples": len(test),
        "onnxruntime_qdq_top1": ort_top1,
        "mapping_objective": DEMO_OBJECTIVE,
        "batch_size": 8,
        "rows": [],
    }
    for r in rows:
        ev = r.evaluation
        comp = ev.by_component_per_inference_pj()
        noc = comp.get("noc_link", 0.0) + comp.get("noc_router", 0.0)
        mac = comp.get("mac", 0.0)
        mem = ev.energy_per_inference_pj - noc - mac
        assert ev.top1 is not None and exact.top1 is not None
        table.add_row(
            r.name,
            f"{100 * ev.top1:.2f}",
            f"{100 * (ev.top1 - exact.top1):+.2f}",
            f"{100 * ev.agreement(exact):.1f}",
            f"{ev.energy_per_inference_pj / 1e3:.1f}",
            f"{ev.energy_per_inference_pj / exact.energy_per_inference_pj:.3f}",
            f"{r.latency_cycles_per_batch:,}",
            f"{100 * r.reach.applied_shares()['approximate multiplier']:.1f}",
            f"{mac / 1e3:.1f}",
            f"{noc / 1e3:.1f}",
            f"{mem / 1e3:.1f}",
        )
        summary["rows"].append(
            {
                "policy": r.name,
                "policy_spec": r.policy.to_dict(),
                "top1": ev.top1,
                "agreement_with_exact": ev.agreement(exact),
                "energy_per_inference_pj": ev.energy_per_inference_pj,
                "pj_per_mac": ev.energy.pj_per_mac,
                "latency_cycles_per_batch": r.latency_cycles_per_batch,
                "by_component_pj": comp,
                "compile_s": r.compile_s,
                "run_s": r.run_s,
                "applied_shares": r.reach.applied_shares(),
            }
        )
    summary["knob_reach"] = rows[0].reach.to_dict()  # the exact policy: what any knob can reach
    console.print(table)
    console.print(f"onnxruntime on the same QDQ model: top-1 {100 * (ort_top1 or 0):.2f} %")
    out.mkdir(parents=True, exist_ok=True)
    with console.status("uniform-multiplier sweep") as status:
        sweep = multiplier_sweep(
            proto, test, calib, DEFAULT_SWEEP, progress=lambda i, n, m: status.update(f"sweep [{i + 1}/{n}] {m}")
        )
    print_sweep(console, sweep, f"{DEMO_MODEL}: every layer on one multiplier")
    save_sweep(sweep, out / "multiplier_sweep.json")
    plot_sweep(sweep, out / "multiplier_sweep.png", f"{DEMO_MODEL}: accuracy vs compute energy")
    summary["multiplier_sweep"] = [asdict(r) for r in sweep]
    # the study's five experiments at a demo budget (the full study: `approxtvm experiments --full`)
    from dataclasses import replace

    from approxtvm.explore.experiments import ExperimentSettings, run_experiments
    from approxtvm.explore.nsga import NsgaSettings

    console.print(
        "the study's five experiments (demo budget: digits_cnn, 60 test digits, NSGA-II 6 × 3 over five "
        "seeds, no ResNet-50):"
    )
    demo_settings = replace(
        ExperimentSettings.quick().without_resnet50().with_limit(60),
        models=(DEMO_MODEL,),
        nsga=NsgaSettings(pop_size=6, generations=3),
    )
    exp = run_experiments(out / "experiments", settings=demo_settings, console=console)
    summary["experiments_report"] = str(exp.markdown)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _plot(rows, out / "energy.png")
    _markdown(summary, out / "report.md")
    console.print(
        f"report: {out / 'report.md'} (chart {out / 'energy.png'}); five experiments: {exp.markdown} (HTML {exp.html})"
    )
    return summary


def _plot(rows: list[DemoRow], path: Path) -> None:
    data = [
        (f"{r.name} (top-1 {100 * (r.evaluation.top1 or 0):.1f} %)", r.evaluation.by_component_per_inference_pj())
        for r in rows
    ]
    plot_energy_breakdown(path, data, f"{DEMO_MODEL} on vacc: energy per inference by component")


def _markdown(summary: dict[str, Any], path: Path) -> None:
    lines = [
        f"# approxtvm demo: {summary['model']}",
        "",
        f"{summary['samples']} digits test images; onnxruntime on the same QDQ model: "
        f"top-1 {100 * summary['onnxruntime_qdq_top1']:.2f} %.",
        "",
        "| policy | top-1 % | agreement with exact % | energy/inference nJ | pJ/MAC | MACs on an approximate "
        "multiplier % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        applied = r.get("applied_shares", {}).get("approximate multiplier", 0.0)
        lines.append(
            f"| {r['policy']} | {100 * r['top1']:.2f} | {100 * r['agreement_with_exact']:.1f} | "
            f"{r['energy_per_inference_pj'] / 1e3:.1f} | {r['pj_per_mac']:.3f} | {100 * applied:.1f} |"
        )
    lines += ["", "![energy by component](energy.png)", ""]
    if "knob_reach" in summary:
        reach = summary["knob_reach"]
        lines += ["## Knob reach (share of the model each knob can change)", ""]
        lines += ["| knob | share of | reached |", "|---|---|---:|"]
        for label, (unit, _, _) in KNOB_ROWS.items():
            lines.append(f"| {label} | {unit} | {100 * reach['shares'][label]:.1f} % |")
        host = reach["host_layers"]
        lines += [
            "",
            f"{len(host)} MAC layer(s) on the host: " + ", ".join(f"`{h['node']}` ({h['reason']})" for h in host)
            if host
            else "Every MAC layer runs on the accelerator.",
            "",
        ]
    if "experiments_report" in summary:
        lines += ["The study's five experiments (demo budget): [experiments/report.md](experiments/report.md).", ""]
    if "multiplier_sweep" in summary:
        lines += [
            "## Uniform-multiplier sweep",
            "",
            "| multiplier | MAE % | power mW | top-1 % | compute energy vs exact |",
            "|---|---:|---:|---:|---:|",
        ]
        base = summary["multiplier_sweep"][0]["compute_energy_pj"]
        for r in summary["multiplier_sweep"]:
            pw = "?" if r["power_mw"] is None else f"{r['power_mw']:.3f}"
            lines.append(
                f"| {r['multiplier']} | {r['mae_pct']:.4g} | {pw} | {100 * (r['top1'] or 0):.2f} | "
                f"{r['compute_energy_pj'] / base:.3f} |"
            )
        lines += ["", "![accuracy vs compute energy](multiplier_sweep.png)", ""]
    path.write_text("\n".join(lines))
