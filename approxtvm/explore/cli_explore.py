"""``approxtvm explore`` and ``approxtvm experiments``.

:func:`add_explore_parsers` adds both sub-commands to the ``approxtvm`` parser;
``python -m approxtvm.explore.cli_explore explore ...`` runs them without it (tests use this).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from approxtvm.errors import ApproxTvmError, ExplorationError
from approxtvm.explore.genome import (
    DEFAULT_MULTIPLIERS,
    DEFAULT_PROTECTED_MSBS,
    DEFAULT_SRAM_V,
    DEFAULT_SWINGS_V,
    MULTIPLIER_LIBRARIES,
)
from approxtvm.explore.userdata import NORMALISATIONS


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    return console


def _swing(text: str) -> float | None:
    if text.lower() in ("nominal", "none", "full"):
        return None
    return _float(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (volts)") from None


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers", type=int, default=_default_workers(), help="local worker processes (0 = evaluate in this process)"
    )
    p.add_argument("--scheduler", help="Dask scheduler address: evaluate on that cluster")
    p.add_argument("--local-cluster", action="store_true", help="start a Dask LocalCluster with --workers workers")


def add_explore_parsers(subparsers: Any) -> None:
    """Add ``explore`` and ``experiments`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("explore", help="NSGA-II Pareto search: accuracy loss vs energy per inference")
    p.add_argument("model", help="shipped model name or ONNX path")
    p.add_argument("--data", default="digits:test", help="digits[:test|train], a .npz with x[,y], or an image folder")
    p.add_argument("--limit", type=int, default=0, help="first N samples only")
    p.add_argument("--calibration", help="dataset for quantizing a float model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--energy-only", action="store_true", help="no data: energy objective only (loss 0)")
    p.add_argument(
        "--multipliers",
        nargs="+",
        default=list(DEFAULT_MULTIPLIERS),
        help="multiplier library (specs, most to least power), or `evoapprox` (default: EvoApproxLib's "
        "unsigned power–MAE Pareto set plus exact) or `families` (the built-in families)",
    )
    p.add_argument(
        "--max-distinct-multipliers",
        type=int,
        default=None,
        metavar="K",
        help="at most K different multipliers in the whole network (a chip has a few multiplier types)",
    )
    p.add_argument(
        "--swings",
        nargs="+",
        type=_swing,
        default=list(DEFAULT_SWINGS_V),
        help="NoC swings in V ('nominal' = full swing)",
    )
    p.add_argument("--input-v", nargs="+", type=_float, default=list(DEFAULT_SRAM_V), help="input buffer voltages")
    p.add_argument("--weight-v", nargs="+", type=_float, default=list(DEFAULT_SRAM_V), help="weight buffer voltages")
    p.add_argument("--msbs", nargs="+", type=int, default=list(DEFAULT_PROTECTED_MSBS), help="protected MSBs")
    p.add_argument("--pop-size", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, help="accuracy-loss budget in percentage points (a constraint)")
    p.add_argument("--out", default="reports/explore", help="output folder (pareto.json/csv/png)")
    p.add_argument("--journal", help="SQLite journal (default: OUT/journal.sqlite); reuse it to resume")
    _add_execution_args(p)
    p.set_defaults(func=cmd_explore)

    p = subparsers.add_parser("experiments", help="the study's five experiments → Markdown + HTML report")
    p.add_argument("--out", default="reports/experiments")
    p.add_argument("--full", action="store_true", help="full budgets and all shipped models (default: quick)")
    p.add_argument("--limit", type=int, default=0, help="first N test images (default: quick 120, full all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resnet50", action="store_true", help="skip the energy-only ResNet-50 sweeps")
    p.add_argument(
        "--package",
        help="package spec of experiment 2's on-chip + package link sweep (default simba_package_6x6; 'none': skip)",
    )
    p.add_argument("--finetune", action="store_true", help="fine-tune the Pareto set's points (needs torch)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="epochs per fine-tuned Pareto point")
    p.add_argument("--model", help="run the study on this ONNX model (with --data) instead of the shipped models")
    p.add_argument("--data", help="with --model: an ImageNet-style image folder (root/<class>/*.jpg) or an .npz")
    p.add_argument("--labels", help="class folder names, one per line, in the model's output order")
    p.add_argument("--normalise", choices=NORMALISATIONS, default="imagenet", help="pixel normalisation")
    p.add_argument("--pop-size", type=int, help="NSGA-II population of experiment 4")
    p.add_argument("--generations", type=int, help="NSGA-II generations of experiment 4 (at most, with --hours)")
    p.add_argument(
        "--hours",
        type=float,
        help="wall-clock budget of the whole run: experiment 4 gets the generations that fit, and the run "
        "stops at the first evaluation past it (report of what finished; run again to resume)",
    )
    p.add_argument(
        "--staged",
        nargs="?",
        const=100,
        type=int,
        metavar="FIRST",
        help="staged evaluation: screen on FIRST stratified images (default 100), grow ×4",
    )
    p.add_argument(
        "--staged-resolution",
        type=float,
        default=0.0,
        metavar="PP",
        help="with --staged: accuracy-loss resolution in percentage points (default 0: the exact "
        "front); configurations a full-set one beats to within PP with no more energy are dropped early",
    )
    p.add_argument(
        "--staged-eager",
        action="store_true",
        help="with --staged: take every stage survivor to its next stage at once (default: survivors "
        "another estimate beats outright wait for later generations' front, then are settled at the end)",
    )
    _add_execution_args(p)
    p.set_defaults(func=cmd_experiments)


def cmd_explore(args: argparse.Namespace) -> int:
    """Run (or resume) an NSGA-II exploration and write its Pareto set."""
    from approxtvm.explore.evaluator import EvalContext
    from approxtvm.explore.executors import make_executor
    from approxtvm.explore.journal import Journal
    from approxtvm.explore.nsga import GenerationInfo, NsgaSettings, Study, run_nsga
    from approxtvm.explore.report import front_table, hv_line, save_explore

    console = _console()
    out = Path(args.out)
    budget = None if args.budget is None else args.budget / 100.0
    settings = NsgaSettings(args.pop_size, args.generations, args.seed, budget)
    ctx = EvalContext(
        args.model, args.data, args.limit, args.batch_size, args.calibration, energy_only=args.energy_only
    )
    journal_path = Path(args.journal) if args.journal else out / "journal.sqlite"
    with Journal(journal_path) as journal, make_executor(args.workers, args.scheduler, args.local_cluster) as ex:
        before = journal.count()
        console.print(
            f"explore {args.model} on {'(energy only)' if args.energy_only else args.data}: "
            f"population {settings.pop_size} × {settings.generations} generations, seed {settings.seed}, "
            f"{ex.description}; journal {journal_path} ({before} evaluations stored)"
        )
        study = Study(ctx, journal, ex)
        mults = MULTIPLIER_LIBRARIES.get(args.multipliers[0], args.multipliers) if len(args.multipliers) == 1 else None
        space = study.space(
            mults or args.multipliers,
            args.swings,
            args.input_v,
            args.weight_v,
            args.msbs,
            args.max_distinct_multipliers,
        )

        def progress(g: GenerationInfo) -> None:
            console.print(
                f"generation {g.generation}/{g.generations} · {g.evaluations} configurations "
                f"({g.new_evaluations} evaluated now) · hypervolume {g.hypervolume:.5f} · "
                f"{g.elapsed_s:.0f} s elapsed · ETA {g.eta_s:.0f} s"
            )

        result = run_nsga(study, space, settings, progress)
    paths = save_explore(result, out, f"{args.model}: NSGA-II Pareto set")
    console.print("\n".join(front_table(result.pareto)))
    console.print(hv_line(result))
    console.print(f"Pareto set: {paths['json']}, {paths['csv']}; plot {paths['png']}")
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    """Run the five experiments and write the report."""
    from dataclasses import replace

    from approxtvm.explore.executors import make_executor
    from approxtvm.explore.experiments import ExperimentSettings, run_experiments

    console = _console()
    settings = ExperimentSettings.quick(args.seed) if not args.full else ExperimentSettings.full(args.seed)
    if args.limit:
        settings = settings.with_limit(args.limit)
    if args.no_resnet50:
        settings = settings.without_resnet50()
    if args.package:
        settings = replace(settings, package_accelerator=None if args.package == "none" else args.package)
    settings = _user_settings(args, settings)
    with make_executor(args.workers, args.scheduler, args.local_cluster) as ex:
        report = run_experiments(Path(args.out), settings=settings, executor=ex, console=console)
    if args.finetune and json.loads(Path(report.summary_json).read_text()).get("pareto") is None:
        console.print("--finetune: skipped, experiment 4 was cut by the wall-clock budget")
    elif args.finetune:
        _finetune_front(Path(args.out), settings, args.finetune_epochs, report, console)
    console.print(f"report: {report.markdown} (HTML {report.html})")
    return 0


def _finetune_front(out: Path, settings: Any, epochs: int, report: Any, console: Any) -> None:
    """Fine-tune the Pareto points and add the moved front to the report (Markdown and HTML)."""
    from approxtvm.explore.finetune_front import finetune_front, markdown_section
    from approxtvm.explore.report import markdown_to_html

    if not str(getattr(settings, "data", "digits:test")).startswith("digits"):
        # fine-tuning needs a labelled training split distinct from the evaluation data; only the
        # shipped digits models have one here (train on digits:train, evaluate on digits:test)
        console.print("--finetune: skipped, it needs the digits models (a training split apart from the test data)")
        return
    console.print(f"fine-tuning the Pareto set of {settings.pareto_model} ({epochs} epochs per point)")
    moved, png = finetune_front(
        out / "pareto" / "pareto.json",
        out / "finetune",
        model=settings.pareto_model,
        limit=settings.limit,
        epochs=epochs,
        seed=settings.nsga.seed,
        log=console.print,
    )
    md = Path(report.markdown).read_text() + "\n".join(markdown_section(moved, png, epochs))
    Path(report.markdown).write_text(md)
    Path(report.html).write_text(markdown_to_html(md, "approxtvm experiments"))


def _user_settings(args: argparse.Namespace, settings: Any) -> Any:
    """Apply --model/--data/--labels, the NSGA-II size, --hours and --staged to the settings."""
    from dataclasses import replace

    from approxtvm.explore.evaluator import load_model_proto
    from approxtvm.explore.staged import StagingSettings

    if args.staged_resolution and args.staged is None:
        raise ExplorationError(
            "--staged-resolution needs --staged",
            expected="--staged [FIRST] --staged-resolution PP",
            found=f"--staged-resolution {args.staged_resolution} without --staged",
            fix="add --staged, or drop --staged-resolution",
        )
    if args.staged_eager and args.staged is None:
        raise ExplorationError(
            "--staged-eager needs --staged",
            expected="--staged [FIRST] --staged-eager",
            found="--staged-eager without --staged",
            fix="add --staged, or drop --staged-eager",
        )
    nsga = settings.nsga
    if args.pop_size:
        nsga = replace(nsga, pop_size=args.pop_size)
    if args.generations:
        nsga = replace(nsga, generations=args.generations)
    settings = replace(
        settings,
        nsga=nsga,
        time_budget_s=None if args.hours is None else args.hours * 3600.0,
        staging=None
        if args.staged is None
        else StagingSettings(
            first_samples=args.staged, resolution=args.staged_resolution / 100.0, defer=not args.staged_eager
        ),
    )
    if args.model is None:
        if args.data or args.labels:
            raise ExplorationError(
                "--data and --labels need --model",
                expected="--model MODEL.onnx --data FOLDER [--labels FILE]",
                found="no --model",
                fix="add --model, or drop --data/--labels to run on the shipped models",
            )
        return settings
    if not args.data:
        raise ExplorationError(
            "--model needs --data (the labelled images to measure accuracy on)",
            expected="--data an image folder or .npz",
            found="no --data",
        )
    from approxtvm.compiler.prepare import resolve_batch
    from approxtvm.explore.userdata import prepare_image_folder

    proto = load_model_proto(args.model)
    data = args.data
    if Path(data).is_dir():
        prepared = prepare_image_folder(data, proto, Path(args.out), args.labels, args.normalise, args.limit)
        data = str(prepared.path)
    fixed = resolve_batch(proto, None)
    try:  # a symbolic batch accepts any size; a fixed one only its own
        symbolic = resolve_batch(proto, fixed + 1) == fixed + 1
    except ApproxTvmError:
        symbolic = False
    return replace(
        settings,
        models=(args.model,),
        pareto_model=args.model,
        data=data,
        calibration=data,
        resnet50_sweeps=(),
        batch_size=settings.batch_size if symbolic else fixed,
    )


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m approxtvm.explore.cli_explore``)."""
    ap = argparse.ArgumentParser(prog="approxtvm")
    add_explore_parsers(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    try:
        return int(args.func(args))
    except ApproxTvmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
