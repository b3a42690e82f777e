"""A TVM-free stand-in for the evaluator: records computed from the configuration alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence

import numpy as np

from approxtvm.explore.evaluator import EvalTask
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import EvalRecord

LAYERS = ("conv1", "conv2", "conv3", "fc")
SAMPLES = 50
#: Error and energy saving of each multiplier of the fake library.
COST = {"exact": (0.0, 0.0), "m1": (0.02, 0.05), "m2": (0.1, 0.12), "m3": (0.4, 0.2)}


def fake_record(task: EvalTask) -> EvalRecord:
    """Deterministic accuracy/energy from the configuration."""
    c = Configuration.from_dict(json.loads(task.config_json))
    err = sum(COST[c.multiplier_for(lid)][0] * (i + 1) / 4 for i, lid in enumerate(LAYERS))
    save = sum(COST[c.multiplier_for(lid)][1] for lid in LAYERS) / 4
    if c.noc_swing_v is not None:
        save += 0.05 * (0.9 - c.noc_swing_v)
        err += max(0.0, 0.6 - c.noc_swing_v) * (1 - c.noc_protected_msbs / 8)
    for _, v in c.sram_v:
        save += 0.04 * (0.9 - v)
        err += max(0.0, 0.7 - v)
    rng = np.random.default_rng(int(hashlib.sha256(task.config_json.encode()).hexdigest()[:8], 16))
    truth = np.arange(SAMPLES) % 10
    pred = np.where(rng.random(SAMPLES) < min(1.0, err), (truth + 1) % 10, truth)
    detail = {
        "by_component_pj": {"mac": 1000.0 * (1 - save)},
        "by_layer_pj": {},
        "layer_ids": list(LAYERS),
        "macs_per_inference": 1.0,
    }
    return EvalRecord(
        task.key,
        task.context_fingerprint,
        task.config_json,
        SAMPLES,
        int(np.sum(pred == truth)),
        1000.0 * (1 - save),
        pred.astype("<i2").tobytes(),
        json.dumps(detail),
        0.0,
        "fake",
    )


class FakeExecutor:
    """Yields records in reverse submission order (completion order must not matter)."""

    n_workers = 2
    description = "fake"

    def __init__(self) -> None:
        self.submitted = 0

    def run(self, tasks: Sequence[EvalTask]) -> Iterator[tuple[int, EvalRecord]]:
        self.submitted += len(tasks)
        for i in reversed(range(len(tasks))):
            yield i, fake_record(tasks[i])

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
