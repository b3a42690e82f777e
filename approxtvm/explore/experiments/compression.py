"""Experiment 5: weight compression (pruning, clustering, per-tile encoding) on the knee point."""

from __future__ import annotations

from typing import Any

from approxtvm.explore.evaluator import EvalContext
from approxtvm.explore.experiments.calibration import calibration_inputs
from approxtvm.explore.experiments.settings import ExperimentSettings
from approxtvm.explore.nsga import Point


def knee_compression(s: ExperimentSettings, knee: Point, notes: list[str]) -> dict[str, Any] | None:
    """Experiment 5's summary (``CompressionSummary.to_dict()``), or ``None`` with a note when skipped."""
    try:
        from approxtvm.compiler.weight_transforms import WeightTransforms
        from approxtvm.explore.compression_report import compression_study
    except ImportError as exc:
        notes.append(f"Experiment 5 skipped: weight compression is not available in this build ({exc}).")
        return None
    from approxtvm.errors import ApproxTvmError
    from approxtvm.explore.evaluator import load_context_data, load_model_proto

    data = load_context_data(EvalContext(s.pareto_model, s.data, s.limit))
    proto = load_model_proto(s.pareto_model)
    calib = calibration_inputs(s.pareto_model, s.calibration, proto)
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


__all__ = ["knee_compression"]
