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


def test_package_export_puts_the_partition_across_chiplets(tmp_path: Path) -> None:
    from approxtvm.targets.vacc.package import PackageMapping, Partition, sub_shape

    spec = AcceleratorSpec.load("simba_package_2x2")
    shape = resnet_layer_shapes("resnet18")[7][1]
    part = Partition((("K", 2), ("C", 2)))
    pm = PackageMapping(shape, part, map_layer(sub_shape(shape, part), spec))
    paths = export_timeloop(pm, spec, tmp_path)
    arch = _load(paths["arch"])["architecture"]
    chiplet = next(n for n in arch["nodes"] if n["name"] == "chiplet")
    assert chiplet["_tag"] == "Container" and chiplet["spatial"] == {"meshX": 4}
    assert _load(paths["problem"])["problem"]["instance"]["M"] == shape.k  # the whole layer
    entries = _load(paths["mapping"])["mapping"]
    across = [e for e in entries if e["target"] == "DRAM" and e["type"] == "spatial"]
    assert len(across) == 1 and "M=2" in across[0]["factors"] and "C=2" in across[0]["factors"]
    product = dict.fromkeys(TL_DIM.values(), 1)
    for e in entries:
        for kv in e["factors"].split():
            d, v = kv.split("=")
            product[d] *= int(v)
    assert product == {TL_DIM[d]: b for d, b in shape.bounds.items()}  # partition × chiplet nest = layer
    # a spec without a package keeps the plain chiplet container
    plain = _load(
        export_timeloop(
            map_layer(shape, AcceleratorSpec.load("simba_like")), AcceleratorSpec.load("simba_like"), tmp_path / "p"
        )["arch"]
    )
    assert "spatial" not in next(n for n in plain["architecture"]["nodes"] if n["name"] == "chiplet")
