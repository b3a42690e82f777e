"""Conv/dense layer shapes of reference networks (workloads for the mapper and the energy studies)."""

from __future__ import annotations

from approxtvm.errors import ScheduleError
from approxtvm.targets.vacc.workload import LayerShape

__all__ = ["resnet_layer_shapes"]


def resnet_layer_shapes(name: str) -> list[tuple[str, LayerShape]]:
    """Conv/dense layers of torchvision ResNet-18 or ResNet-50 at 224×224, batch 1, in order.

    Names follow torchvision (``layer2.0.downsample``); the stride of a bottleneck sits on its 3×3.
    """
    conv = LayerShape.conv2d
    layers: list[tuple[str, LayerShape]] = [
        ("conv1", conv(1, 64, 3, 224, 224, 7, 7, strides=(2, 2), pads=(3, 3, 3, 3)))
    ]
    if name == "resnet18":
        blocks, bottleneck, widths = (2, 2, 2, 2), False, (64, 128, 256, 512)
    elif name == "resnet50":
        blocks, bottleneck, widths = (3, 4, 6, 3), True, (64, 128, 256, 512)
    else:
        raise ScheduleError(
            f"unknown network {name!r}",
            expected="resnet18 or resnet50",
            found=name,
            fix="pick one of the two",
        )
    c_in, hw = 64, 56
    for stage, (nb, width) in enumerate(zip(blocks, widths, strict=True), start=1):
        for blk in range(nb):
            stride = 2 if stage > 1 and blk == 0 else 1
            out_hw = hw // stride
            pre = f"layer{stage}.{blk}"
            c_out = width * 4 if bottleneck else width
            if bottleneck:
                layers.append((f"{pre}.conv1", conv(1, width, c_in, hw, hw, 1, 1)))
                layers.append(
                    (
                        f"{pre}.conv2",
                        conv(1, width, width, hw, hw, 3, 3, strides=(stride, stride), pads=(1, 1, 1, 1)),
                    )
                )
                layers.append((f"{pre}.conv3", conv(1, c_out, width, out_hw, out_hw, 1, 1)))
            else:
                layers.append(
                    (
                        f"{pre}.conv1",
                        conv(1, width, c_in, hw, hw, 3, 3, strides=(stride, stride), pads=(1, 1, 1, 1)),
                    )
                )
                layers.append((f"{pre}.conv2", conv(1, width, width, out_hw, out_hw, 3, 3, pads=(1, 1, 1, 1))))
            if blk == 0 and (stride != 1 or c_in != c_out):
                layers.append((f"{pre}.downsample", conv(1, c_out, c_in, hw, hw, 1, 1, strides=(stride, stride))))
            c_in, hw = c_out, out_hw
    layers.append(("fc", LayerShape.dense(1, 1000, c_in)))
    return layers
