"""pilotq-mpi: an MPI-native pilot job for hybrid quantum-HPC workloads.

In a driver started with ``mpiexec -n N python -m pilotq_mpi app.py``::

    from pilotq_mpi import Pilot

    with Pilot() as pilot:
        future = pilot.submit(fn, 10, ranks=4)   # fn(comm, 10) on a 4-rank sub-communicator
"""
from .api import QPU, Pilot, TaskFuture
from .context import TaskContext, current_task
from .core.inventory import Inventory, QpuSpec, RankInfo
from .errors import (DependencyError, PilotError, PilotNotRunningError, RemoteError, RemoteTraceback,
                     ResourceError, TaskCrashedError, TaskTimeoutError, WalltimeError)

__version__ = "0.1.0"

__all__ = [
    "DependencyError", "Inventory", "Pilot", "PilotError", "PilotNotRunningError", "QPU", "QpuSpec",
    "RankInfo", "RemoteError", "RemoteTraceback", "ResourceError", "TaskContext", "TaskCrashedError",
    "TaskFuture", "TaskTimeoutError", "WalltimeError", "current_task",
]
