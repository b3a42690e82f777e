"""kill -9 in the middle of `approxtvm explore`, start again: same Pareto set as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import approxtvm

REPO = Path(approxtvm.__path__[0]).resolve().parent


def _cmd(out: Path, journal: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "approxtvm.explore.cli_explore",
        "explore",
        "digits_cnn",
        "--limit",
        "40",
        "--pop-size",
        "6",
        "--generations",
        "3",
        "--seed",
        "5",
        "--workers",
        str(workers),
        "--multipliers",
        "exact",
        "trunc:k=4",
        "drum:k=5",
        "drum:k=4",
        "--swings",
        "nominal",
        "0.5",
        "--input-v",
        "0.9",
        "0.7",
        "--weight-v",
        "0.9",
        "0.7",
        "--out",
        str(out),
        "--journal",
        str(journal),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _count(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def _front(out: Path) -> list[tuple[str, float, float]]:
    d = json.loads((out / "pareto.json").read_text())
    # configurations, not keys: the keys include a fingerprint of the code, which may change between runs
    return [
        (json.dumps(p["config"], sort_keys=True), p["accuracy_loss"], p["energy_per_inference_pj"]) for p in d["pareto"]
    ]


def test_kill_9_then_resume_gives_the_uninterrupted_front(tmp_path: Path) -> None:
    # uninterrupted reference run in-process; the interrupted run uses a worker process
    full = subprocess.run(
        _cmd(tmp_path / "full", tmp_path / "full.sqlite", 0),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-2000:]
    total = _count(tmp_path / "full.sqlite")

    journal = tmp_path / "cut.sqlite"
    proc = subprocess.Popen(
        _cmd(tmp_path / "cut", journal, 1),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while _count(journal) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker process, mid-generation
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _count(journal)
    assert 5 <= done < total

    again = subprocess.run(
        _cmd(tmp_path / "cut", journal, 0), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert _count(journal) == total
    assert f"({total - done} evaluated now)" in again.stdout.replace("\n", " ")
    assert _front(tmp_path / "cut") == _front(tmp_path / "full")
