"""Runs an adapt policy (:class:`~pilotq_mpi.core.adapt.Adapt`) from the master's loop.

Every ``policy.interval`` seconds the master describes what it sees (queued work, ranks,
joined allocations) and the policy decides; releases are carried out by the master at
once, ``sbatch``/``scancel`` run in a helper thread (they take up to seconds and make no
MPI call), and no new decision is asked for while one of them is under way, so that a
slow sbatch never leads to a second submit. Every decision and its outcome is printed and
written to the trace (``adapt`` records).
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Callable

from ..core.adapt import Adapt, AdaptView, Allocation, Cancel, PendingJob, Release, Submit, queued_work_seconds


class AdaptRunner:
    """The policy's state between decisions: pending jobs, failures in a row, the last submit."""

    def __init__(self, policy: Adapt, jobs, note: Callable[[dict], None]):
        self.policy = policy
        self.jobs = jobs
        """Submits and cancels join jobs (:class:`~pilotq_mpi.platform.adapt_jobs.SlurmJobs`)."""
        self._note = note
        self.pending: dict[str, float] = {}
        self.submitted: set[str] = set()
        """Every job this policy submitted (a lost allocation of one of them is cancelled)."""
        self.failed = 0
        self.last_failure_at: float | None = None
        self.last_submit_at: float | None = None
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self._working: threading.Thread | None = None
        self._next = 0.0
        self.log(f"pilotq-mpi: {policy.describe()}")

    def log(self, line: str) -> None:
        sys.stderr.write(line + "\n")

    def due(self, now: float) -> bool:
        """Time for a decision (and no sbatch/scancel still running)?"""
        self._collect()
        if now < self._next or (self._working is not None and self._working.is_alive()):
            return False
        self._next = now + self.policy.interval
        return True

    def decide(self, now: float, *, queued: list[tuple[float | None, int]], ranks: int,
               allocations: list[Allocation]) -> list:
        """Ask the policy; returns the :class:`Release` decisions for the master to carry out
        (submits and cancels are started here)."""
        joined_jobs = {a.slurm_job_id for a in allocations}
        for job_id in [j for j in self.pending if j in joined_jobs]:
            del self.pending[job_id]  # it joined
            self.failed = 0
        work = queued_work_seconds(queued, self.policy.unknown_task_seconds)
        view = AdaptView(work, len(queued), ranks, tuple(allocations),
                         tuple(PendingJob(j, t) for j, t in self.pending.items()), self.failed,
                         self.last_failure_at, self.last_submit_at)
        releases, commands = [], []
        for decision in self.policy.decide(view, now):
            self._note({"type": "adapt", "time": now, **decision.record()})
            self.log(f"pilotq-mpi: adapt: {decision.record()['decision']}: {decision.reason}")
            if isinstance(decision, Release):
                releases.append(decision)
            else:
                if isinstance(decision, Cancel):
                    self.pending.pop(decision.job_id, None)
                    if decision.failed:
                        self.failed += 1
                        self.last_failure_at = now
                commands.append(decision)
        if commands:  # sbatch/scancel of this round, in order, in one helper thread
            self._working = threading.Thread(target=self._carry_out, args=(commands,), name="pilotq-adapt",
                                             daemon=True)
            self._working.start()
        return releases

    def cancel_lost(self, job_id: str | None) -> None:
        """A joined allocation of a job this policy submitted was lost: make sure its job ends."""
        if job_id is not None and job_id.isdigit():
            self.log(f"pilotq-mpi: adapt: cancel: job {job_id} lost its allocation's heartbeat")
            self._working = threading.Thread(target=self._carry_out, args=([Cancel(job_id, "lost")],),
                                             name="pilotq-adapt", daemon=True)
            self._working.start()

    def _carry_out(self, commands: list) -> None:
        """Run the round's submits and cancels in order; the first failed submit ends the round
        (one failure counted, so the policy's back-off doubles once, not once per job)."""
        for decision in commands:
            if isinstance(decision, Submit):
                try:
                    job_id = self.jobs.submit(decision.template)
                except Exception as exc:  # sbatch failed: counted, backed off by the policy
                    self._outcomes.put(("failed", None, time.time(), str(exc)))
                    return
                self._outcomes.put(("submitted", job_id, time.time(), ""))
            else:
                try:
                    self.jobs.cancel(decision.job_id)
                    self._outcomes.put(("cancelled", decision.job_id, time.time(), ""))
                except Exception as exc:
                    self._outcomes.put(("cancel failed", decision.job_id, time.time(), str(exc)))

    def _collect(self) -> None:
        while True:
            try:
                what, job_id, when, message = self._outcomes.get_nowait()
            except queue.Empty:
                return
            if what == "submitted":
                self.pending[job_id] = when
                self.submitted.add(job_id)
                self.last_submit_at = when
            elif what == "failed":
                self.failed += 1
                self.last_failure_at = when
            self._note({"type": "adapt", "time": when, "outcome": what, "job_id": job_id, "message": message})
            self.log(f"pilotq-mpi: adapt: {what}" + (f" job {job_id}" if job_id else "")
                     + (f": {message}" if message else ""))
