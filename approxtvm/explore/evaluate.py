"""Evaluate a compiled model on a dataset: accuracy, agreement and energy per inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from approxtvm.compiler.model import CompiledModel, RunResult
from approxtvm.models.datasets import Dataset
from approxtvm.runtime.energy import EnergyReport


@dataclass(frozen=True)
class Evaluation:
    """Result of running a model on a dataset.

    Attributes
    ----------
    samples
        Number of samples run.
    top1
        Top-1 accuracy against the labels (``None`` without labels).
    predictions
        Top-1 class per sample.
    energy
        Energy of the whole run.
    energy_per_inference_pj
        Energy per sample.
    result
        The raw run result.
    """

    samples: int
    top1: float | None
    predictions: np.ndarray
    energy: EnergyReport
    energy_per_inference_pj: float
    result: RunResult

    @property
    def slots(self) -> int:
        """Samples the accelerator executed: the real ones plus the padding of the last batch.

        Divide energies by this (not by :attr:`samples`) to get energy per inference.
        """
        c = self.result.counters
        return int(c.get("batches", 1)) * int(c.get("batch_size", 1))

    def by_component_per_inference_pj(self) -> dict[str, float]:
        """Energy of one inference per component (pJ)."""
        return {k: v / self.slots for k, v in self.energy.by_component().items()}

    def agreement(self, other: Evaluation) -> float:
        """Fraction of samples with the same top-1 as ``other`` (fidelity without labels)."""
        return float(np.mean(self.predictions == other.predictions))


def evaluate(model: CompiledModel, data: Dataset, seed: int = 0) -> Evaluation:
    """Run ``model`` on ``data`` and score it."""
    res = model.run(data.x, seed=seed)
    logits = res.outputs[model.output_names[0]]
    pred = logits.reshape(len(logits), -1).argmax(axis=1)
    top1 = None if data.y is None else float(np.mean(pred == data.y))
    return Evaluation(len(data), top1, pred, res.energy, res.energy_per_inference_pj, res)


def print_evaluation(console: Any, ev: Evaluation, title: str) -> None:
    """A rich table: accuracy, energy per inference and its split per component."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("samples", str(ev.samples))
    t.add_row("top-1", "n/a (no labels)" if ev.top1 is None else f"{100 * ev.top1:.2f} %")
    t.add_row("energy / inference", f"{ev.energy_per_inference_pj / 1e6:.4f} µJ")
    t.add_row("pJ / MAC", f"{ev.energy.pj_per_mac:.3f}")
    for comp, pj in ev.energy.by_component().items():
        t.add_row(f"  {comp}", f"{pj / ev.slots / 1e6:.4f} µJ")
    console.print(t)
