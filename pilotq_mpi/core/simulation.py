"""Discrete-event simulation of a pilot driven by the real :class:`Scheduler` (pure: no MPI).

``simulate(inventory, tasks)`` runs a workload in *simulated* time through the same
``Scheduler`` the master uses, so scale studies (thousands of ranks, a million tasks)
exercise the real placement code. Each task is ``(spec, duration, submit_time)``.

Model
-----
* Events: a task's submission (at its ``submit_time``), the arrival of an assignment at
  its worker(s) (placement time + ``dispatch_latency``), a task's completion.
* All events of one instant are handled first; then, if the scheduler's state changed
  (a submission or a completion), ``scheduler.schedule()`` is called once -- as the master
  drains its messages, then schedules. Arrivals alone change nothing the scheduler sees.
* Workers: a compute rank runs one task at a time, a QPU rank up to its QPU's
  ``concurrency``. Single-rank tasks the scheduler queued on one rank (prefetch) run one
  after another, in placement order: a placement's *start* is when the rank has a free
  slot and the assignment has arrived, not the placement time. A multi-rank task gets
  idle ranks only (the scheduler's rule; the simulator checks it) and starts when its
  assignment arrives.
* ``dispatch_latency`` is one master round trip per task start (completion message to
  the master plus the assignment back), charged on the assignment: a task placed at ``t``
  arrives at ``t + dispatch_latency``. A prefetched task that arrived while the rank was
  busy starts the moment the rank frees, which is how prefetch hides the round trip.
* A rank is released (``scheduler.release``) when its part of a task completes.
* ``master`` (:class:`MasterModel`): the master is a single server with a CPU cost per
  submission, placement and result (optionally plus the time measured inside the scheduler's
  calls). It works in passes like the real loop: all that arrived, then one ``schedule()``,
  then the placements leave one after another; results wait until it gets to them, so the
  scheduler learns of a free rank late (a worker still starts its prefetched task at once).
  Without it the master costs nothing and its view is always current.
* :func:`simulate_hierarchical`: a top master (its own cost) hands tasks in batches to ``G``
  sub-masters, each a master as above with its own ``Scheduler`` over its group of ranks,
  keeping each group fed with ``workers x (1 + prefetch)`` slots (:class:`GroupRouter`, the
  rule of the runtime's group queue); results go back up in one message per sub-master pass.
* ``horizon`` turns on the scheduler's prefetch gating (queue a task behind a busy rank's
  work only if that work is predicted to end within ``horizon``); predictions come from
  ``predict(task id)``, by default the true durations (an oracle).

Reading the clock
-----------------
Simulated time is all this module computes with, with one exception: the wall time
spent *inside* ``Scheduler.schedule()``, ``Scheduler.release()`` and ``Scheduler.submit()``
is measured with ``timer`` (``time.perf_counter`` by default) around those calls only,
to report the scheduler's own CPU cost per decision. Pass a fake ``timer`` to make a run
fully deterministic; nothing else reads it. With ``MasterModel(scheduler=True)`` those readings
are also charged to the master as simulated time (pass ``time.thread_time`` for CPU time): the
schedule then depends on the real scheduler's speed at that size.

Also here: :func:`mixed_workload`, a seeded generator of mixed-width workloads.
"""
from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..errors import ResourceError
from .inventory import Inventory
from .scheduler import Scheduler
from .specs import TaskSpec

__all__ = ["SimTask", "TaskRecord", "SimulationResult", "MasterModel", "GroupRouter", "simulate",
           "simulate_hierarchical", "mixed_workload", "lower_bound", "percentile"]


@dataclass(frozen=True, slots=True)
class SimTask:
    """One task of a simulated workload: what it needs, how long it runs, when it is submitted."""

    spec: TaskSpec
    duration: float
    submit_time: float = 0.0


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What happened to task ``task_id`` (its index in the workload) in simulated time."""

    task_id: int
    spec: TaskSpec
    submit: float
    placed: float
    start: float
    end: float
    ranks: tuple[int, ...]

    @property
    def wait(self) -> float:
        """Queue wait: from submission to start."""
        return self.start - self.submit


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of :func:`simulate`: the schedule, its quality, and the scheduler's own cost.

    ``utilization`` is busy rank-seconds / (makespan x ranks), where a rank is busy while it
    runs at least one task (a QPU rank running several calls at once counts once).
    ``lower_bound`` is max(total work / ranks, latest submit + duration); work is
    duration x ranks, divided by the QPU's concurrency for QPU tasks (no schedule beats it).
    ``scheduler_seconds`` is real (wall) time inside ``schedule()`` + ``release()``;
    ``submit_seconds`` the same for ``submit()``; per decision means per placed task.
    """

    records: tuple[TaskRecord, ...]
    ranks: int
    prefetch: int
    dispatch_latency: float
    makespan: float
    busy_rank_seconds: float
    utilization: float
    lower_bound: float
    wait_p50: float
    wait_p95: float
    wait_max: float
    events: int
    schedule_calls: int
    release_calls: int
    placements: int
    schedule_seconds: float
    release_seconds: float
    submit_seconds: float
    masters: tuple[dict, ...] = ()
    """Per master (the top one first): simulated seconds busy, passes, busy fraction of the makespan."""
    results_seen: float = 0.0
    """When the master the driver talks to had handled the last result (from the first submission)."""

    @property
    def scheduler_seconds(self) -> float:
        """Wall time inside ``schedule()`` and ``release()``."""
        return self.schedule_seconds + self.release_seconds

    @property
    def seconds_per_decision(self) -> float:
        """Wall time inside ``schedule()`` + ``release()`` per placed task."""
        return self.scheduler_seconds / self.placements if self.placements else 0.0

    @property
    def decisions_per_second(self) -> float:
        """Placed tasks per second of wall time inside ``schedule()`` + ``release()``."""
        return self.placements / self.scheduler_seconds if self.scheduler_seconds > 0 else math.inf

    @property
    def makespan_over_bound(self) -> float:
        return self.makespan / self.lower_bound if self.lower_bound > 0 else 1.0

    def summary(self) -> dict:
        """The scalar figures (no per-task records), JSON-ready."""
        return {
            "tasks": len(self.records), "ranks": self.ranks, "prefetch": self.prefetch,
            "dispatch_latency": self.dispatch_latency, "makespan": self.makespan,
            "lower_bound": self.lower_bound, "makespan_over_bound": self.makespan_over_bound,
            "utilization": self.utilization, "busy_rank_seconds": self.busy_rank_seconds,
            "wait_p50": self.wait_p50, "wait_p95": self.wait_p95, "wait_max": self.wait_max,
            "events": self.events, "schedule_calls": self.schedule_calls, "release_calls": self.release_calls,
            "placements": self.placements, "schedule_seconds": self.schedule_seconds,
            "release_seconds": self.release_seconds, "submit_seconds": self.submit_seconds,
            "scheduler_seconds": self.scheduler_seconds, "seconds_per_decision": self.seconds_per_decision,
            "decisions_per_second": self.decisions_per_second, "masters": list(self.masters),
            "results_seen": self.results_seen,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default); 0.0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _as_task(task) -> SimTask:
    if isinstance(task, SimTask):
        return task
    spec, duration, submit_time = task
    return SimTask(spec, duration, submit_time)


def lower_bound(inventory: Inventory, tasks: Iterable) -> float:
    """No schedule of ``tasks`` on ``inventory`` can finish earlier (measured from the first submission)."""
    tasks = [_as_task(t) for t in tasks]
    if not tasks:
        return 0.0
    first = min(t.submit_time for t in tasks)
    work = 0.0
    latest = 0.0
    for t in tasks:
        width = t.spec.ranks / (inventory.qpus[t.spec.qpu].concurrency if t.spec.qpu else 1)
        work += t.duration * width
        latest = max(latest, t.submit_time - first + t.duration)
    return max(work / len(inventory.ranks), latest)


@dataclass(frozen=True)
class MasterModel:
    """A master as a single server: the CPU seconds it spends on each piece of work, one at a time.

    ``submit``: per task it receives (from the driver, or for a sub-master from the top master);
    ``place``: per task it hands out (to a worker, or for the top master to a sub-master);
    ``result``: per result it receives. With ``scheduler=True`` the time measured inside the
    scheduler's calls (``simulate``'s ``timer``) is charged too, so the fixed costs should then
    exclude the scheduler. A master works in passes, as the real loop does: it takes every
    submission and result that has arrived, hands them to its scheduler, schedules once, and
    sends the placements one after another; what arrives meanwhile waits for the next pass.
    """

    submit: float = 0.0
    place: float = 0.0
    result: float = 0.0
    scheduler: bool = False
    submissions_per_pass: int | None = None
    """The top master: at most this many submissions taken per pass (None: every one that has arrived),
    so that results and hand-outs are not held back behind a long run of submissions."""

    def __post_init__(self) -> None:
        for name in ("submit", "place", "result"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"MasterModel.{name} must be a finite number of seconds >= 0, got {value!r}")
        limit = self.submissions_per_pass
        if limit is not None and not (isinstance(limit, int) and limit >= 1):
            raise ValueError(f"MasterModel.submissions_per_pass must be None or an integer >= 1, got {limit!r}")

    @property
    def per_task(self) -> float:
        """Fixed seconds per task that goes through this master (submit + place + result)."""
        return self.submit + self.place + self.result


class _Server:
    """One master in the simulation: its inbox, its clock, and what it has spent."""

    __slots__ = ("name", "model", "scheduler", "router", "tasks", "results", "free", "busy", "passes", "woken")

    def __init__(self, name: str, model: MasterModel, scheduler=None, router=None):
        self.name = name
        self.model = model
        self.scheduler = scheduler
        self.router = router
        self.tasks: deque = deque()
        """Tasks received and not yet handled."""
        self.results: deque = deque()
        """Results received and not yet handled: (task, rank) for a leaf, task for the top."""
        self.free = 0.0
        self.busy = 0.0
        self.passes = 0
        self.woken: float | None = None

    def summary(self, makespan: float) -> dict:
        return {"name": self.name, "busy_seconds": self.busy, "passes": self.passes,
                "utilization": self.busy / makespan if makespan > 0 else 0.0}


class GroupRouter:
    """The top master's hand-out rule: keep every group fed, no more.

    A group holds at most ``workers x (1 + prefetch)`` rank-slots of tasks handed to it and
    not yet ended; a task goes to the least loaded group (outstanding over capacity) with
    room among those that can run it. Tasks leave in priority order, then submission order;
    the first one without room stops the hand-out (simpler than the runtime's per-class rule;
    the same for workloads of one resource class). Same interface as a runtime group queue:
    ``submit``, ``assign``, ``finished``.
    """

    def __init__(self, groups: Sequence[Inventory], *, prefetch: int = 1):
        self._groups = list(groups)
        self._capacity = [len(g.ranks) * (1 + prefetch) for g in self._groups]
        self._outstanding = [0] * len(self._groups)
        self._fits: dict = {}
        self._queue: list = []
        self._seq = 0
        self._placed: dict[int, tuple[int, int]] = {}

    def fits(self, spec: TaskSpec) -> tuple[int, ...]:
        """Groups that can ever run ``spec``."""
        key = spec.resource_class
        fits = self._fits.get(key)
        if fits is None:
            fits = []
            for index, inventory in enumerate(self._groups):
                try:
                    inventory.check(spec)
                except ValueError:
                    continue
                fits.append(index)
            fits = self._fits[key] = tuple(fits)
        return fits

    def submit(self, task_id: int, spec: TaskSpec) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (-spec.priority, self._seq, task_id, spec))

    def assign(self, waiting: int = 0) -> list[tuple[int, int]]:
        """Hand out queued tasks while the next one has room: ``[(task, group), ...]`` (``waiting``:
        submissions not taken yet, which the runtime's queue counts before holding; unused here)."""
        handed = []
        while self._queue:
            _, _, task_id, spec = self._queue[0]
            best, best_load = None, None
            for index in self.fits(spec):
                outstanding, capacity = self._outstanding[index], self._capacity[index]
                if outstanding + spec.ranks > max(capacity, spec.ranks):
                    continue
                load = outstanding / capacity
                if best_load is None or load < best_load:
                    best, best_load = index, load
            if best is None:
                break
            heapq.heappop(self._queue)
            self._outstanding[best] += spec.ranks
            self._placed[task_id] = (best, spec.ranks)
            handed.append((task_id, best))
        return handed

    def finished(self, task_id: int) -> None:
        group, width = self._placed.pop(task_id)
        self._outstanding[group] -= width

    @property
    def queued(self) -> int:
        return len(self._queue)


# event kinds, in the order they are handled within one instant (any order gives the same result)
_COMPLETE, _ARRIVE, _DELIVER, _WAKE = 0, 1, 2, 3


def _validated(tasks: Iterable) -> list[SimTask]:
    work = [_as_task(t) for t in tasks]
    for index, t in enumerate(work):
        if not (t.duration >= 0 and math.isfinite(t.duration)):
            raise ValueError(f"task {index}: duration must be a finite number >= 0, got {t.duration!r}")
        if not math.isfinite(t.submit_time):
            raise ValueError(f"task {index}: submit_time must be finite, got {t.submit_time!r}")
    return work


def _scheduler(inventory, work, prefetch, scheduler_factory, horizon, predict):
    if horizon is None:
        return scheduler_factory(inventory, prefetch=prefetch)
    return scheduler_factory(inventory, prefetch=prefetch, horizon=horizon,
                             predict=predict or (lambda task: work[task].duration))


def simulate(inventory: Inventory, tasks: Iterable, *, prefetch: int = 1, dispatch_latency: float = 0.0,
             timer: Callable[[], float] = time.perf_counter,
             scheduler_factory: Callable[..., Scheduler] = Scheduler, horizon: float | None = None,
             predict: Callable[[int], float | None] | None = None,
             master: MasterModel | None = None) -> SimulationResult:
    """Run ``tasks`` (``(spec, duration, submit_time)`` or :class:`SimTask`) through a ``Scheduler``.

    Task ids are the indices in ``tasks``. Every spec must fit the inventory
    (``ResourceError`` otherwise, naming the task). ``scheduler_factory(inventory,
    prefetch=...)`` builds the scheduler (a stand-in with the same interface may be
    passed, e.g. to compare a prototype). Raises ``RuntimeError`` if the scheduler breaks
    a rule the simulator can see (a rank over its slots, a wide task on a busy rank) or
    leaves tasks queued with nothing left to happen. With ``horizon`` set, the factory also
    gets ``horizon=`` and ``predict=`` (default: each task's true duration), and
    ``schedule``/``release`` get the simulated time as ``now``.

    ``master`` (a :class:`MasterModel`) makes the master a single server with a cost per
    task: placements leave it one after another, results wait until it gets to them (the
    scheduler learns that a rank is free only then; a worker still starts its prefetched
    task at once). Without it the master is free (the scheduler's view is always current).
    """
    if dispatch_latency < 0:
        raise ValueError(f"dispatch_latency must be >= 0, got {dispatch_latency!r}")
    work = _validated(tasks)
    scheduler = _scheduler(inventory, work, prefetch, scheduler_factory, horizon, predict)
    _check_fits(work, [scheduler])
    server = _Server("master", master or MasterModel(), scheduler=scheduler)
    return _Engine(inventory, work, [server], None, [[r.rank for r in inventory.ranks]], prefetch=prefetch,
                   dispatch_latency=dispatch_latency,
                   group_latency=0.0, timer=timer, clocked=horizon is not None).run()


def simulate_hierarchical(inventory: Inventory, tasks: Iterable, groups: "int | Sequence[Sequence[int]]", *,
                          top: MasterModel, sub: MasterModel, prefetch: int = 1, dispatch_latency: float = 0.0,
                          group_latency: float = 0.0, timer: Callable[[], float] = time.perf_counter,
                          scheduler_factory: Callable[..., Scheduler] = Scheduler, horizon: float | None = None,
                          predict: Callable[[int], float | None] | None = None,
                          router_factory: Callable[..., GroupRouter] = GroupRouter) -> SimulationResult:
    """Like :func:`simulate`, with a top master over ``groups`` of worker ranks, each with a sub-master.

    ``inventory`` holds the worker ranks only (the top master and the sub-masters run on
    ranks of their own, which do no tasks). ``groups`` is a number (consecutive ranks in
    near-equal groups) or the worker rank ids of each group. The top master (``top``) gets
    the submissions and hands tasks to sub-masters by ``router_factory(group_inventories,
    prefetch=)`` (:class:`GroupRouter`: keep each group fed with ``workers x (1 + prefetch)``
    rank-slots of work), in one message per group and pass, which arrives ``group_latency``
    later. Each sub-master (``sub``) runs its own ``Scheduler`` over its group, as the single
    master does over all ranks, and sends the results of each pass to the top in one message.
    A task must fit within one group (``ResourceError`` otherwise, naming the task).
    """
    for name, value in (("dispatch_latency", dispatch_latency), ("group_latency", group_latency)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    work = _validated(tasks)
    ranks = [r.rank for r in inventory.ranks]
    if isinstance(groups, int):
        if not 1 <= groups <= len(ranks):
            raise ValueError(f"groups must be between 1 and the {len(ranks)} worker ranks, got {groups}")
        bounds = [round(i * len(ranks) / groups) for i in range(groups + 1)]
        groups = [ranks[bounds[i]:bounds[i + 1]] for i in range(groups)]
    members = [rank for group in groups for rank in group]
    if sorted(members) != sorted(ranks):
        raise ValueError("groups must split the inventory's worker ranks, each rank in exactly one group")
    inventories = [Inventory(tuple(inventory.rank(r) for r in group), inventory.qpus) for group in groups]
    subs = [_Server(f"sub-master {i}", sub, scheduler=_scheduler(inv, work, prefetch, scheduler_factory,
                                                                   horizon, predict))
            for i, inv in enumerate(inventories)]
    router = router_factory(inventories, prefetch=prefetch)
    _check_fits(work, [s.scheduler for s in subs], router)
    head = _Server("top master", top, router=router)
    return _Engine(inventory, work, subs, head, groups, prefetch=prefetch, dispatch_latency=dispatch_latency,
                   group_latency=group_latency, timer=timer, clocked=horizon is not None).run()


def _check_fits(work: list[SimTask], schedulers: list, router=None) -> None:
    checked: set = set()
    for index, t in enumerate(work):
        key = (t.spec.resource_class, t.spec.timeout is None)
        if key in checked:
            continue
        if router is None:
            try:
                schedulers[0].check(t.spec)
            except ValueError as error:
                raise type(error)(f"task {index}: {error}") from error
        elif not router.fits(t.spec):
            try:  # the reason of the first group, or a plain "fits no group"
                schedulers[0].check(t.spec)
            except ValueError as error:
                raise type(error)(f"task {index}: no group can run it: {error}") from error
            raise ResourceError(f"task {index}: no group can run it ({t.spec.ranks} ranks)")
        checked.add(key)


class _Engine:
    """The event loop shared by the single-master and the hierarchical simulations."""

    def __init__(self, inventory: Inventory, work: list[SimTask], leaves: list[_Server], top: _Server | None,
                 leaf_ranks: list, *, prefetch: int, dispatch_latency: float, group_latency: float, timer,
                 clocked: bool):
        self.inventory = inventory
        self.work = work
        self.leaves = leaves
        self.top = top
        self.servers = ([top] if top else []) + leaves
        self.prefetch = prefetch
        self.latency = dispatch_latency
        self.group_latency = group_latency
        self.timer = timer
        self.clocked = clocked
        n = len(work)
        self.leaf_of: dict[int, _Server] = {}
        for leaf, ranks in zip(leaves, leaf_ranks):
            self.leaf_of.update(dict.fromkeys(ranks, leaf))
        self.slots = {r.rank: (inventory.qpus[r.qpu].concurrency if r.qpu else 1) for r in inventory.ranks}
        self.running = dict.fromkeys(self.slots, 0)
        self.wide_on: dict[int, int] = {}
        self.pending: dict[int, deque] = {rank: deque() for rank in self.slots}
        self.busy_since: dict[int, float] = {}
        self.busy_total = 0.0
        self.placed_at = [math.nan] * n
        self.start_at = [math.nan] * n
        self.end_at = [math.nan] * n
        self.ranks_of: list[tuple[int, ...]] = [()] * n
        self.reported = [0] * n
        self.seen_at = 0.0
        self.events: list = []
        self.seq = 0
        self.payloads: dict[int, tuple] = {}
        self.schedule_s = self.release_s = self.submit_s = 0.0
        self.schedule_calls = self.release_calls = self.placements = self.handled = 0

    # --- workers ---------------------------------------------------------------------------
    def push(self, when: float, kind: int, a: int, b: int = 0) -> int:
        self.seq += 1
        heapq.heappush(self.events, (when, kind, self.seq, a, b))
        return self.seq

    def begin(self, task: int, now: float, ranks: tuple[int, ...]) -> None:
        self.start_at[task] = now
        end = now + self.work[task].duration
        self.end_at[task] = end
        for rank in ranks:
            if self.running[rank] == 0:
                self.busy_since[rank] = now
            self.running[rank] += 1
            self.push(end, _COMPLETE, task, rank)

    def arrive(self, task: int, rank: int, now: float) -> None:
        spec = self.work[task].spec
        running, pending, wide_on = self.running, self.pending, self.wide_on
        if spec.ranks > 1:
            ranks = self.ranks_of[task]
            for r in ranks:
                if running[r] or pending[r] or r in wide_on:
                    raise RuntimeError(f"task {task} ({spec.ranks} ranks) was placed on busy rank {r} at t={now}")
                wide_on[r] = task
            self.begin(task, now, ranks)
            return
        if rank in wide_on:
            raise RuntimeError(f"task {task} was queued on rank {rank}, which runs multi-rank task {wide_on[rank]}")
        if running[rank] < self.slots[rank] and not pending[rank]:
            self.begin(task, now, (rank,))
        else:
            pending[rank].append(task)

    def complete(self, task: int, rank: int, now: float) -> None:
        self.running[rank] -= 1
        if self.running[rank] == 0:
            self.busy_total += now - self.busy_since.pop(rank)
        self.wide_on.pop(rank, None)
        queue = self.pending[rank]
        while queue and self.running[rank] < self.slots[rank]:
            self.begin(queue.popleft(), now, (rank,))

    # --- masters ---------------------------------------------------------------------------
    def deliver(self, when: float, now: float, target: _Server, tasks: tuple, results: tuple) -> None:
        if when == now:
            target.tasks.extend(tasks)
            target.results.extend(results)
            return
        self.payloads[self.push(when, _DELIVER, self.servers.index(target))] = (tasks, results)

    def leaf_pass(self, server: _Server, now: float) -> None:
        model, scheduler, timer = server.model, server.scheduler, self.timer
        charge = model.scheduler
        cost = 0.0
        while server.tasks:
            task = server.tasks.popleft()
            t0 = timer()
            scheduler.submit(task, self.work[task].spec)
            spent = timer() - t0
            self.submit_s += spent
            cost += model.submit + (spent if charge else 0.0)
        finished = []
        while server.results:
            task, rank = server.results.popleft()
            clock = {"now": now + cost} if self.clocked else {}
            t0 = timer()
            scheduler.release(task, rank, **clock)
            spent = timer() - t0
            self.release_s += spent
            self.release_calls += 1
            cost += model.result + (spent if charge else 0.0)
            self.reported[task] += 1
            if self.reported[task] == self.work[task].spec.ranks:
                finished.append(task)
        clock = {"now": now + cost} if self.clocked else {}
        t0 = timer()
        chosen = scheduler.schedule(**clock)
        spent = timer() - t0
        self.schedule_s += spent
        self.schedule_calls += 1
        cost += spent if charge else 0.0
        self.placements += len(chosen)
        for placement in chosen:
            task = placement.task_id
            if not math.isnan(self.placed_at[task]):
                raise RuntimeError(f"task {task} was placed twice")
            cost += model.place
            sent = now + cost
            self.placed_at[task] = sent
            self.ranks_of[task] = tuple(placement.ranks)
            arrival = sent + self.latency
            if arrival == now:
                self.arrive(task, placement.ranks[0], now)
            else:
                self.push(arrival, _ARRIVE, task, placement.ranks[0])
        self.finish_pass(server, now, cost)
        if finished:
            if self.top is None:
                self.seen_at = max(self.seen_at, now + cost)
            else:
                self.deliver(now + cost + self.group_latency, now, self.top, (), tuple(finished))

    def top_pass(self, server: _Server, now: float) -> None:
        model, router = server.model, server.router
        cost = 0.0
        while server.results:
            router.finished(server.results.popleft())
            cost += model.result
        self.seen_at = max(self.seen_at, now + cost)
        taken, limit = 0, model.submissions_per_pass
        while server.tasks and (limit is None or taken < limit):  # the rest waits for the next pass
            task = server.tasks.popleft()
            router.submit(task, self.work[task].spec)
            cost += model.submit
            taken += 1
        batches: dict[int, list[int]] = {}
        sent_at: dict[int, float] = {}
        for task, group in router.assign(len(server.tasks)):
            cost += model.place
            batches.setdefault(group, []).append(task)
            sent_at[group] = now + cost
        self.finish_pass(server, now, cost)
        for group, tasks in batches.items():
            self.deliver(sent_at[group] + self.group_latency, now, self.leaves[group], tuple(tasks), ())

    def finish_pass(self, server: _Server, now: float, cost: float) -> None:
        server.free = now + cost
        server.busy += cost
        server.passes += 1
        if cost > 0 and server.woken != server.free:
            server.woken = server.free
            self.push(server.free, _WAKE, self.servers.index(server))

    # --- loop --------------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        work, events = self.work, self.events
        n = len(work)
        order = sorted(range(n), key=lambda i: (work[i].submit_time, i))
        entry = self.top or self.leaves[0]
        next_submit = 0
        while next_submit < n or events:
            now = events[0][0] if events else math.inf
            if next_submit < n and work[order[next_submit]].submit_time <= now:
                now = work[order[next_submit]].submit_time
            while next_submit < n and work[order[next_submit]].submit_time == now:
                entry.tasks.append(order[next_submit])
                next_submit += 1
                self.handled += 1
            while events and events[0][0] == now:
                _, kind, seq, a, b = heapq.heappop(events)
                if kind == _COMPLETE:
                    self.handled += 1
                    self.complete(a, b, now)
                    self.leaf_of[b].results.append((a, b))
                elif kind == _ARRIVE:
                    self.handled += 1
                    self.arrive(a, b, now)
                elif kind == _DELIVER:
                    tasks, results = self.payloads.pop(seq)
                    self.servers[a].tasks.extend(tasks)
                    self.servers[a].results.extend(results)
            ran = True
            while ran:  # a pass may hand work to another master at this same instant
                ran = False
                for server in self.servers:
                    if server.free <= now and (server.tasks or server.results):
                        (self.leaf_pass if server.scheduler is not None else self.top_pass)(server, now)
                        ran = True
        queued = sum(s.scheduler.queued for s in self.leaves) + (self.top.router.queued if self.top else 0)
        if queued:
            raise RuntimeError(f"{queued} task(s) were left queued with every rank idle")
        return self.result()

    def result(self) -> SimulationResult:
        work, n = self.work, len(self.work)
        records = tuple(
            TaskRecord(i, work[i].spec, work[i].submit_time, self.placed_at[i], self.start_at[i], self.end_at[i],
                       self.ranks_of[i])
            for i in range(n)
        )
        first = min((t.submit_time for t in work), default=0.0)
        makespan = max((end - first for end in self.end_at), default=0.0)
        waits = [self.start_at[i] - work[i].submit_time for i in range(n)]
        n_ranks = len(self.inventory.ranks)
        return SimulationResult(
            records=records, ranks=n_ranks, prefetch=self.prefetch, dispatch_latency=self.latency,
            makespan=makespan, busy_rank_seconds=self.busy_total,
            utilization=self.busy_total / (makespan * n_ranks) if makespan > 0 else 0.0,
            lower_bound=lower_bound(self.inventory, work),
            wait_p50=percentile(waits, 50), wait_p95=percentile(waits, 95), wait_max=max(waits, default=0.0),
            events=self.handled, schedule_calls=self.schedule_calls, release_calls=self.release_calls,
            placements=self.placements, schedule_seconds=self.schedule_s, release_seconds=self.release_s,
            submit_seconds=self.submit_s, masters=tuple(s.summary(makespan) for s in self.servers),
            results_seen=(self.seen_at - first) if n else 0.0,
        )


def mixed_workload(n_tasks: int, *, wide_fraction: float = 0.05, widths: Sequence[int] = (2, 4, 8, 16),
                   gpu_fraction: float = 0.5, seed: int = 0, median_duration: float = 1.0, sigma: float = 1.0,
                   arrival_rate: float | None = None) -> list[SimTask]:
    """A reproducible mixed workload: ``n_tasks`` tasks, the same list for the same arguments.

    A fraction ``wide_fraction`` of tasks is multi-rank, its width drawn uniformly from
    ``widths``; independently, a fraction ``gpu_fraction`` needs one GPU per rank. Durations
    are lognormal with median ``median_duration`` and shape ``sigma``. All tasks are
    submitted at 0 (a bag of tasks) unless ``arrival_rate`` (tasks per second) is given:
    then submissions are a Poisson stream.
    """
    if n_tasks < 0:
        raise ValueError(f"n_tasks must be >= 0, got {n_tasks!r}")
    for name, value in (("wide_fraction", wide_fraction), ("gpu_fraction", gpu_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if wide_fraction and not widths:
        raise ValueError("widths must not be empty when wide_fraction > 0")
    if arrival_rate is not None and arrival_rate <= 0:
        raise ValueError(f"arrival_rate must be > 0 tasks/s or None, got {arrival_rate!r}")
    rng = random.Random(seed)
    mu = math.log(median_duration)
    specs: dict[tuple[int, int], TaskSpec] = {}
    out = []
    now = 0.0
    for _ in range(n_tasks):
        width = rng.choice(widths) if rng.random() < wide_fraction else 1
        gpus = 1 if rng.random() < gpu_fraction else 0
        spec = specs.get((width, gpus))
        if spec is None:
            spec = specs[(width, gpus)] = TaskSpec(ranks=width, gpus_per_rank=gpus)
        duration = rng.lognormvariate(mu, sigma)
        if arrival_rate is not None:
            now += rng.expovariate(arrival_rate)
        out.append(SimTask(spec, duration, now))
    return out
