"""The top master of the hierarchical mode (rank 0): futures, dependencies, journal and trace.

It hands ready tasks to the groups' sub-masters (:class:`~pilotq_mpi.core.group_queue.GroupQueue`
decides which group, keeping each one fed but never over-full), one message per group per
loop pass, and applies the outcomes they send back, in batches. What the driver sees is
unchanged: the same ``Pilot`` API, results, errors with the worker's traceback, timeouts,
retries, drain, journal and trace. Differences, said where they apply:

* a QPU's pinned ranks are all in one group (the one with the most compute ranks);
* pools and joined allocations need a single master (``PILOTQ_SUBMASTERS=0``);
* a multi-rank task must fit in one group.
"""
from __future__ import annotations

import time
from collections import defaultdict

from ..core.group_queue import GroupQueue
from ..core.groups import Group
from ..core.inventory import Inventory
from ..core.states import TaskEvent, TaskState
from ..errors import RemoteError, RemoteTraceback, ResourceError
from .hierarchy import DOWN, UP, GroupLink
from .master import Master, TaskObserver, qpu_conflict
from .options import DEFAULT_PREFETCH_HORIZON
from .polling import Backoff
from .records import TaskRecord
from .serialization import loads

E = TaskEvent
_EVENTS = {TaskState.DONE: E.SUCCEEDED, TaskState.FAILED: E.RAISED, TaskState.TIMED_OUT: E.TIMED_OUT,
           TaskState.CANCELLED: E.CANCEL}
"""The event that ends a task in the state a sub-master reports (its value, a str, finds its member)."""
QUEUED, RUNNING, DONE, FAILED = TaskState.QUEUED, TaskState.RUNNING, TaskState.DONE, TaskState.FAILED
SUBMISSIONS_PER_PASS = 64
"""Submissions the top takes per loop pass: a driver that submits tens of thousands of tasks at once would
otherwise hold the groups' outcomes (and the hand-outs to groups whose ranks just freed) back behind them
for a second or more (benchmarks/scale_model.py: 60% -> 84% at 8,192 ranks for 1 s tasks without prefetch)."""
SENDS_KEPT = 16
"""Sends to the groups kept before their requests are tested and the completed ones dropped."""
SINGLE_MASTER_ONLY = "{what} needs a single master: start the pilot with PILOTQ_SUBMASTERS=0"


class TopMaster(Master):
    """The master of a pilot whose worker ranks are split into sub-master groups."""

    def __init__(self, world, inventory: Inventory, groups: list[Group], *, prefetch: int = 1,
                 power_of_two: bool = False, observer: TaskObserver | None = None, drain_grace: float = 30.0,
                 prefetch_horizon: float = DEFAULT_PREFETCH_HORIZON, group_hold: float = 0.0):
        super().__init__(world, inventory, prefetch=prefetch, power_of_two=power_of_two, observer=observer,
                         drain_grace=drain_grace, prefetch_horizon=prefetch_horizon)
        self.groups = groups
        # groups queue more than they can start only behind work predicted short, or a few known-long
        # tasks in their own queue (the run times reported by the sub-masters feed the same
        # per-function estimates a master keeps)
        self.scheduler = GroupQueue(inventory, groups, prefetch=prefetch, power_of_two=power_of_two,
                                    horizon=prefetch_horizon, predict=self._predict, hold=group_hold)
        self._outgoing: dict[int, list[tuple]] = defaultdict(list)
        self._stuck: list[tuple[int, str]] = []
        """(exit code, message) of groups whose ranks stayed stuck in tasks at the end."""
        self._links = [GroupLink() for _ in groups]
        self._leaders = [group.leader for group in groups]
        self._any_source = self._mpi.ANY_SOURCE
        self._running: set[int] = set()
        """Tasks whose futures this master set running (a group reported their start): not cancellable."""

    # --- loop ---------------------------------------------------------------------------
    def _pass(self, status) -> bool:
        """One pass: the driver's commands, the groups' outcomes, the drain's end, hand-outs, sends."""
        worked = self._drain_inbox()
        improbe, source = self.world.improbe, self._any_source
        while (message := improbe(source, UP, status)) is not None:
            self._on_up(message.recv())
            worked = True
        if self._draining:
            worked |= self._check_clocks(time.time())
        if worked:
            self._dispatch()
        self.observer.pass_ended()  # the journal's group commit (see Master._pass)
        if self._outgoing or len(self._sends) > SENDS_KEPT:
            self._flush()
        return worked

    def _drain_inbox(self) -> bool:
        """The driver's commands; submissions of tasks without dependencies (the common case: one a task)
        at most :data:`SUBMISSIONS_PER_PASS` a pass, anything else through :meth:`Master._drain_inbox`."""
        inbox = self._inbox
        if not inbox:
            return False
        on_submit = self._on_submit
        taken = 0
        while inbox:
            kind, sub = inbox[0]  # (only this thread takes from the inbox: its head stays put)
            if kind != "submit" or sub.deps or self._draining:
                super()._drain_inbox()
                return True
            if taken == SUBMISSIONS_PER_PASS:
                return True  # the rest in the next pass (at once: this one worked), after the groups' outcomes
            taken += 1
            inbox.popleft()
            on_submit(sub)  # (Master._on_submit: a ready task is queued at once)
        return True

    def _flush(self) -> None:
        if self._outgoing:
            world, leaders, sends = self.world, self._leaders, self._sends
            for group, operations in self._outgoing.items():
                sends.append((world.isend(operations, dest=leaders[group], tag=DOWN), world))
            self._outgoing = defaultdict(list)
        if len(self._sends) > SENDS_KEPT:  # (small sends complete at once: testing each one every pass costs)
            self._sends = [sent for sent in self._sends if not sent[0].Test()]

    def _broadcast(self, *operation) -> None:
        for group in range(len(self.groups)):
            self._outgoing[group].append(operation)

    # --- submissions, hand-out and outcomes ------------------------------------------------------
    def _dispatch(self) -> None:
        if self._draining or self._abort_code is not None:
            return
        handed = self.scheduler.assign(len(self._inbox))
        if not handed:
            return
        tasks, counts, links, outgoing = self.tasks, self.counts, self._links, self._outgoing
        for task_id, group in handed:
            record = tasks[task_id]
            # the future stays pending (cancellable) until the group reports the task started; a
            # cancel() from now on reaches the group (_on_cancel). (QUEUED -> RUNNING, as _move would.)
            counter = counts[record.sub.kind]
            counter[QUEUED] -= 1
            counter[RUNNING] += 1
            record.state = RUNNING
            outgoing[group].append(links[group].task_operation(record.sub))

    def _on_up(self, message) -> bool:
        """Apply one sub-master message; True if it was that sub-master's last."""
        started, ended, last = message
        tasks, notified, running = self.tasks, self._notified, self._running
        for task_id in started:
            record = tasks.get(task_id)
            if record is None or task_id in notified:
                continue
            # a group reports a task's start once; False: the driver cancelled it, it runs anyway and
            # its future stays cancelled (its waiters are told now)
            if record.sub.future.set_running_or_notify_cancel():
                running.add(task_id)
            else:
                notified.add(task_id)
        finished = self.scheduler.finished
        for report in ended:
            # the common ending inline: a single-rank task done, its future not cancelled
            task_id = report[0]
            record = tasks.get(task_id)
            if record is None or report[1] != DONE or record.state is not RUNNING or len(report[6]) != 1 \
                    or task_id in notified:
                self._on_report(report)
                continue
            if task_id in running:
                running.discard(task_id)
            elif not record.sub.future.set_running_or_notify_cancel():  # it started and ended in one pass
                notified.add(task_id)  # the driver cancelled it: its future stays cancelled
                self._on_report(report)
                continue
            try:
                value = loads(report[2])
            except Exception:  # noqa: BLE001 - the general path says why (its future runs: see _running)
                running.add(task_id)
                self._on_report(report)
                continue
            finished(task_id)
            record.ranks, record.started, record.ended, record.attempt, record.moves = (
                report[6], report[7], report[8], report[10], report[11])
            if report[7] is not None:  # the same per-function estimate a master keeps
                self._observe_run(record.sub, report[8] - report[7])
            self._succeeded(record, value)
        if isinstance(last, tuple):
            self._stuck.append(last)
        return bool(last)

    def _on_cancel(self, task_id: int) -> None:
        record = self.tasks.get(task_id)
        group = self.scheduler.group_of(task_id)
        if record is not None and group is not None and record.state is TaskState.RUNNING:
            self._outgoing[group].append(("cancel", task_id))  # handed out, not known to have started
            return
        super()._on_cancel(task_id)

    def _on_report(self, report: tuple) -> None:
        """Apply one :class:`EndReport` (a plain tuple in its field order)."""
        task_id, state, value, error, trace, timed_out, ranks, started, ended, spans, attempt, moves = report
        self.scheduler.finished(task_id)
        record = self.tasks.get(task_id)
        if record is None or record.state is not RUNNING:
            self._running.discard(task_id)
            return  # ended here already (drain deadline, abort)
        record.ranks, record.started, record.ended, record.attempt, record.moves = ranks, started, ended, attempt, moves
        record.traceback, record.timed_out = trace, timed_out
        if spans is not None:
            record.rank_spans = spans  # (one rank: the trace reads its span from started and ended)
        done = state == DONE
        if done and started is not None and len(ranks) == 1:
            self._observe_run(record.sub, ended - started)  # the same per-function estimate a master keeps
        try:
            if done:
                value, error = loads(value), None
            else:
                value, error = None, loads(error)
        except Exception as exc:  # noqa: BLE001 - the driver learns it through the future
            done, state, value, error = False, FAILED, None, RemoteError(
                f"the driver could not load what task {record.name!r} (id {task_id}) sent back:"
                f" {type(exc).__name__}: {exc} (is the module that defines it importable on rank 0?)")
        if error is not None and trace:
            error.__cause__ = RemoteTraceback(trace)
        if task_id in self._running:  # its future runs: the driver can no longer cancel it
            self._running.discard(task_id)
            cancelled = False
        elif task_id in self._notified:  # the driver cancelled it, and its waiters were told
            cancelled = True
        else:  # its start (if it started) came with its end: the future runs now, unless the driver cancelled it
            cancelled = not record.sub.future.set_running_or_notify_cancel()
            if cancelled:
                self._notified.add(task_id)
        if done and not cancelled:
            self._succeeded(record, value)
            return
        self._end(record, E.SUCCEEDED if done else _EVENTS[state], value=value, error=error,
                  already_resolved=cancelled)
        if self._notified:
            self._notified.discard(task_id)

    def _succeeded(self, record: TaskRecord, value) -> None:
        """``_end(record, SUCCEEDED, value=value)`` for a task whose future this master set running, in
        fewer steps (the common ending): counts, observers (journal, trace), the future, dependents."""
        sub = record.sub
        counter = self.counts[sub.kind]
        counter[RUNNING] -= 1
        counter[DONE] += 1
        record.state = DONE
        self._live -= 1
        record.result = value
        if record.ended is None:
            record.ended = time.time()
        if self._timed:  # (the top keeps no per-task clocks of its own: sub-masters time tasks out)
            self._timed.discard(sub.task_id)
        # observers first: a journaled result is on disk before the driver can see it (the journal
        # observer swaps sub.future for a stand-in until its group commit: read it after)
        self.observer.task_ended(record)
        sub.future.set_result(value)
        ready, _ = self.deps.finished(sub.task_id, True)
        for task_id in ready:
            self._queue(self.tasks[task_id])
        self.tasks.pop(sub.task_id, None)

    # --- commands that change what the groups do -------------------------------------------------
    def _on_drain(self, grace: float) -> None:
        if not self._draining:
            self._broadcast("drain", grace)
        super()._on_drain(grace)

    def _on_abort(self, code: int) -> None:
        self._broadcast("abort", code)
        super()._on_abort(code)

    def _revoke_unstarted(self, error_for) -> None:
        """The sub-masters revoke their own groups' unstarted tasks (on the drain or abort they are sent)."""

    def _on_qpu(self, qpu, reply) -> None:
        """Pin ranks of one group to ``qpu`` (as that group's sub-master will), unless a live task would lose its room."""
        try:
            index, group_inventory, inventory = self.scheduler.with_qpu(qpu)
            for record in self.tasks.values():
                if record.state.terminal or record.spec.qpu is not None:
                    continue
                group = self.scheduler.group_of(record.task_id)
                with qpu_conflict(qpu, record):
                    if group is None:  # still here: some group must still fit it
                        self.scheduler.check_pinned(record.spec, index, group_inventory)
                    elif group == index:
                        group_inventory.check(record.spec, power_of_two=self.scheduler.power_of_two)
        except Exception as exc:  # noqa: BLE001 - the driver's declaration raises it
            reply.set_exception(exc)
            return
        self.inventory = inventory
        self.scheduler.pin(index, group_inventory, inventory)
        self._outgoing[index].append(("qpu", qpu))
        reply.set_result(inventory)

    def _set_inventory(self, inventory: Inventory) -> None:
        """Only expected pools can change here (no rank joins or leaves under sub-masters)."""
        if inventory.ranks != self.inventory.ranks:
            raise ResourceError(SINGLE_MASTER_ONLY.format(what="changing the pilot's ranks"))
        self.inventory = inventory
        self.scheduler.inventory = inventory

    def _shutdown_workers(self) -> None:
        """Every task has ended: tell the sub-masters to stop (each stops its own workers), and
        read until each has sent its last message (outcomes of tasks ended here already are dropped)."""
        self._broadcast("stop")
        self._flush()
        status = self._mpi.Status()
        backoff = Backoff()
        done = 0
        while done < len(self.groups) or not all(request.Test() for request, _ in self._sends):
            message = self.world.improbe(self._mpi.ANY_SOURCE, UP, status)
            if message is None:
                backoff.sleep()
                continue
            done += self._on_up(message.recv())
            backoff.reset()
        if self._stuck:
            self._end_job(self._stuck[0][0], "; ".join(message for _, message in self._stuck))
        self.observer.close()
