"""ClusterWeights: weight sharing — each layer's codes replaced by 2^b shared values."""

from __future__ import annotations

import numpy as np
import tvm

from approxtvm.errors import PolicyError, ensure_ffi_errors
from approxtvm.passes.prune_weights import (
    check_layer_ids,
    host_functions,
    layer_weights,
    rebuild,
    replace_weights,
)
from approxtvm.targets.vacc.compression.transforms import cluster_codes

__all__ = ["MAX_BITS", "MIN_BITS", "ClusterWeights", "cluster_codes"]

#: Supported index widths (2^b shared values per layer).
MIN_BITS, MAX_BITS = 2, 6


@tvm.transform.module_pass(opt_level=0, name="ClusterWeights")
class ClusterWeights:
    """Replace each layer's weight codes by at most ``2^bits`` shared values (1-D k-means).

    Runs where :class:`~approxtvm.passes.prune_weights.PruneWeights` runs (quantized constants,
    after :class:`NameLayers`, before partitioning), typically after it: the zero-point code is
    kept as a centroid, so pruned weights stay zero. The clustered layer then fits the
    ``codebook`` / ``codebook_bitmask`` encodings with ``bits``-bit indices. See
    :func:`~approxtvm.targets.vacc.compression.transforms.cluster_codes`.

    Parameters
    ----------
    bits
        One index width for every layer, or layer id → width (other layers are left alone; an
        id that matches no quantized layer is an error). Each width is in 2..6.
    """

    def __init__(self, bits: int | dict[str, int]) -> None:
        ensure_ffi_errors()
        values = bits.values() if isinstance(bits, dict) else [bits]
        for b in values:
            valid = isinstance(b, int | np.integer) and not isinstance(b, bool)
            if not valid or not MIN_BITS <= int(b) <= MAX_BITS:
                raise PolicyError(
                    "ClusterWeights: index width out of range",
                    expected=f"an integer in {MIN_BITS}..{MAX_BITS}",
                    found=repr(b),
                    fix="e.g. bits=4 keeps 16 shared values per layer",
                )
        self.bits = {k: int(v) for k, v in bits.items()} if isinstance(bits, dict) else int(bits)

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        per_func = {gv: layer_weights(f) for gv, f in host_functions(mod)}
        found = {lid: w for ws, _ in per_func.values() for lid, w in ws.items()}
        missing = [lid for _, ms in per_func.values() for lid in ms]
        if isinstance(self.bits, dict):
            check_layer_ids(list(self.bits), found, missing, "ClusterWeights", "bits")
            targets = {lid: self.bits[lid] for lid in found if lid in self.bits}
        else:
            targets = dict.fromkeys(found, self.bits)
        funcs = {}
        for gv, (ws, _) in per_func.items():
            repl = {}
            for lid, w in ws.items():
                if lid in targets:
                    zp = w.zero_point
                    if zp.size > 1 and np.unique(zp).size > 1:
                        raise PolicyError(
                            f"ClusterWeights: layer {lid!r} has per-channel zero points",
                            expected="one zero point per layer",
                            found=f"{np.unique(zp).size} distinct zero points",
                            fix="leave this layer out of `bits` or quantize it per tensor",
                        )
                    repl[w.dequantize] = cluster_codes(w.codes, targets[lid], int(zp.reshape(-1)[0]))
            if repl:
                funcs[gv] = replace_weights(mod[gv], repl)
        return rebuild(mod, funcs)
