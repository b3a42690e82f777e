"""Train the shipped digits models and write them as ONNX files plus ``models.json``.

Needs the optional ``train`` extra (``pip install torch==2.13.0``); the runtime package never
imports torch.

What it does, deterministically (seeded torch, numpy and data order, one CPU thread):

1. Loads scikit-learn's 8×8 digits with the package's own split and normalisation
   (:func:`approxtvm.models.datasets.load_digits`: seed 0 permutation, 1437 train / 360 test,
   pixel / 16 as float32, N×1×8×8).
2. Trains ``digits_cnn`` and ``digits_resnet`` (conv + BatchNorm + ReLU) with AdamW and a cosine
   learning-rate schedule.
3. Folds every BatchNorm into the preceding conv (``w' = w·γ/σ``, ``b' = (b − μ)·γ/σ + β``) and
   writes the graph with the package's own topology builders
   (:func:`approxtvm.models.zoo.digits_cnn_graph`, :func:`~approxtvm.models.zoo.digits_resnet_graph`):
   opset 17, IR version 8, input ``input`` (N×1×8×8, dynamic N), output ``logits``, torchvision-like
   node names, only Conv/Relu/Add/GlobalAveragePool/Flatten/Gemm.
4. Checks onnxruntime against torch (eval mode) on the test set, measures the float test
   accuracy with onnxruntime and records everything in ``approxtvm/models/models.json``.

Usage: ``.venv/bin/python scripts/train_models.py [--out-dir approxtvm/models] [--epochs 60]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from approxtvm.models import datasets, zoo
from approxtvm.models._graph import IR_VERSION, OPSET, from_arrays

SEED = 0


# ---------------------------------------------------------------------------------------------
# Torch mirrors of the shipped topologies (with BN; folded at export)
# ---------------------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout))


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn(1, 16, 3, 1, 1)
        self.conv2 = conv_bn(16, 32, 3, 2, 1)
        self.conv3 = conv_bn(32, 32, 3, 1, 1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))

    def folded(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in ("conv1", "conv2", "conv3"):
            out.update(fold(getattr(self, name), name))
        out.update(linear(self.fc, "fc"))
        return out


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, 1)
        self.conv2 = conv_bn(cout, cout, 3, 1, 1)
        self.downsample = conv_bn(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(torch.relu(self.conv1(x)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + shortcut)

    def folded(self, prefix: str) -> dict[str, np.ndarray]:
        out = {**fold(self.conv1, f"{prefix}.conv1"), **fold(self.conv2, f"{prefix}.conv2")}
        if self.downsample is not None:
            out.update(fold(self.downsample, f"{prefix}.downsample.0"))
        return out


class DigitsResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn(1, 16, 3, 1, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32, 1))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1))

    def folded(self) -> dict[str, np.ndarray]:
        out = fold(self.conv1, "conv1")
        for stage in ("layer1", "layer2"):
            for i, block in enumerate(getattr(self, stage)):
                assert isinstance(block, BasicBlock)
                out.update(block.folded(f"{stage}.{i}"))
        out.update(linear(self.fc, "fc"))
        return out


def fold(seq: nn.Module, name: str) -> dict[str, np.ndarray]:
    """Fold Conv2d(bias=False) + BatchNorm2d (eval statistics) into one conv with bias."""
    assert isinstance(seq, nn.Sequential)
    conv, bn = seq[0], seq[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    w = conv.weight.detach().double()
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w_f = w * scale[:, None, None, None]
    b_f = bn.bias.detach().double() - bn.running_mean.double() * scale
    return {
        f"{name}.weight": w_f.float().numpy(),
        f"{name}.bias": b_f.float().numpy(),
    }


def linear(fc: nn.Linear, name: str) -> dict[str, np.ndarray]:
    return {
        f"{name}.weight": fc.weight.detach().numpy().copy(),
        f"{name}.bias": fc.bias.detach().numpy().copy(),
    }


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, settings: dict[str, Any], seed: int) -> None:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epochs, batch = int(settings["epochs"]), int(settings["batch_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps = epochs * ((len(xt) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings["lr"], total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    shift = int(settings["augment_shift_px"])
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            xb = xt[idx]
            if shift:
                # random integer translation by up to `shift` pixels (zero fill), one per batch
                dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                if dy > 0:
                    xb[:, :, :dy, :] = 0
                elif dy < 0:
                    xb[:, :, dy:, :] = 0
                if dx > 0:
                    xb[:, :, :, :dx] = 0
                elif dx < 0:
                    xb[:, :, :, dx:] = 0
            opt.zero_grad()
            loss = loss_fn(model(xb), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["logits"], {"input": x})[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(__file__).resolve().parents[1] / "approxtvm" / "models"
    ap.add_argument("--out-dir", type=Path, default=default_out)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    np.random.seed(SEED)

    train_set, test_set = datasets.load_digits("train"), datasets.load_digits("test")
    assert train_set.y is not None and test_set.y is not None
    settings: dict[str, Any] = {
        "optimizer": "AdamW",
        "lr": 5e-3,
        "lr_schedule": "OneCycle",
        "weight_decay": 1e-4,
        "epochs": args.epochs,
        "batch_size": 64,
        "augment_shift_px": 1,
        "batchnorm": "trained with BN, folded into conv weights before export",
    }
    specs = [
        ("digits_cnn", DigitsCNN, zoo.digits_cnn_graph, 1),
        ("digits_resnet", DigitsResNet, zoo.digits_resnet_graph, 2),
    ]
    entries: dict[str, dict[str, object]] = {}
    for name, cls, graph_fn, seed in specs:
        torch.manual_seed(seed)
        net = cls()
        train(net, train_set.x, train_set.y, settings, seed)
        with torch.no_grad():
            torch_logits = net(torch.from_numpy(test_set.x)).numpy()
        model = graph_fn(from_arrays(net.folded()))
        path = args.out_dir / f"{name}.onnx"
        onnx.save(model, str(path))
        logits = ort_logits(path, test_set.x)
        diff = float(np.max(np.abs(logits - torch_logits)))
        assert diff < 1e-3, f"{name}: onnxruntime vs torch max |diff| {diff}"
        correct = int(np.sum(np.argmax(logits, axis=1) == test_set.y))
        acc = correct / len(test_set)
        train_correct = int(np.sum(np.argmax(ort_logits(path, train_set.x), axis=1) == train_set.y))
        print(
            f"{name}: test {correct}/{len(test_set)} = {acc:.4f}, train {train_correct}/{len(train_set)}, "
            f"ort-vs-torch max diff {diff:.2e}, {path.stat().st_size} B"
        )
        entries[name] = {
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "input_name": "input",
            "input_shape": ["N", 1, 8, 8],
            "input_normalisation": "pixel / 16, float32 in [0, 1]",
            "output_name": "logits",
            "output_shape": ["N", 10],
            "dataset": "digits",
            "test_accuracy": round(acc, 6),
            "test_correct": correct,
            "test_total": len(test_set),
            "train_accuracy": round(train_correct / len(train_set), 6),
            "accuracy_measured_with": f"onnxruntime {ort.__version__} CPUExecutionProvider, float32",
            "parameters": int(sum(int(np.prod(t.dims)) for t in model.graph.initializer)),
            "torch_seed": seed,
            "training": settings,
        }
    manifest = {
        "schema": 1,
        "generated_by": "scripts/train_models.py",
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "environment": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
        "datasets": {
            "digits": {
                "source": "sklearn.datasets.load_digits (8x8, 1797 images, 10 classes)",
                "split": {
                    "method": "numpy.random.default_rng(seed).permutation(1797); first 1437 train, "
                    "last 360 test; each split in ascending index order",
                    "seed": datasets.DIGITS_SPLIT_SEED,
                    "train_size": datasets.DIGITS_TRAIN_SIZE,
                    "test_size": datasets.DIGITS_TEST_SIZE,
                    "test_indices_sha256": datasets.digits_split_fingerprint(),
                },
                "normalisation": "x = pixel / 16 as float32, shape (N, 1, 8, 8)",
            }
        },
        "models": entries,
    }
    (args.out_dir / "models.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
