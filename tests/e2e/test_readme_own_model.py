"""The README's "Your own model" block runs as written and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the README block exports a model with torch (the optional `train` extra)")

pytestmark = pytest.mark.tvm

README = Path(__file__).resolve().parents[2] / "README.md"


def _block() -> str:
    text = README.read_text()
    section = text.split("## Your own model", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README section"
    return match.group(1)


def test_own_model_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(_block(), "README.md", "exec"), scope)  # the documented block, as written
    model, res = scope["model"], scope["res"]
    assert model.layer_ids == ["/0/Conv", "/5/Conv", "/9/Gemm"]  # as the block's comments say
    assert model.host_reasons == {"/3/Conv": "the policy keeps it on the host"}
    assert model.schedules["/5/Conv"].config.multiplier == "mul8u_2HH"
    assert model.schedules["/9/Gemm"].config.multiplier == "drum:k=4"
    # the depthwise conv: 16 channels × 9 taps × 32×32 pixels per image, 8 images
    assert res.energy.host_macs == 16 * 9 * 32 * 32 * 8
    assert 0 < res.energy.host_mac_share < 1 and "1 host layer" in res.energy.coverage_note()
