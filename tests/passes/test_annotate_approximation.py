"""AnnotateApproximation: the side table it writes, and policy typos it rejects."""

from __future__ import annotations

import json

import pytest

from approxtvm.errors import PolicyError
from approxtvm.passes.annotate_approximation import AnnotateApproximation, layer_ids
from approxtvm.passes.name_layers import NameLayers
from approxtvm.targets.vacc.config import ApproxConfig, ApproxPolicy
from approxtvm.targets.vacc.partition import APPROX_ATTR

from .test_name_layers import Before, Expected


def test_side_table_holds_each_layers_config() -> None:
    named = NameLayers({"w1_q": "conv1", "wf_q": "fc"})(Before)
    policy = ApproxPolicy.per_layer({"conv*": {"multiplier": "bam:h=4,v=0", "noc_swing_v": 0.5}})
    after = AnnotateApproximation(policy)(named)
    table = {k: json.loads(str(v)) for k, v in after.attrs[APPROX_ATTR].items()}
    assert set(table) == {"conv1", "fc"}
    assert ApproxConfig.from_dict(table["conv1"]) == ApproxConfig("bam:h=4,v=0", 0.5)
    assert ApproxConfig.from_dict(table["fc"]) == ApproxConfig()
    # the function itself is unchanged: only the module attribute is added
    assert after["main"].script() == Expected["main"].script()


def test_layer_ids_in_program_order() -> None:
    assert layer_ids(Expected["main"]) == ["conv1", "fc"]


def test_rule_matching_no_layer_is_an_error() -> None:
    named = NameLayers({"w1_q": "conv1", "wf_q": "fc"})(Before)
    with pytest.raises(PolicyError, match="conv9"):
        AnnotateApproximation(ApproxPolicy.per_layer({"conv9": "exact"}))(named)
