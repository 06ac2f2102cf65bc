"""The master's handling of joined allocations: joins, leaves, losses, releases and the adapt policy.

A mixin of :class:`~.master.Master` (it uses the master's scheduler, tasks, sends and
observer); kept apart so that the master's own loop stays readable. The file protocol and
the ``Accept`` are in :mod:`.elastic`; the policy in :mod:`pilotq_mpi.core.adapt`.
"""
from __future__ import annotations

import collections
import sys
import time

from ..core.states import TaskEvent, TaskState
from ..errors import ResourceError
from .messages import Tag

E = TaskEvent
EXIT_MARGIN_S = 5.0
"""A leaving allocation's ranks that are still inside tasks at its deadline end their processes this
many seconds later (their tasks run again elsewhere)."""
MOVE = object()
"""Marks a revoked task that is to be re-queued (its rank is leaving), not cancelled."""


class JoinedAllocations:
    """What :class:`~.master.Master` does for elastic pilots (see the module notes)."""

    def _check_allocations(self, now: float) -> bool:
        """Accept joins, start and finish leaves, and drop lost allocations; True if anything changed."""
        from .elastic import Joined, LeaveAsked

        refuse = None
        if self._draining or self._stopping:
            refuse = "the pilot is draining (its allocation is ending)" if self._draining else "the pilot is ending"
        changed = False
        for event in self.elastic.tick(now, refuse):
            changed = True
            if isinstance(event, Joined):
                self._comms.append(event.allocation.comm)
                self._set_inventory(self.inventory.with_ranks(event.infos))
                self.observer.resources_changed("join", event.allocation.name, event.infos, self.inventory)
            elif isinstance(event, LeaveAsked):
                sys.stderr.write(f"pilotq-mpi: allocation {event.allocation.name} is leaving ({event.why}):"
                                 f" no new tasks there; its running tasks get {event.grace:g}s, then run elsewhere\n")
                self._start_leaving(event.allocation, now + event.grace)
            else:
                sys.stderr.write(f"pilotq-mpi: allocation {event.allocation.name} is lost: no heartbeat for"
                                 f" {event.silent:.0f}s; its tasks run again elsewhere\n")
                self._remove_allocation(event.allocation, "lost", reachable=False)
                if self._adapt is not None and event.allocation.job_id in self._adapt.submitted:
                    self._adapt.cancel_lost(event.allocation.job_id)
        if self._adapt is not None and self._adapt.due(now) and not (self._draining or self._stopping):
            changed |= self._run_adapt(now)
        for allocation in list(self.elastic.allocations.values()):
            if allocation.leaving_until is not None:
                holding = any(self.scheduler.load(rank) for rank in allocation.ranks)
                if not holding or now >= allocation.leaving_until:
                    self._remove_allocation(allocation, "leave", reachable=True)
                    changed = True
        return changed

    def _start_leaving(self, allocation, until: float) -> None:
        """Nothing new on the allocation; its prefetched tasks come back to the queue."""
        allocation.leaving_until = until
        self.scheduler.retire(allocation.ranks)
        records = [self.tasks[task_id] for rank in allocation.ranks for task_id in self.scheduler.tasks_on(rank)
                   if task_id in self.tasks and self.tasks[task_id].spec.ranks == 1]
        self._revoke(records, lambda record: MOVE)

    def _remove_allocation(self, allocation, event: str, *, reachable: bool) -> None:
        """Re-queue what still holds the allocation's ranks, drop them, and let the allocation end."""
        moved = set()
        for rank in allocation.ranks:
            for task_id in self.scheduler.tasks_on(rank):
                if task_id not in moved:
                    moved.add(task_id)
                    record = self.tasks.get(task_id)
                    held = self.scheduler.held_ranks().get(task_id, ())
                    for held_rank in held:
                        self.scheduler.release(task_id, held_rank, time.time())
                    if record is not None and record.state is TaskState.RUNNING:
                        self._requeue(record)
        if reachable:
            self.elastic.run_dir.order_exit(allocation.name, time.time() + EXIT_MARGIN_S)
            for rank in allocation.ranks:
                self._send(rank, None, Tag.SHUTDOWN)
        self.elastic.forget(allocation)
        self._comms = [c for c in self._comms if c is not allocation.comm]
        if not reachable:  # sends to dead ranks may never complete: stop waiting for them
            self._sends = [sent for sent in self._sends if sent[1] is not allocation.comm]
        gone = set(allocation.ranks)
        for rank in gone:
            self._known_fns.pop(rank, None)
        infos = tuple(info for info in self.inventory.ranks if info.rank in gone)
        self._set_inventory(self.inventory.without_ranks(gone))
        self.observer.resources_changed(event, allocation.name, infos, self.inventory)
        if moved:
            sys.stderr.write(f"pilotq-mpi: {_tasks(len(moved))} of allocation {allocation.name} re-queued\n")
        self._fail_unplaceable(allocation.name)

    def _fail_unplaceable(self, gone: str) -> None:
        """Queued tasks that no rank left can ever run fail now instead of waiting forever."""
        waiting: collections.Counter = collections.Counter()
        for record in list(self.tasks.values()):
            if record.state is not TaskState.QUEUED:
                continue
            pool = record.spec.pool
            if pool is not None and pool in self.inventory.expected_pools \
                    and not any(info.pool == pool for info in self.inventory.ranks):
                waiting[pool] += 1
            try:
                self.inventory.check(record.spec, power_of_two=self.scheduler.power_of_two)
            except ResourceError as exc:
                if self.scheduler.cancel(record.task_id):
                    self._end(record, E.CANCEL, error=ResourceError(
                        f"task {record.name!r} (id {record.task_id}) can no longer run: allocation {gone} left"
                        f" ({exc}); declare pools that will join again with Pilot(pools=[...])"))
        for pool, count in waiting.items():
            sys.stderr.write(f"pilotq-mpi: {_tasks(count)} wait for pool {pool!r}, which has no ranks now"
                             f" (join a launch with --pool {pool})\n")


    def _on_adapt(self, policy, reply) -> None:
        """The driver set an adapt policy: join jobs are submitted and released from now on."""
        if self.elastic is None:
            reply.set_exception(ValueError("Pilot(adapt=...) needs a pilot others can join: start it with"
                                           " --run-dir DIR (or PILOTQ_RUN_DIR) on a shared file system"))
            return
        from ..platform.adapt_jobs import SlurmJobs
        from .adapting import AdaptRunner

        self._adapt = AdaptRunner(policy, SlurmJobs(self.elastic.run_dir.path), self.observer.note)
        if policy.template.pool is not None:
            self._set_inventory(self.inventory.expecting([policy.template.pool]))
        reply.set_result(None)

    def _run_adapt(self, now: float) -> bool:
        """One decision of the adapt policy; True if an allocation was released."""
        from ..core.adapt import Allocation as AdaptAllocation

        pool = self._adapt.policy.template.pool
        queued = [(self._predict(record.task_id), record.spec.ranks) for record in self.tasks.values()
                  if record.state is TaskState.QUEUED and record.spec.pool in (None, pool)]
        ranks = sum(1 for info in self.inventory.compute_ranks if pool is None or info.pool == pool)
        views = []
        for allocation in self.elastic.allocations.values():
            if any(self.scheduler.load(rank) for rank in allocation.ranks):
                allocation.idle_since = None
            elif allocation.idle_since is None:
                allocation.idle_since = now
            views.append(AdaptAllocation(allocation.name, allocation.job_id, allocation.pool, allocation.size,
                                         allocation.idle_since, allocation.joined_at,
                                         allocation.leaving_until is not None))
        released = False
        for decision in self._adapt.decide(now, queued=queued, ranks=ranks, allocations=views):
            allocation = self.elastic.allocations.get(decision.allocation_id)
            if allocation is not None and allocation.leaving_until is None:
                self._start_leaving(allocation, now + self.drain_grace)
                released = True
        return released


    def _on_release(self, name: str, reply) -> None:
        """The driver ends joined allocations on purpose (by allocation or pool name)."""
        if self.elastic is None:
            reply.set_exception(ValueError("this pilot has no joined allocations (start it with --run-dir DIR"
                                           " so that others can join)"))
            return
        chosen = [a for a in self.elastic.allocations.values() if name in (a.name, a.pool)]
        if not chosen:
            names = sorted({a.name for a in self.elastic.allocations.values()}
                           | {a.pool for a in self.elastic.allocations.values() if a.pool})
            reply.set_exception(ValueError(f"no joined allocation or pool named {name!r}"
                                           f" (joined: {', '.join(names) or 'none'})"))
            return
        now = time.time()
        for allocation in chosen:
            if allocation.leaving_until is None:
                sys.stderr.write(f"pilotq-mpi: allocation {allocation.name} is leaving (released by the driver):"
                                 f" no new tasks there; its running tasks get {self.drain_grace:g}s\n")
                self._start_leaving(allocation, now + self.drain_grace)
        reply.set_result([a.name for a in chosen])


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"
