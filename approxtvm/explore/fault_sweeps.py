"""Fault sweeps: NoC link swing and SRAM buffer voltage vs accuracy and communication/memory energy.

Each point compiles the shipped model with one uniform knob setting (every layer the same),
evaluates it on a dataset with the runtime's fault injection (:mod:`approxtvm.runtime.faults`),
averaging over seeds, and reports the energy of the component the knob scales: NoC (links +
routers) for the swing sweep, the scaled PE buffers for the SRAM sweep. The first row of every
sweep is the nominal configuration, the reference for agreement and energy ratios.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.compiler import frontend
from approxtvm.compiler.driver import compile_onnx
from approxtvm.errors import DataError
from approxtvm.explore.evaluate import Evaluation, evaluate
from approxtvm.models import load_dataset
from approxtvm.models.datasets import Dataset
from approxtvm.runtime.faults import FAULT_BUFFERS, noc_ber, sram_ber
from approxtvm.runtime.faults.physics import nop_ber
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.hardware import AcceleratorSpec

__all__ = [
    "FaultSweepRow",
    "link_swing_sweep",
    "noc_swing_sweep",
    "plot_sweep",
    "print_sweep",
    "save_sweep",
    "sram_voltage_sweep",
]

#: Default swings (V): BER from ~1e-19 (0.9 V, no fault model) to ~1e-3 (0.3 V).
DEFAULT_SWINGS_V: tuple[float, ...] = (0.9, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3)
#: Default SRAM voltages (V) over the default BER table (1e-12 … 1e-2).
DEFAULT_SRAM_V: tuple[float, ...] = (0.9, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5)
#: Default link swings as fractions of each link's nominal swing (on-chip and package together).
DEFAULT_LINK_FRACTIONS: tuple[float, ...] = (0.75, 0.6, 0.5, 0.4)
_PE_BUFFERS = tuple(FAULT_BUFFERS.values())
_LINKS = ("noc_link", "noc_router", "package_link", "package_router")

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class FaultSweepRow:
    """One point of a fault sweep.

    Attributes
    ----------
    knob
        ``noc_swing``, ``sram`` or ``link_swing`` (on-chip and package links, separately and
        together; ``voltage_v`` is then the swing as a fraction of each link's nominal swing).
    series
        ``"<m> MSBs protected"`` (swing sweep) or the scaled buffer(s): ``input_buffer``,
        ``weight_buffer``, ``both``; ``nominal`` for the reference row.
    voltage_v
        Swing or supply in volts (``None`` = nominal).
    ber
        Bit error rate of the knob's model at that voltage (per link traversal, or per bit-cell).
    top1
        Top-1 accuracy averaged over seeds (``None`` without labels).
    top1_min, top1_max
        Range over seeds.
    agreement
        Top-1 agreement with the nominal configuration, averaged over seeds.
    component_energy_pj
        Per inference: NoC links + routers (swing sweep) or the PE input + weight buffers (SRAM).
    total_energy_pj
        Whole-accelerator energy per inference.
    bits_flipped, words_corrupted
        Per inference, over all layers and tensors, averaged over seeds.
    seeds
        Number of seeds run.
    package_ber
        Bit error rate of one package link traversal at the point (``link_swing`` sweeps).
    note
        What the accuracy reflects when a scaled component has no fault injection.
    """

    knob: str
    series: str
    voltage_v: float | None
    ber: float
    top1: float | None
    top1_min: float | None
    top1_max: float | None
    agreement: float
    component_energy_pj: float
    total_energy_pj: float
    bits_flipped: float
    words_corrupted: float
    seeds: int
    package_ber: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class _Setup:
    proto: Any
    data: Dataset
    spec: AcceleratorSpec
    batch_size: int


def _setup(
    model_name: str,
    data: Dataset | None,
    calibration: np.ndarray | None,
    accelerator: str | AcceleratorSpec,
    batch_size: int,
) -> _Setup:
    from approxtvm.explore.evaluator import load_model_proto

    proto = load_model_proto(model_name)  # a shipped model, or an ONNX file (experiments on user models)
    digits = model_name.startswith("digits")
    if data is None:
        if not digits:
            raise DataError(
                f"no default dataset for {model_name!r}",
                expected="data=<Dataset>",
                found="None",
                fix="pass a dataset (approxtvm.models.load_dataset) shaped like the model's input",
            )
        data = load_dataset("digits:test")
    if not frontend.is_quantized(proto):  # quantize once: every point runs the same integer model
        if calibration is None:
            if digits:
                calibration = load_dataset("digits:train").x[:256]
            else:
                from approxtvm.models import calibration_data

                calibration = calibration_data(proto)
        proto = frontend.quantize(proto, calibration)
    spec = accelerator if isinstance(accelerator, AcceleratorSpec) else AcceleratorSpec.load(accelerator)
    return _Setup(proto, data, spec, batch_size)


def _point(
    s: _Setup, policy: ApproxPolicy, seeds: Sequence[int], reference: list[Evaluation] | None
) -> tuple[list[Evaluation], dict[str, float]]:
    model = compile_onnx(s.proto, policy, accelerator=s.spec, batch_size=s.batch_size)
    evs = [evaluate(model, s.data, seed=seed) for seed in seeds]
    flipped = words = 0.0
    for ev in evs:
        for layer in ev.result.counters.get("faults", {}).values():
            for src in (layer, layer.get("package", {})):  # on-chip, then package copies
                for t in ("weight", "input"):
                    if t in src:
                        flipped += src[t]["bits_flipped"]
                        words += src[t]["words_corrupted"]
    n = len(evs) * evs[0].slots  # faults also hit the padded samples of the last batch
    comp = evs[0].energy.by_component()
    agree = [ev.agreement(ref) for ev, ref in zip(evs, reference or evs, strict=True)]
    return evs, {
        "noc": (comp["noc_link"] + comp["noc_router"]) / evs[0].slots,
        "mem": sum(comp[b] for b in _PE_BUFFERS) / evs[0].slots,
        "links": sum(comp.get(c, 0.0) for c in _LINKS) / evs[0].slots,
        "flipped": flipped / n,
        "words": words / n,
        "agreement": float(np.mean(agree)),
    }


def _row(
    knob: str, series: str, volts: float | None, ber: float, evs: list[Evaluation], m: dict[str, float], component: str
) -> FaultSweepRow:
    tops = [ev.top1 for ev in evs if ev.top1 is not None]
    return FaultSweepRow(
        knob,
        series,
        volts,
        ber,
        float(np.mean(tops)) if tops else None,
        min(tops) if tops else None,
        max(tops) if tops else None,
        m["agreement"],
        m[component],
        evs[0].energy_per_inference_pj,
        m["flipped"],
        m["words"],
        len(evs),
    )


def noc_swing_sweep(
    model_name: str,
    swings: Sequence[float] = DEFAULT_SWINGS_V,
    data: Dataset | None = None,
    *,
    protected_msbs: Sequence[int] = (0,),
    seeds: Sequence[int] = (0,),
    calibration: np.ndarray | None = None,
    accelerator: str | AcceleratorSpec = "simba_like",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> list[FaultSweepRow]:
    """Accuracy vs NoC energy over link swings (every layer at the same swing).

    Parameters
    ----------
    model_name
        A shipped model (:func:`approxtvm.models.get_model`).
    swings
        Swings in volts (within the NoC model's range).
    data
        Evaluation data; the digits test split for the shipped digits models.
    protected_msbs
        One series per number of MSBs sent at full swing.
    seeds
        Fault seeds; accuracy is averaged over them.
    calibration
        Float inputs to quantize a float model (digits training images by default).
    accelerator
        Accelerator spec name or YAML path.
    batch_size
        Batch the model is compiled for.
    progress
        Optional ``(i, n, label)`` callback before each point.
    """
    s = _setup(model_name, data, calibration, accelerator, batch_size)
    points = [(m, v) for m in protected_msbs for v in swings]
    total = 1 + len(points)
    if progress:
        progress(0, total, "nominal")
    ref, m0 = _point(s, ApproxPolicy.exact(), seeds, None)
    rows = [_row("noc_swing", "nominal", None, 0.0, ref, m0, "noc")]
    for i, (msbs, v) in enumerate(points, start=1):
        label = f"{msbs} MSBs protected"
        if progress:
            progress(i, total, f"{label}, swing {v:g} V")
        evs, m = _point(s, ApproxPolicy.uniform(noc_swing_v=v, noc_protected_msbs=msbs), seeds, ref)
        rows.append(_row("noc_swing", label, v, noc_ber(s.spec, v), evs, m, "noc"))
    return rows


def link_swing_sweep(
    model_name: str,
    fractions: Sequence[float] = DEFAULT_LINK_FRACTIONS,
    data: Dataset | None = None,
    *,
    protected_msbs: int = 0,
    seeds: Sequence[int] = (0,),
    calibration: np.ndarray | None = None,
    accelerator: str | AcceleratorSpec = "simba_package_6x6",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> list[FaultSweepRow]:
    """Accuracy vs link energy on a package: the on-chip swing, the package swing, and both.

    Each point scales the links to ``fraction`` of their nominal swing (NoC: ``noc.nominal_vdd_v``,
    package: ``package.nominal_swing_v``), with ``protected_msbs`` of every word at full swing on
    the scaled links. ``component_energy_pj`` is the NoC plus the package (links and routers).
    NoC faults are injected on the PE tiles, package faults on each receiving chiplet's copy of
    its operands (:mod:`approxtvm.runtime.faults.package_faults`); ``package_ber`` is the per-hop
    rate of the package links.

    Raises
    ------
    PolicyError
        If the spec has no package.
    """
    s = _setup(model_name, data, calibration, accelerator, batch_size)
    pkg = s.spec.package
    if pkg is None:
        from approxtvm.errors import PolicyError

        raise PolicyError(
            "a package swing sweep needs a package spec",
            expected="an accelerator with a `package` section (simba_package_2x2, simba_package_6x6)",
            found=s.spec.name,
            fix="pass accelerator='simba_package_6x6'",
        )
    noc_nom = s.spec.noc.nominal_vdd_v
    total = 1 + 3 * len(fractions)
    if progress:
        progress(0, total, "nominal")
    ref, m0 = _point(s, ApproxPolicy.exact(), seeds, None)
    rows = [_row("link_swing", "nominal", None, 0.0, ref, m0, "links")]
    i = 0
    for series in ("NoC", "package", "both"):
        for f in fractions:
            i += 1
            noc_v = round(noc_nom * f, 6) if series != "package" else None
            nop_v = round(pkg.nominal_swing_v * f, 6) if series != "NoC" else None
            if progress:
                progress(i, total, f"{series} at {f:g} of nominal")
            policy = ApproxPolicy.uniform(
                noc_swing_v=noc_v,
                noc_protected_msbs=protected_msbs if noc_v is not None else 0,
                nop_swing_v=nop_v,
                nop_protected_msbs=protected_msbs if nop_v is not None else 0,
            )
            evs, m = _point(s, policy, seeds, ref)
            row = _row("link_swing", series, f, noc_ber(s.spec, noc_v), evs, m, "links")
            pber = nop_ber(s.spec, nop_v)
            rows.append(dataclasses.replace(row, package_ber=pber))
    return rows


def sram_voltage_sweep(
    model_name: str,
    voltages: Sequence[float] = DEFAULT_SRAM_V,
    buffers: Sequence[str] = ("input_buffer", "weight_buffer"),
    data: Dataset | None = None,
    *,
    both: bool = True,
    seeds: Sequence[int] = (0,),
    calibration: np.ndarray | None = None,
    accelerator: str | AcceleratorSpec = "simba_like",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> list[FaultSweepRow]:
    """Accuracy vs PE-buffer energy over SRAM supply voltages (every layer the same).

    Parameters
    ----------
    voltages
        Supplies in volts (within the spec's BER table).
    buffers
        One series per buffer scaled alone; with ``both`` also one series scaling all of them.
    Other parameters
        As in :func:`noc_swing_sweep`.
    """
    s = _setup(model_name, data, calibration, accelerator, batch_size)
    series: list[tuple[str, tuple[str, ...]]] = [(b, (b,)) for b in buffers]
    if both and len(buffers) > 1:
        series.append(("both", tuple(buffers)))
    points = [(name, bufs, v) for name, bufs in series for v in voltages]
    total = 1 + len(points)
    if progress:
        progress(0, total, "nominal")
    ref, m0 = _point(s, ApproxPolicy.exact(), seeds, None)
    rows = [_row("sram", "nominal", None, 0.0, ref, m0, "mem")]
    for i, (name, bufs, v) in enumerate(points, start=1):
        if progress:
            progress(i, total, f"{name} at {v:g} V")
        evs, m = _point(s, ApproxPolicy.uniform(sram_v=dict.fromkeys(bufs, v)), seeds, ref)
        rows.append(_row("sram", name, v, sram_ber(s.spec, v), evs, m, "mem"))
    return rows


def print_sweep(console: Any, rows: Sequence[FaultSweepRow], title: str) -> None:
    """Rich table of a sweep (energies in nJ per inference, ratios against the nominal row)."""
    from rich.table import Table

    comp = {"noc_swing": "NoC nJ", "link_swing": "NoC + package nJ"}.get(rows[0].knob, "PE buffers nJ")
    t = Table(title=title)
    volts = "× nominal" if rows[0].knob == "link_swing" else "V"
    for col in ("series", volts, "BER", "top-1 %", "agree %", comp, "vs nominal", "total nJ", "flips/inf", "words/inf"):
        t.add_column(col, justify="right")
    base = rows[0].component_energy_pj or 1.0
    for r in rows:
        top = "n/a" if r.top1 is None else f"{100 * r.top1:.2f}"
        if r.top1 is not None and r.seeds > 1 and r.top1_min is not None and r.top1_max is not None:
            top += f" [{100 * r.top1_min:.1f}–{100 * r.top1_max:.1f}]"
        t.add_row(
            r.series,
            "nominal" if r.voltage_v is None else f"{r.voltage_v:g}",
            f"{r.ber:.2g}",
            top,
            f"{100 * r.agreement:.1f}",
            f"{r.component_energy_pj / 1e3:.3f}",
            f"{r.component_energy_pj / base:.3f}",
            f"{r.total_energy_pj / 1e3:.1f}",
            f"{r.bits_flipped:.3g}",
            f"{r.words_corrupted:.3g}",
        )
    console.print(t)
    for note in sorted({r.note for r in rows if r.note}):
        console.print(f"[bold]{note}[/bold]")
    if rows[0].knob == "link_swing":  # the BER column is the NoC's; the package links have their own
        console.print(
            "package BER per hop (× nominal swing): "
            + ", ".join(f"{r.voltage_v:g}: {r.package_ber:.2g}" for r in rows if r.series == "package")
        )


def plot_sweep(rows: Sequence[FaultSweepRow], png: str | Path, title: str | None = None) -> Path:
    """Two panels: accuracy vs voltage and accuracy vs the knob's energy, one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(png)
    labels = rows[0].top1 is not None
    nominal = rows[0]
    series: dict[str, list[FaultSweepRow]] = {}
    for r in rows[1:]:
        series.setdefault(r.series, []).append(r)

    def acc(r: FaultSweepRow) -> float:
        return 100 * (r.top1 if labels and r.top1 is not None else r.agreement)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rs in series.items():
        rs = sorted(rs, key=lambda r: r.voltage_v or 0.0)
        a1.plot([r.voltage_v for r in rs], [acc(r) for r in rs], marker="o", label=name)
        a2.plot([r.component_energy_pj / 1e3 for r in rs], [acc(r) for r in rs], marker="o", label=name)
        for r in rs:
            a2.annotate(
                f"{r.voltage_v:g} V",
                (r.component_energy_pj / 1e3, acc(r)),
                fontsize=6,
                xytext=(2, 2),
                textcoords="offset points",
            )
    a1.axhline(acc(nominal), color="gray", ls="--", lw=0.8, label="nominal")
    a2.scatter(
        [nominal.component_energy_pj / 1e3], [acc(nominal)], c="tab:red", marker="*", s=80, zorder=3, label="nominal"
    )
    knob = "NoC link swing (V)" if nominal.knob == "noc_swing" else "SRAM supply (V)"
    comp = "NoC energy per inference (nJ)" if nominal.knob == "noc_swing" else "PE buffer energy per inference (nJ)"
    ylab = "top-1 accuracy (%)" if labels else "agreement with nominal (%)"
    a1.set_xlabel(knob)
    a2.set_xlabel(comp)
    for a in (a1, a2):
        a.set_ylabel(ylab)
        a.grid(alpha=0.3)
    a2.legend(fontsize=7)
    fig.suptitle(title or f"{knob.split(' (')[0]} sweep")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_sweep(rows: Sequence[FaultSweepRow], path: str | Path) -> Path:
    """Rows as JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return p
