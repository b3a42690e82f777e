"""How many threads the TVM kernels use: the pool's size, and a serial or parallel choice per call.

TVM sizes its thread pool once, when the first parallel kernel runs, from ``TVM_NUM_THREADS`` (or
``OMP_NUM_THREADS``); without either it takes half the logical CPUs on x86, assuming two SMT threads
per core. On a host without SMT that halves the cores (this 2-core machine got one thread). A
one-worker pool also pins the calling thread to CPU 0 (``TVM_BIND_THREADS``), and every thread it
starts later (onnxruntime's pools) inherits that mask: parallel processes that each run one TVM
thread then all share CPU 0.

:func:`configure_tvm_pool` therefore sets, before the pool exists and only where the user set
nothing, ``TVM_NUM_THREADS`` to the physical cores this process may use (read from the sysfs
topology, never assumed) and ``TVM_BIND_THREADS=0``. :func:`use_tvm_threads` then picks, before
each kernel call, one thread for small kernels (a wake-up of the pool costs more than it saves,
and the worker competes with onnxruntime's spinning threads) and the whole pool for kernels of at
least :data:`PARALLEL_MIN_MACS` multiply-accumulates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

#: Kernels with fewer products run on the calling thread only. A TVM table kernel does
#: 15–25 G MAC/s per thread, so this is ≈ 0.3 ms of work, against tens of µs to wake a worker.
PARALLEL_MIN_MACS = 1 << 23

#: Environment variables that fix TVM's pool size, in TVM's order of precedence.
THREAD_ENV_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")

SYSFS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class PoolSetting:
    """TVM's thread-pool size and where it came from.

    Attributes
    ----------
    threads
        Threads of the pool (``None``: left to TVM, which could not be told better).
    source
        ``"environment"`` (the user's ``TVM_NUM_THREADS`` / ``OMP_NUM_THREADS``), ``"sysfs"``
        (physical cores detected) or ``"tvm-default"`` (no topology readable).
    """

    threads: int | None
    source: str


def physical_cores(cpus: Iterable[int] | None = None, sysfs: Path = SYSFS_CPU) -> int | None:
    """Physical cores among ``cpus`` (default: the CPUs this process may run on).

    Two logical CPUs are one core when each lists the other as an SMT sibling
    (``topology/thread_siblings_list``). ``None`` when the topology cannot be read.
    """
    if cpus is None:
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            return None
    cores: set[frozenset[int]] = set()
    for cpu in cpus:
        try:
            text = (sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
        except OSError:
            return None
        cores.add(frozenset(_parse_cpu_list(text)))
    return len(cores) or None


def _parse_cpu_list(text: str) -> list[int]:
    """``"0-3,8"`` → ``[0, 1, 2, 3, 8]`` (the kernel's cpulist format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def configure_tvm_pool(environ: MutableMapping[str, str] | None = None, sysfs: Path = SYSFS_CPU) -> PoolSetting:
    """Set TVM's pool size (physical cores) and no thread pinning, unless the user chose them.

    Must run before TVM's first parallel kernel (the pool reads the environment once); later calls
    change nothing that is already set. An explicit ``TVM_NUM_THREADS`` (e.g. the exploration
    workers' ``1``) is kept.
    """
    env = os.environ if environ is None else environ
    env.setdefault("TVM_BIND_THREADS", "0")
    for var in THREAD_ENV_VARS:
        value = env.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return PoolSetting(int(value), "environment")
    cores = physical_cores(sysfs=sysfs)
    if cores is None:
        return PoolSetting(None, "tvm-default")
    env["TVM_NUM_THREADS"] = str(cores)
    return PoolSetting(cores, "sysfs")


def kernel_threads(macs: int, pool_threads: int, threads: int | None = None) -> int:
    """Threads for one kernel call of ``macs`` products: ``threads`` when the caller gave a count,
    else the whole pool for large kernels and one thread below :data:`PARALLEL_MIN_MACS`."""
    if threads is not None:
        return max(1, min(int(threads), pool_threads))
    return pool_threads if macs >= PARALLEL_MIN_MACS else 1


def use_tvm_threads(macs: int, threads: int | None = None) -> int:
    """Set the calling thread's TVM pool to :func:`kernel_threads` workers before a kernel call;
    returns the count. (TVM's pool is per calling thread; resizing it within its size is a few µs.)"""
    import tvm  # noqa: F401  (registers the runtime functions)
    import tvm_ffi

    configure_tvm_pool()
    pool = _pool_size()
    n = kernel_threads(macs, pool, threads)
    if int(tvm_ffi.get_global_func("runtime.NumThreads")()) != n:
        # affinity mode 1 (kBig: every core of a homogeneous CPU); TVM_BIND_THREADS=0 keeps it unpinned
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, n)
    return n


def _pool_size() -> int:
    """The pool's size as TVM computed it (from the environment set by :func:`configure_tvm_pool`)."""
    for var in THREAD_ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return max(1, (os.cpu_count() or 2) // 2)  # TVM's own rule when nothing is set


__all__ = [
    "PARALLEL_MIN_MACS",
    "PoolSetting",
    "configure_tvm_pool",
    "kernel_threads",
    "physical_cores",
    "use_tvm_threads",
]
