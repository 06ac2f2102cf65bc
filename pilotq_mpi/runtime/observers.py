"""Observers of task endings plugged into the master: the trace file and the journals."""
from __future__ import annotations

import sys

from ..core.inventory import MAIN_ALLOCATION, Inventory
from ..core.states import TaskState
from .master import TaskObserver
from .options import PilotOptions
from .records import TaskRecord
from .serialization import dumps


class TraceObserver(TaskObserver):
    """Writes one JSON line per finished task (see :mod:`pilotq_mpi.trace`)."""

    def __init__(self, path: str, inventory: Inventory, started: float):
        from ..trace import TaskRecord, TraceWriter

        self._record = TaskRecord
        self._inventory = {info.rank: info for info in inventory.ranks}
        self._writer = TraceWriter(path)
        self._writer.write_header([_rank_entry(r) for r in inventory.ranks], start=started)

    def resources_changed(self, event: str, allocation: str, infos, inventory: Inventory) -> None:
        """A ``resources`` line: ranks that joined or left (the Gantt chart shows joined ranks)."""
        if event == "join":
            self._inventory.update({info.rank: info for info in infos})
        self._writer.write_resources(event, allocation, [_rank_entry(r) for r in infos])

    def task_ended(self, record: TaskRecord) -> None:
        """Write ``record``'s trace line; a multi-rank task also gets each rank's own span."""
        infos = [self._inventory[r] for r in record.ranks]
        error = None if record.error is None else f"{type(record.error).__name__}: {record.error}"
        started = record.started if record.ranks else None
        spans = None
        if started is not None and len(record.ranks) > 1:
            spans = [record.rank_spans.get(r) for r in record.ranks]
        self._writer.write_task(self._record(
            record.task_id, record.name, record.sub.kind, record.state.value, record.sub.submitted,
            record.ended, started, record.ranks,
            [i.node for i in infos], [i.gpus for i in infos], record.spec.qpu, error, spans=spans))

    def note(self, record: dict) -> bool:
        """Write a record of another kind (e.g. the planner's ``plan`` record) into the trace; True."""
        self._writer.write_record(record)
        return True

    def close(self) -> None:
        self._writer.write_end()
        self._writer.close()


def _rank_entry(info) -> dict:
    entry = {"rank": info.rank, "node": info.node, "gpus": list(info.gpus), "qpu": info.qpu}
    if info.allocation != MAIN_ALLOCATION or info.pool is not None:
        entry.update(allocation=info.allocation, pool=info.pool)
    return entry


class JournalObserver(TaskObserver):
    """Records every finished task of a journaled submission in its journal, before its future resolves.

    Group commit: the records of one pass of the master's loop are kept and written in
    :meth:`pass_ended`, one transaction per journal (``Journal.record_many``; a record alone
    costs ~55-65 us here, one of a group of 16 ~30 us, measured by ``benchmarks/master_cost.py``).
    The journal contract holds: a journaled task's future is held back until its record is
    committed (the master's ``set_result``/``set_exception`` reach a stand-in,
    :class:`HeldFuture`), so a result the driver can see is on disk, and a crash inside a
    pass loses only results nobody has seen.
    """

    def __init__(self) -> None:
        self._warned = False
        self._pending: dict[int, tuple] = {}
        """id(journal) -> (journal, [record entries]) kept during this pass."""
        self._held: list[tuple[TaskRecord, HeldFuture]] = []

    def task_ended(self, record: TaskRecord) -> None:
        """Keep ``record``'s journal entry until the pass ends; hold its future until then."""
        journal, key = record.sub.journal, record.sub.key
        if journal is None or key is None:
            return
        done = record.state is TaskState.DONE
        try:
            entry = dict(key=key, name=record.name, state=record.state.value,
                         result=dumps(record.result) if done else None,
                         error=None if done else f"{type(record.error).__name__}: {record.error}",
                         started=record.started, ended=record.ended, ranks=record.spec.ranks)
        except Exception as exc:  # a journal problem must not take the pilot down
            self._warn(record, exc)
            return
        pending = self._pending.get(id(journal))
        if pending is None:
            pending = self._pending[id(journal)] = (journal, [])
        pending[1].append(entry)
        held = HeldFuture(record.sub.future)
        record.sub.future = held
        self._held.append((record, held))

    def pass_ended(self) -> None:
        """Commit this pass's records (one transaction per journal), then resolve the futures held for them."""
        if not self._pending:
            return
        groups = list(self._pending.values())
        self._pending.clear()
        for journal, entries in groups:
            try:
                journal.record_many(entries)
            except Exception as exc:  # a journal problem must not take the pilot down
                self._warn(None, exc)
        held, self._held = self._held, []
        for record, future in held:
            record.sub.future = future.future
            future.release()

    def close(self) -> None:
        """Commit what the last pass recorded (and resolve its futures)."""
        self.pass_ended()

    def _warn(self, record: TaskRecord | None, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            what = "a group of tasks" if record is None else f"task {record.name!r}"
            sys.stderr.write(f"pilotq-mpi: could not record {what} in the journal ({exc});"
                             " its result is not saved for a rerun\n")


class HeldFuture:
    """Stands in for a journaled task's future until its journal record is committed.

    The master's ``set_result``/``set_exception`` are kept; :meth:`release` hands them to
    the real future. Everything else (``running``, ``cancelled``, ...) goes to the real one.
    """

    __slots__ = ("future", "_outcome")

    def __init__(self, future) -> None:
        self.future = future
        self._outcome: tuple | None = None

    def set_result(self, value) -> None:
        self._outcome = (True, value)

    def set_exception(self, error) -> None:
        self._outcome = (False, error)

    def release(self) -> None:
        """Resolve the real future as the master asked (nothing if it did not)."""
        if self._outcome is not None:
            ok, value = self._outcome
            (self.future.set_result if ok else self.future.set_exception)(value)

    def __getattr__(self, name):
        return getattr(self.future, name)


class Observers(TaskObserver):
    """Several observers, called in order."""

    def __init__(self, *observers: TaskObserver):
        self._observers = observers

    def note(self, record: dict) -> bool:
        """Hand a non-task record (e.g. the planner's) to the observers that keep such records;
        True when one of them recorded it."""
        kept = False
        for observer in self._observers:
            if hasattr(observer, "note"):
                kept = bool(observer.note(record)) or kept
        return kept

    def task_ended(self, record: TaskRecord) -> None:
        for observer in self._observers:
            observer.task_ended(record)

    def pass_ended(self) -> None:
        for observer in self._observers:
            observer.pass_ended()

    def resources_changed(self, event: str, allocation: str, infos, inventory: Inventory) -> None:
        for observer in self._observers:
            observer.resources_changed(event, allocation, infos, inventory)

    def close(self) -> None:
        for observer in self._observers:
            observer.close()


def build_observer(options: PilotOptions, inventory: Inventory, started: float) -> TaskObserver:
    """The journal recorder, plus the trace writer when ``options.trace`` is set."""
    observers: list[TaskObserver] = [JournalObserver()]
    if options.trace:
        observers.append(TraceObserver(options.trace, inventory, started))
    return Observers(*observers)
