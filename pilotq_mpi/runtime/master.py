"""The master loop on rank 0: submissions in, placements out, results back to futures.

It runs in one background thread of rank 0 (the driver script has the main thread) and
is the only code on rank 0 that calls MPI. The driver talks to it through :meth:`post`
(a deque plus an event that wakes the loop).
"""
from __future__ import annotations

import collections
import contextlib
import heapq
import sys
import threading
import time
import traceback
from collections import defaultdict
from concurrent.futures import Future
from typing import Any

from ..core.dependencies import DependencyTracker
from ..core.inventory import Inventory, QpuSpec
from ..core.scheduler import Scheduler
from ..core.states import TERMINAL, TRANSITIONS, TaskEvent, TaskState, next_state
from ..errors import (EXIT_INCOMPLETE, EXIT_STUCK_RANKS, AbandonedError, DependencyError, RemoteTraceback,
                      ResourceError, TaskTimeoutError, WalltimeError)
from .abort import abort_job
from .joined import MOVE, JoinedAllocations
from .messages import ResultMessage, Tag, unpack_result
from .options import DEFAULT_PREFETCH_HORIZON
from .polling import Backoff
from .records import Submission, TaskRecord

E = TaskEvent
RECENT_RUNS = 8
"""Duration estimate of a function: the longest of its last RECENT_RUNS runs (conservative)."""
START_SLACK_S = 0.005
"""The master learns of a task's start late (one loop pass handles a batch of results; ~1 ms
here under load): a running task counts as overdue only this long after its predicted end."""
FAILURE_GRACE_S = 5.0
"""How long a failed multi-rank task waits for its other ranks before it fails for good."""
ABANDON_GRACE_S = 1.0
"""After the driver failed: how long ranks still inside tasks get to return before the job is aborted."""


class TaskObserver:
    """Hooks the master calls; the default does nothing (trace, journal, progress plug in)."""

    def task_ended(self, record: TaskRecord) -> None:
        """``record`` reached a terminal state."""

    def resources_changed(self, event: str, allocation: str, infos, inventory: Inventory) -> None:
        """Ranks joined (``event`` "join": ``infos`` are the new ranks) or left ("leave", "lost")."""

    def pass_ended(self) -> None:
        """The loop finished a pass; records kept since the last pass are committed (journal)."""

    def note(self, record: dict) -> bool:
        """A record of another kind than a task (e.g. an adapt decision) for the trace; True if kept."""
        return False

    def close(self) -> None:
        """The pilot is done."""


class Master(JoinedAllocations):
    """Schedules tasks over the worker ranks of ``world`` (every rank but 0), and of joined allocations."""

    def __init__(self, world, inventory: Inventory, *, prefetch: int = 1, power_of_two: bool = False,
                 stuck_grace: float = 10.0, observer: TaskObserver | None = None,
                 prefetch_horizon: float = DEFAULT_PREFETCH_HORIZON, elastic=None, drain_grace: float = 30.0):
        from mpi4py import MPI

        self._mpi = MPI
        self.world = world
        # prefetch only behind work predicted to end within the horizon (no head-of-line blocking)
        self.scheduler = Scheduler(inventory, prefetch=prefetch, power_of_two=power_of_two,
                                   horizon=prefetch_horizon, predict=self._predict,
                                   slack=min(START_SLACK_S, prefetch_horizon))
        self._recent: dict[tuple[int, bool], collections.deque] = {}
        self._estimates: dict[tuple[int, bool], float] = {}
        """(function id, chunk) -> predicted seconds per run; absent: unknown (counts as long)."""
        self._waiting: set[int] = set()
        """Tasks prefetched on a worker behind others: not started, futures still pending (cancellable)."""
        self._revoking: dict[int, BaseException | None] = {}
        """Tasks revoked from their worker, answer pending -> the error they end with (None: cancelled)."""
        self._notified: set[int] = set()
        """Live tasks whose cancelled future the master already settled (set_running_or_notify_cancel
        may be called once only; a prefetched task's future can be cancelled while it is live)."""
        self.inventory = inventory
        self.observer = observer or TaskObserver()
        self.stuck_grace = stuck_grace
        self.tasks: dict[int, TaskRecord] = {}
        self.deps = DependencyTracker()
        self.counts: dict[str, collections.Counter] = defaultdict(collections.Counter)
        self._inbox: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._idle = False
        self._live = 0
        """Submitted tasks not yet in a terminal state."""
        self._sends: list = []
        """(request, communicator) of sends not yet known complete."""
        self._known_fns: dict[int, set[int]] = defaultdict(set)
        self._retry_heap: list[tuple[float, int]] = []
        self._timed: set[int] = set()
        self._stopping = False
        self._draining: tuple[float, float] | None = None
        self._abort_code: int | None = None
        """Set when the driver failed: the exit code the job ends with."""
        self._thread: threading.Thread | None = None
        self.started = time.time()
        self.elastic = elastic
        self.drain_grace = drain_grace
        """The joined allocations (:class:`~.elastic.Elastic`), when the pilot has a run directory."""
        self._comms = [world]
        """Communicators results come in on: the world, then each joined allocation's."""
        self._adapt = None
        """The adapt policy's runner (:class:`~.adapting.AdaptRunner`), once the driver set one."""

    # --- driver side (any thread) ---------------------------------------------------------
    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self._run, name="pilotq-master", daemon=True)
        self._thread.start()

    def post(self, kind: str, payload: Any = None) -> None:
        """Hand a command to the loop: submit, cancel, qpu, drain, stop."""
        self._inbox.append((kind, payload))
        if self._idle:  # setting the event costs ~10 us: only when the loop may be waiting on it
            self._wake.set()

    def stop_and_join(self) -> None:
        """Finish every submitted task, shut the workers down, and wait for the loop."""
        self.post("stop")
        assert self._thread is not None
        self._thread.join()

    def abort_and_join(self, code: int) -> None:
        """The driver failed: cancel what has not started, abandon what runs, end the workers.

        Workers that are idle within ``ABANDON_GRACE_S`` are shut down cleanly; if a rank is
        still inside a task after that, the job is aborted with exit code ``code`` (this
        call then does not return).
        """
        self.post("abort", code)
        assert self._thread is not None
        self._thread.join()

    def snapshot(self) -> dict:
        """Counts per kind and state, and busy ranks (read without locks: a live estimate)."""
        kinds = {kind: {getattr(state, "value", state): n for state, n in list(counter.items())}
                 for kind, counter in list(self.counts.items())}
        return {"kinds": kinds, "ranks_busy": self.scheduler.busy_ranks,
                "ranks_total": len(self.inventory.ranks), "elapsed": time.time() - self.started}

    # --- loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # a bug in the master must not hang the job
            traceback.print_exc()
            abort_job(self.world, 1, "the master failed; aborting all ranks")

    def _loop(self) -> None:
        backoff = Backoff()
        status = self._mpi.Status()
        while True:
            worked = self._pass(status)
            if self._stopping and self._all_ended():
                break
            if worked:
                backoff.reset()
                continue
            self._wait_idle(backoff)
        self._shutdown_workers()

    def _pass(self, status) -> bool:
        """One pass of the loop: commands, results, clocks, placements, sends; True if it did something."""
        worked = self._drain_inbox()
        for comm in self._comms:
            while (message := comm.improbe(self._mpi.ANY_SOURCE, Tag.RESULT, status)) is not None:
                self._on_results(message.recv())
                worked = True
        now = time.time()
        if self._retry_heap or self._timed or self._draining:
            worked |= self._check_clocks(now)
        if self.elastic is not None:
            worked |= self._check_allocations(now)
        if worked:
            self._dispatch()
        self.observer.pass_ended()  # group commit of the journal; held futures resolve here
        if self._sends:
            self._sends = [sent for sent in self._sends if not sent[0].Test()]
        return worked

    def _wait_idle(self, backoff: Backoff) -> None:
        """Nothing to do: wait a little, or until the driver posts something."""
        delay = backoff.next_delay()
        if not delay:  # a spin: Event.wait(0) would only cost a lock round trip (~5 us)
            return
        # announce the wait before looking at the inbox once more, so post() cannot miss it
        self._idle = True
        if not self._inbox:
            self._wake.wait(delay)
        self._idle = False
        self._wake.clear()

    def _drain_inbox(self) -> bool:
        worked = False
        while self._inbox:
            kind, payload = self._inbox.popleft()
            worked = True
            if kind == "submit":
                self._on_submit(payload)
            elif kind == "cancel":
                self._on_cancel(payload)
            elif kind == "qpu":
                self._on_qpu(*payload)
            elif kind == "expect":
                pools, reply = payload
                self._set_inventory(self.inventory.expecting(pools))
                reply.set_result(None)
            elif kind == "drain":
                self._on_drain(payload)
            elif kind == "abort":
                self._on_abort(payload)
            elif kind == "release":
                self._on_release(*payload)
            elif kind == "adapt":
                self._on_adapt(*payload)
            elif kind == "stop":
                self._stopping = True
        return worked

    # --- submissions ------------------------------------------------------------------------
    def _on_submit(self, sub: Submission) -> None:
        record = TaskRecord(sub)
        self.tasks[sub.task_id] = record
        self._live += 1
        if not sub.deps and not self._draining:  # ready at once: counted queued, no pending -> queued step
            record.state = TaskState.QUEUED
            self.counts[sub.kind][TaskState.QUEUED] += 1
            self.scheduler.submit(sub.task_id, sub.spec)
            return
        self.counts[sub.kind]["pending"] += 1
        if self._draining:
            self._end(record, E.CANCEL, error=WalltimeError(
                f"task {record.name!r} was not started: the pilot is draining before its walltime ends"))
            return
        ready, failed_dep = self.deps.add(sub.task_id, sub.deps)
        if failed_dep is not None:
            self._fail_dependency(record, failed_dep)
        elif ready:
            self._queue(record)

    def _queue(self, record: TaskRecord) -> None:
        self._move(record, E.DEPS_MET)
        self.scheduler.submit(record.task_id, record.spec)

    def _on_cancel(self, task_id: int) -> None:
        record = self.tasks.get(task_id)
        if record is not None and task_id in self._waiting and record.state is TaskState.RUNNING:
            # prefetched on a worker and not started: take it back; it ends when the worker answers
            self._revoke([record], None)
            return
        if record is None or record.state not in (TaskState.PENDING, TaskState.QUEUED):
            return
        self.scheduler.cancel(task_id)
        self.deps.forget(task_id)
        self._notify_cancelled(record)
        self._end(record, E.CANCEL, already_resolved=True)

    def _on_qpu(self, qpu: QpuSpec, reply) -> None:
        """Pin ranks to a new QPU, unless that would leave a live task without room."""
        try:
            inventory = self.inventory.with_qpu(qpu)
            for record in self.tasks.values():
                if not record.state.terminal and record.spec.qpu is None:
                    with qpu_conflict(qpu, record):
                        inventory.check(record.spec, power_of_two=self.scheduler.power_of_two)
        except Exception as exc:
            reply.set_exception(exc)
            return
        self.inventory = inventory
        self.scheduler.set_inventory(inventory)
        reply.set_result(inventory)

    # --- dispatch ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._draining or self._abort_code is not None:
            return
        outgoing: dict[int, list[tuple]] = defaultdict(list)
        now = time.time()
        for placement in self.scheduler.schedule(now):
            record = self.tasks[placement.task_id]
            # a task queued behind others on its worker has not started: its future stays pending
            # (cancellable, see _on_cancel) until it heads that worker (_release)
            # (one cancelled before it was sent is revoked when the cancel arrives: see _on_cancel)
            waiting = placement.waits
            fresh = not record.sub.future.running()  # first attempt, or moved before it started
            if fresh and not waiting and not record.sub.future.set_running_or_notify_cancel():
                for rank in placement.ranks:
                    self._release(placement.task_id, rank)
                self.deps.forget(record.task_id)
                self._end(record, E.CANCEL, already_resolved=True)
                continue
            if waiting and fresh:
                self._waiting.add(record.task_id)
            self._move(record, E.PLACED)
            record.ranks = placement.ranks
            record.pending = set(placement.ranks)
            if record.spec.timeout is not None:
                # isolated tasks are killed by their worker at the deadline; this is the backstop
                slack = 2.0 if record.spec.isolate else 0.0
                record.deadline = now + record.spec.timeout + slack
                self._timed.add(record.task_id)
            for rank in placement.ranks:
                outgoing[rank].append(self._message(record, rank))
        for rank, messages in outgoing.items():
            self._send(rank, messages, Tag.TASKS)

    def _send(self, rank: int, body: Any, tag: Tag) -> None:
        """Send ``body`` to worker ``rank`` (of the main allocation, or of a joined one)."""
        route = None if self.elastic is None else self.elastic.route(rank)
        comm, dest = (self.world, rank) if route is None else route
        self._sends.append((comm.isend(body, dest=dest, tag=tag), comm))

    def _message(self, record: TaskRecord, rank: int) -> tuple:
        """The wire form of a :class:`TaskMessage` for ``rank`` (a plain tuple in its field order)."""
        sub = record.sub
        known = self._known_fns[rank]
        fn = None if sub.fn_id in known else sub.fn
        known.add(sub.fn_id)
        spec = sub.spec
        qpu = self.inventory.qpus[spec.qpu] if spec.qpu else None
        return (sub.task_id, record.attempt, spec.name or sub.kind, sub.fn_id, fn, sub.payload,
                record.ranks, sub.chunk, spec.gather, spec.timeout, spec.isolate, qpu)

    def _predict(self, task_id: int) -> float | None:
        """The scheduler's prediction of a task's run time (None: never seen, i.e. long)."""
        sub = self.tasks[task_id].sub
        return self._estimates.get((sub.fn_id, sub.chunk))

    def _observe(self, record: TaskRecord, result: ResultMessage) -> None:
        """Learn from a single-rank run how long this function takes."""
        self._observe_run(record.sub, result.ended - result.started)

    def _observe_run(self, sub: Submission, seconds: float) -> None:
        """Keep a function's recent run times; its estimate is the longest of them."""
        key = (sub.fn_id, sub.chunk)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = collections.deque(maxlen=RECENT_RUNS)
        recent.append(seconds if seconds > 0.0 else 0.0)
        self._estimates[key] = max(recent)

    def _release(self, task_id: int, rank: int) -> None:
        """Free ``rank``'s part of ``task_id``; a prefetched task that now heads the rank is starting."""
        head = self.scheduler.release(task_id, rank, time.time())
        if head is not None and head in self._waiting:
            self._waiting.discard(head)
            record = self.tasks.get(head)
            # still placed, so its future is pending, or cancelled by the driver meanwhile
            if record is not None and record.state is TaskState.RUNNING \
                    and not record.sub.future.set_running_or_notify_cancel():
                self._notified.add(head)
                self._revoke([record], None)  # cancelled meanwhile; it is likely under way already

    def _revoke(self, records: list[TaskRecord], error_for) -> None:
        """Tell the workers holding these single-rank tasks not to start them.

        ``error_for(record)`` is the error a dropped task ends with (None: the driver
        cancelled its future). The worker answers for each task it dropped; one that had
        started sends its normal result instead.
        """
        outgoing: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for record in records:
            if record.task_id in self._revoking or len(record.ranks) != 1:
                continue
            self._revoking[record.task_id] = None if error_for is None else error_for(record)
            outgoing[record.ranks[0]].append((record.task_id, record.attempt))
        for rank, revoked in outgoing.items():
            self._send(rank, revoked, Tag.REVOKE)

    def _on_revoked(self, record: TaskRecord, result: ResultMessage) -> None:
        """The worker dropped a revoked task unstarted: end it as cancelled (it did not run)."""
        error = self._revoking.pop(record.task_id, None)
        self._waiting.discard(record.task_id)
        if result.attempt == record.attempt and record.state is TaskState.RUNNING:
            if error is MOVE:
                self._requeue(record)
            elif record.sub.future.cancelled():
                self._notify_cancelled(record)
                self._end(record, E.CANCEL, already_resolved=True)
            else:
                self._end(record, E.CANCEL, error=error or self._walltime_error(record))
        self._notified.discard(record.task_id)
        self._forget_if_finished(record)

    def _notify_cancelled(self, record: TaskRecord) -> None:
        """Settle a future the driver cancelled (once), so that wait() and as_completed() see it done."""
        if record.task_id not in self._notified:
            record.sub.future.set_running_or_notify_cancel()  # False for a cancelled future; tells its waiters

    # --- results ----------------------------------------------------------------------------
    def _on_results(self, body: Any) -> None:
        """A worker's :attr:`Tag.RESULT` message: one result (a tuple) or several (a list)."""
        if type(body) is list:
            for one in body:
                self._on_result(unpack_result(one))
        else:
            self._on_result(unpack_result(body))

    def _on_result(self, result: ResultMessage) -> None:
        self._release(result.task_id, result.rank)
        record = self.tasks.get(result.task_id)
        if record is None:
            return  # a late report from an attempt that was already given up (timeout, retry)
        record.pending.discard(result.rank)
        if result.revoked:
            self._on_revoked(record, result)
            return
        # revoked too late: it ran, and ends as it ended (if the driver cancelled it, its future stays so)
        revoked_late = bool(self._revoking) and self._revoking.pop(record.task_id, False) is not False
        spec = record.sub.spec
        if spec.ranks == 1:
            self._observe(record, result)
        stale = result.attempt != record.attempt or record.state is not TaskState.RUNNING
        if not stale:
            started, ended = result.started, result.ended
            first, last = record.started, record.ended  # (min/max over the ranks, unrolled)
            record.started = started if not first or started < first else first
            record.ended = ended if not last or ended > last else last
            record.rank_spans[result.rank] = (started, ended)  # each rank's own, for the trace
            if result.ok:
                if spec.gather or result.rank == record.ranks[0]:
                    record.values[result.rank] = result.value
            elif record.error is None:
                record.error, record.traceback, record.timed_out = result.error, result.traceback, result.timed_out
                record.failed_at = time.time()
            if record.error is not None:
                self._settle_failure(record)
            elif not record.pending:
                value = ([record.values[r] for r in record.ranks] if record.spec.gather
                         else record.values.get(record.ranks[0]))
                # cancelled by the driver while prefetched, but it had started: it ran (the
                # record says done), the driver's future stays cancelled
                cancelled = revoked_late and record.sub.future.cancelled()
                if cancelled:
                    self._notify_cancelled(record)
                self._end(record, E.SUCCEEDED, value=value, already_resolved=cancelled)
        if revoked_late:
            self._notified.discard(record.task_id)
        self._forget_if_finished(record)

    def _settle_failure(self, record: TaskRecord, *, force: bool = False) -> None:
        """Retry or fail a task one of whose ranks failed.

        Without retries left the future fails at once; ranks still inside the task stay
        reserved until they report. With retries left the other ranks get
        FAILURE_GRACE_S seconds to come back, so the retry can run on free ranks.
        """
        retry = record.retries_used < record.spec.retries
        if record.pending and retry and not force:
            self._timed.add(record.task_id)
            return
        error = record.error
        assert error is not None
        if record.traceback:
            error.__cause__ = RemoteTraceback(record.traceback)
        if retry and not record.pending:
            self._retry(record)
            return
        if record.pending:
            held = ", ".join(map(str, sorted(record.pending)))
            one = len(record.pending) == 1
            if record.timed_out:
                ranks = f"world {'rank' if one else 'ranks'} {held} {'is' if one else 'are'}"
                what = f"timed out; {ranks} still running it past its timeout"
            else:
                ranks = f"world {'rank' if one else 'ranks'} {held} {'has' if one else 'have'}"
                what = f"failed; {ranks} not returned (blocked in a collective whose other ranks failed?)"
            sys.stderr.write(f"pilotq-mpi: task {record.name!r} (id {record.task_id}) {what} and"
                             f" {'stays' if one else 'stay'} reserved until {'it returns' if one else 'they return'}\n")
        self._end(record, E.TIMED_OUT if record.timed_out else E.RAISED, error=error)

    def _retry(self, record: TaskRecord) -> None:
        self._move(record, E.RETRY)
        self._timed.discard(record.task_id)
        delay = record.spec.retry_backoff * (2 ** record.attempt)
        record.reset_attempt()
        heapq.heappush(self._retry_heap, (time.time() + delay, record.task_id))

    def _check_clocks(self, now: float) -> bool:
        """Start due retries, time out overdue tasks, end the drain; True if anything changed."""
        changed = False
        while self._retry_heap and self._retry_heap[0][0] <= now:
            _, task_id = heapq.heappop(self._retry_heap)
            record = self.tasks.get(task_id)
            if record is not None and record.state is TaskState.QUEUED:
                self.scheduler.submit(task_id, record.spec)
                changed = True
        for task_id in list(self._timed):
            record = self.tasks.get(task_id)
            if record is None or record.state is not TaskState.RUNNING:
                self._timed.discard(task_id)
                continue
            if record.error is not None and record.failed_at and now - record.failed_at > FAILURE_GRACE_S:
                self._settle_failure(record, force=True)
                changed = True
            elif record.deadline is not None and now > record.deadline and record.error is None:
                record.error = TaskTimeoutError(
                    f"task {record.name!r} (id {record.task_id}) ran longer than timeout={record.spec.timeout}s"
                    f" on world ranks {list(record.ranks)}; raise timeout= or use isolate=True so the worker"
                    " can kill it")
                record.timed_out = True
                record.failed_at = now
                if record.retries_used < record.spec.retries:
                    self._retry(record)  # the old ranks stay held until the old run returns
                else:
                    self._settle_failure(record, force=True)
                changed = True
        if self._draining:
            self._check_drain(now)
        return changed

    # --- endings ----------------------------------------------------------------------------
    def _move(self, record: TaskRecord, event: TaskEvent) -> TaskState:
        """Fire ``event`` on ``record`` and keep the per-kind state counts current."""
        counter = self.counts[record.sub.kind]
        old = record.state
        counter[old] -= 1  # a TaskState is a str equal to its value: no `.value` (~2 us a call)
        state = TRANSITIONS.get((old, event)) or next_state(old, event)  # (next_state raises if illegal)
        record.state = state
        counter[state] += 1
        return state

    def _end(self, record: TaskRecord, event: TaskEvent, *, value: Any = None,
             error: BaseException | None = None, already_resolved: bool = False) -> None:
        state = self._move(record, event)
        self._live -= 1
        if record.ended is None:
            record.ended = time.time()
        record.result = value
        if error is not None:
            record.error = error
        self._timed.discard(record.sub.task_id)
        # observers first: a journaled result is on disk before the driver can see it (the journal
        # observer swaps record.sub.future for a stand-in until its group commit: read it after)
        self.observer.task_ended(record)
        future = record.sub.future
        if not already_resolved:
            if state is TaskState.DONE:
                future.set_result(value)
            elif future.running() or (record.task_id not in self._notified
                                       and future.set_running_or_notify_cancel()):
                future.set_exception(error)
        ready, doomed = self.deps.finished(record.task_id, state is TaskState.DONE)
        for task_id in ready:
            self._queue(self.tasks[task_id])
        for task_id in doomed:
            self._fail_dependency(self.tasks[task_id], record.task_id)
        self._forget_if_finished(record)

    def _fail_dependency(self, record: TaskRecord, dep: int) -> None:
        if self._draining:
            self._end(record, E.CANCEL, error=self._walltime_error(record))
            return
        self._end(record, E.DEPS_FAILED, error=DependencyError(
            f"task {record.name!r} (id {record.task_id}) did not run: its dependency, task {dep},"
            " did not succeed (see that task's future for the reason)"))

    def _forget_if_finished(self, record: TaskRecord) -> None:
        if record.state in TERMINAL and not record.pending:
            self.tasks.pop(record.sub.task_id, None)

    # --- drain and shutdown -----------------------------------------------------------------
    @staticmethod
    def _walltime_error(record: TaskRecord) -> WalltimeError:
        return WalltimeError(f"task {record.name!r} (id {record.task_id}) was cancelled: the pilot drained"
                             " before the end of its allocation; rerun with the same journal to resume")

    def _on_drain(self, grace: float) -> None:
        """Stop starting tasks; cancel what has not started; give running tasks ``grace`` seconds."""
        if self._draining:
            return
        now = time.time()
        self._draining = (now, now + grace)
        self._retry_heap.clear()
        if self.elastic is not None:
            self.elastic.run_dir.mark_draining()
        for record in list(self.tasks.values()):
            if record.state in (TaskState.PENDING, TaskState.QUEUED):
                self.scheduler.cancel(record.task_id)
                self.deps.forget(record.task_id)
                self._end(record, E.CANCEL, error=self._walltime_error(record))
        self._revoke_unstarted(self._walltime_error)

    def _revoke_unstarted(self, error_for) -> None:
        """Revoke every single-rank task on the workers: none may start from now on.

        The master cannot tell a running head from one about to start, so heads are revoked
        too; a worker ignores the revoke of a task it has started (that one runs on).
        Multi-rank tasks are never revoked: their ranks must all run them or none.
        """
        records = []
        for info in self.inventory.ranks:
            for task_id in self.scheduler.tasks_on(info.rank):
                record = self.tasks.get(task_id)
                if record is not None and record.state is TaskState.RUNNING and record.spec.ranks == 1:
                    records.append(record)
        self._revoke(records, error_for)

    def _check_drain(self, now: float) -> None:
        assert self._draining is not None
        if now < self._draining[1]:
            return
        for record in list(self.tasks.values()):
            if record.state is TaskState.RUNNING:
                self._end(record, E.CANCEL, error=self._walltime_error(record))

    def _on_abort(self, code: int) -> None:
        """The driver failed: end every task now (queued ones cancelled, running ones abandoned)."""
        self._abort_code = code
        self._stopping = True
        self._retry_heap.clear()

        def abandoned_error(record: TaskRecord) -> AbandonedError:
            return AbandonedError(f"task {record.name!r} (id {record.task_id}) was abandoned: the driver ended"
                                  f" with exit code {code}")

        # prefetched tasks must not start now (their workers then become idle and end cleanly)
        self._revoke_unstarted(abandoned_error)
        cancelled = abandoned = 0
        for record in list(self.tasks.values()):
            if record.state.terminal:
                continue
            if record.state in (TaskState.PENDING, TaskState.QUEUED):
                self.scheduler.cancel(record.task_id)
                self.deps.forget(record.task_id)
                if Future.cancel(record.sub.future):  # not started: a plain cancelled future (no post back)
                    self._end(record, E.CANCEL, already_resolved=True)
                    cancelled += 1
                    continue
            abandoned += 1
            self._end(record, E.CANCEL, error=abandoned_error(record))
        done_here = [f"cancelled {_tasks(cancelled)} not yet started" if cancelled else "",
                     f"abandoned {_tasks(abandoned)} still running" if abandoned else ""]
        detail = "".join(f"; {part}" for part in done_here if part)
        sys.stderr.write(f"pilotq-mpi: the driver ended with exit code {code}{detail}; ending the job\n")

    # --- requeue and inventory changes ---------------------------------------------------
    def _requeue(self, record: TaskRecord) -> None:
        """Run a task again elsewhere: its ranks left the pilot (uses up no retry)."""
        self._revoking.pop(record.task_id, None)
        self._waiting.discard(record.task_id)
        self._timed.discard(record.task_id)
        self._move(record, E.REQUEUE)
        record.reset_attempt()
        record.moves += 1
        self.scheduler.submit(record.task_id, record.spec, front=True)

    def _set_inventory(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.scheduler.set_inventory(inventory)

    @property
    def drained(self) -> bool:
        """True once a drain (walltime signal) was requested."""
        return self._draining is not None

    def _all_ended(self) -> bool:
        return self._live == 0

    def _end_job(self, code: int, message: str):
        """Ranks are stuck in tasks: close the observers and abort every rank with ``code``. Never returns."""
        self.observer.close()
        abort_job(self.world, code, message)

    def _shutdown_workers(self) -> None:
        """Wait (up to ``stuck_grace``) for ranks still inside failed tasks, then stop every worker."""
        status = self._mpi.Status()
        aborting = self._abort_code is not None
        deadline = time.time() + (ABANDON_GRACE_S if aborting else self.stuck_grace)
        backoff = Backoff()
        while self.scheduler.held_ranks() and time.time() < deadline:
            got = False
            for comm in self._comms:
                message = comm.improbe(self._mpi.ANY_SOURCE, Tag.RESULT, status)
                if message is not None:
                    self._on_results(message.recv())
                    got = True
            if not got:
                backoff.sleep()
        held = self.scheduler.held_ranks()
        if held:
            detail = "; ".join(f"task {task} on ranks {list(ranks)}" for task, ranks in sorted(held.items()))
            if aborting:
                self._end_job(self._abort_code, f"ranks still running tasks ({detail}) are abandoned;"
                                                f" aborting the job with exit code {self._abort_code}")
            code = EXIT_INCOMPLETE if self.drained else EXIT_STUCK_RANKS
            self._end_job(code, f"ranks never returned from their tasks ({detail}); they are blocked"
                                " (a collective whose other ranks failed, or a task past its time);"
                                f" aborting the job with exit code {code}")
        for info in self.inventory.ranks:
            self._send(info.rank, None, Tag.SHUTDOWN)
        backoff.reset()
        while not all(request.Test() for request, _ in self._sends):
            backoff.sleep()
        if self.elastic is not None:
            self.elastic.close()
        self.observer.close()


@contextlib.contextmanager
def qpu_conflict(qpu: QpuSpec, record: TaskRecord):
    """A ResourceError inside says what declaring ``qpu`` now would take from live task ``record``."""
    try:
        yield
    except ResourceError as exc:
        raise ResourceError(
            f"declaring QPU {qpu.name!r} now would pin ranks that task {record.name!r}"
            f" (id {record.task_id}) needs ({exc}); declare QPUs before submitting tasks") from None


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"
