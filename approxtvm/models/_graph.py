"""Small ``onnx.helper`` graph builder shared by the zoo builders and the training script.

Every layer gets a stable, torchvision-like node name (``conv1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``); its parameters are initializers named ``<node>.weight`` and
``<node>.bias``, and its output tensor is ``<node>.out`` (the network output is ``logits``).

Weights come from a :data:`WeightFn` callback, so the same topology code builds random (He-init)
networks and networks with trained weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from approxtvm.errors import ModelError

OPSET = 17
"""ONNX opset of every model this package writes."""

IR_VERSION = 8
"""ONNX IR version matching opset 17 (kept at 8 so older runtimes can read the files)."""

WeightFn = Callable[[str, tuple[int, ...], float], np.ndarray]
"""``weights(name, shape, gain) -> float32 array of that shape``.

``name`` is the initializer name (``conv1.weight``, ``fc.bias``); ``gain`` is a multiplier the
random initialiser applies to its standard deviation (trained-weight sources ignore it).
"""

Dim = int | str


class GraphBuilder:
    """Accumulate Conv/Relu/Add/pool/Gemm nodes with named initializers.

    Parameters
    ----------
    name
        Graph name.
    input_shape
        Shape of the graph input ``input`` (NCHW); a ``str`` entry is a symbolic dimension.
    weights
        Callback returning each parameter tensor.
    """

    def __init__(self, name: str, input_shape: Sequence[Dim], weights: WeightFn) -> None:
        self.name = name
        self.input_shape = list(input_shape)
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.input = "input"

    def _param(self, name: str, shape: tuple[int, ...], gain: float = 1.0) -> str:
        arr = np.asarray(self.weights(name, shape, gain), dtype=np.float32)
        if arr.shape != shape:
            raise ModelError(
                f"graph {self.name}: parameter {name} has the wrong shape",
                expected=str(shape),
                found=str(arr.shape),
                fix="pass weights trained for this topology",
            )
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def _node(
        self,
        op_type: str,
        inputs: list[str],
        name: str,
        out: str | None = None,
        **attrs: object,
    ) -> str:
        y = out if out is not None else f"{name}.out"
        self.nodes.append(helper.make_node(op_type, inputs, [y], name=name, **attrs))
        return y

    def conv(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        pad: int = 0,
        gain: float = 1.0,
    ) -> str:
        """Square ``kernel``×``kernel`` convolution with bias (batch norm already folded)."""
        w = self._param(f"{name}.weight", (cout, cin, kernel, kernel), gain)
        b = self._param(f"{name}.bias", (cout,), gain)
        return self._node(
            "Conv",
            [x, w, b],
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            dilations=[1, 1],
            group=1,
        )

    def relu(self, x: str, name: str) -> str:
        """Elementwise ReLU."""
        return self._node("Relu", [x], name)

    def add(self, a: str, b: str, name: str) -> str:
        """Elementwise sum (residual join)."""
        return self._node("Add", [a, b], name)

    def maxpool(self, x: str, name: str, kernel: int, stride: int, pad: int) -> str:
        """Square max pooling."""
        return self._node(
            "MaxPool",
            [x],
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def global_avgpool(self, x: str, name: str = "avgpool") -> str:
        """Global average pooling to N×C×1×1."""
        return self._node("GlobalAveragePool", [x], name)

    def flatten(self, x: str, name: str = "flatten") -> str:
        """Flatten to N×(C·H·W)."""
        return self._node("Flatten", [x], name, axis=1)

    def gemm(self, x: str, name: str, cin: int, cout: int, out: str | None = None) -> str:
        """Fully connected layer ``x @ W.T + b`` with ``W`` of shape (cout, cin)."""
        w = self._param(f"{name}.weight", (cout, cin))
        b = self._param(f"{name}.bias", (cout,))
        return self._node("Gemm", [x, w, b], name, out=out, transB=1)

    def finish(self, output: str, output_shape: Sequence[Dim], doc: str = "") -> onnx.ModelProto:
        """Wrap the nodes into a checked, shape-inferred model (opset 17, IR version 8)."""
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(output_shape))],
            initializer=self.initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="approxtvm",
        )
        model.ir_version = IR_VERSION
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model)
        return model


def he_init(seed: int, bias_std: float = 0.05) -> WeightFn:
    """Random parameters: He-normal conv/fc weights, small normal biases (a folded BN's shift).

    Conv weights have std ``gain * sqrt(2 / fan_in)``; fully connected weights ``sqrt(1 / fan_in)``
    (no ReLU follows them); biases ``bias_std * gain``. Draws are in call order from one
    ``numpy.random.default_rng(seed)``, so a given topology and seed always give the same model.
    """
    rng = np.random.default_rng(seed)

    def weights(name: str, shape: tuple[int, ...], gain: float) -> np.ndarray:
        if name.endswith(".bias"):
            return rng.standard_normal(shape, dtype=np.float32) * np.float32(bias_std * gain)
        fan_in = int(np.prod(shape[1:]))
        std = gain * np.sqrt((2.0 if len(shape) == 4 else 1.0) / fan_in)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    return weights


def from_arrays(arrays: dict[str, np.ndarray]) -> WeightFn:
    """Parameters looked up by initializer name (e.g. trained, BN-folded weights)."""

    def weights(name: str, shape: tuple[int, ...], gain: float) -> np.ndarray:
        del gain
        if name not in arrays:
            raise ModelError(
                f"no weights for parameter {name}",
                expected=f"an array named {name!r}",
                found=f"{len(arrays)} arrays: {', '.join(sorted(arrays)[:8])}" + (" ..." if len(arrays) > 8 else ""),
                fix="name the arrays after the ONNX initializers (<node>.weight, <node>.bias)",
            )
        return arrays[name]

    return weights
