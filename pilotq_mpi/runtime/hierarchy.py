"""Hierarchical masters: the messages between the top master and the sub-masters, and the sub-master.

A sub-master is the ordinary :class:`~.master.Master` over its group's worker ranks
(placement, prefetch, retries, timeouts, revokes, drain: all unchanged), whose tasks come
from the top master instead of a driver and whose outcomes go back up:

* top -> sub-master (:data:`DOWN`): a list of operations per message, one message per top
  loop pass: ``("task", ...)`` (a ready task; its function's bytes and its spec only the first
  time the group sees them, then ids: :class:`GroupLink`), ``("cancel", task_id)`` (the driver cancelled a task not known to have
  started), ``("qpu", spec)`` (pin ranks of this group, exactly as the top computed),
  ``("drain", grace)``, ``("abort", code)``, ``("stop",)``.
* sub-master -> top (:data:`UP`): ``(started, ended, last)`` per message, at most one per
  sub-master loop pass (a pass that ended a task, or whose oldest unsent start waited
  :data:`START_REPORT_DELAY`): the ids of tasks that started and are still running (their futures turn
  running, so they can no longer be cancelled; a task that ended in the pass it started is
  told by its end report alone), an :class:`EndReport` per task that ended (as a plain tuple in its
  field order: a named tuple costs a Python-level constructor call to unpickle), and ``last`` on
  the sub-master's final message: True once its workers are stopped, or ``(code, message)``
  when ranks of its group stayed stuck in tasks. The top master reads until it has every
  group's last message (so none is left unread), and then, if a group is stuck, aborts the
  job itself: one process aborts, so the launcher reports that code (two concurrent aborts
  made Hydra report the signal that killed the slower one).

The top master keeps futures, dependencies, the journal and the trace (see
:mod:`.top_master`); its workers never hear from it.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import NamedTuple

from ..core.groups import Group
from ..core.states import TaskState
from ..errors import RemoteError
from .master import Master, TaskObserver
from .options import PilotOptions
from .polling import Backoff
from .records import Submission, TaskRecord
from .serialization import dumps

DOWN = 21
"""MPI tag: operations from the top master to a sub-master."""
UP = 22
"""MPI tag: task outcomes from a sub-master to the top master."""
TOP = 0
START_REPORT_DELAY = 0.005
"""Seconds a sub-master may hold the report of a task's start until a task ends (their reports then go up
in one message). Without it every task of a group that prefetches nothing (work longer than the prefetch
horizon) costs the top two messages: its start, then its end. Meanwhile the driver can still cancel the
task's future; the task runs on and its future stays cancelled, as for a cancel that crosses the report."""


class EndReport(NamedTuple):
    """How a task ended in a sub-master's group (what the top's journal, trace and future need).

    It travels as a plain tuple in this field order (:func:`report_of`); ``EndReport._make``
    names the fields of one."""

    task_id: int
    state: str
    value: bytes | None
    """The pickled result (state ``done``)."""
    error: bytes | None
    """The pickled exception (other states)."""
    traceback: str
    timed_out: bool
    ranks: tuple[int, ...]
    started: float | None
    ended: float | None
    rank_spans: dict | None
    """Each rank's own (started, ended) of a multi-rank task; None for one rank."""
    attempt: int
    moves: int


class GroupLink:
    """What the top master has sent one group: functions and task specs go once, then by id
    (pickling a spec, a slotted dataclass, cost more than the rest of a task's operation)."""

    def __init__(self):
        self.functions: set[int] = set()
        self.specs: dict = {}

    def task_operation(self, sub: Submission) -> tuple:
        """The ``("task", ...)`` operation that hands ``sub`` to this group."""
        fn = None
        if sub.fn_id not in self.functions:
            self.functions.add(sub.fn_id)
            fn = sub.fn
        known = self.specs.get(id(sub.spec))  # by identity: the driver reuses spec objects; hashing one costs
        spec = None
        if known is None:
            known = self.specs[id(sub.spec)] = (sub.spec, len(self.specs))  # holds the spec: its id stays unique
            spec = sub.spec
        spec_id = known[1]
        return ("task", sub.task_id, sub.fn_id, fn, sub.payload, spec_id, spec, sub.kind, sub.submitted, sub.chunk)


def report_of(record: TaskRecord) -> tuple:
    """The report of an ended task, a plain tuple in :class:`EndReport`'s field order; a value or error
    that will not pickle becomes a :class:`RemoteError`."""
    value = error = None
    if record.state is TaskState.DONE:
        try:
            value = dumps(record.result)
        except Exception as exc:  # noqa: BLE001 - said to the driver through its future
            return _unpicklable(record, exc)
    else:
        try:
            error = dumps(record.error)
        except Exception:  # noqa: BLE001 - keep the text
            error = dumps(RemoteError(f"{type(record.error).__name__}: {record.error}"))
    spans = dict(record.rank_spans) if len(record.ranks) > 1 else None  # one rank: its span is (started, ended)
    return (record.task_id, record.state.value, value, error, record.traceback, record.timed_out,
            tuple(record.ranks), record.started, record.ended, spans, record.attempt, record.moves)


def _unpicklable(record: TaskRecord, exc: Exception) -> tuple:
    error = RemoteError(f"task {record.name!r} (id {record.task_id}) returned a value its sub-master could not"
                        f" send on: {type(exc).__name__}: {exc}")
    return (record.task_id, TaskState.FAILED.value, None, dumps(error), "", False, tuple(record.ranks),
            record.started, record.ended, dict(record.rank_spans) or None, record.attempt, record.moves)


class Uplink(TaskObserver):
    """The sub-master's observer: collects started and ended tasks and sends them up once per loop pass
    that ended a task; starts alone wait for the next end, at most ``start_delay`` seconds
    (:data:`START_REPORT_DELAY`)."""

    def __init__(self, world, start_delay: float | None = None):
        self.world = world
        self.stuck: tuple[int, str] | None = None
        """(exit code, message) when ranks of the group are stuck: sent as the last message."""
        self.started: list[int] = []
        """Tasks that started since the last message (see :meth:`note_start`)."""
        self.start_delay = START_REPORT_DELAY if start_delay is None else start_delay
        self._started_at = 0.0
        """When the oldest start not yet sent was noted (time.monotonic)."""
        self._pending: list[tuple] = []
        """:func:`report_of` tuples of the tasks that ended in this pass."""
        self._sends: list = []

    def note_start(self, task_id: int) -> None:
        """A task of the group started: its future at the top turns running (uncancellable) once this goes up."""
        if not self.started:
            self._started_at = time.monotonic()
        self.started.append(task_id)

    def task_ended(self, record: TaskRecord) -> None:
        self._pending.append(report_of(record))

    def pass_ended(self, last: bool | tuple = False) -> None:
        """Send what started or ended since the last message, if a task ended in this pass, or the
        oldest start waited ``start_delay``, or this is the last message."""
        if self._pending or last or (self.started and time.monotonic() - self._started_at >= self.start_delay):
            started = self.started
            if started and self._pending:  # a task that ended in the pass it started: its end report says both
                ended = {report[0] for report in self._pending}
                started = [task_id for task_id in started if task_id not in ended]
            self._sends.append(self.world.isend((started, self._pending, last), dest=TOP, tag=UP))
            self.started, self._pending = [], []
        if self._sends:
            self._sends = [request for request in self._sends if not request.Test()]

    def close(self) -> None:
        """The sub-master is done: send the last message and wait until it is taken."""
        self.pass_ended(last=self.stuck or True)
        backoff = Backoff()
        while not all(request.Test() for request in self._sends):
            backoff.sleep()


class _RelayedFuture(Future):
    """The sub-master's future of a task: its start is reported to the top (whose future the driver holds)."""

    def __init__(self, task_id: int, uplink: "Uplink"):
        super().__init__()
        self._task_id = task_id
        self._uplink = uplink

    def set_running_or_notify_cancel(self) -> bool:
        running = super().set_running_or_notify_cancel()
        if running:  # the uplink's current list (it starts a new one with each message)
            self._uplink.note_start(self._task_id)
        return running


class SubMaster(Master):
    """A :class:`Master` over one group, fed by the top master (runs in the sub-master rank's main thread)."""

    def __init__(self, world, group: Group, options: PilotOptions):
        super().__init__(world, group.inventory, prefetch=options.prefetch, power_of_two=options.power_of_two,
                         stuck_grace=options.stuck_grace, observer=Uplink(world),
                         prefetch_horizon=options.prefetch_horizon, drain_grace=options.drain_grace)
        self.group = group
        self._functions: dict[int, bytes] = {}
        self._specs: dict[int, object] = {}
        self._told_to_stop = False
        """The top master sent "stop": the loop may end. Not before: a message of the top's left unread
        (the "stop" after an "abort") made the job end with SIGKILL (exit 9) instead of its code."""

    def serve(self) -> None:
        """Run the loop until the top master says stop and every task handed here has ended."""
        self._run()

    def _end_job(self, code: int, message: str):
        """Ranks are stuck: the top master aborts the job (it has the driver and writes the exit code)."""
        self.observer.stuck = (code, f"group {self.group.index} (sub-master rank {self.group.leader}): {message}")
        self.observer.close()
        while True:  # until the top's abort ends this process
            time.sleep(1.0)

    def _all_ended(self) -> bool:
        return self._told_to_stop and super()._all_ended()

    def _drain_inbox(self) -> bool:
        from_top = self._read_top()
        return super()._drain_inbox() or from_top

    def _read_top(self) -> bool:
        status = self._mpi.Status()
        got = False
        while (message := self.world.improbe(TOP, DOWN, status)) is not None:
            got = True
            for operation in message.recv():
                self._apply(operation)
        return got

    def _apply(self, operation: tuple) -> None:
        kind = operation[0]
        if kind == "task":
            _, task_id, fn_id, fn, payload, spec_id, spec, name, submitted, chunk = operation
            if fn is not None:
                self._functions[fn_id] = fn
            if spec is not None:
                self._specs[spec_id] = spec
            spec = self._specs[spec_id]
            future = _RelayedFuture(task_id, self.observer)
            self._on_submit(Submission(task_id, fn_id, self._functions[fn_id], payload, spec, future,
                                       frozenset(), name, submitted, chunk))
        elif kind == "cancel":
            record = self.tasks.get(operation[1])
            if record is not None and record.sub.future.cancel():  # as the driver's cancel() does
                self._on_cancel(operation[1])
        elif kind == "qpu":
            declared: Future = Future()
            self._on_qpu(operation[1], declared)
            declared.result(0)  # the top checked the same pins; a refusal here is a bug (the loop reports it)
        elif kind == "drain":
            self._on_drain(operation[1])
        elif kind == "abort":
            self._on_abort(operation[1])
        elif kind == "stop":
            self._stopping = self._told_to_stop = True
        else:
            raise ValueError(f"unknown operation from the top master: {kind!r}")
