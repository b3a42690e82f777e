"""Loader for the test zoo: small exported image classifiers under ``tests/data/zoo/``.

The files are written by ``scripts/make_zoo.py`` (torch, legacy and dynamo exporters,
onnxruntime's ``quantize_static`` for the pre-quantized variants) and described by
``manifest.json``. Tests and ``benchmarks/bench_zoo.py`` use :func:`entries`, :func:`load` and
:func:`sample_inputs`; nothing here needs torch.

Inputs are smooth random images (a coarse normal field upsampled, plus fine noise) with roughly
zero mean and unit variance per channel, like normalised photographs: calibration and evaluation
draw from the same distribution with different seeds. :func:`compare` gives the agreement
figures of an engine against onnxruntime on the same QDQ model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ZOO_DIR = Path(__file__).resolve().parent / "data" / "zoo"
MANIFEST = ZOO_DIR / "manifest.json"

CALIBRATION_SEED = 1
"""Seed of the calibration images (float models are quantized on these)."""
EVAL_SEED = 2
"""Seed of the evaluation images (never used for calibration)."""


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model as the manifest describes it.

    Attributes
    ----------
    name
        File stem (``<arch>_<weights>[_<variant>]``).
    arch
        Architecture family (``resnet``, ``vit``, ...).
    exporter
        ``torch-legacy`` (``torch.onnx.export(dynamo=False)``) or ``torch-dynamo``.
    opset
        Default-domain opset of the file.
    weights
        ``exported`` (torch's random initialisation as is) or ``trained`` (non-zero biases,
        perturbed BN statistics, non-trivial scales).
    input_name, output_name
        Graph input and output.
    input_shape
        Input dims; a string is a symbolic dimension (the batch of ``*_symbatch``).
    quantization
        ``None`` for a float model, else how onnxruntime's ``quantize_static`` wrote it
        (``s8s8-per-channel``: int8 activations and weights, per-channel weight scales;
        ``u8s8-per-tensor``: uint8 activations, int8 weights).
    macs_per_image
        Multiply-accumulates of Conv, Gemm and MatMul nodes for one image (analytic, from the
        ONNX shapes).
    params
        Number of float parameters of the torch module.
    file_bytes
        Size of the ONNX file.
    """

    name: str
    arch: str
    exporter: str
    opset: int
    weights: str
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    quantization: str | None
    macs_per_image: int
    params: int
    file_bytes: int

    @property
    def path(self) -> Path:
        """The ONNX file."""
        return ZOO_DIR / f"{self.name}.onnx"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input image."""
        c, h, w = self.input_shape[1:]
        return int(c), int(h), int(w)

    @property
    def fixed_batch(self) -> int | None:
        """The batch the file fixes, or ``None`` when the batch dimension is symbolic."""
        b = self.input_shape[0]
        return b if isinstance(b, int) else None

    @property
    def is_transformer(self) -> bool:
        """ViT: attention and LayerNorm (a looser numerics criterion applies, see the tests)."""
        return self.arch == "vit"


@cache
def _manifest() -> dict[str, object]:
    return json.loads(MANIFEST.read_text())


def entries() -> tuple[ZooEntry, ...]:
    """Every zoo model, in manifest order."""
    out = []
    for m in _manifest()["models"]:  # type: ignore[union-attr]
        d = dict(m)
        d["input_shape"] = tuple(d["input_shape"])
        out.append(ZooEntry(**d))
    return tuple(out)


def names() -> tuple[str, ...]:
    """Names of every zoo model."""
    return tuple(e.name for e in entries())


def entry(name: str) -> ZooEntry:
    """The manifest entry of one model (``KeyError`` naming the known ones if absent)."""
    for e in entries():
        if e.name == name:
            return e
    raise KeyError(f"no zoo model {name!r}; known: {', '.join(names())}")


def load(name: str) -> onnx.ModelProto:
    """The ONNX model of one zoo entry."""
    return onnx.load(entry(name).path)


def dynamo_failures() -> dict[str, str]:
    """Architectures the dynamo exporter could not export, with the reason recorded."""
    return dict(_manifest().get("dynamo_failures", {}))  # type: ignore[arg-type]


def sample_inputs(image_shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """``n`` smooth random float32 images shaped ``(n, *image_shape)``.

    Parameters
    ----------
    image_shape
        ``(C, H, W)``; ``H`` and ``W`` divisible by 4.
    n
        Number of images.
    seed
        Seed of the generator (:data:`CALIBRATION_SEED` / :data:`EVAL_SEED`).
    """
    c, h, w = image_shape
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, c, h // 4, w // 4)).astype(np.float32)
    smooth = coarse.repeat(4, axis=2).repeat(4, axis=3)
    return (0.9 * smooth + 0.45 * rng.standard_normal((n, c, h, w))).astype(np.float32)


def calibration_inputs(e: ZooEntry, n: int = 64) -> np.ndarray:
    """Calibration images for a float zoo model."""
    return sample_inputs(e.image_shape, n, CALIBRATION_SEED)


def eval_inputs(e: ZooEntry, n: int = 100) -> np.ndarray:
    """Evaluation images (disjoint seed from calibration)."""
    return sample_inputs(e.image_shape, n, EVAL_SEED)


# ------------------------------------------------------------------ comparison with onnxruntime
@dataclass(frozen=True)
class Agreement:
    """How one engine's outputs compare with onnxruntime's on the same QDQ model.

    Attributes
    ----------
    top1_equal
        Share of images with the same arg-max.
    within_one_step
        Share of output values within one output quantization step.
    max_steps
        Largest difference, in output quantization steps.
    step
        The output quantization step (scale of the dequantize producing the output).
    """

    top1_equal: float
    within_one_step: float
    max_steps: float
    step: float

    def __str__(self) -> str:
        return (
            f"top-1 equal {self.top1_equal:.1%}, within one step {self.within_one_step:.2%}, "
            f"max {self.max_steps:.1f} steps (step {self.step:.4g})"
        )


def output_step(proto: onnx.ModelProto, output: str) -> float:
    """Scale of the DequantizeLinear that produces ``output`` (one quantization step)."""
    inits = {t.name: t for t in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(output)
    while node is not None and node.op_type != "DequantizeLinear" and node.input:
        node = producers.get(node.input[0])  # through Identity/Reshape/Flatten after the last dequantize
    if node is None or node.input[1] not in inits:
        raise ValueError(f"{output!r} is not produced by a DequantizeLinear with a constant scale")
    return float(numpy_helper.to_array(inits[node.input[1]]).max())


def ort_session(proto: onnx.ModelProto, threads: int = 0) -> ort.InferenceSession:
    """A quiet onnxruntime CPU session (``threads`` 0: onnxruntime's default)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def onnxruntime_outputs(proto: onnx.ModelProto, x: np.ndarray, batch: int) -> np.ndarray:
    """The model's first output under onnxruntime, ``batch`` images per call."""
    sess = ort_session(proto)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def compare(ours: np.ndarray, ref: np.ndarray, step: float) -> Agreement:
    """Agreement figures of ``ours`` against onnxruntime's ``ref`` (both ``(N, classes)``)."""
    d = np.abs(ours.astype(np.float64) - ref) / step
    return Agreement(
        top1_equal=float(np.mean(ours.argmax(1) == ref.argmax(1))),
        within_one_step=float(np.mean(d <= 1 + 1e-4)),
        max_steps=float(d.max()),
        step=step,
    )
