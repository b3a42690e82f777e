"""The study's five experiments (DESIGN §7) on the shipped models, and energy-only on ResNet-50.

1. approximate multipliers in isolation (one multiplier on every layer),
2. NoC link swing in isolation (with and without protected MSBs),
3. SRAM voltage scaling of the input and weight buffers in isolation,
4. the combined NSGA-II Pareto set, and NSGA-II against a uniform grid and random search at the
   same evaluation budget over several seeds (hypervolume mean ± sd),
5. weight compression on the knee point of that Pareto set.

Every evaluation goes through one journal in the output folder, so running the experiments again
(or after an interruption) only evaluates what is missing. The accuracy effects of NoC swing and
SRAM voltage come from the runtime's fault injection: the experiments only compile each
configuration with its policy, so they pick up whatever the runtime models (the report says when
the runtime has no fault model and accuracy is therefore unaffected by those knobs).

Entry points: :func:`run_experiments` (compute + report) and :func:`write_report`.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from approxtvm.explore.budget import plan_generations
from approxtvm.explore.evaluator import EvalContext, clear_worker_cache, make_task, run_task
from approxtvm.explore.executors import Executor, ProcessExecutor
from approxtvm.explore.genome import DEFAULT_MULTIPLIERS, DEFAULT_PROTECTED_MSBS, Configuration
from approxtvm.explore.journal import Journal
from approxtvm.explore.nsga import (
    ExploreResult,
    NsgaSettings,
    Point,
    Study,
    run_nsga,
)
from approxtvm.explore.search_comparison import SearchComparison, compare_searches
from approxtvm.explore.staged import StagedStudy, StagingSettings, make_study

#: Buffers scaled in experiment 3.
SRAM_BUFFERS = ("input_buffer", "weight_buffer")


@dataclass(frozen=True, slots=True)
class ExperimentSettings:
    """Budgets and knob values of the five experiments.

    Attributes
    ----------
    models
        Shipped trained models evaluated for accuracy and energy.
    limit
        Test images per evaluation (0 = the whole digits test split).
    batch_size
        Compiled batch size.
    multipliers
        Multiplier library (experiment 1 and the genome): by default EvoApproxLib's unsigned
        power–MAE Pareto set plus exact (``genome.FAMILY_MULTIPLIERS`` for the project's families).
    max_distinct_multipliers
        At most this many multiplier types in the whole network in experiment 4 (``None``: no limit).
    comparison_seeds
        Seeds of the NSGA-II vs grid vs random comparison of experiment 4 (the first is also the
        seed of the reported NSGA-II run).
    swings_v
        Reduced NoC swings of experiment 2 (volts).
    swing_protected_msbs
        Protected-MSB settings compared in experiment 2.
    sram_v
        Reduced buffer voltages of experiment 3 (volts).
    nsga
        NSGA-II settings of experiment 4.
    pareto_model
        Model of experiments 4 and 5.
    resnet50_sweeps
        Which isolation sweeps also run energy-only on ResNet-50 (``()`` = none).
    compression_sparsity, compression_cluster_bits
        Pruning and clustering applied before compressing the knee point (experiment 5).
    knee_max_loss
        The representative (knee) point is chosen among the approximate Pareto points whose
        accuracy loss is at most this fraction (among all Pareto points if there are none).
    data, calibration
        Evaluation and calibration dataset specs of ``models`` (the user's prepared images, see
        :mod:`approxtvm.explore.userdata`; calibration ``None``: the digits training split for
        digits models, random inputs otherwise).
    staging
        Staged evaluation of the accuracy studies (:mod:`approxtvm.explore.staged`); ``None``:
        every configuration on every image.
    time_budget_s
        Wall-clock budget: experiment 4 runs as many generations as fit after experiments 1–3
        (``None``: ``nsga.generations``).
    """

    models: tuple[str, ...] = ("digits_cnn", "digits_resnet")
    limit: int = 120
    batch_size: int = 8
    multipliers: tuple[str, ...] = DEFAULT_MULTIPLIERS
    max_distinct_multipliers: int | None = None
    comparison_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    swings_v: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    swing_protected_msbs: tuple[int, ...] = (0, 4)
    sram_v: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5)
    nsga: NsgaSettings = field(default_factory=lambda: NsgaSettings(pop_size=16, generations=6))
    pareto_model: str = "digits_cnn"
    resnet50_sweeps: tuple[str, ...] = ("multipliers",)
    compression_sparsity: float = 0.5
    compression_cluster_bits: int = 4
    knee_max_loss: float = 0.02
    data: str = "digits:test"
    calibration: str | None = None
    staging: StagingSettings | None = None
    time_budget_s: float | None = None
    sensitivity: bool = False

    @staticmethod
    def quick(seed: int = 0) -> ExperimentSettings:
        """Minutes on two cores: 120 images, a 16 × 6 NSGA-II run, ResNet-50 multipliers only."""
        return ExperimentSettings(nsga=NsgaSettings(pop_size=16, generations=6, seed=seed))

    @staticmethod
    def full(seed: int = 0) -> ExperimentSettings:
        """The whole test split, a 24 × 12 NSGA-II run, all three sweeps on ResNet-50."""
        return ExperimentSettings(
            limit=0,
            nsga=NsgaSettings(pop_size=24, generations=12, seed=seed),
            resnet50_sweeps=("multipliers", "noc_swing", "sram"),
            sensitivity=True,
        )

    def with_limit(self, limit: int) -> ExperimentSettings:
        """Same settings, another number of test images."""
        return replace(self, limit=limit)

    def without_resnet50(self) -> ExperimentSettings:
        """Same settings without the ResNet-50 sweeps."""
        return replace(self, resnet50_sweeps=())


@dataclass(frozen=True)
class Sweep:
    """One knob in isolation.

    Attributes
    ----------
    knob
        ``multipliers``, ``noc_swing`` or ``sram``.
    labels
        Knob values (x axis).
    series
        Curve name (model, sub-knob) → one point per label.
    """

    knob: str
    labels: tuple[str, ...]
    series: dict[str, list[Point]]


@dataclass(frozen=True)
class ParetoExperiment:
    """Experiment 4.

    Attributes
    ----------
    result
        The NSGA-II run.
    comparison
        NSGA-II vs a uniform grid vs random search at the same budget, over the comparison seeds.
    knee
        Representative (knee) Pareto point.
    selected
        Named points whose energy breakdown the report shows.
    breakdown
        Name → energy per inference per component (pJ).
    reevaluated
        Name → (journal point, re-evaluated point) for the selected points.
    """

    result: ExploreResult
    comparison: SearchComparison
    knee: Point
    selected: dict[str, Point]
    breakdown: dict[str, dict[str, float]]
    reevaluated: dict[str, tuple[Point, Point]]


@dataclass(frozen=True)
class ExperimentsResult:
    """Everything the report shows.

    Attributes
    ----------
    settings
        The settings used.
    sweeps
        Experiments 1–3 (one :class:`Sweep` per knob).
    pareto
        Experiment 4.
    compression
        Experiment 5 summary (``CompressionSummary.to_dict()``), or ``None`` when skipped.
    notes
        Caveats the report prints (missing fault model, skipped experiment, ...).
    wall_s
        Wall time of the experiments (s).
    evaluations
        Evaluations in the journal at the end.
    """

    settings: ExperimentSettings
    sweeps: list[Sweep]
    pareto: ParetoExperiment
    compression: dict[str, Any] | None
    notes: list[str]
    wall_s: float
    evaluations: int


@dataclass(frozen=True, slots=True)
class ExperimentsReport:
    """Files written by :func:`write_report`.

    Attributes
    ----------
    markdown, html, summary_json
        The report and its machine-readable summary.
    """

    markdown: Path
    html: Path
    summary_json: Path


def faults_modelled() -> bool:
    """Whether the runtime injects NoC/SRAM faults (otherwise those knobs change energy only)."""
    return importlib.util.find_spec("approxtvm.runtime.faults") is not None


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def _sweep_configs(knob: str, s: ExperimentSettings) -> tuple[tuple[str, ...], dict[str, list[Configuration]]]:
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


def _multiplier_configs(study: Study, s: ExperimentSettings) -> list[Configuration]:
    lids = study.reference.layer_ids
    return [Configuration.make({lid: m for lid in lids}) for m in s.multipliers]


def _isolation(
    studies: dict[str, Study], energy_only: dict[str, Study], s: ExperimentSettings, console: Any
) -> list[Sweep]:
    sweeps: list[Sweep] = []
    # prefetch: one batch per model keeps every worker busy
    for name, st in {**studies, **energy_only}.items():
        configs = _multiplier_configs(st, s) if name in studies or "multipliers" in s.resnet50_sweeps else []
        for knob in ("noc_swing", "sram"):
            if name in studies or knob in s.resnet50_sweeps:
                configs += [c for cs in _sweep_configs(knob, s)[1].values() for c in cs]
        t0 = time.perf_counter()
        st.points(list(dict.fromkeys(configs)))
        _say(
            console,
            f"  isolation sweeps on {name}: {len(set(configs))} configurations ({time.perf_counter() - t0:.0f} s)",
        )
    mult_series = {name: st.points(_multiplier_configs(st, s)) for name, st in studies.items()}
    if "multipliers" in s.resnet50_sweeps:
        mult_series.update(
            {f"{n} (energy only)": st.points(_multiplier_configs(st, s)) for n, st in energy_only.items()}
        )
    sweeps.append(Sweep("multipliers", tuple(s.multipliers), mult_series))
    for knob in ("noc_swing", "sram"):
        labels, sub = _sweep_configs(knob, s)
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


def best_uniform_point(uniform: list[Any], knee: Any, reference: Any) -> Any:
    """The cheapest uniform-multiplier point at most as lossy as the knee; if the knee beats them all
    on loss (a configuration can even gain accuracy on a small set), the least lossy one; the exact
    reference when there is no uniform point."""
    within = [p for p in uniform if p.accuracy_loss <= knee.accuracy_loss + 1e-12]
    if within:
        return min(within, key=lambda p: (p.energy_rel, p.accuracy_loss))
    return min(uniform or [reference], key=lambda p: (p.accuracy_loss, p.energy_rel))


def _pareto_experiment(study: Study, s: ExperimentSettings, console: Any) -> ParetoExperiment:
    from approxtvm.explore.report import knee_point

    space = study.space(
        s.multipliers,
        (None, *s.swings_v),
        (0.9, *s.sram_v),
        (0.9, *s.sram_v),
        tuple(sorted({*DEFAULT_PROTECTED_MSBS, *s.swing_protected_msbs})),
        s.max_distinct_multipliers,
    )

    def progress(g: Any) -> None:
        _say(
            console,
            f"  NSGA-II generation {g.generation}/{g.generations}: {g.evaluations} configurations, "
            f"hypervolume {g.hypervolume:.5f}, ETA {g.eta_s:.0f} s",
        )

    nsga = replace(s.nsga, seed=s.comparison_seeds[0]) if s.comparison_seeds else s.nsga
    result = run_nsga(study, space, nsga, progress)
    _say(console, f"  NSGA-II vs uniform grid vs random search, seeds {list(s.comparison_seeds)}")
    comparison = compare_searches(study, space, nsga, s.comparison_seeds or (nsga.seed,), console)
    front = result.pareto
    near = [p for p in front if p.accuracy_loss <= s.knee_max_loss + 1e-12 and p.energy_rel < 1.0]
    knee = knee_point(near) if near else knee_point(front)
    best_uniform = best_uniform_point(result.uniform, knee, result.reference)
    selected = {
        "exact": result.reference,
        "best uniform multiplier": best_uniform,
        "knee": knee,
        "lowest energy": min(front, key=lambda p: (p.energy_rel, p.accuracy_loss)),
    }
    breakdown: dict[str, dict[str, float]] = {}
    for name, p in selected.items():
        rec = study.journal.get(p.key)
        assert rec is not None
        breakdown[name] = dict(rec.detail["by_component_pj"])
    clear_worker_cache()
    ref = study.reference
    reevaluated = {
        name: (p, ref.point(run_task(make_task(study.context, study.fingerprint, p.config))))
        for name, p in selected.items()
        if name in ("knee", "lowest energy")
    }
    return ParetoExperiment(result, comparison, knee, selected, breakdown, reevaluated)


def _compression(s: ExperimentSettings, knee: Point, notes: list[str]) -> dict[str, Any] | None:
    try:
        from approxtvm.compiler.weight_transforms import WeightTransforms
        from approxtvm.explore.compression_report import compression_study
    except ImportError as exc:
        notes.append(f"Experiment 5 skipped: weight compression is not available in this build ({exc}).")
        return None
    from approxtvm.errors import ApproxTvmError
    from approxtvm.explore.evaluator import CALIBRATION_SAMPLES, load_context_data, load_model_proto
    from approxtvm.models import calibration_data, load_dataset

    data = load_context_data(EvalContext(s.pareto_model, s.data, s.limit))
    proto = load_model_proto(s.pareto_model)
    if s.calibration:
        calib = load_dataset(s.calibration).x[:CALIBRATION_SAMPLES]
    elif s.pareto_model.startswith("digits"):
        calib = load_dataset("digits:train").x[:CALIBRATION_SAMPLES]
    else:
        calib = calibration_data(proto, n=8)
    try:
        summary = compression_study(
            proto,
            knee.config.policy(),
            WeightTransforms(sparsity=s.compression_sparsity, cluster_bits=s.compression_cluster_bits),
            data,
            calib,
            batch_size=s.batch_size,
        )
    except ApproxTvmError as exc:
        notes.append(f"Experiment 5 skipped: compressing the knee point failed ({exc.what}).")
        return None
    return summary.to_dict()


def _fit_budget(s: ExperimentSettings, study: Study, remaining_s: float, notes: list[str]) -> ExperimentSettings:
    """Fewer NSGA-II generations when the wall-clock budget left cannot hold them."""
    times = [r.eval_s for r in study.journal.records(study.fingerprint)]
    # the search comparison costs about three NSGA-II runs (NSGA-II, grid, random) per seed
    runs = 3 * max(1, len(s.comparison_seeds))
    gens = plan_generations(
        remaining_s / runs, times, study.executor.n_workers, s.nsga.pop_size, s.nsga.generations, s.nsga.pop_size
    )
    if gens < s.nsga.generations:
        notes.append(
            f"Experiment 4 ran {gens} of {s.nsga.generations} NSGA-II generations to fit the "
            f"{s.time_budget_s:.0f} s budget ({remaining_s:.0f} s were left after experiments 1–3)."
        )
    return replace(s, nsga=replace(s.nsga, generations=gens))


def run_experiments(
    out_dir: Path,
    quick: bool = True,
    *,
    settings: ExperimentSettings | None = None,
    executor: Executor | None = None,
    console: Any = None,
) -> ExperimentsReport:
    """Run the five experiments and write the report into ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder: ``report.md``, ``report.html``, ``summary.json``, plots, ``journal.sqlite``.
    quick
        :meth:`ExperimentSettings.quick` (default) or :meth:`ExperimentSettings.full`
        (ignored when ``settings`` is given).
    settings
        Explicit settings.
    executor
        Where evaluations run (default: two local processes, closed at the end).
    console
        A ``rich`` console for progress lines (``None``: silent).
    """
    s = settings or (ExperimentSettings.quick() if quick else ExperimentSettings.full())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = executor is None
    ex: Any = executor or ProcessExecutor(2)
    t0 = time.perf_counter()
    notes: list[str] = []
    if not faults_modelled():
        notes.append(
            "The runtime of this build has no NoC/SRAM fault model (approxtvm.runtime.faults): "
            "in experiments 2–4 reduced swings and voltages change energy only, not accuracy. "
            "Re-run the experiments once it lands; the journal keys include the evaluator version."
        )
    try:
        with Journal(out_dir / "journal.sqlite") as journal:
            studies = {
                m: Study(EvalContext(m, s.data, s.limit, s.batch_size, s.calibration), journal, ex) for m in s.models
            }
            heavy = (
                {"resnet50": Study(EvalContext("resnet50", batch_size=1, energy_only=True), journal, ex)}
                if s.resnet50_sweeps
                else {}
            )
            _say(console, f"experiments 1–3: knobs in isolation on {', '.join([*studies, *heavy])} ({ex.description})")
            sweeps = _isolation(studies, heavy, s, console)
            if s.time_budget_s is not None:
                s = _fit_budget(s, studies[s.pareto_model], s.time_budget_s - (time.perf_counter() - t0), notes)
            _say(console, f"experiment 4: NSGA-II on {s.pareto_model} ({s.nsga.generations} generations)")
            base = studies[s.pareto_model]  # the sweeps stay unstaged: every point of a curve exact
            search = make_study(base.context, journal, ex, s.staging, base.fingerprint)
            pareto = _pareto_experiment(search, s, console)
            if isinstance(search, StagedStudy):
                st = search.stats
                notes.append(
                    f"Experiment 4 used staged evaluation: {st.full_evaluations} of {st.configurations} "
                    f"configurations reached the full set; {100 * st.sample_savings:.0f} % of image "
                    f"evaluations and {100 * st.time_savings:.0f} % of worker time saved."
                )
            _say(console, "experiment 5: weight compression on the knee point")
            compression = _compression(s, pareto.knee, notes)
            if s.sensitivity:
                _sensitivity(s, out_dir, notes, console)
            count = journal.count()
    finally:
        if own:
            ex.close()
    result = ExperimentsResult(s, sweeps, pareto, compression, notes, time.perf_counter() - t0, count)
    return write_report(result, out_dir)


def _sensitivity(s: ExperimentSettings, out_dir: Path, notes: list[str], console: Any) -> None:
    """Experiments 2-4's conclusions with the fault and energy assumptions moved (``sensitivity/``)."""
    from approxtvm.explore.sensitivity import save_report, sensitivity_report
    from approxtvm.models import load_dataset
    from approxtvm.models.zoo import SHIPPED_MODELS

    if s.pareto_model not in SHIPPED_MODELS:
        notes.append(
            f"Sensitivity report skipped: {s.pareto_model} is not a shipped model (run `approxtvm sensitivity`)."
        )
        return
    _say(console, f"sensitivity: experiments 2-4 with BER ±1 decade and energies ±25 % ({s.pareto_model})")
    data = load_dataset(s.data)
    data = data.take(s.limit) if s.limit else data
    report = sensitivity_report(s.pareto_model, data)
    save_report(report, out_dir / "sensitivity")
    holds = report.holds()
    moved = sorted({sc for c in holds for sc, ok in holds[c].items() if not ok})
    notes.append(
        "Sensitivity (sensitivity/sensitivity.md): "
        + (
            "every conclusion holds in every scenario."
            if not moved
            else f"conclusions change under {', '.join(moved)}."
        )
    )


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------

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


def write_report(result: ExperimentsResult, out_dir: Path) -> ExperimentsReport:
    """Write ``report.md``, ``report.html``, ``summary.json`` and the plots into ``out_dir``."""
    from approxtvm.explore.plots import plot_energy_breakdown, plot_multiplier_map, plot_pareto, plot_sweep
    from approxtvm.explore.report import front_table, markdown_to_html, save_explore

    out_dir = Path(out_dir)
    s = result.settings
    pe = result.pareto
    r = pe.result
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
    for sw in result.sweeps:
        plot = f"sweep_{sw.knob}.png"
        plot_sweep(out_dir / plot, sw.labels, sw.series, _TITLES[sw.knob], _XLABEL[sw.knob])
        md += _sweep_md(sw, plot)

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
        *pe.comparison.markdown(),
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
            "nsga": r.to_dict()["settings"],
            "resnet50_sweeps": list(s.resnet50_sweeps),
        },
        "sweeps": {
            sw.knob: {"labels": list(sw.labels), "series": {k: [p.to_dict() for p in v] for k, v in sw.series.items()}}
            for sw in result.sweeps
        },
        "pareto": r.to_dict(),
        "search_comparison": pe.comparison.to_dict(),
        "knee": pe.knee.to_dict(),
        "breakdown_pj": pe.breakdown,
        "reevaluated_identically": {
            n: (a.energy_per_inference_pj, a.accuracy_loss) == (b.energy_per_inference_pj, b.accuracy_loss)
            for n, (a, b) in pe.reevaluated.items()
        },
        "compression": result.compression,
        "notes": result.notes,
        "wall_s": result.wall_s,
        "evaluations": result.evaluations,
    }
    js = out_dir / "summary.json"
    js.write_text(json.dumps(summary, indent=1))
    return ExperimentsReport(md_path, html_path, js)


__all__ = ["ExperimentSettings", "ExperimentsReport", "ExperimentsResult", "run_experiments", "write_report"]
