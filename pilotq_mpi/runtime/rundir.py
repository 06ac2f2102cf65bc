"""The run directory: how a running pilot is found and joined, through files only (no MPI, no daemon).

A pilot started with ``--run-dir DIR`` publishes itself there; a later launch with
``--join DIR`` joins it. Every file is written whole and renamed into place, so a reader
never sees half a file (also on a shared file system)::

    DIR/pilot.json                    the master: MPI port, host, pid, start time
    DIR/heartbeat                     touched by the master every HEARTBEAT_S (its mtime says it lives)
    DIR/draining                      present once the pilot drains (joins are refused from then on)
    DIR/requests/<id>.json            a joiner asks to join: its ranks (node, GPUs), pool, Slurm job
    DIR/replies/<id>.json             the master answers: accepted (allocation name, first rank) or why not
    DIR/allocations/<name>/alive-<r>  touched by joined rank r every HEARTBEAT_S
    DIR/allocations/<name>/leave      a joined allocation asks to leave (it got a walltime signal)
    DIR/allocations/<name>/exit-by    the master: the allocation's ranks must be gone by this time

The master looks at the directory from its loop at most every POLL_S seconds (a few
``stat`` calls, ~10-30 us), so it never waits for anyone to join.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

HEARTBEAT_S = 1.0
"""How often the master and every joined rank touch their heartbeat files."""
POLL_S = 0.1
"""How often the master looks for join requests and leave notices."""
DEFAULT_LOST_AFTER_S = 10.0
"""A joined allocation whose heartbeat is older than this is lost (PILOTQ_LOST_AFTER)."""
STALE_AFTER_S = 10.0
"""A pilot whose heartbeat is older than this is not running (a joiner refuses to connect)."""


class JoinError(RuntimeError):
    """Joining a pilot through its run directory failed; the message says why and what to do."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is none (yet)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def touch(path: Path) -> None:
    """Create ``path`` or refresh its mtime."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def age(path: Path, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last modified, or None if it does not exist."""
    try:
        return (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return None


class RunDir:
    """The files of one run directory (see the module notes)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    @property
    def pilot_file(self) -> Path:
        return self.path / "pilot.json"

    @property
    def heartbeat_file(self) -> Path:
        return self.path / "heartbeat"

    def allocation_dir(self, name: str) -> Path:
        return self.path / "allocations" / name

    # --- the master's side -------------------------------------------------------------
    def in_use(self, now: float | None = None) -> str | None:
        """Why a new pilot may not publish here (another one is alive in it), or None."""
        data = read_json(self.pilot_file)
        silent = age(self.heartbeat_file, now)
        if data is None or silent is None or silent > STALE_AFTER_S:
            return None
        return (f"run directory {self.path} is in use by a running pilot (pid {data.get('pid')} on"
                f" {data.get('host')}, heartbeat {silent:.0f} s ago): choose another --run-dir (if that pilot"
                f" died, wait {STALE_AFTER_S:g} s or remove {self.pilot_file})")

    def publish(self, port: str, **facts: Any) -> None:
        """Make the pilot joinable: its MPI port and facts, and a fresh heartbeat.

        A previous pilot's leftovers (requests, replies, its allocations' files) are removed:
        a new joiner named ``join-1`` must not find an old ``leave`` or ``exit-by`` file.
        """
        for sub in ("requests", "replies", "allocations"):
            shutil.rmtree(self.path / sub, ignore_errors=True)
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        (self.path / "draining").unlink(missing_ok=True)
        touch(self.heartbeat_file)
        write_json(self.pilot_file, {"port": port, "pid": os.getpid(), "started": time.time(), **facts})

    def mark_draining(self) -> None:
        """The pilot drains: say so (joins are refused from now on)."""
        touch(self.path / "draining")

    def withdraw(self) -> None:
        """The pilot ends: nobody can join any more."""
        self.pilot_file.unlink(missing_ok=True)

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Join requests waiting for an answer, oldest first."""
        found = []
        for path in sorted((self.path / "requests").glob("*.json"), key=lambda p: p.stat().st_mtime):
            data = read_json(path)
            if data is not None:
                found.append((path.stem, data))
        return found

    def reply(self, request_id: str, answer: dict[str, Any]) -> None:
        """Answer a join request (and forget it)."""
        write_json(self.path / "replies" / f"{request_id}.json", answer)
        (self.path / "requests" / f"{request_id}.json").unlink(missing_ok=True)

    def leave_notice(self, allocation: str) -> dict[str, Any] | None:
        """What a joined allocation wrote when it asked to leave, if it did."""
        return read_json(self.allocation_dir(allocation) / "leave")

    def order_exit(self, allocation: str, exit_by: float) -> None:
        """Tell a joined allocation's ranks to be gone by ``exit_by`` (unix time)."""
        write_json(self.allocation_dir(allocation) / "exit-by", {"time": exit_by})

    def allocation_age(self, allocation: str, ranks: int, now: float) -> float | None:
        """Age of the stalest heartbeat of a joined allocation's ranks (None: none written yet)."""
        ages = [age(self.allocation_dir(allocation) / f"alive-{r}", now) for r in range(ranks)]
        return None if any(a is None for a in ages) else max(ages)

    # --- the joiner's side -------------------------------------------------------------
    def find_pilot(self, now: float | None = None) -> dict[str, Any]:
        """The published pilot; :class:`JoinError` if there is none or it stopped answering."""
        data = read_json(self.pilot_file)
        if data is None:
            raise JoinError(f"no pilot is running in {self.path}: {self.pilot_file} does not exist (start the pilot"
                            f" with --run-dir {self.path}, or join the directory that pilot printed)")
        stale = age(self.heartbeat_file, now)
        if stale is None or stale > STALE_AFTER_S:
            when = "never" if stale is None else f"{stale:.0f} s ago"
            raise JoinError(f"the pilot in {self.path} (pid {data.get('pid')} on {data.get('host')}) is not running:"
                            f" its heartbeat was last touched {when}; start a new pilot with --run-dir")
        return data

    def request(self, facts: dict[str, Any]) -> str:
        """Ask to join; returns the request id to wait for."""
        request_id = uuid.uuid4().hex[:12]
        write_json(self.path / "requests" / f"{request_id}.json", {**facts, "time": time.time()})
        return request_id

    def wait_reply(self, request_id: str, timeout: float) -> dict[str, Any]:
        """The master's answer; :class:`JoinError` if none comes within ``timeout`` s or the pilot dies."""
        reply_file = self.path / "replies" / f"{request_id}.json"
        deadline = time.time() + timeout
        while time.time() < deadline:
            answer = read_json(reply_file)
            if answer is not None:
                reply_file.unlink(missing_ok=True)
                return answer
            self.find_pilot()  # raises if the pilot died meanwhile
            time.sleep(0.02)
        (self.path / "requests" / f"{request_id}.json").unlink(missing_ok=True)
        raise JoinError(f"the pilot in {self.path} did not answer the join request within {timeout:g} s"
                        " (is its master stuck?)")

    def ask_to_leave(self, allocation: str, grace: float, why: str) -> None:
        """A joined allocation asks the master to drain it (safe to call from a signal handler)."""
        path = self.allocation_dir(allocation) / "leave"
        if not path.exists():
            write_json(path, {"time": time.time(), "grace": grace, "why": why})

    def exit_by(self, allocation: str) -> float | None:
        """When the master wants this allocation's ranks gone, if it said so."""
        data = read_json(self.allocation_dir(allocation) / "exit-by")
        return None if data is None else float(data["time"])
