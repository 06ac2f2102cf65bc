"""The running pilot of this process (set on rank 0 by the bootstrap), for ``Pilot()`` to attach to."""
from __future__ import annotations

from ..errors import PilotNotRunningError

_master = None

USAGE = ("start the driver with the pilot: `mpiexec -n 6 python -m pilotq_mpi app.py`"
         " (or `pilotq-mpi run app.py -n 6`, or `srun ... python -m pilotq_mpi app.py` under Slurm)")


def install(master) -> None:
    """Make ``master`` the pilot that ``Pilot()`` attaches to in this process."""
    global _master
    _master = master


def current():
    """The running master; raise :class:`PilotNotRunningError` with the command to use if none."""
    if _master is None:
        from .. import context

        if context.current_task() is not None:
            raise PilotNotRunningError("Pilot() is for the driver: a task cannot submit tasks")
        raise PilotNotRunningError(f"no pilot is running in this process: {USAGE}")
    return _master
