"""list / show / import functions behind `approxtvm multipliers`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from approxtvm.errors import MultiplierError
from approxtvm.runtime.multipliers import EvoApproxLibrary, family_multiplier, resolve_multiplier, save_lut
from approxtvm.runtime.multipliers.cli import (
    import_multiplier,
    list_multipliers,
    print_import,
    print_list,
    print_show,
    show_multiplier,
)


def test_list_sorted_by_power_and_error():
    rows = list_multipliers("power", signed=False)
    powers = [r.power_mw for r in rows]
    assert powers == sorted(powers)
    names = {r.name for r in rows}
    assert {"mul8u_2HH", "mul8u_1JFF", "bam:h=4,v=0", "mitchell"} <= names
    assert all(not r.signed for r in rows)
    by_mae = list_multipliers("mae", signed=True)
    maes = [r.mae_pct for r in by_mae]
    assert maes == sorted(maes) and all(r.signed for r in by_mae)
    with pytest.raises(MultiplierError, match="cannot sort"):
        list_multipliers("speed")


@pytest.mark.real_circuit
def test_list_marks_availability(pack, cache_dir):
    rows = list_multipliers(include_v2022=True, library=EvoApproxLibrary(cache_dir=cache_dir))
    evo = [r for r in rows if r.kind == "evoapprox"]
    assert len(evo) == 103 and all(r.available for r in evo)  # packaged: every name offline
    unpackaged = EvoApproxLibrary(cache_dir=cache_dir, packaged=False)
    local = EvoApproxLibrary(root=pack, cache_dir=cache_dir, packaged=False)
    rows = {r.name: r for r in list_multipliers(library=local)}
    assert rows["mul8u_2HH"].available
    rows = {r.name: r for r in list_multipliers(library=unpackaged)}
    assert not rows["mul8u_2HH"].available and rows["bam:h=4,v=0"].available


def test_show_writes_a_heatmap(tmp_path):
    rep = show_multiplier("bam:h=4,v=0", tmp_path / "bam.png")
    assert rep.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep.metrics.wce == 49 and rep.power_is_estimate and rep.commutative
    assert rep.to_dict()["png_path"].endswith("bam.png")


@pytest.mark.real_circuit
def test_import_catalogue_table_then_resolve_offline(pack, cache_dir, monkeypatch):
    monkeypatch.setenv("APPROXTVM_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("APPROXTVM_EVOAPPROX", raising=False)
    res = import_multiplier(pack / "luts" / "mul8u_2HH.bin")
    assert res.catalogue_key == "v1/mul8u_2HH" and res.use_as == "mul8u_2HH"
    m = resolve_multiplier("mul8u_2HH")  # offline, from the cache
    assert m.power_mw == 0.302 and m.metrics.wce == 115
    assert resolve_multiplier("v2022/mul8u_0AB").table_hash == m.table_hash  # same circuit, stored too
    rep = show_multiplier("mul8u_2HH")
    assert rep.published["power_mw"] == 0.302


def test_import_user_table_and_transposed(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("APPROXTVM_CACHE_DIR", str(cache_dir))
    rng = np.random.default_rng(3)
    t = rng.integers(0, 65536, (256, 256))
    src = tmp_path / "adapt_style.bin"
    save_lut(type(family_multiplier("exact"))("x", t, False), src)
    res = import_multiplier(src, transposed=True)
    assert res.catalogue_key is None and res.use_as == "adapt_style"
    m = resolve_multiplier("adapt_style")
    assert np.array_equal(m.table, t.T)
    with pytest.raises(MultiplierError, match="cannot import"):
        import_multiplier(tmp_path / "table.txt")


@pytest.mark.real_circuit
def test_rich_renderers(tmp_path, cache_dir, monkeypatch, pack):
    monkeypatch.setenv("APPROXTVM_CACHE_DIR", str(cache_dir))
    buf = io.StringIO()
    con = Console(file=buf, width=140)
    print_list(con, "wce", False)
    print_show(con, "drum:k=4", tmp_path / "d.png")
    print_import(con, str(pack / "luts" / "mul8s_1L2H.bin"))
    out = buf.getvalue()
    assert "mul8u_2HH" in out and "drum:k=4" in out and "v1/mul8s_1L2H" in out
