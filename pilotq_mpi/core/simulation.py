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
* ``horizon`` turns on the scheduler's prefetch gating (queue a task behind a busy rank's
  work only if that work is predicted to end within ``horizon``); predictions come from
  ``predict(task id)``, by default the true durations (an oracle).

Reading the clock
-----------------
Simulated time is all this module computes with, with one exception: the wall time
spent *inside* ``Scheduler.schedule()``, ``Scheduler.release()`` and ``Scheduler.submit()``
is measured with ``timer`` (``time.perf_counter`` by default) around those calls only,
to report the scheduler's own CPU cost per decision. Pass a fake ``timer`` to make a run
fully deterministic; nothing else reads it.

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

from .inventory import Inventory
from .scheduler import Scheduler
from .specs import TaskSpec

__all__ = ["SimTask", "TaskRecord", "SimulationResult", "simulate", "mixed_workload", "lower_bound", "percentile"]


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
            "decisions_per_second": self.decisions_per_second,
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


# event kinds, in the order they are handled within one instant (any order gives the same result)
_COMPLETE, _ARRIVE = 0, 1


def simulate(inventory: Inventory, tasks: Iterable, *, prefetch: int = 1, dispatch_latency: float = 0.0,
             timer: Callable[[], float] = time.perf_counter,
             scheduler_factory: Callable[..., Scheduler] = Scheduler, horizon: float | None = None,
             predict: Callable[[int], float | None] | None = None) -> SimulationResult:
    """Run ``tasks`` (``(spec, duration, submit_time)`` or :class:`SimTask`) through a ``Scheduler``.

    Task ids are the indices in ``tasks``. Every spec must fit the inventory
    (``ResourceError`` otherwise, naming the task). ``scheduler_factory(inventory,
    prefetch=...)`` builds the scheduler (a stand-in with the same interface may be
    passed, e.g. to compare a prototype). Raises ``RuntimeError`` if the scheduler breaks
    a rule the simulator can see (a rank over its slots, a wide task on a busy rank) or
    leaves tasks queued with nothing left to happen. With ``horizon`` set, the factory also
    gets ``horizon=`` and ``predict=`` (default: each task's true duration), and
    ``schedule``/``release`` get the simulated time as ``now``.
    """
    if dispatch_latency < 0:
        raise ValueError(f"dispatch_latency must be >= 0, got {dispatch_latency!r}")
    work = [_as_task(t) for t in tasks]
    for index, t in enumerate(work):
        if not (t.duration >= 0 and math.isfinite(t.duration)):
            raise ValueError(f"task {index}: duration must be a finite number >= 0, got {t.duration!r}")
        if not math.isfinite(t.submit_time):
            raise ValueError(f"task {index}: submit_time must be finite, got {t.submit_time!r}")
    if horizon is None:
        scheduler = scheduler_factory(inventory, prefetch=prefetch)
        clock: dict = {}
    else:
        scheduler = scheduler_factory(inventory, prefetch=prefetch, horizon=horizon,
                                      predict=predict or (lambda task: work[task].duration))
        clock = {"now": 0.0}
    checked: set = set()
    for index, t in enumerate(work):
        key = (t.spec.resource_class, t.spec.timeout is None)
        if key not in checked:
            try:
                scheduler.check(t.spec)
            except ValueError as error:
                raise type(error)(f"task {index}: {error}") from error
            checked.add(key)

    n = len(work)
    slots = {r.rank: (inventory.qpus[r.qpu].concurrency if r.qpu else 1) for r in inventory.ranks}
    running = dict.fromkeys(slots, 0)          # tasks running on each rank now
    wide_on: dict[int, int] = {}               # rank -> multi-rank task running there
    pending: dict[int, deque] = {rank: deque() for rank in slots}   # arrived, not started (FIFO)
    busy_since: dict[int, float] = {}
    busy_total = 0.0
    placed_at = [math.nan] * n
    start_at = [math.nan] * n
    end_at = [math.nan] * n
    ranks_of: list[tuple[int, ...]] = [()] * n

    events: list[tuple[float, int, int, int, int]] = []   # (time, kind, seq, task, rank)
    seq = 0
    order = sorted(range(n), key=lambda i: (work[i].submit_time, i))
    next_submit = 0
    schedule_s = release_s = submit_s = 0.0
    schedule_calls = release_calls = placements = handled = 0

    def begin(task: int, now: float, ranks: tuple[int, ...]) -> None:
        nonlocal seq
        start_at[task] = now
        end = now + work[task].duration
        end_at[task] = end
        for rank in ranks:
            if running[rank] == 0:
                busy_since[rank] = now
            running[rank] += 1
            seq += 1
            heapq.heappush(events, (end, _COMPLETE, seq, task, rank))

    def arrive(task: int, rank: int, now: float) -> None:
        spec = work[task].spec
        if spec.ranks > 1:
            ranks = ranks_of[task]
            for r in ranks:
                if running[r] or pending[r] or r in wide_on:
                    raise RuntimeError(f"task {task} ({spec.ranks} ranks) was placed on busy rank {r} at t={now}")
                wide_on[r] = task
            begin(task, now, ranks)
            return
        if rank in wide_on:
            raise RuntimeError(f"task {task} was queued on rank {rank}, which runs multi-rank task {wide_on[rank]}")
        if running[rank] < slots[rank] and not pending[rank]:
            begin(task, now, (rank,))
        else:
            pending[rank].append(task)

    while next_submit < n or events:
        now = events[0][0] if events else math.inf
        if next_submit < n and work[order[next_submit]].submit_time <= now:
            now = work[order[next_submit]].submit_time
        changed = False
        # submissions at `now`
        while next_submit < n and work[order[next_submit]].submit_time == now:
            task = order[next_submit]
            next_submit += 1
            handled += 1
            t0 = timer()
            scheduler.submit(task, work[task].spec)
            submit_s += timer() - t0
            changed = True
        # completions and arrivals at `now`
        while events and events[0][0] == now:
            _, kind, _, task, rank = heapq.heappop(events)
            handled += 1
            if kind == _ARRIVE:
                arrive(task, rank, now)
                continue
            running[rank] -= 1
            if running[rank] == 0:
                busy_total += now - busy_since.pop(rank)
            wide_on.pop(rank, None)
            if clock:
                clock["now"] = now
            t0 = timer()
            scheduler.release(task, rank, **clock)
            release_s += timer() - t0
            release_calls += 1
            changed = True
            queue = pending[rank]
            while queue and running[rank] < slots[rank]:
                begin(queue.popleft(), now, (rank,))
        if not changed:
            continue
        if clock:
            clock["now"] = now
        t0 = timer()
        chosen = scheduler.schedule(**clock)
        schedule_s += timer() - t0
        schedule_calls += 1
        placements += len(chosen)
        for placement in chosen:
            task = placement.task_id
            if not math.isnan(placed_at[task]):
                raise RuntimeError(f"task {task} was placed twice")
            placed_at[task] = now
            ranks_of[task] = tuple(placement.ranks)
            if dispatch_latency:
                seq += 1
                heapq.heappush(events, (now + dispatch_latency, _ARRIVE, seq, task, placement.ranks[0]))
            else:
                arrive(task, placement.ranks[0], now)

    if scheduler.queued:
        raise RuntimeError(f"{scheduler.queued} task(s) were left queued with every rank idle")
    records = tuple(
        TaskRecord(i, work[i].spec, work[i].submit_time, placed_at[i], start_at[i], end_at[i], ranks_of[i])
        for i in range(n)
    )
    first = min((t.submit_time for t in work), default=0.0)
    makespan = max((end - first for end in end_at), default=0.0)
    waits = [start_at[i] - work[i].submit_time for i in range(n)]
    n_ranks = len(inventory.ranks)
    return SimulationResult(
        records=records, ranks=n_ranks, prefetch=prefetch, dispatch_latency=dispatch_latency,
        makespan=makespan, busy_rank_seconds=busy_total,
        utilization=busy_total / (makespan * n_ranks) if makespan > 0 else 0.0,
        lower_bound=lower_bound(inventory, work),
        wait_p50=percentile(waits, 50), wait_p95=percentile(waits, 95), wait_max=max(waits, default=0.0),
        events=handled, schedule_calls=schedule_calls, release_calls=release_calls, placements=placements,
        schedule_seconds=schedule_s, release_seconds=release_s, submit_seconds=submit_s,
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
