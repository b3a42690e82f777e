"""The ``approxtvm`` command: compile, inspect, run, sweep, energy, compress, demo, explore, experiments,
multipliers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from approxtvm.errors import ApproxTvmError


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the tables, no wrapping mid-number
        console = Console(width=120)
    return console


def _load_model_arg(model: str) -> Any:
    """A shipped model name or an ONNX path → ModelProto (paths are checked by the front end)."""
    from approxtvm.compiler.frontend import load_model
    from approxtvm.models import get_model, list_models

    if model in list_models():
        return get_model(model)
    return load_model(model)


def _calibration(model_name: str, proto: Any, spec: str | None, n: int = 256) -> Any:
    """Calibration inputs: a dataset spec, the digits train split for digits models, else random."""
    from approxtvm.compiler.frontend import is_quantized
    from approxtvm.models import calibration_data, load_dataset

    if is_quantized(proto):
        return None
    if spec:
        return load_dataset(spec).x[:n]
    if model_name.startswith("digits"):
        return load_dataset("digits:train").x[:n]
    return calibration_data(proto, n=8)


def _compile(args: argparse.Namespace) -> Any:
    from approxtvm.compiler.driver import compile_onnx, load_compiled
    from approxtvm.compiler.frontend import QuantOptions

    if Path(args.model).is_dir():
        return load_compiled(args.model)
    from approxtvm.targets.vacc.config import ApproxPolicy

    proto = _load_model_arg(args.model)
    calib = _calibration(args.model, proto, getattr(args, "calibration", None))
    policy = ApproxPolicy.from_spec(args.policy) if args.policy else ApproxPolicy.exact()
    signed = args.signed or (args.policy is not None and policy.wants_signed())  # mul8s_* everywhere: int8
    return compile_onnx(
        proto,
        policy,
        accelerator=_accelerator(args),
        calibration=calib,
        quantization=QuantOptions(signed=signed, per_channel=args.per_channel),
        batch_size=args.batch_size,
        host=args.host,
    )


def _accelerator(args: argparse.Namespace) -> object:
    """``--accelerator`` with ``--technology`` applied (a spec object), or the spec name as given."""
    tech = getattr(args, "technology", None)
    accel = getattr(args, "accelerator", "simba_like")
    objective = getattr(args, "objective", None)
    uneven = getattr(args, "uneven", False)
    if not tech and not objective and not uneven:
        return accel
    import dataclasses

    from approxtvm.targets.vacc.hardware import AcceleratorSpec, MapperOptions
    from approxtvm.targets.vacc.technology import apply_technology

    spec = AcceleratorSpec.load(accel)
    if objective:
        spec = dataclasses.replace(spec, mapping_objective=objective)
    if uneven:
        spec = dataclasses.replace(spec, mapper=MapperOptions(uneven=True))
    return apply_technology(spec, tech) if tech else spec


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile and save a model."""
    model = _compile(args)
    out = model.save(args.output)
    _console().print(f"compiled {len(model.programs)} offloaded layer(s) → {out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print layer schedules (text or JSON)."""
    model = _compile(args)
    scheds = model.schedules
    if args.layer:
        if args.layer not in scheds:
            raise ApproxTvmError(
                f"no offloaded layer {args.layer!r}",
                expected=", ".join(scheds),
                found=args.layer,
                fix="pick one of the listed layer ids",
            )
        scheds = {args.layer: scheds[args.layer]}
    if args.json:
        from approxtvm.cli_reports import inspect_doc

        print(json.dumps(inspect_doc(args.model, model, scheds), indent=1))
    else:
        from approxtvm.cli_reports import layer_estimates, print_coverage

        est = layer_estimates(model)
        for s in scheds.values():
            print(s.to_text())
            e = est.get(s.layer_id)
            if e is not None:  # energy beside latency: an energy-optimal nest may idle the array
                print(
                    f"  estimate per batch: {e['total_pj'] / 1e6:.3f} µJ ({e['pj_per_mac']:.3f} pJ/MAC),"
                    f" {e['latency_cycles']:,} cycles, utilisation {100 * e['utilisation']:.1f} %"
                )
            print()
        print_coverage(_console(), model.energy_per_batch())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run on a dataset: accuracy and energy table."""
    from approxtvm.explore.evaluate import evaluate, print_evaluation
    from approxtvm.models import check_compatible, load_dataset

    model = _compile(args)
    data = load_dataset(args.data)
    if args.limit:
        data = data.take(args.limit)
    check_compatible(data, (None, *model.input_shape))
    ev = evaluate(model, data)
    if args.json:
        from approxtvm.cli_reports import run_doc

        print(json.dumps(run_doc(args.model, model, args.data, ev), indent=1))
        return 0
    from approxtvm.cli_reports import print_coverage

    print_evaluation(_console(), ev, title=f"{args.model} on {data.name}")
    print_coverage(_console(), model.energy_per_batch())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Uniform-multiplier sweep: accuracy vs compute energy, table, JSON and plot."""
    from approxtvm.explore.multiplier_sweep import (
        DEFAULT_SWEEP,
        NAMED_SWEEPS,
        multiplier_sweep,
        plot_sweep,
        print_sweep,
        save_sweep,
    )
    from approxtvm.models import check_compatible, load_dataset

    proto = _load_model_arg(args.model)
    data = load_dataset(args.data)
    if args.limit:
        data = data.take(args.limit)
    check_compatible(data, proto)
    if args.multipliers in NAMED_SWEEPS:
        mults = NAMED_SWEEPS[args.multipliers]
    else:
        mults = tuple(m.strip() for m in args.multipliers.split(";")) if args.multipliers else DEFAULT_SWEEP
    console = _console()
    with console.status("sweeping") as status:
        rows = multiplier_sweep(
            proto,
            data,
            _calibration(args.model, proto, args.calibration),
            mults,
            progress=lambda i, n, m: status.update(f"[{i + 1}/{n}] {m}"),
        )
    print_sweep(console, rows, f"{args.model}: uniform multipliers on {data.name}")
    out = Path(args.out)
    save_sweep(rows, out / "multiplier_sweep.json")
    console.print(f"plot: {plot_sweep(rows, out / 'multiplier_sweep.png', args.model)}")
    return 0


def _default_sram_volts(accel: object, default: tuple[float, ...]) -> tuple[float, ...]:
    """The default sweep, or a technology's own table points (its measured range) when one is set."""
    if isinstance(accel, str):
        return default
    return tuple(v for v, _ in accel.sram.ber_table)  # type: ignore[attr-defined]


def cmd_faults(args: argparse.Namespace) -> int:
    """NoC-swing or SRAM-voltage sweep on a shipped model: accuracy vs communication/memory energy."""
    from approxtvm.explore import fault_sweeps as fs
    from approxtvm.models import load_dataset

    data = load_dataset(args.data) if args.data else None
    if args.limit:
        data = (data or load_dataset("digits:test")).take(args.limit)
    seeds = tuple(range(args.seeds))
    console = _console()
    with console.status("sweeping") as status:

        def progress(*a: object) -> None:
            status.update("sweeping " + " ".join(map(str, a)))

        accel = _accelerator(args)
        if args.knob == "links":
            if accel == "simba_like":  # the package knob needs a package: Simba's 36 chiplets
                accel = "simba_package_6x6"
            fractions = tuple(args.volts) if args.volts else fs.DEFAULT_LINK_FRACTIONS
            rows = fs.link_swing_sweep(
                args.model,
                fractions,
                data,
                protected_msbs=args.msbs[0],
                seeds=seeds,
                progress=progress,
                accelerator=accel,
            )
            title = f"{args.model}: on-chip and package link swing"
        elif args.knob == "noc":
            swings = tuple(args.volts) if args.volts else fs.DEFAULT_SWINGS_V
            rows = fs.noc_swing_sweep(
                args.model,
                swings,
                data,
                protected_msbs=tuple(args.msbs),
                seeds=seeds,
                progress=progress,
                accelerator=accel,
            )
            title = f"{args.model}: NoC link swing"
        else:
            volts = tuple(args.volts) if args.volts else _default_sram_volts(accel, fs.DEFAULT_SRAM_V)
            rows = fs.sram_voltage_sweep(
                args.model, volts, tuple(args.buffers), data, seeds=seeds, progress=progress, accelerator=accel
            )
            title = f"{args.model}: SRAM supply of {' + '.join(args.buffers)}"
    fs.print_sweep(console, rows, title)
    out = Path(args.out)
    fs.save_sweep(rows, out / f"{args.knob}_sweep.json")
    console.print(f"plot: {fs.plot_sweep(rows, out / f'{args.knob}_sweep.png', title)}")
    return 0


def cmd_energy(args: argparse.Namespace) -> int:
    """Energy of one inference batch per layer and component (data-independent), with a chart."""
    from approxtvm.explore.energy_plots import energy_table, plot_energy_by_layer

    model = _compile(args)
    report = model.energy_per_batch()
    if args.json:
        from approxtvm.cli_reports import energy_doc

        print(json.dumps(energy_doc(args.model, model), indent=1))
        if args.png:
            plot_energy_by_layer(report, Path(args.png), args.model)
        return 0
    from approxtvm.cli_reports import print_coverage
    from approxtvm.targets.vacc.hierarchy import Hierarchy

    energy_table(
        _console(),
        report,
        f"{args.model} on {model.spec.name} (batch {model.batch_size})",
        model.spec.pe_array.num_macs * Hierarchy.of(model.spec).chiplets,
    )
    print_coverage(_console(), report)
    if args.png:
        _console().print(f"chart: {plot_energy_by_layer(report, Path(args.png), args.model)}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    """Prune/cluster/compress a configuration and report footprint, traffic, energy, accuracy."""
    from approxtvm.compiler.weight_transforms import WeightTransforms
    from approxtvm.explore.compression_report import compression_study, write_compression_report
    from approxtvm.models import check_compatible, load_dataset
    from approxtvm.targets.vacc.config import ApproxPolicy

    proto = _load_model_arg(args.model)
    data = load_dataset(args.data)
    if args.limit:
        data = data.take(args.limit)
    check_compatible(data, proto)
    policy = ApproxPolicy.from_spec(args.policy) if args.policy else ApproxPolicy.exact()
    wt = WeightTransforms(sparsity=args.sparsity, prune_scope=args.prune_scope, cluster_bits=args.cluster_bits)
    with _console().status("compiling and running three variants"):
        summary = compression_study(
            proto, policy, wt, data, _calibration(args.model, proto, args.calibration), mode=args.mode
        )
    path = write_compression_report(summary, Path(args.out), f"{args.model}")
    d = summary.to_dict()
    _console().print(
        f"footprint {d['compressed_weight_bytes']:,} B / {d['dense_weight_bytes']:,} B dense "
        f"(ratio {summary.footprint_ratio:.3f}); energy/inference "
        f"{d['pruned_clustered']['energy_per_inference_pj'] / 1e3:.1f} → "
        f"{d['compressed']['energy_per_inference_pj'] / 1e3:.1f} nJ; report {path}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the shipped model and data."""
    from approxtvm.explore.demo import run_demo

    run_demo(Path(args.out), console=_console(), limit=args.limit)
    return 0


def cmd_multipliers(args: argparse.Namespace) -> int:
    """List, show or import multipliers."""
    from approxtvm.runtime.multipliers import cli as mcli

    if args.action == "list":
        mcli.print_list(_console(), sort_by=args.sort, signed=True if args.signed else None)
    elif args.action == "show":
        if not args.name:
            raise ApproxTvmError(
                "`multipliers show` needs a multiplier",
                expected="a name or spec",
                found="nothing",
                fix="e.g. approxtvm multipliers show bam:h=4,v=0",
            )
        mcli.print_show(_console(), args.name, Path(args.png) if args.png else None)
    else:
        if not args.name:
            raise ApproxTvmError(
                "`multipliers import` needs a file",
                expected="a .bin table or a .c model",
                found="nothing",
                fix="e.g. approxtvm multipliers import mul8u_2HH.bin",
            )
        mcli.print_import(_console(), args.name, transposed=args.transposed)
    return 0


def _add_compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="shipped model name (digits_cnn, resnet18, ...), ONNX path, or saved model dir")
    p.add_argument(
        "--policy", help="policy YAML file, or a multiplier name for every layer (default: exact everywhere)"
    )
    p.add_argument("--accelerator", default="simba_like", help="accelerator spec name or YAML path")
    p.add_argument(
        "--objective",
        choices=("energy", "edp", "latency"),
        help="what the mapper minimises per layer (default: the spec's mapping_objective, energy)",
    )
    p.add_argument(
        "--uneven",
        action="store_true",
        help="let each tensor's buffers cut the loop nest at their own place (the spec's mapper: {uneven: true})",
    )
    p.add_argument("--technology", help="fault-model preset (approxtvm spec technologies) or a technology YAML path")
    p.add_argument("--calibration", help="dataset for quantizing a float model (digits, .npz, image folder)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch to compile for (default: the batch fixed in the model, else 1)",
    )
    p.add_argument("--signed", action="store_true", help="int8 quantization (mul8s_* multipliers)")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    p.add_argument(
        "--host",
        default="onnxruntime",
        choices=["onnxruntime", "tvm"],
        help="engine of the layers that are not offloaded (default onnxruntime: its speed and arithmetic)",
    )


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Experiments 2-4's conclusions re-derived with every fault and energy assumption moved."""
    from approxtvm.explore.sensitivity import save_report, sensitivity_report
    from approxtvm.models import load_dataset

    data = load_dataset(args.data) if args.data else None
    if args.limit:
        data = (data or load_dataset("digits:test")).take(args.limit)
    console = _console()
    with console.status("sensitivity") as status:
        report = sensitivity_report(
            args.model,
            data,
            loss_limit_pp=args.loss_limit_pp,
            accelerator=_accelerator(args),
            progress=lambda msg: status.update(msg),
        )
    path = save_report(report, args.out)
    console.print(report.to_markdown())
    console.print(f"report: {path}")
    if args.search_generations > 0:  # experiment 4: the search itself, re-run per scenario
        from approxtvm.explore.sensitivity_search import SearchBudget, run_search_report

        budget = SearchBudget(args.search_pop, args.search_generations, limit=args.limit or SearchBudget.limit)
        with console.status("search sensitivity") as status:
            search = run_search_report(
                args.model,
                args.out,
                data=args.data or "digits:test",
                accelerator=_accelerator(args),
                budget=budget,
                progress=lambda msg: status.update(msg),
            )
        console.print(search.to_markdown())
        console.print(f"report: {Path(args.out) / 'search.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    ap = argparse.ArgumentParser(prog="approxtvm", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="compile a model and save it to a directory")
    _add_compile_args(p)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("inspect", help="print the schedule of each offloaded layer")
    _add_compile_args(p)
    p.add_argument("--layer")
    p.add_argument("--json", action="store_true", help="one JSON document (fields: approxtvm.cli_reports)")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("run", help="run on a dataset: accuracy and energy")
    _add_compile_args(p)
    p.add_argument("--data", required=True, help="digits[:test|train], a .npz with x,y, or an image folder")
    p.add_argument("--limit", type=int, default=0, help="first N samples only")
    p.add_argument("--json", action="store_true", help="one JSON document (fields: approxtvm.cli_reports)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sweep", help="uniform-multiplier sweep: accuracy vs compute energy")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--calibration")
    p.add_argument(
        "--multipliers",
        help="';'-separated specs, or `evoapprox` (default: EvoApproxLib's unsigned power–MAE Pareto set "
        "plus exact, 22 circuits) or `families` (14 built-in family members)",
    )
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--out", default="reports/sweep")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("faults", help="NoC swing or SRAM voltage sweep: accuracy vs energy, with faults")
    p.add_argument("knob", choices=["noc", "sram", "links"], help="links: NoC and package swing on a package spec")
    p.add_argument("model", help="shipped model name (digits_cnn, digits_resnet)")
    p.add_argument("--data", help="dataset (default: the digits test split)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--volts", type=float, nargs="+", help="swings / supply voltages in V (links: fractions of nominal)")
    p.add_argument("--msbs", type=int, nargs="+", default=[0], help="(noc) protected-MSB series")
    p.add_argument("--buffers", nargs="+", default=["input_buffer", "weight_buffer"], help="(sram) buffers")
    p.add_argument("--seeds", type=int, default=1, help="fault seeds averaged per point")
    p.add_argument("--accelerator", default="simba_like", help="accelerator spec name or YAML path")
    p.add_argument("--technology", help="fault-model preset or technology YAML (see `approxtvm spec technologies`)")
    p.add_argument("--out", default="reports/faults")
    p.set_defaults(func=cmd_faults)
    p = sub.add_parser("energy", help="energy per layer and component of one batch, stacked-bar PNG")
    _add_compile_args(p)
    p.add_argument("--png", help="write the stacked-bar chart here")
    p.add_argument("--json", action="store_true", help="one JSON document (fields: approxtvm.cli_reports)")
    p.set_defaults(func=cmd_energy)
    p = sub.add_parser("compress", help="prune, cluster and compress weights; report before/after")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--policy")
    p.add_argument("--calibration")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--prune-scope", default="global", choices=["global", "layer"])
    p.add_argument("--cluster-bits", type=int, default=4)
    p.add_argument(
        "--mode", default="auto", help="auto or an encoding: dense, bitmask, rle, codebook, codebook_bitmask"
    )
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--out", default="reports/compression")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("demo", help="compile the shipped model exact and approximate, run, report")
    p.add_argument("--out", default="reports/demo")
    p.add_argument("--limit", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    from approxtvm.explore.cli_explore import add_explore_parsers

    add_explore_parsers(sub)  # explore, experiments
    from approxtvm.models.finetune.cli import add_parser as add_finetune_parser

    add_finetune_parser(sub)  # finetune (imports torch only when run)
    from approxtvm.targets.vacc.spec_cli import add_parser as add_spec_parser

    add_spec_parser(sub)  # spec list|show|technologies
    p = sub.add_parser("sensitivity", help="do the knob conclusions hold with BER ±1 decade and energies ±25 %?")
    p.add_argument("model", nargs="?", default="digits_cnn", help="shipped model name")
    p.add_argument("--data", help="dataset (default: the digits test split)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--loss-limit-pp", type=float, default=1.0)
    p.add_argument("--accelerator", default="simba_like")
    p.add_argument("--technology", help="fault-model preset or technology YAML")
    p.add_argument("--out", default="reports/sensitivity")
    p.add_argument("--search-pop", type=int, default=8, help="experiment 4 re-search: NSGA-II population")
    p.add_argument(
        "--search-generations", type=int, default=4, help="experiment 4 re-search: generations per scenario (0: skip)"
    )
    p.set_defaults(func=cmd_sensitivity)
    p = sub.add_parser("multipliers", help="list, show or import multipliers")
    p.add_argument("action", choices=["list", "show", "import"])
    p.add_argument("name", nargs="?")
    p.add_argument("--sort", default="power", choices=["power", "mae", "wce", "name"])
    p.add_argument("--signed", action="store_true")
    p.add_argument("--png", help="(show) write the error heat-map here")
    p.add_argument("--transposed", action="store_true", help="(import) table indexed [weight][activation]")
    p.set_defaults(func=cmd_multipliers)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors of the project print as a clear message and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApproxTvmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
