"""Entry points: build the bit-exact torch model of a (model, policy) and fine-tune it."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from approxtvm.compiler import frontend
from approxtvm.compiler.frontend import QuantOptions
from approxtvm.errors import DataError, PolicyError, TrainingError
from approxtvm.models.datasets import Dataset
from approxtvm.models.finetune import export
from approxtvm.models.finetune._torch import require_torch
from approxtvm.models.finetune.graph import parse_qdq
from approxtvm.models.finetune.qnet import QuantizedNet
from approxtvm.models.finetune.trainer import EpochRecord, FinetuneOptions, accuracy, train
from approxtvm.runtime.multipliers import Multiplier, resolve_multiplier
from approxtvm.targets.vacc.config import ApproxPolicy

#: Training samples used to quantize a float model (the CLI's calibration size).
CALIBRATION_SAMPLES = 256


@dataclass(frozen=True)
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes
    ----------
    out_dir
        Where ``model.onnx`` and ``policy.yaml`` were written (``None`` if not saved).
    before_top1, after_top1
        Evaluation accuracy of the approximate model before and after fine-tuning.
    history
        One record per epoch.
    seconds
        Wall time of the whole run (building, training, evaluating).
    net
        The fine-tuned :class:`QuantizedNet` (its eval forward is what the written model computes).
    """

    out_dir: Path | None
    before_top1: float | None
    after_top1: float | None
    history: tuple[EpochRecord, ...]
    seconds: float
    net: QuantizedNet | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for YAML/JSON."""
        return {
            "out_dir": None if self.out_dir is None else str(self.out_dir),
            "before_top1": self.before_top1,
            "after_top1": self.after_top1,
            "seconds": round(self.seconds, 3),
            "history": [asdict(h) for h in self.history],
        }


def to_qdq(
    model: str | os.PathLike[str] | onnx.ModelProto | Any,
    calibration: np.ndarray,
    quantization: QuantOptions | None = None,
) -> onnx.ModelProto:
    """A QDQ model from a float/QDQ ONNX model (path or proto) or a ``torch.nn.Module``.

    A float model is quantized exactly as :func:`approxtvm.compile_onnx` would quantize it with the
    same calibration data, so the fine-tuning starts from the model the compiler runs.
    """
    torch = require_torch()
    if isinstance(model, torch.nn.Module):
        model = _export_torch(model, calibration[:1])
    proto = frontend.load_model(model)
    frontend.check_supported(proto)
    if frontend.is_quantized(proto):
        return proto
    return frontend.quantize(proto, calibration, quantization or QuantOptions())


def _export_torch(module: Any, example: np.ndarray) -> onnx.ModelProto:
    import io

    torch = require_torch()
    buf = io.BytesIO()
    module = module.eval()
    torch.onnx.export(
        module,
        (torch.from_numpy(np.ascontiguousarray(example)),),
        buf,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    return onnx.load_from_string(buf.getvalue())


def resolve_policy(policy: ApproxPolicy | str | os.PathLike[str] | None, multiplier: str | None) -> ApproxPolicy:
    """``--policy P`` or ``--multiplier M`` (exactly one) → an :class:`ApproxPolicy`."""
    if (policy is None) == (multiplier is None):
        raise PolicyError(
            "fine-tuning needs exactly one of a policy and a multiplier",
            expected="policy=<ApproxPolicy or YAML path> or multiplier=<spec>",
            found=f"policy={policy!r}, multiplier={multiplier!r}",
            fix="pass --policy P or --multiplier M",
        )
    if multiplier is not None:
        return ApproxPolicy.uniform(multiplier)
    if isinstance(policy, ApproxPolicy):
        return policy
    return ApproxPolicy.from_yaml(policy)  # type: ignore[arg-type]


def build_net(
    qdq: onnx.ModelProto, policy: ApproxPolicy, *, grad: str = "ste", paths: dict[str, str] | None = None
) -> QuantizedNet:
    """The bit-exact torch model of a QDQ model under ``policy``."""
    graph = parse_qdq(qdq, frontend.layer_names(qdq))
    ids = [layer.name for layer in graph.layers]
    unmatched = policy.unmatched_rules(ids)
    if unmatched:
        raise PolicyError(
            f"policy rule(s) {', '.join(map(repr, unmatched))} match no layer",
            expected=f"layer ids or globs over {', '.join(ids)}",
            found=", ".join(unmatched),
            fix="fix the layer names in the policy",
        )
    cache: dict[str, Multiplier] = {}
    mults = {}
    for lid in ids:
        spec = policy.config_for(lid).multiplier
        if spec not in cache:
            cache[spec] = resolve_multiplier(spec, signed=graph.signed)
        mults[lid] = cache[spec]
    return QuantizedNet(graph, mults, grad=grad, paths=paths)


def finetune(
    model: str | os.PathLike[str] | onnx.ModelProto | Any,
    data: Dataset,
    *,
    policy: ApproxPolicy | str | os.PathLike[str] | None = None,
    multiplier: str | None = None,
    options: FinetuneOptions | None = None,
    eval_data: Dataset | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    quantization: QuantOptions | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a model under an approximation policy and write ``model.onnx`` + ``policy.yaml``.

    Parameters
    ----------
    model
        Float or QDQ ONNX model (path, shipped-model path, ``ModelProto``) or a ``torch.nn.Module``.
    data
        Labelled training data; a float model is quantized on its first 256 samples.
    policy, multiplier
        Exactly one: the approximation policy, or a multiplier for every layer.
    options
        Epochs, learning rates, seed, gradient mode.
    eval_data
        Labelled data for the accuracy before/after (default: ``data``).
    out_dir
        Output directory; it also holds ``checkpoints/last.pt``, from which an interrupted run resumes.
    quantization
        Quantization options of a float model.
    progress
        Show a rich progress bar.
    """
    t0 = time.perf_counter()
    opts = options or FinetuneOptions()
    if data.y is None:
        raise DataError(
            f"{data.name}: fine-tuning needs labels",
            expected="a labelled dataset (x, y)",
            found="no labels",
            fix="use a .npz with x and y, or an image folder with one sub-folder per class",
        )
    pol = resolve_policy(policy, multiplier)
    qdq = to_qdq(model, data.x[:CALIBRATION_SAMPLES], quantization)
    net = build_net(qdq, pol, grad=opts.grad)
    ev = eval_data or data
    before, _ = accuracy(net, ev.x, ev.y)
    out = None if out_dir is None else Path(out_dir)
    if out is not None and out.exists() and not out.is_dir():
        raise TrainingError(
            f"{out} exists and is not a directory",
            expected="an output directory",
            found="a file",
            fix="pass another -o",
        )
    state = train(
        net,
        data.x,
        data.y,
        opts,
        eval_data=(ev.x, ev.y),
        checkpoint_dir=None if out is None else out / "checkpoints",
        progress=progress,
    )
    after = state.history[-1].eval_top1 if state.history else before
    result = FinetuneResult(out, before, after, tuple(state.history), time.perf_counter() - t0, net)
    if out is not None:
        export.save(net, pol, out, {"options": asdict(opts), "result": result.to_dict()})
    return result
