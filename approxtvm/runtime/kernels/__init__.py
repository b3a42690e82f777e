"""Fast bit-exact conv/dense kernels for arbitrary 8×8 multipliers (DESIGN §3).

The runtime calls :func:`conv2d_products` / :func:`dense_products` for every offloaded layer with
raw codes; it applies the zero-point corrections itself. :mod:`.reference` is the specification.
Nothing here registers anything or keeps global state: pass a :class:`KernelCache`.
"""

from approxtvm.runtime.kernels.cpu import CpuInfo, detect_cpu
from approxtvm.runtime.kernels.dispatch import (
    PATHS,
    KernelCache,
    LayerStore,
    PathChoice,
    choose_path,
    conv2d_products,
    dense_products,
    tvm_available,
)
from approxtvm.runtime.kernels.geometry import ConvGeometry
from approxtvm.runtime.kernels.reference import conv2d_products_reference, dense_products_reference

__all__ = [
    "PATHS",
    "ConvGeometry",
    "CpuInfo",
    "KernelCache",
    "LayerStore",
    "PathChoice",
    "choose_path",
    "conv2d_products",
    "conv2d_products_reference",
    "dense_products",
    "dense_products_reference",
    "detect_cpu",
    "tvm_available",
]
