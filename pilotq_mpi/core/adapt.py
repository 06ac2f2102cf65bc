"""The adapt policy: when to add joined allocations (submit a join job) and remove them.

Pure: no MPI, no clock, no subprocess. The runtime describes what it sees in an
:class:`AdaptView` and asks :meth:`Adapt.decide` ``(view, now)`` for a list of decisions;
it carries them out (``SlurmJobs.submit``/``cancel`` in :mod:`pilotq_mpi.platform.adapt_jobs`,
its own release of an allocation), logs and traces each one with its ``reason``, and reports
the outcome in the next view (a submitted job is pending, a failed sbatch is a failure, a
job that joined is an allocation).

The rules, in the order :meth:`Adapt.decide` applies them:

1. A pending job that has not joined ``join_timeout`` seconds after its submission is
   cancelled, and counts as a failed submit.
2. More joined + pending jobs than ``max_jobs`` (manual joins, or a job whose sbatch timed
   out but was queued): the newest pending jobs are cancelled, then idle allocations released.
3. A joined allocation idle for longer than ``idle_release`` seconds is released, never
   leaving fewer than ``min_jobs`` joined.
4. Submits, never above ``max_jobs`` joined + pending, and none for a while after a
   failure (``failure_backoff`` seconds, doubling with each further failure in a row, at most
   ``max_backoff``): up to ``min_jobs`` at once; and when queued work would keep the ranks
   busy longer than ``busy_after`` seconds (queued rank-seconds / ranks, the ranks of pending
   jobs counted as coming), as many jobs as bring it down to ``busy_after`` — no more jobs
   than the queued tasks can fill, none while a joined allocation is idle (the queued work
   does not run there, so it would not run on another), and none within ``cooldown``
   seconds of the last submit.

Only the allocations of the template's pool are the policy's (counted, released); the
runtime may list every joined allocation.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from ..platform.sbatch import SbatchRequest, parse_walltime


def _number(name: str, value, *, minimum: float = 0.0, strict: bool = True, hint: str = "") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name}={value!r}: must be a number of seconds {bound}{hint}")


def _count(name: str, value, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}{hint}")


@dataclass(frozen=True)
class JoinTemplate:
    """What one join job of the policy asks Slurm for; validated at construction.

    ``pool``: the pool its ranks serve (``--pool``; None: the joiner's default pool).
    ``nodes``, ``ranks_per_node``, ``gpus_per_node``, ``target``, ``layout``, ``qos``,
    ``account``, ``constraint``, ``signal_lead`` and ``extra_directives`` (``#SBATCH``
    options such as ``"--partition=debug"``) mean what they mean in
    :class:`~pilotq_mpi.platform.sbatch.SbatchRequest`; ``walltime`` is its ``time``
    (``HH:MM:SS`` or ``D-HH:MM:SS``). Every rank of a join job is a worker.
    """

    pool: str | None = None
    nodes: int = 1
    gpus_per_node: int | None = None
    walltime: str = "00:30:00"
    ranks_per_node: int | None = None
    target: str = "generic"
    layout: str | None = None
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    signal_lead: int = 120
    extra_directives: tuple[str, ...] = ()
    _ranks: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.extra_directives, str):
            raise ValueError(f"extra_directives={self.extra_directives!r}: pass a sequence of "
                             f"sbatch options, e.g. ({self.extra_directives!r},)")
        object.__setattr__(self, "extra_directives", tuple(self.extra_directives))
        try:
            parse_walltime(self.walltime)
            ranks = self.request("/run-dir").total_ranks  # the sbatch rules, once
        except (TypeError, ValueError) as exc:
            raise ValueError(f"JoinTemplate: {exc}") from None
        object.__setattr__(self, "_ranks", ranks)

    def request(self, join: str, **job: str) -> SbatchRequest:
        """The :class:`SbatchRequest` of a join job to the pilot whose run directory is
        ``join``; ``job`` may set ``python``, ``launcher``, ``job_name``, ``output``."""
        return SbatchRequest(
            join=join, pool=self.pool, nodes=self.nodes, gpus_per_node=self.gpus_per_node,
            time=self.walltime, ranks_per_node=self.ranks_per_node, target=self.target,
            layout=self.layout, qos=self.qos, account=self.account, constraint=self.constraint,
            signal_lead=self.signal_lead, extra_directives=self.extra_directives, **job)

    @property
    def ranks(self) -> int:
        """Worker ranks one job of this template brings."""
        return self._ranks

    def describe(self) -> str:
        """One line for logs: ``2 nodes x 4 ranks = 8 ranks, pool gpu, 01:00:00, perlmutter-gpu``."""
        per_node = self.ranks // self.nodes
        nodes = f"{self.nodes} node{'s' if self.nodes != 1 else ''}"
        return (f"{nodes} x {per_node} ranks = {self.ranks} ranks, pool "
                f"{self.pool or '(default)'}, {self.walltime}, {self.target}")


@dataclass(frozen=True)
class Allocation:
    """A joined allocation as the runtime sees it (never the pilot's own, first one).

    ``id``: the runtime's name for it (what :class:`Release` names). ``slurm_job_id``: the
    ``SLURM_JOB_ID`` its joiner reported (None outside Slurm). ``idle_since``: when its last
    task ended if none runs or is assigned there now, else None (a fresh allocation with no
    task yet: its join time). ``joined_at``: when it joined. ``leaving``: it is draining
    (released, or its walltime warning came) but still there: it counts against
    ``max_jobs`` (its Slurm job still runs), is not released again, and counts neither for
    ``min_jobs`` nor as idle.
    """

    id: str
    slurm_job_id: str | None
    pool: str | None
    ranks: int
    idle_since: float | None
    joined_at: float
    leaving: bool = False


@dataclass(frozen=True)
class PendingJob:
    """A join job the policy submitted (sbatch gave ``job_id``) that has not joined yet."""

    job_id: str
    submitted_at: float


@dataclass(frozen=True)
class AdaptView:
    """What the runtime sees, for :meth:`Adapt.decide`; times are the runtime's clock (seconds).

    ``queued_work_seconds``: predicted rank-seconds of the tasks that are ready (dependencies
    met) but not placed, that a job of the template could run (no pool, or its pool); a task
    of unknown duration counts as ``Adapt.unknown_task_seconds`` (see
    :func:`queued_work_seconds`). ``queued_tasks``: how many such tasks. ``ranks``: the
    worker ranks that can run them now (all allocations', the pilot's own included; the
    ranks of the template's pool when it names one). ``allocations``: joined allocations
    (:class:`Allocation` or its fields as a tuple). ``pending_jobs``: jobs the policy
    submitted that have not joined (:class:`PendingJob` or ``(job_id, submitted_at)``).
    ``failed_submits``: failures in a row (sbatch errors, cancelled jobs that never
    joined) since a job of the policy last joined, the last at ``last_failure_at``.
    ``last_submit_at``: when sbatch last accepted a job of the policy.
    """

    queued_work_seconds: float
    queued_tasks: int
    ranks: int
    allocations: tuple[Allocation, ...] = ()
    pending_jobs: tuple[PendingJob, ...] = ()
    failed_submits: int = 0
    last_failure_at: float | None = None
    last_submit_at: float | None = None

    def __post_init__(self) -> None:
        allocations = tuple(a if isinstance(a, Allocation) else Allocation(*a) for a in self.allocations)
        pending = tuple(p if isinstance(p, PendingJob) else PendingJob(*p) for p in self.pending_jobs)
        object.__setattr__(self, "allocations", allocations)
        object.__setattr__(self, "pending_jobs", pending)
        _number("queued_work_seconds", self.queued_work_seconds, strict=False)
        _count("queued_tasks", self.queued_tasks, 0)
        _count("ranks", self.ranks, 0)
        _count("failed_submits", self.failed_submits, 0)
        if self.failed_submits and self.last_failure_at is None:
            raise ValueError(f"failed_submits={self.failed_submits} without last_failure_at: "
                             "give the time of the last failure")


@dataclass(frozen=True)
class Submit:
    """Submit one join job of ``template`` (``SlurmJobs.submit``)."""

    template: JoinTemplate
    reason: str

    def record(self) -> dict:
        """The decision as a flat dict for the log and the trace."""
        return {"decision": "submit", "pool": self.template.pool, "ranks": self.template.ranks,
                "reason": self.reason}


@dataclass(frozen=True)
class Release:
    """End the joined allocation ``allocation_id`` (the runtime drains it; its job ends)."""

    allocation_id: str
    reason: str

    def record(self) -> dict:
        """The decision as a flat dict for the log and the trace."""
        return {"decision": "release", "allocation": self.allocation_id, "reason": self.reason}


@dataclass(frozen=True)
class Cancel:
    """Cancel the pending job ``job_id`` (``SlurmJobs.cancel``) and forget it. ``failed``:
    it never joined in time, so the runtime counts it as a failed submit."""

    job_id: str
    reason: str
    failed: bool = False

    def record(self) -> dict:
        """The decision as a flat dict for the log and the trace."""
        return {"decision": "cancel", "job_id": self.job_id, "failed": self.failed,
                "reason": self.reason}


Decision = Union[Submit, Release, Cancel]


def queued_work_seconds(tasks: Iterable[tuple[float | None, int]], unknown_seconds: float) -> float:
    """Rank-seconds of queued work from ``(predicted seconds or None, ranks)`` per task;
    a task of unknown duration counts ``unknown_seconds``."""
    return float(sum((unknown_seconds if seconds is None else seconds) * ranks
                     for seconds, ranks in tasks))


def _s(seconds: float) -> str:
    """Seconds for a reason: whole above 1000 or when whole, else one decimal (three digits below 1)."""
    if seconds >= 1000 or seconds == int(seconds):
        return f"{seconds:.0f} s"
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.3g} s"


@dataclass(frozen=True)
class Adapt:
    """An adapt policy for ``Pilot(adapt=...)``: join jobs of ``template``, between
    ``min_jobs`` and ``max_jobs`` of them joined or pending (see the module's rules).

    ``busy_after`` (T): submit when queued work would keep the ranks busy longer than T
    seconds. ``idle_release`` (U): release a joined allocation idle for longer than U
    seconds. ``cooldown``: seconds between two submits for work. ``join_timeout``: a job
    not joined this many seconds after its submission is cancelled as failed (None: never;
    count the time a job may wait in the queue). ``failure_backoff``/``max_backoff``: the
    pause after a failed submit, doubling per failure in a row, capped.
    ``unknown_task_seconds``: what a queued task of unknown duration counts (for
    :func:`queued_work_seconds`). ``interval``: how often the runtime should call
    :meth:`decide` (seconds).
    """

    template: JoinTemplate
    min_jobs: int = 0
    max_jobs: int = 1
    busy_after: float = 60.0
    idle_release: float = 300.0
    cooldown: float = 60.0
    join_timeout: float | None = 1800.0
    failure_backoff: float = 60.0
    max_backoff: float = 1800.0
    unknown_task_seconds: float = 60.0
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.template, JoinTemplate):
            raise ValueError(f"template={self.template!r}: pass a JoinTemplate(pool=, nodes=, "
                             "gpus_per_node=, walltime=, ...), what each join job asks for")
        _count("min_jobs", self.min_jobs, 0, " (join jobs kept even when idle)")
        _count("max_jobs", self.max_jobs, 1, " (a policy that may submit nothing does nothing: "
               "leave adapt out)")
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"min_jobs={self.min_jobs} > max_jobs={self.max_jobs}: raise "
                             "max_jobs or lower min_jobs")
        _number("busy_after", self.busy_after,
                hint=" (queued work per rank that makes the policy submit)")
        _number("idle_release", self.idle_release,
                hint=" (idle time after which a joined allocation is released)")
        _number("cooldown", self.cooldown, strict=False, hint=" (pause between two submits)")
        if self.join_timeout is not None:
            _number("join_timeout", self.join_timeout,
                    hint=" or None (how long a submitted job may take to join)")
        _number("failure_backoff", self.failure_backoff, hint=" (pause after a failed submit)")
        _number("max_backoff", self.max_backoff, minimum=0.0)
        if self.max_backoff < self.failure_backoff:
            raise ValueError(f"max_backoff={self.max_backoff!r} < failure_backoff="
                             f"{self.failure_backoff!r}: raise max_backoff")
        _number("unknown_task_seconds", self.unknown_task_seconds,
                hint=" (what a task of unknown duration counts)")
        _number("interval", self.interval, hint=" (how often the runtime calls decide)")

    def describe(self) -> str:
        """One line for the pilot's log at start."""
        return (f"adapt: {self.min_jobs}..{self.max_jobs} join jobs of {self.template.describe()}; "
                f"submit when queued work > {_s(self.busy_after)} per rank, release after "
                f"{_s(self.idle_release)} idle")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed submits in a row (0 for none)."""
        if failures <= 0:
            return 0.0
        return min(self.failure_backoff * 2.0 ** min(failures - 1, 60), self.max_backoff)

    def decide(self, view: AdaptView, now: float) -> list[Decision]:
        """The decisions for ``view`` at time ``now`` (see the module's rules), each with a reason."""
        pool = self.template.pool
        managed = [a for a in view.allocations if a.pool == pool]
        joined_ids = {a.slurm_job_id for a in managed if a.slurm_job_id is not None}
        pending = [p for p in view.pending_jobs if p.job_id not in joined_ids]
        decisions: list[Decision] = []

        failures, last_failure = view.failed_submits, view.last_failure_at
        if self.join_timeout is not None:
            for job in [p for p in pending if now - p.submitted_at > self.join_timeout]:
                decisions.append(Cancel(job.job_id, failed=True, reason=(
                    f"job {job.job_id} has not joined {_s(now - job.submitted_at)} after its "
                    f"submission (join_timeout {_s(self.join_timeout)}): cancelling it, a failed "
                    "submit")))
                pending.remove(job)
                failures, last_failure = failures + 1, now

        # longest idle first, busy ones last; leaving ones are going already
        joined = sorted((a for a in managed if not a.leaving),
                        key=lambda a: (a.idle_since is None, a.idle_since or 0.0, a.id))
        leaving = len(managed) - len(joined)  # + those released below: they leave, still counted
        excess = len(joined) + len(pending) - self.max_jobs  # the leaving ones are going already
        over = f"{len(joined)} joined + {len(pending)} pending jobs > max_jobs {self.max_jobs}"
        for job in sorted(pending, key=lambda p: (p.submitted_at, p.job_id), reverse=True)[:max(excess, 0)]:
            decisions.append(Cancel(job.job_id, reason=(
                f"{over}: cancelling pending job {job.job_id}, the newest")))
            pending.remove(job)
            excess -= 1
        for alloc in [a for a in joined if a.idle_since is not None][:max(excess, 0)]:
            decisions.append(Release(alloc.id, reason=(
                f"{over}: releasing allocation {alloc.id}, idle for {_s(now - alloc.idle_since)}")))
            joined.remove(alloc)
            leaving += 1

        for alloc in [a for a in joined if a.idle_since is not None]:
            idle = now - alloc.idle_since
            if idle > self.idle_release and len(joined) > self.min_jobs:
                decisions.append(Release(alloc.id, reason=(
                    f"allocation {alloc.id} ({alloc.ranks} ranks, pool {pool or '(default)'}) idle "
                    f"for {_s(idle)} > idle_release {_s(self.idle_release)}; "
                    f"{len(joined) - 1} joined left (min_jobs {self.min_jobs})")))
                joined.remove(alloc)
                leaving += 1

        decisions += self._submits(view, now, joined, leaving, pending, failures, last_failure)
        return decisions

    def _submits(self, view: AdaptView, now: float, joined: list[Allocation], leaving: int,
                 pending: list[PendingJob], failures: int, last_failure: float | None) -> list[Submit]:
        room = self.max_jobs - len(joined) - leaving - len(pending)
        if room <= 0:  # a leaving allocation's job still runs: no new one before it has gone
            return []
        if failures and last_failure is not None and now - last_failure < self.backoff(failures):
            return []
        have = len(joined) + len(pending)
        if have < self.min_jobs:
            count = min(self.min_jobs - have, room)
            return [Submit(self.template, reason=(
                f"{len(joined)} joined + {len(pending)} pending jobs < min_jobs {self.min_jobs}: "
                f"submitting {self.template.describe()} ({i + 1} of {count})"))
                for i in range(count)]
        if view.queued_tasks == 0 or any(a.idle_since is not None for a in joined):
            return []
        if view.last_submit_at is not None and now - view.last_submit_at < self.cooldown:
            return []
        per_job = self.template.ranks
        capacity = view.ranks + len(pending) * per_job
        busy = math.inf if capacity == 0 else view.queued_work_seconds / capacity
        if busy <= self.busy_after:
            return []
        wanted = view.queued_work_seconds / self.busy_after - capacity
        count = min(max(1, math.ceil(wanted / per_job)), math.ceil(view.queued_tasks / per_job), room)
        coming = f" + {len(pending) * per_job} coming" if pending else ""
        load = ("has no ranks to run it" if capacity == 0 else
                f"would keep {view.ranks} ranks{coming} busy {_s(busy)} > busy_after "
                f"{_s(self.busy_after)}")
        return [Submit(self.template, reason=(
            f"queued work {_s(view.queued_work_seconds)} ({view.queued_tasks} tasks) {load}: "
            f"submitting {self.template.describe()} ({i + 1} of {count}; max_jobs "
            f"{self.max_jobs}, {len(joined)} joined, {len(pending)} pending)"))
            for i in range(count)]
