"""Regenerate the test zoo under ``tests/data/zoo/`` (needs the optional ``train`` extra).

Usage::

    PYTHONPATH=$PWD python scripts/make_zoo.py [--out tests/data/zoo]

For every architecture of :mod:`zoo_archs` it writes, with the exporters real users run:

* ``<arch>_exported``: torch's random initialisation exported as is (legacy exporter, opset 17,
  batch 1). The legacy exporter shares equal initializers (zero biases, unit BN scales) through
  ``Identity`` nodes and names parameters ``onnx::Conv_<n>``.
* ``<arch>_trained``: the same network with trained-looking weights: BN statistics measured on
  sample images and then perturbed, non-zero biases, per-channel weight scales.

and a few variants: dynamo-exporter files (``*_dynamo``; architectures it cannot export are
recorded in the manifest with the reason), a model with a fixed batch of 4, one with a symbolic
batch, and QDQ models written by onnxruntime's ``quantize_static`` (its defaults, int8
activations and per-channel int8 weights; and uint8 activations × int8 weights).

Deterministic: every random draw is seeded, the exports are made in a fixed order, and the
manifest lists sizes and analytic MAC counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_archs import ARCHS

from tests.zoo_models import CALIBRATION_SEED, ZOO_DIR, sample_inputs

LEGACY_OPSET = 17
DYNAMO_OPSET = 18  # the dynamo exporter's default opset (what its users get)
DYNAMO_ARCHS = ("resnet", "mobilenet_v2", "shufflenet", "convnext", "vit")
FIXED_BATCH_ARCH, FIXED_BATCH = "resnet", 4
SYMBOLIC_BATCH_ARCHS = ("mobilenet_v2", "shufflenet", "vit")  # the last two compute shapes from the batch
QDQ_MODELS = {  # arch → (quantization label, activation type, weight type, per-channel)
    "resnet": ("s8s8-per-channel", "QInt8", "QInt8", True),
    "mobilenet_v2": ("s8s8-per-channel", "QInt8", "QInt8", True),
    "convnext": ("s8s8-per-channel", "QInt8", "QInt8", True),
    "densenet": ("u8s8-per-tensor", "QUInt8", "QInt8", False),
    "shufflenet": ("u8s8-per-tensor", "QUInt8", "QInt8", False),
}


def build(arch: str, weights: str, seed: int) -> nn.Module:
    """The torch module of one architecture with ``exported`` or ``trained`` weights."""
    torch.manual_seed(seed)
    cls, size = ARCHS[arch]
    model = cls()
    if weights == "trained":
        make_trained(model, size, seed)
    return model.eval()


def make_trained(model: nn.Module, size: int, seed: int) -> None:
    """Give a randomly initialised module weights that look trained.

    BN statistics are measured on sample images (so activations keep a sane range through the
    network) and then perturbed; biases become non-zero; weights get per-output-channel scales;
    LayerNorm gains and shifts move away from 1 and 0.
    """
    gen = torch.Generator().manual_seed(seed + 1000)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.mul_((0.6 + 0.8 * rand(m.weight.shape[0])).view(-1, *[1] * (m.weight.dim() - 1)))
                if m.bias is not None:
                    m.bias.copy_(0.1 * randn(*m.bias.shape))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.6 + 0.8 * rand(m.num_features))
                m.bias.copy_(0.1 * randn(m.num_features))
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass below
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.7 + 0.6 * rand(*m.weight.shape))
                m.bias.copy_(0.05 * randn(*m.bias.shape))
        for name, p in model.named_parameters():
            if name in ("cls", "pos"):
                p.copy_(0.1 * randn(*p.shape))
        model.train()
        x = torch.from_numpy(sample_inputs((3, size, size), 64, seed + 7))
        model(x)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # measured statistics, then a trained-looking drift
                m.running_mean.add_(0.05 * randn(m.num_features) * m.running_var.sqrt())
                m.running_var.mul_(0.8 + 0.4 * rand(m.num_features))
        model.eval()
        standardize_head(model, x)


def standardize_head(model: nn.Module, x: torch.Tensor) -> None:
    """Rescale the classifier so each logit has zero mean and unit spread over sample images.

    A randomly initialised network predicts the same class for almost every input (one logit's
    bias dominates); a trained one spreads its predictions. Standardising the last layer's
    outputs (as a linear probe on the features would) gives predictions that vary with the
    input, so top-1 agreement is a meaningful check.
    """
    head = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))  # before in-place ReLU
    with torch.no_grad():
        model(x)
        hook.remove()
        z = seen[0]  # Linear: (N, classes); SqueezeNet's conv head: (N, classes, H, W) before ReLU and pool
        offset = 0.0
        dims = list(range(z.dim() - 1))
        if isinstance(head, nn.Conv2d):
            # SqueezeNet: standardise the map over images and positions, shift it so the ReLU before
            # the pool passes most of it. Its pooled logits barely move with these inputs (one class
            # wins everywhere): the only zoo model whose top-1 check is weak.
            dims, offset = [0, 2, 3], 0.5
        mu, sd = z.mean(dims), z.std(dims).clamp_min(1e-6)
        shape = (-1, *[1] * (head.weight.dim() - 1))
        head.weight.div_(sd.view(shape))
        head.bias.copy_((head.bias - mu) / sd + offset)


def export_legacy(model: nn.Module, path: Path, size: int, batch: int | str) -> None:
    """``torch.onnx.export(..., dynamo=False)``, opset 17 (``batch`` a string: symbolic)."""
    b = 1 if isinstance(batch, str) else batch
    dyn = {"input": {0: batch}, "logits": {0: batch}} if isinstance(batch, str) else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(b, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=LEGACY_OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=dyn,
        )


def export_dynamo(model: nn.Module, path: Path, size: int) -> None:
    """``torch.onnx.export(..., dynamo=True)`` with weights inside the file."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            dynamo=True,
            opset_version=DYNAMO_OPSET,
            input_names=["input"],
            output_names=["logits"],
            external_data=False,
            verbose=False,
        )
        prog.save(str(path), external_data=False)
    # the exporter records source file paths and line numbers: drop them (files independent of the
    # checkout); the node name scopes and class hierarchy it writes stay, as users' files have them
    m = onnx.load(str(path))
    del m.metadata_props[:]
    for node in m.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(m, str(path))


def quantize_qdq(src: Path, dst: Path, size: int, act: str, weight: str, per_channel: bool) -> None:
    """onnxruntime ``quantize_static`` in QDQ format on calibration images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    data = sample_inputs((3, size, size), 64, CALIBRATION_SEED)

    class Reader:
        def __init__(self) -> None:
            self.it = iter({"input": data[i : i + 1]} for i in range(len(data)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=getattr(QuantType, act),
        weight_type=getattr(QuantType, weight),
        per_channel=per_channel,
    )


def count_macs(model: onnx.ModelProto, size: int) -> int:
    """MACs per image of Conv, Gemm and MatMul nodes.

    Shapes come from running the batch-1 float model in onnxruntime with every node output
    exposed (onnx shape inference leaves the legacy exporter's computed Reshape targets unknown);
    the count is analytic from them: Conv ``|out| × C_in/groups × k_h × k_w``, Gemm/MatMul
    ``|out| × K``.
    """
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for o in node.output:
            if o and o not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=o))
                known.add(o)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = sample_inputs((3, size, size), 1, 0)
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    values = dict(zip([o.name for o in sess.get_outputs()], outs, strict=True))
    shapes = {k: list(np.shape(v)) for k, v in values.items()}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w, out = shapes[node.input[1]], shapes[node.output[0]]
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += int(np.prod(out)) * (a[-2] if trans_a else a[-1])
    return total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ZOO_DIR)
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.onnx"):
        old.unlink()
    torch.set_num_threads(1)
    for logger in ("", "torch.onnx"):  # the quantizer's pre-processing advice; torchvision's absence
        logging.getLogger(logger).setLevel(logging.ERROR)
    models: list[dict[str, object]] = []
    dynamo_failures: dict[str, str] = {}

    def record(name: str, arch: str, exporter: str, weights: str, shape: list[int | str], macs: int, params: int,
               quant: str | None = None) -> None:  # fmt: skip
        path = out / f"{name}.onnx"
        m = onnx.load(str(path))
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        models.append(
            {
                "name": name,
                "arch": arch,
                "exporter": exporter,
                "opset": opset,
                "weights": weights,
                "input_name": m.graph.input[0].name,
                "output_name": m.graph.output[0].name,
                "input_shape": shape,
                "quantization": quant,
                "macs_per_image": macs,
                "params": params,
                "file_bytes": path.stat().st_size,
            }
        )
        print(f"{name:32s} {path.stat().st_size / 1024:7.1f} KiB  {macs / 1e6:6.2f} MMAC  {params} params")

    for i, (arch, (_, size)) in enumerate(ARCHS.items()):
        shape: list[int | str] = [1, 3, size, size]
        for weights in ("exported", "trained"):
            model = build(arch, weights, seed=100 + i)
            params = sum(p.numel() for p in model.parameters())
            name = f"{arch}_{weights}"
            export_legacy(model, out / f"{name}.onnx", size, 1)
            macs = count_macs(onnx.load(str(out / f"{name}.onnx")), size)
            record(name, arch, "torch-legacy", weights, shape, macs, params)
            if weights != "trained":
                continue
            if arch == FIXED_BATCH_ARCH:
                n = f"{arch}_trained_batch{FIXED_BATCH}"
                export_legacy(model, out / f"{n}.onnx", size, FIXED_BATCH)
                record(n, arch, "torch-legacy", weights, [FIXED_BATCH, 3, size, size], macs, params)
            if arch in SYMBOLIC_BATCH_ARCHS:
                n = f"{arch}_trained_symbatch"
                export_legacy(model, out / f"{n}.onnx", size, "batch")
                record(n, arch, "torch-legacy", weights, ["batch", 3, size, size], macs, params)
            if arch in DYNAMO_ARCHS:
                n = f"{arch}_trained_dynamo"
                try:
                    export_dynamo(model, out / f"{n}.onnx", size)
                except Exception as exc:  # record why, keep generating the rest
                    dynamo_failures[arch] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
                    (out / f"{n}.onnx").unlink(missing_ok=True)
                else:
                    record(n, arch, "torch-dynamo", weights, shape, macs, params)
            if arch in QDQ_MODELS:
                label, act, wt, per_channel = QDQ_MODELS[arch]
                n = f"{arch}_trained_qdq_{label.split('-')[0]}"
                quantize_qdq(out / f"{name}.onnx", out / f"{n}.onnx", size, act, wt, per_channel)
                record(n, arch, "torch-legacy", weights, shape, macs, params, quant=label)

    manifest = {
        "generator": "scripts/make_zoo.py",
        "torch": torch.__version__.split("+")[0],
        "legacy_opset": LEGACY_OPSET,
        "dynamo_opset": DYNAMO_OPSET,
        "models": models,
        "dynamo_failures": dynamo_failures,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(int(m["file_bytes"]) for m in models)  # type: ignore[arg-type]
    print(f"{len(models)} models, {total / 2**20:.2f} MiB; dynamo failures: {dynamo_failures or 'none'}")


if __name__ == "__main__":
    main()
