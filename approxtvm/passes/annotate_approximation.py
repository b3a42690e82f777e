"""AnnotateApproximation: attach each layer's approximation config to the module."""

from __future__ import annotations

import tvm
from tvm import relax

from approxtvm.errors import PolicyError, ensure_ffi_errors
from approxtvm.targets.vacc.config import ApproxPolicy
from approxtvm.targets.vacc.partition import APPROX_ATTR, HOST_POLICY_ATTR, LAYER_NAMES_ATTR, layer_vars, module_table


def layer_ids(func: relax.Function) -> list[str]:
    """Ids (bound variable names) of the conv2d / matmul layers of ``func``, in program order."""
    return list(layer_vars(func).values())


@tvm.transform.module_pass(opt_level=0, name="AnnotateApproximation")
class AnnotateApproximation:
    """Record the :class:`ApproxConfig` of every layer in the ``vacc.approx`` module attribute.

    Run after :class:`NameLayers`. Composite-function attributes must be strings (DESIGN §2),
    so configs travel as canonical JSON; :func:`partition_for_vacc` copies each one onto its
    offloaded function. A policy rule that matches no layer is an error (a typo would otherwise
    silently leave a layer exact).

    Parameters
    ----------
    policy
        The policy to apply.
    entry
        Function whose layers are annotated.
    """

    def __init__(self, policy: ApproxPolicy, entry: str = "main") -> None:
        self.policy = policy
        self.entry = entry
        ensure_ffi_errors()

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if (mod.attrs is None or LAYER_NAMES_ATTR not in mod.attrs) and self._named_by_parameters(mod):
            from approxtvm.passes.name_layers import NameLayers

            mod = NameLayers()(mod)  # ids from the module itself (weight parameter names)
        names = module_table(mod, LAYER_NAMES_ATTR)
        var_names = layer_ids(mod[self.entry])
        ids = [names.get(v, v) for v in var_names]
        unmatched = self.policy.unmatched_rules(ids)
        if unmatched:
            raise PolicyError(
                f"policy rule(s) {', '.join(map(repr, unmatched))} match no layer",
                expected=f"layer ids or globs over: {', '.join(ids)}",
                found=", ".join(unmatched),
                fix="correct the layer names (`approxtvm inspect MODEL`)",
            )
        # keyed by IR variable name (what the offloaded functions carry), configs chosen by layer id
        table = {v: self.policy.config_for(lid).to_json() for v, lid in zip(var_names, ids, strict=True)}
        host = {
            v: "the policy keeps it on the host"
            for v, lid in zip(var_names, ids, strict=True)
            if self.policy.keeps_on_host(lid)
        }
        return mod.with_attr(APPROX_ATTR, table).with_attr(HOST_POLICY_ATTR, host)

    def _named_by_parameters(self, mod: tvm.IRModule) -> bool:
        """Whether the layers' weights are still parameters (NameLayers can read their names)."""
        func = mod[self.entry]
        attrs = func.attrs
        n_in = int(attrs["num_input"]) if attrs is not None and "num_input" in attrs else len(func.params)
        return len(func.params) > n_in
