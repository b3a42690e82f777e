"""ONNX front end: load and validate a model, quantize float models to QDQ, import into Relax."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from approxtvm.errors import DataError, ModelError, UnsupportedOperatorError

#: ONNX ops that carry quantization in the graph; anything else is float or plain integer.
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Quantized-operator formats the Relax importer cannot read (DESIGN §2): ask for QDQ instead.
QOPERATOR_OPS = frozenset(
    {
        "QLinearConv",
        "ConvInteger",
        "QLinearMatMul",
        "MatMulInteger",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearGlobalAveragePool",
        "QLinearConcat",
    }
)


@dataclass(frozen=True, slots=True)
class QuantOptions:
    """How a float model is quantized (onnxruntime static quantization, QDQ format).

    Attributes
    ----------
    signed
        ``False``: uint8 activations and weights (the default, as TFApprox and ``mul8u_*``).
        ``True``: symmetric int8 activations and weights, zero points 0 (``mul8s_*``). Symmetric
        activations keep a real 0 at code 0: EvoApproxLib's signed circuits are accurate for
        small magnitudes, and an asymmetric zero point of −128 would send every ReLU zero through
        their largest errors (digits CNN with mul8s_1L2H: 98.3 % top-1 symmetric, 84.4 % asymmetric).
    per_channel
        Per-output-channel weight scales.
    calibration_method
        onnxruntime calibration method name: ``MinMax``, ``Entropy`` or ``Percentile``.
    """

    signed: bool = False
    per_channel: bool = False
    calibration_method: str = "MinMax"


def load_model(model: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    """Load an ONNX model from a path (or pass a ``ModelProto`` through) and check it.

    Raises
    ------
    ModelError
        Missing file, not an ONNX protobuf, or a model that fails ``onnx.checker``.
    """
    if isinstance(model, onnx.ModelProto):
        proto, where = model, "the given ModelProto"
    else:
        path = Path(model)
        where = str(path)
        if not path.is_file():
            raise ModelError(
                f"ONNX model file {path} does not exist",
                expected="a path to an .onnx file",
                found="no such file",
                fix="check the path, or pass a name from `approxtvm.models` (e.g. digits_cnn)",
            )
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise ModelError(
                f"{path} is not an ONNX model",
                expected="a serialized onnx.ModelProto",
                found=f"{type(exc).__name__}: {exc}",
                fix="export the network with torch.onnx.export or tf2onnx",
            ) from None
    if not proto.graph.node:
        raise ModelError(
            f"{where} is not an ONNX model",
            expected="a graph with nodes",
            found="an empty graph or a non-ONNX protobuf",
            fix="export the network with torch.onnx.export or tf2onnx",
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(
            f"{where} is a malformed ONNX model",
            expected="a model that passes onnx.checker",
            found=str(exc).splitlines()[0],
            fix="re-export the model",
        ) from None
    return proto


def check_supported(model: onnx.ModelProto) -> None:
    """Raise one error that lists every operator the Relax importer cannot handle."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map  # import cost: only when used

    known = set(_get_convert_map()) | {"Constant", "If"}
    unsupported: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in QOPERATOR_OPS or node.op_type not in known:
            unsupported.setdefault(node.op_type, []).append(node.name or "<unnamed>")
    if unsupported:
        listing = ", ".join(f"{op} ({len(names)}× e.g. {names[0]})" for op, names in sorted(unsupported.items()))
        qop = sorted(set(unsupported) & QOPERATOR_OPS)
        fix = (
            "quantize to QDQ format instead of QOperator format (onnxruntime quantize_static with "
            "quant_format=QuantFormat.QDQ), or pass the float model and let approxtvm quantize it"
            if qop
            else "replace these operators in the exporter, or decompose them into supported ones"
        )
        raise UnsupportedOperatorError(
            f"the model uses {sum(map(len, unsupported.values()))} node(s) of {len(unsupported)} unsupported "
            f"operator type(s): {listing}",
            expected="ONNX operators the Relax ONNX importer supports",
            found=", ".join(sorted(unsupported)),
            fix=fix,
        )


def is_quantized(model: onnx.ModelProto) -> bool:
    """True when the model already is a QDQ model."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def input_specs(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    """Graph inputs that are not initializers, with their (possibly symbolic) shapes."""
    inits = {t.name for t in model.graph.initializer}
    out: dict[str, tuple[int | str, ...]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    return out


def fix_batch(model: onnx.ModelProto, batch_size: int) -> dict[str, list[int]]:
    """Concrete input shapes with the batch dimension set to ``batch_size``."""
    shapes: dict[str, list[int]] = {}
    for name, dims in input_specs(model).items():
        concrete = [batch_size if i == 0 and not isinstance(d, int) else d for i, d in enumerate(dims)]
        if any(not isinstance(d, int) or d <= 0 for d in concrete):
            raise ModelError(
                f"input {name!r} has symbolic dimensions other than the batch: {dims}",
                expected="static shapes except the first (batch) dimension",
                found=str(dims),
                fix="export the model with static spatial sizes",
            )
        shapes[name] = [int(d) for d in concrete]
    return shapes


class _Reader:
    """onnxruntime calibration reader over float batches of ``batch`` samples per call (a model
    with a fixed batch is fed batches of that size; the last one is padded by repetition)."""

    def __init__(self, name: str, data: np.ndarray, batch: int = 1) -> None:
        def chunks() -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, len(data), batch):
                c = data[i : i + batch]
                if len(c) < batch:
                    c = np.concatenate([c, np.repeat(c[-1:], batch - len(c), axis=0)])
                yield {name: c}

        self._it: Iterator[dict[str, np.ndarray]] = chunks()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # onnxruntime calls it on some paths
        pass


def quantize(
    model: onnx.ModelProto, calibration: np.ndarray | Iterable[np.ndarray], options: QuantOptions = QuantOptions()
) -> onnx.ModelProto:
    """Quantize a float model to QDQ with onnxruntime's static quantization.

    Parameters
    ----------
    model
        Float model with one input.
    calibration
        Float samples shaped like the model input (batch first).
    options
        Signedness, per-channel scales and calibration method.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize_static

    specs = input_specs(model)
    if len(specs) != 1:
        raise ModelError(
            "quantization needs a model with exactly one input",
            expected="1 input",
            found=f"{len(specs)}: {list(specs)}",
            fix="pass a QDQ model you quantized yourself",
        )
    ((name, dims),) = specs.items()
    data = np.asarray(
        calibration if isinstance(calibration, np.ndarray) else np.concatenate(list(calibration)), dtype=np.float32
    )
    if data.ndim != len(dims) or any(
        isinstance(d, int) and d != s for d, s in zip(dims[1:], data.shape[1:], strict=True)
    ):
        raise DataError(
            "calibration data does not match the model input",
            expected=f"shape (N, {', '.join(map(str, dims[1:]))}) for input {name!r}",
            found=f"shape {data.shape}",
            fix="resize or transpose the calibration data",
        )
    if len(data) == 0:
        raise DataError(
            "calibration data is empty",
            expected="at least one sample",
            found="0 samples",
            fix="pass a few hundred representative inputs",
        )
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    method = methods.get(options.calibration_method.lower())
    if method is None:
        raise ModelError(
            f"unknown calibration method {options.calibration_method!r}",
            expected=f"one of {sorted(methods)}",
            found=options.calibration_method,
            fix="use MinMax",
        )
    qtype = QuantType.QInt8 if options.signed else QuantType.QUInt8
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 1
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "qdq.onnx")
        onnx.save(model, src)
        root.setLevel(max(level, logging.ERROR))  # the quantizer's pre-processing advice is noise here
        try:
            _quantize_static(quantize_static, src, dst, _Reader(name, data, batch), options, qtype, method)
        except Exception as exc:  # onnxruntime fails on models it cannot run; its message names the node
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            raise ModelError(
                "onnxruntime could not calibrate the float model for quantization",
                expected="a float model onnxruntime can run on the calibration data",
                found=f"{type(exc).__name__}: {(lines[-1] if lines else '')[:400]}",
                fix="check the named node's shapes and attributes (the model must run in onnxruntime), "
                "or pass a QDQ model you quantized yourself",
            ) from None
        finally:
            root.setLevel(level)
        return onnx.load(dst)


def _quantize_static(
    quantize_static: Any, src: str, dst: str, reader: _Reader, options: QuantOptions, qtype: Any, method: Any
) -> None:
    from onnxruntime.quantization import QuantFormat

    quantize_static(
        src,
        dst,
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        activation_type=qtype,
        weight_type=qtype,
        calibrate_method=method,
        extra_options={"WeightSymmetric": options.signed, "ActivationSymmetric": options.signed},
    )


#: ONNX ops whose weights make accelerator layers.
LAYER_OPS = frozenset({"Conv", "Gemm", "MatMul"})


def layer_names(model: onnx.ModelProto) -> dict[str, str]:
    """Map each weight initializer of a Conv/Gemm/MatMul to its layer id (the node's name).

    Layer ids are ONNX node names; the compiler names unnamed nodes ``<OpType>_<index>`` and
    gives every layer its own weight (:func:`approxtvm.compiler.prepare.prepare`), so on a
    compiled model's ``proto`` this map is one-to-one.
    """
    from approxtvm.compiler.prepare import layer_param_source

    names: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        src = layer_param_source(model.graph, node)
        if src is not None and src not in names:
            names[src] = node.name or f"{node.op_type}_{i}"
    return names
