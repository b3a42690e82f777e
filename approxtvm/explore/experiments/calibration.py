"""Calibration inputs of a model the experiments compile outside the evaluator (same rules as its workers)."""

from __future__ import annotations

from typing import Any

import numpy as np


def calibration_inputs(model: str, calibration: str | None, proto: Any) -> np.ndarray:
    """The study's calibration set, the digits training split for digits models, else random inputs.

    Parameters
    ----------
    model
        Model name or ONNX path.
    calibration
        Dataset spec of the calibration images (``None``: the defaults above).
    proto
        The loaded model (random inputs take its input shape).
    """
    from approxtvm.explore.evaluator import CALIBRATION_SAMPLES
    from approxtvm.models import calibration_data, load_dataset

    if calibration:
        return load_dataset(calibration).x[:CALIBRATION_SAMPLES]
    if model.startswith("digits"):
        return load_dataset("digits:train").x[:CALIBRATION_SAMPLES]
    return calibration_data(proto, n=8)


__all__ = ["calibration_inputs"]
