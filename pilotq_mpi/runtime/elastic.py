"""The master's side of elastic pilots: allocations that join through the run directory and leave.

MPI has no non-blocking ``Accept``, and a thread blocked in ``Accept`` stalls the master's
other MPI calls with this MPICH (measured: the loop froze until the join). So the master
never waits in ``Accept`` for someone who may not come: a joiner first announces itself
with a file (:mod:`.rundir`); the master, polling the directory from its loop every
``POLL_S``, answers, and only then calls ``Accept``, which the joiner, already waiting
for that answer, meets within a poll interval of its own (tens of ms).

Each joined allocation keeps its own ``MPI_COMM_WORLD`` (for the sub-communicators of its
multi-rank tasks); the master reaches its ranks through the intercommunicator that
``Accept`` returned. Its ranks get pilot rank numbers after every rank seen before.
"""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..core.inventory import RankInfo
from .rundir import DEFAULT_LOST_AFTER_S, HEARTBEAT_S, POLL_S, RunDir, touch


@dataclass
class Allocation:
    """One joined launch: its ranks, how to reach them, and where it is in its life."""

    name: str
    comm: Any
    """The intercommunicator to the allocation's ranks (remote rank r = pilot rank first + r)."""
    first: int
    size: int
    pool: str | None
    job_id: str | None
    joined_at: float
    leaving_until: float | None = None
    """Set while it drains: when its running tasks are re-queued and its ranks must be gone."""
    idle_since: float | None = None

    @property
    def ranks(self) -> range:
        return range(self.first, self.first + self.size)


@dataclass(frozen=True)
class Joined:
    """An allocation was accepted; ``infos`` are its worker ranks."""

    allocation: Allocation
    infos: tuple[RankInfo, ...]


@dataclass(frozen=True)
class LeaveAsked:
    """A joined allocation asked to drain (a walltime signal): ``grace`` seconds for its running tasks."""

    allocation: Allocation
    grace: float
    why: str


@dataclass(frozen=True)
class Lost:
    """A joined allocation stopped answering: its heartbeat is ``silent`` seconds old."""

    allocation: Allocation
    silent: float


class Elastic:
    """Publishes the pilot in its run directory and turns what joiners write there into events."""

    def __init__(self, mpi, run_dir: RunDir, *, next_rank: int, lost_after: float = DEFAULT_LOST_AFTER_S,
                 import_path: str | None = None):
        self._mpi = mpi
        self.run_dir = run_dir
        self.lost_after = lost_after
        self.next_rank = next_rank
        self.allocations: dict[str, Allocation] = {}
        self.port = mpi.Open_port()
        # joined ranks import task modules from the driver's folder too, as the pilot's own workers do
        run_dir.publish(self.port, host=socket.gethostname(), import_path=import_path)
        self._joins = 0
        self._next_poll = 0.0
        self._next_beat = 0.0
        self.accept_seconds: list[float] = []
        """How long each ``Accept`` held the master's loop (for the benchmark and the log)."""

    def tick(self, now: float, refuse: str | None) -> list[Joined | LeaveAsked | Lost]:
        """Look at the run directory if it is time; ``refuse``: why joins are refused now (None: accept)."""
        if now < self._next_poll:
            return []
        self._next_poll = now + POLL_S
        events: list[Joined | LeaveAsked | Lost] = []
        for request_id, facts in self.run_dir.requests():
            if refuse is not None:
                self.run_dir.reply(request_id, {"accept": False, "reason": refuse})
            else:
                events.append(self._accept(request_id, facts))
        for allocation in self.allocations.values():
            if allocation.leaving_until is None:
                notice = self.run_dir.leave_notice(allocation.name)
                if notice is not None:
                    events.append(LeaveAsked(allocation, float(notice.get("grace", 0.0)), str(notice.get("why"))))
        if now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_S
            touch(self.run_dir.heartbeat_file)
            for allocation in self.allocations.values():
                silent = self.run_dir.allocation_age(allocation.name, allocation.size, now)
                silent = now - allocation.joined_at if silent is None else silent
                if silent > self.lost_after:
                    events.append(Lost(allocation, silent))
        return events

    def _accept(self, request_id: str, facts: dict) -> Joined:
        self._joins += 1
        name = f"join-{self._joins}"
        ranks = facts["ranks"]
        first = self.next_rank
        self.next_rank += len(ranks)
        self.run_dir.reply(request_id, {"accept": True, "allocation": name, "first": first})
        started = time.perf_counter()
        comm = self._mpi.COMM_SELF.Accept(self.port)
        self.accept_seconds.append(time.perf_counter() - started)
        pool = facts.get("pool")
        allocation = Allocation(name, comm, first, len(ranks), pool, facts.get("job_id"), time.time())
        self.allocations[name] = allocation
        infos = tuple(RankInfo(first + index, str(rank["node"]), tuple(rank["gpus"]), facts.get("memory"), None,
                               name, pool) for index, rank in enumerate(ranks))
        sys.stderr.write(f"pilotq-mpi: allocation {name} joined: {len(ranks)} ranks (pilot ranks {first}-"
                         f"{first + len(ranks) - 1}) on {', '.join(dict.fromkeys(r['node'] for r in ranks))}"
                         + (f", pool {pool}" if pool else "") + (f", Slurm job {facts['job_id']}" if facts.get("job_id") else "")
                         + f" (the master waited {self.accept_seconds[-1] * 1e3:.0f} ms in Accept)\n")
        return Joined(allocation, infos)

    def route(self, rank: int) -> tuple[Any, int] | None:
        """(communicator, destination) of a joined rank; None for a rank of the main allocation."""
        for allocation in self.allocations.values():
            if allocation.first <= rank < allocation.first + allocation.size:
                return allocation.comm, rank - allocation.first
        return None

    def forget(self, allocation: Allocation) -> None:
        """The allocation is gone: never reach or watch it again (its communicator is not freed:
        freeing or disconnecting would wait for ranks that may be dead)."""
        self.allocations.pop(allocation.name, None)

    def close(self) -> None:
        """The pilot ends: withdraw the publication and close the port."""
        self.run_dir.withdraw()
        try:
            self._mpi.Close_port(self.port)
        except Exception:  # closing is a courtesy; the process is about to end
            pass
