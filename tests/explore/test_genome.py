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


def test_default_library_is_evoapprox_pareto_set() -> None:
    from approxtvm.explore.genome import DEFAULT_MULTIPLIERS, EVOAPPROX_MULTIPLIERS
    from approxtvm.runtime.multipliers import pareto_set, resolve_multiplier

    front = [e.name for e in pareto_set(signed=False)]
    assert front[0] == "mul8u_1JFF"  # the exact circuit, spelled "exact" in the library
    assert DEFAULT_MULTIPLIERS == EVOAPPROX_MULTIPLIERS == ("exact", *front[1:])
    powers = [resolve_multiplier(m).power_mw for m in EVOAPPROX_MULTIPLIERS[1:]]
    assert powers == sorted(powers, reverse=True) and powers[-1] < 0.01 < 0.39 < powers[0] + 0.01
    # no v1 unsigned circuit is both cheaper and more accurate than a member; every other is beaten
    from approxtvm.runtime.multipliers import load_catalog

    pool = [e for e in load_catalog() if e.release == "v1" and not e.signed and e.mae_pct <= 10.0]
    names = set(EVOAPPROX_MULTIPLIERS) | {"mul8u_1JFF"}
    for e in pool:
        beaten = any(
            o.power_mw <= e.power_mw
            and o.mae_pct <= e.mae_pct
            and o != e
            and (o.power_mw, o.mae_pct) != (e.power_mw, e.mae_pct)
            for o in pool
        )
        assert beaten == (e.name not in names) or e.name == "mul8u_LM7", e.name  # LM7 = EXZ, same table


K_SPACE = SearchSpace(("a", "b", "c", "d", "e"), ("exact", "m1", "m2", "m3", "m4"), (None,), (0.9,), (0.9,), (0,), 2)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=5, max_size=5))
def test_at_most_k_distinct_multipliers(mults: list[int]) -> None:
    c = K_SPACE.decode([*mults, 0, 0, 0, 0])
    used = [c.multiplier_for(lid) for lid in K_SPACE.layer_ids]
    assert len(set(used)) <= 2
    if len(set(mults)) <= 2:  # within the limit: unchanged
        assert used == [K_SPACE.multipliers[m] for m in mults]
    else:  # the two most used kept; every other layer moved to the nearest kept one in library order
        kept = {K_SPACE.multipliers.index(m) for m in used}
        counts = {m: mults.count(m) for m in set(mults)}
        assert min(counts[k] for k in kept) >= max(v for m, v in counts.items() if m not in kept)
        for m, u in zip(mults, used, strict=True):
            assert abs(K_SPACE.multipliers.index(u) - m) == min(abs(k - m) for k in kept)


def test_k_distinct_examples_and_bad_k() -> None:
    g = K_SPACE.repair([0, 1, 1, 4, 4, 0, 0, 0, 0])  # 1 and 4 most used (tie with nothing), 0 → 1
    assert g[:5].tolist() == [1, 1, 1, 4, 4]
    assert K_SPACE.repair([0, 1, 2, 3, 4, 0, 0, 0, 0])[:5].tolist() == [0, 1, 1, 1, 1]  # ties: lower index
    with pytest.raises(ExplorationError, match="max_distinct_multipliers"):
        SearchSpace(("a",), ("exact",), max_distinct_multipliers=0)
