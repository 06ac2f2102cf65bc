"""The task state machine as a transition table (pure, no MPI).

::

    PENDING --deps_met--> QUEUED --placed--> RUNNING --succeeded--> DONE
       |                    |                   |--raised-----> FAILED
       |--deps_failed--> FAILED                 |--timed_out--> TIMED_OUT
       |--cancel-------> CANCELLED <--cancel----|--retry------> QUEUED
                              ^--------cancel (walltime drain)--|--requeue----> QUEUED
                                                                    (its ranks left the pilot)
"""
from __future__ import annotations

import enum


class TaskState(str, enum.Enum):
    """Where a task is in its life; the last four are terminal."""

    PENDING = "pending"
    """Waiting for the tasks it depends on."""
    QUEUED = "queued"
    """Ready; waiting for free ranks."""
    RUNNING = "running"
    """Assigned to ranks."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        """True when the task will never change state again."""
        return self in TERMINAL


TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT})
"""The terminal states (``state in TERMINAL`` is what :attr:`TaskState.terminal` says, without a call)."""


class TaskEvent(str, enum.Enum):
    """Things that happen to a task."""

    DEPS_MET = "deps_met"
    DEPS_FAILED = "deps_failed"
    PLACED = "placed"
    SUCCEEDED = "succeeded"
    RAISED = "raised"
    TIMED_OUT = "timed_out"
    RETRY = "retry"
    REQUEUE = "requeue"
    CANCEL = "cancel"


S, E = TaskState, TaskEvent
TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (S.PENDING, E.DEPS_MET): S.QUEUED,
    (S.PENDING, E.DEPS_FAILED): S.FAILED,
    (S.PENDING, E.CANCEL): S.CANCELLED,
    (S.QUEUED, E.PLACED): S.RUNNING,
    (S.QUEUED, E.CANCEL): S.CANCELLED,
    (S.RUNNING, E.SUCCEEDED): S.DONE,
    (S.RUNNING, E.RAISED): S.FAILED,
    (S.RUNNING, E.TIMED_OUT): S.TIMED_OUT,
    (S.RUNNING, E.RETRY): S.QUEUED,
    (S.RUNNING, E.REQUEUE): S.QUEUED,
    (S.RUNNING, E.CANCEL): S.CANCELLED,
}
del S, E


class InvalidTransition(RuntimeError):
    """An event that the task's current state does not allow (a bug in the caller)."""


def next_state(state: TaskState, event: TaskEvent) -> TaskState:
    """Return the state after ``event``; raise :class:`InvalidTransition` naming both if illegal."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        raise InvalidTransition(
            f"a task in state {state.value!r} cannot take event {event.value!r}"
            f" (allowed: {', '.join(allowed) or 'none, the state is terminal'})"
        ) from None
