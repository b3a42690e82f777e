"""Sensitivity report: scenarios re-derive the knees and the combined front, checked independently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from approxtvm.explore.sensitivity import save_report, scale_energy, scenarios, sensitivity_report
from approxtvm.models import load_dataset
from approxtvm.targets.vacc.hardware import AcceleratorSpec


def test_scale_energy_moves_one_group_only() -> None:
    spec = AcceleratorSpec.load("simba_like")
    noc = scale_energy(spec, "noc", 1.25)
    assert noc.noc.link_energy_pj_per_bit == pytest.approx(1.25 * spec.noc.link_energy_pj_per_bit)
    assert noc.memories == spec.memories and noc.energy == spec.energy and noc.dram == spec.dram
    buf = scale_energy(spec, "buffers", 0.75)
    assert [m.read_energy_pj for m in buf.memories] == pytest.approx([0.75 * m.read_energy_pj for m in spec.memories])
    assert len(scenarios()) == 3 + 2 * 4


@pytest.fixture(scope="module")
def report():
    data = load_dataset("digits:test").take(96)
    return sensitivity_report(  # three scenarios of the eleven keep the fast suite fast; the CLI runs all
        "digits_cnn",
        data,
        swings=(0.45, 0.3),
        sram_volts=(0.6, 0.5),
        multipliers=("exact", "mul8u_FTA"),
        only=("BER x0.1", "BER x10", "noc energy x1.25"),
    )


def _knee(results, kind_prefix: str, limit: float):
    pts = [(float(k.split()[1]), r) for k, r in results.items() if k.startswith(kind_prefix)]
    ok = [(v, r) for v, r in pts if r.loss_pp <= limit]
    if not ok:
        return None, 0.0
    v, r = min(ok, key=lambda t: t[0])
    return v, 1 - r.energy_pj / results["nominal"].energy_pj


def test_knees_and_fronts_follow_from_the_measured_points(report) -> None:
    for sc, results in report.results.items():
        assert report.noc_knee[sc] == pytest.approx(_knee(results, "swing", report.loss_limit_pp))
        assert report.sram_knee[sc] == pytest.approx(_knee(results, "sram", report.loss_limit_pp))
        grid = [r for k, r in results.items() if "/" in k]
        for r in grid:  # a front member is dominated by nothing; a non-member by something
            dominated = any(
                q.loss_pp <= r.loss_pp
                and q.energy_pj <= r.energy_pj
                and (q.loss_pp, q.energy_pj) != (r.loss_pp, r.energy_pj)
                for q in grid
            )
            assert (r.label in report.front[sc]) == (not dominated)
    holds = report.holds()
    assert all(holds[c]["baseline"] for c in holds)


def test_energy_scenarios_reprice_exactly_and_ber_scenarios_move_accuracy(report) -> None:
    base, up = report.results["baseline"], report.results["noc energy x1.25"]
    # the nominal run's NoC share, measured independently on the baseline model
    from approxtvm.compiler.driver import compile_onnx
    from approxtvm.explore.fault_sweeps import _setup

    s = _setup("digits_cnn", load_dataset("digits:test").take(8), None, "simba_like", 64)
    comp = compile_onnx(s.proto, accelerator=s.spec, batch_size=64).energy_per_batch().by_component()
    noc_pj = (comp["noc_link"] + comp["noc_router"]) / 64
    assert up["nominal"].energy_pj - base["nominal"].energy_pj == pytest.approx(0.25 * noc_pj, rel=1e-6)
    assert up["nominal"].loss_pp == base["nominal"].loss_pp == 0.0
    # ten times the bit error rate at the lowest swing cannot lose less than the model itself
    lo = "swing 0.3 V"
    assert report.results["BER x10"][lo].loss_pp >= report.results["BER x0.1"][lo].loss_pp


def test_report_files(report, tmp_path: Path) -> None:
    md = save_report(report, tmp_path)
    text = md.read_text()
    assert "| BER x10 |" in text and "search.md" in text
    doc = json.loads((tmp_path / "sensitivity.json").read_text())
    assert set(doc["holds"]) == {"NoC knee swing", "SRAM knee voltage", "combined front"}


def test_experiments_full_runs_the_sensitivity_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from approxtvm.explore import experiments, sensitivity, sensitivity_search
    from approxtvm.explore.experiments.sensitivity_section import sensitivity_section

    calls = []

    def fake(model, data, **kw):
        calls.append((model, len(data)))
        r = sensitivity.SensitivityReport(1.0)
        for sc in ("baseline", "BER x10"):
            r.noc_knee[sc] = (0.4 if sc == "baseline" else 0.45, 0.01)
            r.sram_knee[sc] = (0.6, 0.02)
            r.front[sc] = ["a"]
        return r

    def fake_search(model, out, **kw):
        calls.append(("search", kw["budget"].limit))
        r = sensitivity_search.SearchSensitivity(kw["budget"], kw["knee_max_loss"])
        for sc in ("baseline", "BER x10"):
            knee = {"label": "k", "knobs": "swing 0.4 V", "accuracy_loss": 0.0, "energy_rel": 0.9}
            r.searches[sc] = sensitivity_search.ScenarioSearch(sc, 3, 0.1, [], knee, order_holds=sc == "baseline")
        return r

    monkeypatch.setattr(sensitivity, "sensitivity_report", fake)
    monkeypatch.setattr(sensitivity_search, "run_search_report", fake_search)
    assert experiments.ExperimentSettings.full().sensitivity and not experiments.ExperimentSettings.quick().sensitivity
    notes: list[str] = []
    s = experiments.ExperimentSettings.quick().with_limit(30)
    sensitivity_section(s, tmp_path, notes, None)
    assert calls == [("digits_cnn", 30), ("search", 30)]  # the search gets at most the section's images
    assert "BER x10" in (tmp_path / "sensitivity" / "sensitivity.md").read_text()  # the report that was made
    assert notes and "BER x10" in notes[0]  # the NoC knee moved in that scenario
