"""The training loop: Adam on weights and biases, relative steps on scales, checkpoints, progress.

Deterministic: the batch order of epoch ``e`` comes from ``numpy.random.default_rng((seed, e))``
and torch's generator is seeded, so the same seed gives the same weights; a run resumed from the
checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from approxtvm.errors import TrainingError
from approxtvm.models.finetune._torch import require_torch
from approxtvm.models.finetune.qnet import QuantizedNet

torch = require_torch()
F = torch.nn.functional

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune.

    Attributes
    ----------
    epochs
        Passes over the training data.
    batch_size
        Samples per optimizer step.
    lr
        Adam learning rate of weights and biases.
    scale_lr_rel
        Adam learning rate of each scale, relative to its initial value (a step changes a scale by
        about this fraction).
    seed
        Seed of batch order and of torch's generator.
    grad
        ``ste`` (exact-product gradient) or ``fd`` (the table's finite differences).
    max_batches_per_epoch
        Stop each epoch after this many batches (``0``: all; for quick tests).
    train_scales
        Whether scales train at all.
    torch_threads
        torch intra-op threads during training (``0``: leave torch's setting). The float layers
        of the backward pass are tiny; on a shared 2-core machine a second torch thread spends
        more time waiting than computing (measured 3 ms vs 8–170 ms per conv backward under load).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    scale_lr_rel: float = 1e-3
    seed: int = 0
    grad: str = "ste"
    max_batches_per_epoch: int = 0
    train_scales: bool = True
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.scale_lr_rel < 0:
            raise TrainingError(
                "invalid fine-tuning options",
                expected="epochs ≥ 0, batch_size ≥ 1, lr > 0, scale_lr_rel ≥ 0",
                found=f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}, "
                f"scale_lr_rel={self.scale_lr_rel}",
                fix="use the defaults (5 epochs, batch 64, lr 1e-3)",
            )


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did.

    Attributes
    ----------
    epoch
        1-based epoch number.
    loss
        Mean training loss.
    train_top1
        Training accuracy of the batches seen (in training mode).
    eval_top1
        Accuracy on the evaluation data after the epoch (``None`` without labels).
    seconds
        Wall time of the epoch's training steps.
    """

    epoch: int
    loss: float
    train_top1: float
    eval_top1: float | None
    seconds: float


@dataclass
class TrainState:
    """Mutable state of a run (what a checkpoint holds)."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)


def make_optimizer(net: QuantizedNet, opts: FinetuneOptions) -> Any:
    """Adam: one group for weights and biases, one group per scale with a step relative to its size."""
    groups: list[dict[str, Any]] = [{"params": [*net.weights.values(), *net.biases.values()], "lr": opts.lr}]
    for p in net.scales.values():
        if opts.train_scales and opts.scale_lr_rel > 0:
            groups.append({"params": [p], "lr": opts.scale_lr_rel * float(p.detach().abs().max())})
        else:
            p.requires_grad_(False)
    return torch.optim.Adam(groups)


def accuracy(
    net: QuantizedNet, x: np.ndarray, y: np.ndarray | None, batch: int = 512
) -> tuple[float | None, np.ndarray]:
    """Top-1 of the eval-mode forward and its logits (float32)."""
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(net(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy())
    logits = np.concatenate(outs)
    top1 = None if y is None else float(np.mean(logits.reshape(len(logits), -1).argmax(1) == y))
    return top1, logits


def save_checkpoint(path: Path, net: QuantizedNet, opt: Any, state: TrainState, opts: FinetuneOptions) -> None:
    """Write the state after an epoch (atomically: a killed run never leaves half a checkpoint)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "options": asdict(opts),
            "net": net.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": state.epoch,
            "history": [asdict(h) for h in state.history],
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(path: Path, net: QuantizedNet, opt: Any, opts: FinetuneOptions) -> TrainState:
    """Restore a run; the options that shape the trajectory must match."""
    ck = torch.load(path, weights_only=False)
    saved = ck.get("options", {})
    same = {k: v for k, v in asdict(opts).items() if k != "epochs"}
    diff = {k: (saved.get(k), v) for k, v in same.items() if saved.get(k) != v}
    if ck.get("format") != CHECKPOINT_FORMAT or diff:
        raise TrainingError(
            f"checkpoint {path} does not belong to this run",
            expected="the same options (seed, lr, batch size, gradient mode) and format",
            found=f"format {ck.get('format')}, differing options {diff}",
            fix="use another output directory, or pass the options of the interrupted run",
        )
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["optimizer"])
    return TrainState(int(ck["epoch"]), [EpochRecord(**h) for h in ck["history"]])


def train(
    net: QuantizedNet,
    x: np.ndarray,
    y: np.ndarray,
    opts: FinetuneOptions,
    *,
    eval_data: tuple[np.ndarray, np.ndarray | None] | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainState:
    """Fine-tune ``net`` in place on ``(x, y)``; resume from ``checkpoint_dir/last.pt`` if present."""
    torch.manual_seed(opts.seed)
    opt = make_optimizer(net, opts)
    state = TrainState()
    ck = None if checkpoint_dir is None else checkpoint_dir / "last.pt"
    if ck is not None and ck.is_file():
        state = load_checkpoint(ck, net, opt, opts)
    n = len(x)
    steps = -(-n // opts.batch_size)
    if opts.max_batches_per_epoch:
        steps = min(steps, opts.max_batches_per_epoch)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64))
    bar = _progress(progress)
    threads = torch.get_num_threads()
    if opts.torch_threads:
        torch.set_num_threads(opts.torch_threads)
    try:
        _epochs(net, opt, state, xt, yt, opts, steps, bar, eval_data, ck, on_epoch)
    finally:
        torch.set_num_threads(threads)
    return state


def _epochs(
    net: QuantizedNet,
    opt: Any,
    state: TrainState,
    xt: Any,
    yt: Any,
    opts: FinetuneOptions,
    steps: int,
    bar: Any,
    eval_data: tuple[np.ndarray, np.ndarray | None] | None,
    ck: Path | None,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> None:
    n = len(xt)
    with bar:
        task = bar.add_task("fine-tuning", total=(opts.epochs - state.epoch) * steps)
        while state.epoch < opts.epochs:
            e = state.epoch + 1
            order = np.random.default_rng((opts.seed, e)).permutation(n)
            net.train()
            t0 = time.perf_counter()
            losses, correct, seen = [], 0, 0
            for b in range(steps):
                idx = torch.from_numpy(order[b * opts.batch_size : (b + 1) * opts.batch_size])
                logits = net(xt[idx])
                loss = F.cross_entropy(logits.reshape(len(idx), -1), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _keep_scales_positive(net)
                losses.append(float(loss.detach()))
                correct += int((logits.detach().reshape(len(idx), -1).argmax(1) == yt[idx]).sum())
                seen += len(idx)
                bar.update(task, advance=1, description=f"epoch {e}/{opts.epochs} loss {np.mean(losses):.3f}")
            seconds = time.perf_counter() - t0
            top1 = None if eval_data is None else accuracy(net, *eval_data)[0]
            rec = EpochRecord(e, float(np.mean(losses)), correct / max(1, seen), top1, seconds)
            state.epoch = e
            state.history.append(rec)
            if ck is not None:
                ck.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(ck, net, opt, state, opts)
            if on_epoch is not None:
                on_epoch(rec)


def _keep_scales_positive(net: QuantizedNet) -> None:
    with torch.no_grad():
        for p in net.scales.values():
            p.clamp_(min=1e-8)


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
