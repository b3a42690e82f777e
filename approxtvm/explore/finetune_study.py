"""Fine-tuning study: accuracy of approximate models before and after fine-tuning, at equal energy.

For each (model, multiplier): the approximate model as ``compile_onnx`` runs it (before), the same
model fine-tuned with :func:`approxtvm.models.finetune.finetune` and compiled from the written
``model.onnx`` + ``policy.yaml`` (after), both evaluated on the accelerator. Fine-tuning changes
weights and scales, never the multiplier or the schedule, so the energy per inference is the same
(the report shows both to prove it). Every "after" row also checks the hand-over: the model compiled
on the Relax-VM host (``host="tvm"``, whose float32 QDQ arithmetic the torch forward emulates) gives
the torch model's eval forward bit for bit; the default onnxruntime host (the accuracy columns)
follows onnxruntime's fused integer requantization instead, and the row says on how many test
images its outputs differ from the torch forward and whether any top-1 changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.evaluate import evaluate
from approxtvm.models import get_model, load_dataset
from approxtvm.targets.vacc.config import ApproxPolicy

#: The study's default multipliers: the project's families and EvoApproxLib circuits that lose
#: more than 5 pp on digits_cnn with every layer approximated.
DEFAULT_MULTIPLIERS = (
    "drum:k=4",
    "bam:h=6,v=2",
    "kulkarni",
    "mitchell",
    "mul8u_FTA",
    "mul8u_12N4",
    "mul8u_JV3",
    "mul8u_L40",
)


@dataclass(frozen=True)
class StudyRow:
    """One (model, multiplier) result.

    Attributes
    ----------
    model, multiplier
        What was fine-tuned.
    exact_top1
        The quantized model with the exact multiplier.
    before_top1, after_top1
        Approximate model before / after fine-tuning, run on the accelerator.
    energy_before_pj, energy_after_pj
        Energy per inference before / after (equal: the schedule does not change).
    recovered
        ``(after − before) / (exact − before)``: share of the lost top-1 recovered (``None`` if
        nothing was lost).
    epochs, train_seconds
        Epochs run and their total wall time.
    best_epoch
        First epoch whose evaluation accuracy equals the best seen.
    bit_exact
        The fine-tuned model compiled on the Relax-VM host gives the torch eval forward exactly.
    ort_images_differing, ort_top1_changed, ort_max_abs_diff
        Default (onnxruntime) host: test images whose outputs differ from the torch eval forward,
        those among them whose top-1 class differs, and the largest output difference.
    """

    model: str
    multiplier: str
    exact_top1: float
    before_top1: float
    after_top1: float
    energy_before_pj: float
    energy_after_pj: float
    recovered: float | None
    epochs: int
    train_seconds: float
    best_epoch: int
    bit_exact: bool
    ort_images_differing: int
    ort_top1_changed: int
    ort_max_abs_diff: float


def run_study(
    models: Sequence[str],
    multipliers: Sequence[str],
    out: Path,
    *,
    epochs: int = 5,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[StudyRow]:
    """Fine-tune every (model, multiplier); write ``results.json``, ``report.md`` and ``finetune.png``."""
    import torch

    from approxtvm.models.finetune import FinetuneOptions, finetune, to_qdq

    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[StudyRow] = []
    for model in models:
        qdq = to_qdq(get_model(model), train.x[:256])
        exact = evaluate(compile_onnx(qdq, ApproxPolicy.exact(), batch_size=64), test).top1 or 0.0
        for mult in multipliers:
            policy = ApproxPolicy.uniform(mult)
            before = evaluate(compile_onnx(qdq, policy, batch_size=64), test)
            d = out / "models" / f"{model}__{mult.replace(':', '_').replace(',', '_').replace('=', '')}"
            res = finetune(
                qdq,
                train,
                policy=policy,
                options=FinetuneOptions(epochs=epochs, seed=seed),
                eval_data=test,
                out_dir=d,
                progress=False,
            )
            after = evaluate(compile_onnx(d / "model.onnx", policy=d / "policy.yaml", batch_size=64), test)
            on_vm = compile_onnx(d / "model.onnx", policy=d / "policy.yaml", batch_size=64, host="tvm").run(test.x)
            assert res.net is not None
            res.net.eval()
            with torch.no_grad():
                ref = res.net(torch.from_numpy(test.x)).numpy()
            got = on_vm.outputs[next(iter(on_vm.outputs))]
            ort = after.result.outputs[next(iter(after.result.outputs))]
            ort_rows = np.flatnonzero((ort != ref).reshape(len(ref), -1).any(axis=1))
            b, a = before.top1 or 0.0, after.top1 or 0.0
            accs = [h.eval_top1 or 0.0 for h in res.history]
            row = StudyRow(
                model=model,
                multiplier=mult,
                exact_top1=exact,
                before_top1=b,
                after_top1=a,
                energy_before_pj=before.energy_per_inference_pj,
                energy_after_pj=after.energy_per_inference_pj,
                recovered=None if exact - b <= 0 else (a - b) / (exact - b),
                epochs=len(res.history),
                train_seconds=sum(h.seconds for h in res.history),
                best_epoch=1 + int(np.argmax(accs)) if accs else 0,
                bit_exact=bool(np.array_equal(got, ref)),
                ort_images_differing=len(ort_rows),
                ort_top1_changed=int((ort[ort_rows].argmax(axis=1) != ref[ort_rows].argmax(axis=1)).sum()),
                ort_max_abs_diff=float(np.abs(ort.astype(np.float64) - ref).max()),
            )
            rows.append(row)
            log(
                f"{model} {mult}: {100 * b:.2f} → {100 * a:.2f} % (exact {100 * exact:.2f} %), "
                f"{row.train_seconds:.1f} s, bit-exact {row.bit_exact} "
                f"(onnxruntime host: {row.ort_images_differing} images differ)"
            )
    (out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot_study(out / "finetune.png", rows)
    (out / "report.md").write_text(report_markdown(rows, epochs, seed))
    return rows


def report_markdown(rows: Sequence[StudyRow], epochs: int, seed: int) -> str:
    """The study as Markdown."""
    lines = [
        "# Approximation-aware fine-tuning",
        "",
        f"Every conv/dense layer uses the multiplier; {epochs} epochs on the digits training split "
        f"(1437 images, batch 64, Adam lr 1e-3, seed {seed}), straight-through estimator. Accuracy on the "
        "digits test split (360 images), run on the accelerator (`compile_onnx(...).run`) before and "
        "after; the energy per inference is the accelerator's, equal before and after.",
        "",
        "Hand-over: the written `model.onnx` + `policy.yaml` compiled on the Relax-VM host "
        '(`host="tvm"`) must give the torch model\'s eval forward bit for bit (column *bit-exact*). '
        "The accuracy columns use the default onnxruntime host, which requantizes with onnxruntime's "
        "fused integer arithmetic: the last column "
        "counts the test images whose outputs differ there, how many of those change top-1, and the largest "
        "output difference.",
        "",
        "![accuracy before/after](finetune.png)",
        "",
        "| model | multiplier | exact top-1 | before | after | recovered | energy/inference (nJ) before = after "
        "| epochs | train time (s) | best epoch | bit-exact hand-over (tvm host) "
        "| onnxruntime host: images differing (top-1 changed), max output difference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        rec = "—" if r.recovered is None else f"{100 * r.recovered:.0f} %"
        same = "=" if r.energy_before_pj == r.energy_after_pj else "≠"
        lines.append(
            f"| {r.model} | `{r.multiplier}` | {100 * r.exact_top1:.2f} % | {100 * r.before_top1:.2f} % | "
            f"{100 * r.after_top1:.2f} % | {rec} | {r.energy_before_pj / 1e3:.3f} {same} "
            f"{r.energy_after_pj / 1e3:.3f} | {r.epochs} | {r.train_seconds:.1f} | {r.best_epoch} | "
            f"{'yes' if r.bit_exact else 'NO'} | "
            f"{r.ort_images_differing} ({r.ort_top1_changed}), {r.ort_max_abs_diff:.3g} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot_study(path: Path, rows: Sequence[StudyRow]) -> Path:
    """Accuracy vs energy per model: an arrow from before to after for every multiplier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r.model == model]
        for i, r in enumerate(sorted(mine, key=lambda r: r.energy_before_pj)):
            x = r.energy_before_pj / 1e3
            ax.annotate(
                "",
                xy=(x, 100 * r.after_top1),
                xytext=(x, 100 * r.before_top1),
                arrowprops={"arrowstyle": "->", "color": "tab:green"},
            )
            ax.scatter([x], [100 * r.before_top1], c="tab:red", s=18, zorder=3)
            ax.scatter([x], [100 * r.after_top1], c="tab:green", s=18, zorder=3)
            ax.annotate(  # alternate above/below: neighbouring multipliers often share an energy
                r.multiplier,
                (x, 100 * r.after_top1),
                fontsize=7,
                xytext=(3, 4 if i % 2 == 0 else -10),
                textcoords="offset points",
            )
        if mine:
            ax.axhline(100 * mine[0].exact_top1, color="0.5", ls="--", lw=1, label="exact multiplier")
        ax.scatter([], [], c="tab:red", s=18, label="before fine-tuning")
        ax.scatter([], [], c="tab:green", s=18, label="after")
        ax.set_title(model)
        ax.set_xlabel("energy per inference (nJ)")
        ax.set_ylabel("top-1 (%)")
        ax.set_ylim(0, 106)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_rows(path: Path) -> list[StudyRow]:
    """Rows of a ``results.json`` written by :func:`run_study`."""
    return [StudyRow(**r) for r in json.loads(Path(path).read_text())]


def main(argv: Sequence[str] | None = None) -> Any:
    """``python -m approxtvm.explore.finetune_study [--out DIR] [--epochs N] [--models ...] [--multipliers ...]``."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="reports/finetune")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["digits_cnn", "digits_resnet"])
    ap.add_argument("--multipliers", nargs="+", default=list(DEFAULT_MULTIPLIERS))
    args = ap.parse_args(argv)
    return run_study(args.models, args.multipliers, Path(args.out), epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
