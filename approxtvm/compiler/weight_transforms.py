"""Model transforms that make weights compressible (pruning, clustering), as compile options."""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from approxtvm.errors import PolicyError
from approxtvm.passes.cluster_weights import ClusterWeights
from approxtvm.passes.prune_weights import PruneWeights
from approxtvm.targets.vacc.partition import LAYER_NAMES_ATTR, module_table


@dataclass(frozen=True, slots=True)
class WeightTransforms:
    """Pruning and clustering applied to the quantized weights before partitioning.

    Attributes
    ----------
    sparsity
        Fraction of weights set to the zero-point code: one number, or ``((layer id, fraction), ...)``
        (per-layer scope only). ``None``: no pruning.
    prune_scope
        ``global`` (one magnitude threshold over all layers) or ``layer`` (each layer alone).
    cluster_bits
        Shared values per layer = ``2**cluster_bits`` (2–6), one number or per layer. ``None``: none.
    """

    sparsity: float | tuple[tuple[str, float], ...] | None = None
    prune_scope: str = "global"
    cluster_bits: int | tuple[tuple[str, int], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sparsity, float | int) and not 0.0 <= float(self.sparsity) < 1.0:
            raise PolicyError(
                "sparsity out of range",
                expected="0 ≤ sparsity < 1",
                found=str(self.sparsity),
                fix="give the fraction of weights to prune, e.g. 0.5",
            )

    @property
    def active(self) -> bool:
        """Whether any transform is requested."""
        return self.sparsity is not None or self.cluster_bits is not None


def _per_ir_name(value: object, names: dict[str, str]) -> object:
    """Per-layer settings are given by layer id; the passes find layers by IR variable name."""
    if not isinstance(value, tuple):
        return value
    by_id = {lid: var for var, lid in names.items()}
    out = {}
    for lid, v in value:
        if lid not in by_id:
            raise PolicyError(
                f"weight transform names an unknown layer {lid!r}",
                expected=", ".join(sorted(by_id)),
                found=lid,
                fix="use the model's layer ids",
            )
        out[by_id[lid]] = v
    return out


def apply_weight_transforms(mod: tvm.IRModule, transforms: WeightTransforms) -> tvm.IRModule:
    """Prune, then cluster (clustering keeps the zero-point code, so pruned weights stay zero)."""
    names = module_table(mod, LAYER_NAMES_ATTR)
    passes = []
    if transforms.sparsity is not None:
        passes.append(PruneWeights(_per_ir_name(transforms.sparsity, names), transforms.prune_scope))  # type: ignore[arg-type]
    if transforms.cluster_bits is not None:
        passes.append(ClusterWeights(_per_ir_name(transforms.cluster_bits, names)))  # type: ignore[arg-type]
    return tvm.transform.Sequential(passes)(mod) if passes else mod
