"""Message kinds and bodies exchanged between the master (rank 0) and workers.

Bodies are named tuples and travel as plain tuples: pickling a tuple costs ~0.7 us here,
a dataclass ~4.5 us, and the master pickles one per task.
"""
from __future__ import annotations

import enum
from typing import Any, NamedTuple

from ..errors import RemoteError
from .serialization import dumps, loads


class Tag(enum.IntEnum):
    """MPI tags of the pilot's own messages on COMM_WORLD."""

    TASKS = 11
    """master -> worker: a list of :class:`TaskMessage` to run in order."""
    RESULT = 12
    """worker -> master: one :class:`ResultMessage` (as a tuple, see :func:`pack_result`), or a
    list of them in the order the tasks ended (results of very short tasks travel together)."""
    SHUTDOWN = 13
    """master -> worker: no more tasks; leave the worker loop."""
    REVOKE = 14
    """master -> worker: a list of ``(task_id, attempt)`` not to start. The worker drops each
    one it holds unstarted and reports it with ``ResultMessage.revoked``; one that already
    started (or is unknown) is left alone, and its normal result comes."""


class TaskMessage(NamedTuple):
    """One task (or one rank's part of a multi-rank task) for a worker."""

    task_id: int
    attempt: int
    name: str
    fn_id: int
    fn: bytes | None
    """The pickled function the first time this worker sees ``fn_id``, else None (cached)."""
    payload: bytes
    """``(args, kwargs)``, pickled by the driver at submit time."""
    world_ranks: tuple[int, ...]
    chunk: bool = False
    """``args`` is a tuple of argument tuples: call ``fn`` once per tuple, return the list."""
    gather: bool = False
    timeout: float | None = None
    isolate: bool = False
    qpu: Any = None
    """The :class:`~pilotq_mpi.core.QpuSpec` for QPU tasks."""


class ResultMessage(NamedTuple):
    """What one rank reports when its part of a task ends.

    On the wire ``value`` and ``error`` are pickled bytes (:func:`pack_result`), so that
    the master can always read the envelope even when it cannot load what a task returned.
    """

    task_id: int
    attempt: int
    rank: int
    ok: bool
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    timed_out: bool = False
    host: str = ""
    started: float = 0.0
    ended: float = 0.0
    revoked: bool = False
    """The task was dropped unstarted after a :attr:`Tag.REVOKE` (it did not run)."""


def pack_result(result: ResultMessage) -> tuple:
    """The wire form of ``result``: a plain tuple with ``value`` and ``error`` pickled.

    Raises if they cannot be pickled. A tuple built by hand in this field order is
    equally valid (the worker builds one directly on its hot path: ~3 us less per task
    than ``_replace``).
    """
    value = dumps(result.value)
    error = None if result.error is None else dumps(result.error)
    return (result[0], result[1], result[2], result[3], value, error) + tuple(result[6:])


def unpack_result(body: tuple) -> ResultMessage:
    """Load ``value`` and ``error`` of a received result (a :func:`pack_result` tuple, or a
    :class:`ResultMessage` with pickled fields); what cannot be loaded becomes a :class:`RemoteError`."""
    try:
        value = loads(body[4])
        error = None if body[5] is None else loads(body[5])
    except Exception as exc:
        return ResultMessage(body[0], body[1], body[2], False, None, RemoteError(
            f"the driver could not load what task {body[0]} sent back from world rank {body[2]}:"
            f" {type(exc).__name__}: {exc} (is the module that defines it importable on rank 0?)"), *body[6:])
    return ResultMessage._make((*body[:4], value, error, *body[6:]))
