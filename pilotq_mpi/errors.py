"""Exceptions a pilot user can see, and the pilot's exit codes (no MPI import here)."""
from __future__ import annotations

EXIT_OK = 0
EXIT_DRIVER_FAILED = 1
"""The driver script raised (or Ctrl-C): queued tasks were cancelled, running ones abandoned."""
EXIT_USAGE = 2
"""Bad options of ``python -m pilotq_mpi``, or the driver script does not exist."""
EXIT_STUCK_RANKS = 3
"""At the end, ranks of a failed multi-rank task were still blocked in a collective."""
EXIT_JOIN_FAILED = 4
"""``--join DIR`` found no live pilot there, or the pilot refused the join (e.g. it is draining)."""
EXIT_PILOT_GONE = 5
"""A joined allocation lost its pilot (the master's heartbeat stopped) and left."""
EXIT_INCOMPLETE = 75
"""The pilot drained on SIGUSR1/SIGTERM (walltime): rerun with the same journal to resume."""


class PilotError(Exception):
    """Base class of the pilot's own errors."""


class ResourceError(PilotError, ValueError):
    """A task asks for resources this pilot can never provide (raised by ``submit``)."""


class PilotNotRunningError(PilotError, RuntimeError):
    """``Pilot()`` was used outside a driver started by ``python -m pilotq_mpi``."""


class DependencyError(PilotError, RuntimeError):
    """A task did not run because a task it depends on (``after=``) did not succeed."""


class WalltimeError(PilotError, RuntimeError):
    """A task was cancelled because the pilot drained before its allocation ended."""


class AbandonedError(PilotError, RuntimeError):
    """A running task's result was given up because the driver failed (the job is ending)."""


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a task on a worker rank.

    Set as ``__cause__`` of the exception a task future holds, so that the
    traceback printed on the driver shows where the task failed (rank and host).
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


class RemoteError(PilotError, RuntimeError):
    """Stands in for a task exception that could not be pickled back to the driver."""


class TaskTimeoutError(PilotError, TimeoutError):
    """A task ran longer than its ``timeout=``."""


class TaskCrashedError(PilotError, RuntimeError):
    """An isolated task's child process died (a signal such as SIGSEGV, or a hard exit)."""
