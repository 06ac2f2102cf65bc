"""The master's bookkeeping for one task (plain data; no MPI)."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..core.specs import TaskSpec
from ..core.states import TaskEvent, TaskState, next_state


@dataclass(slots=True)
class Submission:
    """A task as the driver hands it to the master."""

    task_id: int
    fn_id: int
    fn: bytes
    """The pickled function (sent once to each worker that runs it)."""
    payload: bytes
    """The pickled ``(args, kwargs)``."""
    spec: TaskSpec
    future: Future
    deps: frozenset[int]
    kind: str
    submitted: float
    chunk: bool = False
    key: str | None = None
    journal: Any = None
    """The :class:`~pilotq_mpi.journal.Journal` that records this task's outcome, if any."""


@dataclass(slots=True)
class TaskRecord:
    """Everything the master tracks for a live task."""

    sub: Submission
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    ranks: tuple[int, ...] = ()
    pending: set[int] = field(default_factory=set)
    values: dict[int, Any] = field(default_factory=dict)
    error: BaseException | None = None
    result: Any = None
    traceback: str = ""
    timed_out: bool = False
    started: float | None = None
    """Earliest start reported by the task's ranks (this attempt)."""
    ended: float | None = None
    """Latest end reported by the task's ranks, or when the master ended the task."""
    rank_spans: dict[int, tuple[float, float]] = field(default_factory=dict)
    """World rank -> that rank's own ``(started, ended)`` as it reported them (this attempt)."""
    failed_at: float | None = None
    deadline: float | None = None
    moves: int = 0
    """Attempts that ended because their ranks left the pilot (re-queued; they use up no retry)."""

    @property
    def retries_used(self) -> int:
        """Attempts that ended in a failure or a timeout (not counting moves)."""
        return self.attempt - self.moves

    @property
    def task_id(self) -> int:
        return self.sub.task_id

    @property
    def spec(self) -> TaskSpec:
        return self.sub.spec

    @property
    def name(self) -> str:
        return self.sub.spec.name or self.sub.kind

    def fire(self, event: TaskEvent) -> TaskState:
        """Apply ``event`` through the state machine; return the new state."""
        self.state = next_state(self.state, event)
        return self.state

    def reset_attempt(self) -> None:
        """Forget the outcome of the last attempt before a retry."""
        self.attempt += 1
        self.ranks, self.pending, self.values, self.rank_spans = (), set(), {}, {}
        self.error, self.traceback, self.timed_out = None, "", False
        self.failed_at = self.deadline = None
