"""pilotq-mpi: an MPI-native pilot job for hybrid quantum-HPC workloads.

In a driver started with ``mpiexec -n N python -m pilotq_mpi app.py``::

    from pilotq_mpi import Pilot

    with Pilot() as pilot:
        future = pilot.submit(fn, 10, ranks=4)   # fn(comm, 10) on a 4-rank sub-communicator

The names below are imported on first use, so that worker ranks (which never need the
driver's API) start faster.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Pilot": "api", "QPU": "api", "TaskFuture": "api",
    "TaskContext": "context", "current_task": "context",
    "Inventory": "core.inventory", "QpuSpec": "core.inventory", "RankInfo": "core.inventory",
    "Adapt": "core.adapt", "JoinTemplate": "core.adapt",
    "plan": "workflows.planner",
    **{name: "errors" for name in (
        "DependencyError", "PilotError", "PilotNotRunningError", "RemoteError", "RemoteTraceback",
        "AbandonedError", "ResourceError", "TaskCrashedError", "TaskTimeoutError", "WalltimeError")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pilotq_mpi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
