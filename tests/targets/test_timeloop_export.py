"""Timeloop v4 export: the files parse, and the mapping's factors reproduce the layer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from approxtvm.models.layer_shapes import resnet_layer_shapes
from approxtvm.targets.vacc.hardware import AcceleratorSpec
from approxtvm.targets.vacc.mapper import map_layer
from approxtvm.targets.vacc.timeloop_export import TL_DIM, export_timeloop


class _TagLoader(yaml.SafeLoader):
    """Reads ``!Component``/``!Container`` nodes as plain dicts with a ``_tag`` key."""


_TagLoader.add_multi_constructor("!", lambda ld, tag, node: {"_tag": tag, **ld.construct_mapping(node, deep=True)})


def _load(p: Path) -> Any:
    return yaml.load(p.read_text(), Loader=_TagLoader)


@pytest.mark.parametrize("index", [0, 7, 20])
def test_export_round_trip(tmp_path: Path, index: int) -> None:
    spec = AcceleratorSpec.load("simba_like")
    shape = resnet_layer_shapes("resnet18")[index][1]
    m = map_layer(shape, spec)
    paths = export_timeloop(m, spec, tmp_path)
    arch = _load(paths["arch"])["architecture"]
    names = [n["name"] for n in arch["nodes"]]
    assert names.index("DRAM") < names.index("GlobalBuffer") < names.index("PEAccuBuffer") < names.index("MAC")
    gb = next(n for n in arch["nodes"] if n["name"] == "GlobalBuffer")
    assert gb["_tag"] == "Component" and gb["constraints"]["dataspace"]["bypass"] == ["Weights"]
    assert gb["attributes"]["depth"] * gb["attributes"]["width"] == 64 * 1024 * 8
    prob = _load(paths["problem"])["problem"]
    assert prob["instance"]["M"] == shape.k and prob["instance"]["P"] == shape.p
    entries = _load(paths["mapping"])["mapping"]
    product = dict.fromkeys(TL_DIM.values(), 1)
    for e in entries:
        assert sorted(e["permutation"]) == sorted("GCMRSNPQ")
        for kv in e["factors"].split():
            d, v = kv.split("=")
            product[d] *= int(v)
    assert product == {TL_DIM[d]: b for d, b in shape.bounds.items()}
    spatial = [e for e in entries if e["type"] == "spatial"]
    assert math.prod(int(kv.split("=")[1]) for e in spatial for kv in e["factors"].split()) == m.spatial_macs()
