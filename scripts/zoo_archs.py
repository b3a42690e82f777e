"""Small torch.nn versions of eleven image-classifier families for the test zoo.

Each network keeps the block structure of its family (what an exporter writes: depthwise and
grouped convs, squeeze-excitation, channel shuffle, dense concatenation, LayerNorm, GELU,
attention) at reduced width and input size (32×32 or 64×64, 10 classes), so the ONNX graphs have
the operators and wiring of the full-size models with a few thousand to ~100k parameters.
Written from the papers' block descriptions; torchvision is not used.

Used only by ``scripts/make_zoo.py`` (needs the optional ``train`` extra).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as fn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
    """Conv (no bias) → BatchNorm → activation, the stem of most CNN blocks."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --- ResNet (He et al. 2016): basic blocks, 1×1 strided projection shortcuts -------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1, act=None)
        self.down = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.relu(self.conv2(self.conv1(x)) + self.down(x))


class ResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 48), classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3, 1)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(fn.adaptive_avg_pool2d(x, 1), 1))


# --- VGG (Simonyan & Zisserman 2015): conv stacks, max pools, a 3-layer classifier ---------------


class VGG(nn.Module):
    def __init__(self, cfg: tuple[int | str, ...] = (16, "M", 32, "M", 48, 48, "M", 48, 48, "M"), classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in cfg:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(c), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(c)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 2 * 2, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(),
            nn.Linear(64, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --- DenseNet (Huang et al. 2017): pre-activation BN-ReLU-Conv, concatenation, transitions -------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(fn.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(fn.relu(self.norm2(y)))], 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 8, blocks: tuple[int, ...] = (3, 3, 3), classes: int = 10) -> None:
        super().__init__()
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False)]
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:  # transition: BN-ReLU-1×1 conv halving channels, 2×2 average pool
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(fn.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- MobileNet-V2 (Sandler et al. 2018): inverted residuals, depthwise 3×3, ReLU6 ----------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, hid, 1, act=act)] if expand != 1 else []
        layers += [conv_bn(hid, hid, 3, stride, groups=hid, act=act), conv_bn(hid, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        # (expand, out, repeats, stride)
        cfg = ((1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 2), (4, 24, 1, 1))
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 1, act=nn.ReLU6)]
        cin = 16
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 96, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(fn.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- MobileNet-V3 (Howard et al. 2019): hard-swish, squeeze-excitation with hard-sigmoid ---------


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int, gate: type[nn.Module], act: type[nn.Module]) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = fn.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MBConvV3(nn.Module):
    def __init__(self, cin: int, hid: int, cout: int, k: int, stride: int, se: bool, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(cin, hid, 1, act=act)] if hid != cin else []
        layers.append(conv_bn(hid, hid, k, stride, groups=hid, act=act))
        if se:
            layers.append(SqueezeExcite(hid, max(8, hid // 4), nn.Hardsigmoid, nn.ReLU))
        layers.append(conv_bn(hid, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        hs, re = nn.Hardswish, nn.ReLU
        # (in, hidden, out, kernel, stride, se, activation): the "small" variant's pattern, narrowed
        cfg = (
            (16, 16, 16, 3, 2, True, re),
            (16, 48, 24, 3, 2, False, re),
            (24, 64, 24, 3, 1, False, re),
            (24, 64, 32, 5, 2, True, hs),
            (32, 96, 32, 5, 1, True, hs),
        )
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 1, act=hs)]
        layers += [MBConvV3(*c) for c in cfg]
        layers.append(conv_bn(32, 96, 1, act=hs))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(96, 128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(fn.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- EfficientNet (Tan & Le 2019): MBConv with SiLU and SE (sigmoid gate) ------------------------


class EfficientNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        silu = nn.SiLU
        cfg = (
            (16, 16, 8, 3, 1),
            (8, 32, 12, 3, 2),
            (12, 48, 12, 3, 1),
            (12, 48, 20, 5, 2),
            (20, 80, 24, 3, 2),
        )
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 1, act=silu)]
        for cin, hid, cout, k, s in cfg:
            blk = MBConvV3(cin, hid, cout, k, s, False, silu)
            # EfficientNet's SE squeezes to a quarter of the block *input* and gates with a sigmoid
            se = SqueezeExcite(hid, max(4, cin // 4), nn.Sigmoid, silu)
            blk.block.insert(len(blk.block) - 1, se)
            layers.append(blk)
        layers.append(conv_bn(24, 96, 1, act=silu))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(fn.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- RegNet-X (Radosavovic et al. 2020): 1×1 → grouped 3×3 → 1×1 residual blocks -----------------


class XBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.a = conv_bn(cin, cout, 1)
        self.b = conv_bn(cout, cout, 3, stride, groups=cout // group_width)
        self.c = conv_bn(cout, cout, 1, act=None)
        self.proj = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.relu(self.proj(x) + self.c(self.b(self.a(x))))


class RegNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 2)]
        cin = 16
        for w, d in ((16, 1), (32, 2), (64, 2)):
            for i in range(d):
                layers.append(XBlock(cin, w, 2 if i == 0 else 1, 8))
                cin = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(fn.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- ShuffleNet-V2 (Ma et al. 2018): channel split, channel shuffle by Reshape/Transpose ----------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None), conv_bn(cin, half, 1))
        else:
            self.branch1 = nn.Sequential()
        c2 = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            conv_bn(c2, half, 1), conv_bn(half, half, 3, stride, groups=half, act=None), conv_bn(half, half, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 3, 1), nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = []
        cin = 16
        for cout, reps in ((32, 2), (64, 2), (96, 1)):
            for i in range(reps):
                layers.append(ShuffleUnit(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.conv5 = conv_bn(cin, 128, 1)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.stem(x)))
        return self.fc(x.mean([2, 3]))


# --- SqueezeNet 1.1 (Iandola et al. 2016): fire modules, ceil-mode pools, conv classifier --------


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = fn.relu(self.squeeze(x))
        return torch.cat([fn.relu(self.e1(s)), fn.relu(self.e3(s))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2), nn.ReLU(True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 8, 16), Fire(32, 8, 16), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 16, 32), Fire(64, 16, 32), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 24, 48), Fire(96, 24, 48),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(96, classes, 1), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(fn.adaptive_avg_pool2d(self.classifier(self.features(x)), 1), 1)


# --- ConvNeXt (Liu et al. 2022): depthwise 7×7, channels-last LayerNorm, GELU MLP, layer scale ---


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor (permute, normalise, permute back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.gamma * self.fc2(fn.gelu(self.fc1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (16, 32, 48), classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, d in enumerate(dims):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, stride=2)]
            layers.append(ConvNeXtBlock(d))
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x).mean([2, 3])))


# --- ViT (Dosovitskiy et al. 2021): patch embedding, class token, pre-norm encoder blocks --------


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(self, size: int = 32, patch: int = 8, dim: int = 48, depth: int = 2, heads: int = 3, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        n = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


ARCHS: dict[str, tuple[type[nn.Module], int]] = {
    "resnet": (ResNet, 32),
    "vgg": (VGG, 32),
    "densenet": (DenseNet, 32),
    "mobilenet_v2": (MobileNetV2, 32),
    "mobilenet_v3": (MobileNetV3, 64),
    "efficientnet": (EfficientNet, 32),
    "regnet": (RegNet, 64),
    "shufflenet": (ShuffleNetV2, 64),
    "squeezenet": (SqueezeNet, 64),
    "convnext": (ConvNeXt, 32),
    "vit": (ViT, 32),
}
"""Architecture name → (module class, input height = width)."""
