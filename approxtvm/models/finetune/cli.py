"""``approxtvm finetune MODEL --data D (--policy P | --multiplier M) [--epochs N] [--seed S] -o DIR``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the ``finetune`` sub-command on the CLI's sub-parsers."""
    p = sub.add_parser("finetune", help="approximation-aware fine-tuning (needs the train extra: torch)")
    p.add_argument("model", help="shipped model name (digits_cnn, ...), float or QDQ ONNX path")
    p.add_argument("--data", required=True, help="labelled training data: digits[:train], a .npz with x,y, a folder")
    p.add_argument("--eval-data", help="labelled evaluation data (default: digits:test for digits, else --data)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--policy", help="policy YAML file")
    group.add_argument("--multiplier", help="one multiplier for every layer (mul8u_FTA, drum:k=4, ...)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--grad", default="ste", choices=["ste", "fd"], help="exact-product STE or table finite differences")
    p.add_argument("--signed", action="store_true", help="int8 quantization of a float model (mul8s_*)")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    p.add_argument("-o", "--output", required=True, help="directory for model.onnx, policy.yaml, checkpoints/")
    p.set_defaults(func=cmd_finetune)


def _data(spec: str) -> Any:
    from approxtvm.models import load_dataset

    return load_dataset("digits:train" if spec == "digits" else spec)


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune, print accuracy before/after and per epoch, write the output directory."""
    from rich.console import Console
    from rich.table import Table

    from approxtvm.compiler.frontend import QuantOptions, load_model
    from approxtvm.models import get_model, list_models
    from approxtvm.models.finetune.api import finetune
    from approxtvm.models.finetune.trainer import FinetuneOptions

    model = get_model(args.model) if args.model in list_models() else load_model(args.model)
    train = _data(args.data)
    if args.eval_data:
        ev = _data(args.eval_data)
    elif train.name.startswith("digits"):
        ev = _data("digits:test")
    else:
        ev = train
    res = finetune(
        model,
        train,
        policy=args.policy,
        multiplier=args.multiplier,
        options=FinetuneOptions(
            epochs=args.epochs, seed=args.seed, lr=args.lr, batch_size=args.batch_size, grad=args.grad
        ),
        eval_data=ev,
        out_dir=args.output,
        quantization=QuantOptions(signed=args.signed, per_channel=args.per_channel),
    )
    console = Console()
    t = Table(title=f"fine-tuning {args.model} ({args.policy or args.multiplier}), evaluated on {ev.name}")
    for col in ("epoch", "loss", "train top-1", "eval top-1", "seconds"):
        t.add_column(col, justify="right")
    t.add_row("before", "", "", _pct(res.before_top1), "")
    for h in res.history:
        t.add_row(str(h.epoch), f"{h.loss:.4f}", _pct(h.train_top1), _pct(h.eval_top1), f"{h.seconds:.2f}")
    console.print(t)
    console.print(
        f"wrote {args.output}/model.onnx and policy.yaml: approxtvm run {args.output}/model.onnx "
        f"--policy {args.output}/policy.yaml --data {ev.name}"
    )
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"
