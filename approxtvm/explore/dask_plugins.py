"""Dask worker plugins of the exploration executors (imported only where ``distributed`` is)."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from approxtvm.explore.evaluator import limit_threads


class PinWorker(WorkerPlugin):
    """Pin each LocalCluster worker process to the core of its number (one compute thread)."""

    name = "approxtvm-pin-core"

    def setup(self, worker: Any) -> None:
        """Called in the worker process when it joins (again after a restart)."""
        try:
            core = int(worker.name)
        except (TypeError, ValueError):
            return
        limit_threads(core)
