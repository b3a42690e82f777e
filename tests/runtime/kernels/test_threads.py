"""TVM thread-pool sizing from the core topology, and the serial/parallel choice per kernel call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from approxtvm.runtime.kernels import threads as th


def _fake_sysfs(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        d = root / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(text + "\n")
    return root


def test_physical_cores_counts_smt_siblings_once(tmp_path: Path) -> None:
    smt = _fake_sysfs(tmp_path / "smt", {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert th.physical_cores([0, 1, 2, 3], smt) == 2
    assert th.physical_cores([0, 2], smt) == 1  # both threads of one core
    ranges = _fake_sysfs(tmp_path / "ranges", {c: "0-3" if c < 4 else "4-7" for c in range(8)})
    assert th.physical_cores(range(8), ranges) == 2
    plain = _fake_sysfs(tmp_path / "plain", {c: str(c) for c in range(3)})
    assert th.physical_cores([0, 1, 2], plain) == 3
    assert th.physical_cores([0, 5], plain) is None  # cpu5 has no topology: unknown, not guessed


def _cpuinfo_cores(cpus: set[int]) -> int | None:
    """Independent count: distinct (physical id, core id) of the allowed processors in /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    seen = set()
    for block in text.strip().split("\n\n"):
        kv = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        kv = {k.strip(): v.strip() for k, v in kv.items()}
        if "core id" not in kv or int(kv["processor"]) not in cpus:
            continue
        seen.add((kv.get("physical id", "0"), kv["core id"]))
    return len(seen) or None


def test_physical_cores_of_this_host_match_cpuinfo() -> None:
    cpus = os.sched_getaffinity(0)
    ref = _cpuinfo_cores(cpus)
    if ref is None:
        pytest.skip("/proc/cpuinfo lists no core ids on this host (no independent count)")
    assert th.physical_cores() == ref


def test_configure_keeps_the_users_choice(tmp_path: Path) -> None:
    sysfs = _fake_sysfs(tmp_path, {c: str(c) for c in range(os.cpu_count() or 1)})
    env = {"TVM_NUM_THREADS": "1"}  # the exploration workers' setting
    assert th.configure_tvm_pool(env, sysfs) == th.PoolSetting(1, "environment")
    assert env == {"TVM_NUM_THREADS": "1", "TVM_BIND_THREADS": "0"}
    env = {"OMP_NUM_THREADS": "3", "TVM_BIND_THREADS": "1"}
    assert th.configure_tvm_pool(env, sysfs) == th.PoolSetting(3, "environment")
    assert env == {"OMP_NUM_THREADS": "3", "TVM_BIND_THREADS": "1"}


def test_configure_sets_physical_cores_or_leaves_tvm_default(tmp_path: Path) -> None:
    ncpu = len(os.sched_getaffinity(0))
    smt = _fake_sysfs(tmp_path / "a", {c: f"{c - c % 2},{c - c % 2 + 1}" for c in range(ncpu + 1)})
    env: dict[str, str] = {}
    setting = th.configure_tvm_pool(env, smt)
    assert setting.source == "sysfs"
    assert env["TVM_NUM_THREADS"] == str(setting.threads) == str(len({c // 2 for c in os.sched_getaffinity(0)}))
    env = {}
    assert th.configure_tvm_pool(env, tmp_path / "missing") == th.PoolSetting(None, "tvm-default")
    assert env == {"TVM_BIND_THREADS": "0"}


def test_kernel_threads_serial_below_the_threshold() -> None:
    assert th.kernel_threads(th.PARALLEL_MIN_MACS - 1, 4) == 1
    assert th.kernel_threads(th.PARALLEL_MIN_MACS, 4) == 4
    assert th.kernel_threads(10, 4, threads=3) == 3  # an explicit count wins
    assert th.kernel_threads(10**12, 2, threads=8) == 2  # capped by the pool


_CHILD = r"""
import json, os, sys
import numpy as np
from approxtvm.runtime.kernels import KernelCache, conv2d_products
from approxtvm.runtime.kernels.reference import conv2d_products_reference
from approxtvm.runtime.multipliers import resolve_multiplier
import tvm, tvm_ffi  # noqa: E401

nthreads = tvm_ffi.get_global_func("runtime.NumThreads")
mult = resolve_multiplier("mitchell")
rng = np.random.default_rng(3)
cache = KernelCache()
out = {"affinity_before": sorted(os.sched_getaffinity(0))}
for tag, (c, hw) in {"small": (8, 6), "large": (64, 32)}.items():
    x = rng.integers(0, 256, (1, c, hw, hw), dtype=np.uint8)
    w = rng.integers(0, 256, (c, c, 3, 3), dtype=np.uint8)
    y = conv2d_products(x, w, mult, pads=(1, 1, 1, 1), path="table", cache=cache)
    out[tag + "_threads"] = int(nthreads())
    y1 = conv2d_products(x, w, mult, pads=(1, 1, 1, 1), path="table", cache=cache, threads=1)
    out[tag + "_same_1_thread"] = bool(np.array_equal(y, y1))
    if tag == "small":
        ref = conv2d_products_reference(x, w, mult, pads=(1, 1, 1, 1))
        out["small_equals_reference"] = bool(np.array_equal(y, ref))
    out[tag + "_macs"] = c * c * 9 * hw * hw
out["affinity_after"] = sorted(os.sched_getaffinity(0))
out["env"] = os.environ.get("TVM_NUM_THREADS")
print(json.dumps(out))
"""


def _child(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "TVM_BIND_THREADS")}
    env.update(env_extra)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_fresh_process_pool_is_physical_cores_and_unpinned() -> None:
    pytest.importorskip("tvm")
    cores = th.physical_cores()
    if cores is None:
        pytest.skip("no readable CPU topology on this host")
    out = _child({})
    assert out["env"] == str(cores)
    assert out["large_macs"] >= th.PARALLEL_MIN_MACS > out["small_macs"]
    assert out["small_threads"] == 1  # small kernel: calling thread only
    assert out["large_threads"] == cores
    assert out["small_same_1_thread"] and out["large_same_1_thread"] and out["small_equals_reference"]
    # TVM's pool must not pin the process (its later threads, e.g. onnxruntime's, inherit the mask)
    assert out["affinity_after"] == out["affinity_before"]


def test_explicit_one_thread_is_kept_and_unpinned() -> None:
    pytest.importorskip("tvm")
    out = _child({"TVM_NUM_THREADS": "1"})
    assert out["env"] == "1"
    assert out["small_threads"] == out["large_threads"] == 1
    assert out["affinity_after"] == out["affinity_before"]
