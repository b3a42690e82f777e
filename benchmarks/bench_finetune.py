"""Fine-tuning speed: seconds per epoch of digits_cnn on the digits training split (1437 images).

Paths, all in one process (each after a 2-batch warm-up epoch that compiles kernels and opens
sessions): ``table`` (an arbitrary 256×256 table, ``mitchell``, forced onto the TVM table kernels),
``lowrank`` (``drum:k=4``, integer low-rank kernels), ``exact_kernels`` (exact multiplier on the
project's exact kernels) and the reference ``torch_exact`` (exact multiplier as a plain torch float64
convolution: ordinary quantization-aware training). Ratios are to the torch reference epoch.

Prints one JSON line.
"""

from __future__ import annotations

import json
import os

from approxtvm.compiler import frontend
from approxtvm.models import get_model, load_dataset
from approxtvm.models.finetune import FinetuneOptions, build_net, to_qdq
from approxtvm.models.finetune.trainer import train
from approxtvm.targets.vacc.config import ApproxPolicy

CASES = {
    "table": ("mitchell", "table"),
    "lowrank": ("drum:k=4", "lowrank"),
    "exact_kernels": ("exact", "exact"),
    "torch_exact": ("exact", "torch"),
}


def epoch_seconds(qdq: object, multiplier: str, path: str, x: object, y: object) -> float:
    """Seconds of one full training epoch (after a warm-up epoch of 2 batches)."""
    layers = frontend.layer_names(qdq).values()  # type: ignore[arg-type]
    net = build_net(qdq, ApproxPolicy.uniform(multiplier), paths=dict.fromkeys(layers, path))  # type: ignore[arg-type]
    train(net, x, y, FinetuneOptions(epochs=1, max_batches_per_epoch=2), progress=False)  # type: ignore[arg-type]
    state = train(net, x, y, FinetuneOptions(epochs=1, seed=1), progress=False)  # type: ignore[arg-type]
    return state.history[-1].seconds


def main() -> None:
    data = load_dataset("digits:train")
    qdq = to_qdq(get_model("digits_cnn"), data.x[:256])
    secs = {name: epoch_seconds(qdq, m, p, data.x, data.y) for name, (m, p) in CASES.items()}
    ref = secs["torch_exact"]
    out = {
        "bench": "finetune",
        "model": "digits_cnn",
        "images_per_epoch": len(data.x),
        "batch_size": 64,
        "threads": os.cpu_count(),
        **{f"{k}_s_per_epoch": round(v, 3) for k, v in secs.items()},
        **{f"{k}_vs_torch_exact": round(v / ref, 2) for k, v in secs.items() if k != "torch_exact"},
        "goal_s_per_epoch": 30.0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
