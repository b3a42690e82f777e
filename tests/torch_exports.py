"""Small networks exported by torch's legacy exporter, as users export them (tests only).

Randomly initialised conv + batch-norm layers fold to zero biases, which the legacy exporter
shares between layers through ``Identity`` nodes and names ``onnx::Conv_<n>``; a channel
shuffle leaves computed ``Reshape`` shapes; a depthwise conv stays on the host.
"""

from __future__ import annotations

import io
import warnings

import onnx
import pytest

torch = pytest.importorskip("torch", reason="torch (the optional `train` extra) exports the models")
nn = torch.nn


class _Block(nn.Module):
    def __init__(self, c: int, o: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
        self.c2, self.b2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.sc = (
            nn.Sequential(nn.Conv2d(c, o, 1, stride, bias=False), nn.BatchNorm2d(o))
            if stride != 1 or c != o
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.sc(x))


class TinyNet(nn.Module):
    """ResNet blocks, a depthwise + pointwise pair, a channel shuffle and a linear head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.l1, self.l2 = _Block(8, 8, 1), _Block(8, 16, 2)
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU6(),
            nn.Conv2d(16, 16, 1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.l2(self.l1(self.stem(x)))
        x = x + self.dw(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # channel shuffle
        return self.fc(x.mean((2, 3)))


def export_legacy(
    module: torch.nn.Module, shape: tuple[int, ...], *, dynamic_batch: bool = True, seed: int = 0
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) with torch's legacy (TorchScript) exporter, opset 17."""
    torch.manual_seed(seed)
    module = module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            torch.randn(*shape),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic_batch else None,
        )
    return onnx.load_from_string(buf.getvalue())


def tiny_net(seed: int = 0, *, dynamic_batch: bool = True, batch: int = 1) -> onnx.ModelProto:
    """:class:`TinyNet` on 3×16×16 inputs, freshly initialised (zero biases shared)."""
    torch.manual_seed(seed)
    return export_legacy(TinyNet(), (batch, 3, 16, 16), dynamic_batch=dynamic_batch, seed=seed)
