"""Genome ↔ configuration: canonical forms, decoding, uniform seeds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approxtvm.errors import ExplorationError
from approxtvm.explore.genome import Configuration, SearchSpace

SPACE = SearchSpace(
    ("conv1", "conv2", "fc"), ("exact", "trunc:k=4", "drum:k=4"), (None, 0.6, 0.4), (0.9, 0.7), (0.9, 0.6), (0, 4)
)


def test_canonical_form_drops_what_means_nothing() -> None:
    a = Configuration.make(
        {"conv1": "exact", "fc": "drum:k=4"},
        noc_swing_v=None,
        noc_protected_msbs=4,
        sram_v={"input_buffer": 0.9, "weight_buffer": 0.6},
    )
    b = Configuration.make({"fc": "drum:k=4"}, sram_v={"weight_buffer": 0.6})
    assert a == b and a.to_json() == b.to_json()
    assert a.multiplier_for("conv1") == "exact" and a.multiplier_for("fc") == "drum:k=4"


def test_policy_matches_configuration() -> None:
    c = Configuration.make({"conv2": "trunc:k=4"}, noc_swing_v=0.5, noc_protected_msbs=2, sram_v={"input_buffer": 0.7})
    pol = c.policy()
    assert pol.config_for("conv2").multiplier == "trunc:k=4"
    assert pol.config_for("conv1").multiplier == "exact"
    for lid in ("conv1", "conv2"):
        cfg = pol.config_for(lid)
        assert cfg.noc_swing_v == 0.5 and cfg.noc_protected_msbs == 2 and cfg.sram_v_map == {"input_buffer": 0.7}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=3, max_size=3),
    st.integers(0, 2),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 1),
)
def test_any_genome_decodes_and_round_trips(mults: list[int], s: int, i: int, w: int, p: int) -> None:
    c = SPACE.decode([*mults, s, i, w, p])
    assert Configuration.from_dict(c.to_dict()) == c
    assert [c.multiplier_for(lid) for lid in SPACE.layer_ids] == [SPACE.multipliers[m] for m in mults]
    assert c.noc_swing_v == SPACE.swings_v[s]


def test_uniform_genomes_are_the_seeds() -> None:
    seeds = [SPACE.decode(g) for g in SPACE.uniform_genomes()]
    assert seeds[0] == Configuration()
    assert seeds[2] == Configuration.make({lid: "drum:k=4" for lid in SPACE.layer_ids})


def test_bad_genome_and_space_are_rejected() -> None:
    with pytest.raises(ExplorationError, match="does not fit"):
        SPACE.decode([0, 0, 3, 0, 0, 0, 0])
    with pytest.raises(ExplorationError, match="repeats"):
        SearchSpace(("a",), ("exact", "exact"))
    with pytest.raises(ExplorationError, match="empty"):
        SearchSpace(())
