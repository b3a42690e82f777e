"""The demo report's knob-reach block (the whole demo runs in `make demo`)."""

from __future__ import annotations

from pathlib import Path

from approxtvm.explore.demo import _markdown
from approxtvm.explore.knob_reach import HostLayer, KnobReach


def test_demo_markdown_shows_the_knob_reach(tmp_path: Path) -> None:
    reach = KnobReach("m", 1000, 750, 100, 80, 750, 0, 0, 0, (HostLayer("fc", 250, "the policy keeps it"),), 0)
    row = {"policy": "p", "top1": 0.9, "agreement_with_exact": 1.0, "energy_per_inference_pj": 2e3, "pj_per_mac": 1.0}
    summary = {
        "model": "m",
        "samples": 10,
        "onnxruntime_qdq_top1": 0.9,
        "rows": [{**row, "applied_shares": reach.applied_shares()}],
        "knob_reach": reach.to_dict(),
    }
    _markdown(summary, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "| p | 90.00 | 100.0 | 2.0 | 1.000 | 75.0 |" in md
    assert "| approximate multiplier | MACs | 75.0 % |" in md
    assert "| SRAM voltage (energy and faults) | MACs | 75.0 % |" in md
    assert "| weight compression | weights | 80.0 % |" in md and "`fc` (the policy keeps it)" in md
