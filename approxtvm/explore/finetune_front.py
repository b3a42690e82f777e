"""``experiments --finetune``: fine-tune the Pareto front's points and show the moved front.

Each point of an exploration's ``pareto.json`` that uses approximate multipliers is fine-tuned for
its per-layer multipliers (:func:`approxtvm.models.finetune.finetune`; NoC/SRAM faults are not
modelled in training) and re-evaluated on the accelerator with its whole configuration, faults
included. Energy does not move (same schedules); accuracy loss does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from approxtvm.compiler.driver import compile_onnx
from approxtvm.explore.evaluate import evaluate
from approxtvm.explore.genome import Configuration
from approxtvm.models import get_model, load_dataset


@dataclass(frozen=True)
class MovedPoint:
    """A Pareto point before and after fine-tuning.

    Attributes
    ----------
    label
        The configuration's label.
    energy_rel
        Energy relative to the exact model (unchanged by fine-tuning).
    loss_before, loss_after
        Top-1 loss against the exact model (fractions).
    train_seconds
        Fine-tuning wall time.
    """

    label: str
    energy_rel: float
    loss_before: float
    loss_after: float
    train_seconds: float


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items evenly spread over ``items`` (ends included)."""
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def finetune_front(
    pareto_json: Path,
    out: Path,
    *,
    model: str,
    limit: int = 0,
    epochs: int = 2,
    max_points: int = 5,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[MovedPoint], Path]:
    """Fine-tune up to ``max_points`` approximate points of a Pareto set; write ``finetune_front.png``."""
    from approxtvm.models.finetune import FinetuneOptions, finetune, to_qdq

    data = json.loads(Path(pareto_json).read_text())
    ref_top1 = float(data["reference"]["top1"])
    points = sorted((p for p in data["pareto"] if p["config"]["multipliers"]), key=lambda p: float(p["energy_rel"]))
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    test = test.take(limit) if limit else test
    qdq = to_qdq(get_model(model), train.x[:256])
    moved: list[MovedPoint] = []
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(_spread(points, max_points)):
        config = Configuration.from_dict(p["config"])
        d = out / f"point_{i}"
        res = finetune(
            qdq,
            train,
            policy=config.policy(),
            options=FinetuneOptions(epochs=epochs, seed=seed),
            eval_data=test,
            out_dir=d,
            progress=False,
        )
        ev = evaluate(compile_onnx(d / "model.onnx", policy=d / "policy.yaml", batch_size=8), test)
        mp = MovedPoint(
            p["label"],
            float(p["energy_rel"]),
            float(p["accuracy_loss"]),
            ref_top1 - (ev.top1 or 0.0),
            sum(h.seconds for h in res.history),
        )
        moved.append(mp)
        log(f"  fine-tuned {mp.label}: loss {100 * mp.loss_before:.1f} → {100 * mp.loss_after:.1f} pp")
    (out / "moved_front.json").write_text(json.dumps([asdict(m) for m in moved], indent=1))
    png = plot_moved_front(out / "finetune_front.png", data["pareto"], moved)
    return moved, png


def plot_moved_front(path: Path, front: Sequence[dict[str, Any]], moved: Sequence[MovedPoint]) -> Path:
    """The original front (steps) and the fine-tuned points, an arrow per moved point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = sorted(front, key=lambda p: float(p["energy_rel"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xs, ys = [float(p["energy_rel"]) for p in fs], [100 * float(p["accuracy_loss"]) for p in fs]
    ax.step(xs, ys, where="post", c="tab:blue")
    ax.scatter(xs, ys, s=24, c="tab:blue", label=f"Pareto set ({len(fs)})")
    for m in moved:
        ax.annotate(
            "",
            xy=(m.energy_rel, 100 * m.loss_after),
            xytext=(m.energy_rel, 100 * m.loss_before),
            arrowprops={"arrowstyle": "->", "color": "tab:green"},
        )
    if moved:
        mv = sorted(moved, key=lambda m: m.energy_rel)
        ax.step([m.energy_rel for m in mv], [100 * m.loss_after for m in mv], where="post", c="tab:green", ls="--")
        ax.scatter(
            [m.energy_rel for m in mv], [100 * m.loss_after for m in mv], s=24, c="tab:green", label="fine-tuned"
        )
    ax.set_xlabel("energy per inference / exact")
    ax.set_ylabel("top-1 loss (pp)")
    ax.legend(fontsize=8)
    ax.set_title("Pareto set before and after approximation-aware fine-tuning")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_section(moved: Sequence[MovedPoint], png: Path, epochs: int) -> list[str]:
    """Report section: the plot and a table of the moved points."""
    lines = [
        "",
        "## 6. Fine-tuning the Pareto set",
        "",
        f"Each approximate point fine-tuned for {epochs} epoch(s) on the digits training split "
        "(`approxtvm.models.finetune`, bit-exact emulation of its multipliers; NoC/SRAM faults not "
        "modelled in training) and re-run on the accelerator with its whole configuration.",
        "",
        f"![moved front]({png.parent.name}/{png.name})",
        "",
        "| configuration | energy / exact | loss before (pp) | loss after (pp) | train time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in moved:
        lines.append(
            f"| {m.label} | {m.energy_rel:.3f} | {100 * m.loss_before:.2f} | {100 * m.loss_after:.2f} | "
            f"{m.train_seconds:.1f} |"
        )
    return [*lines, ""]
