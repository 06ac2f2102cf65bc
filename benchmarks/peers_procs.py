"""Processes of one benchmark run, read from /proc: the tree, PSS, CPU time, and ending it.

Used by ``peers.py``, its drivers and ``costs.py``. Linux only (``/proc``), no psutil.
A run is started in a session of its own (``start_new_session=True``), so its processes are
those of that session id plus their descendants (daemons that start a session of their own,
such as Ray's, are still children of a process of the run).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def all_pids() -> list[int]:
    """Every process id visible in /proc."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def session_tree(sid: int) -> list[int]:
    """Processes of session ``sid`` and all their descendants (pids, sorted)."""
    parents: dict[int, int] = {}
    members: set[int] = set()
    for pid in all_pids():
        fields = _stat(pid)
        if fields is None:
            continue
        parents[pid] = int(fields[1])
        if int(fields[3]) == sid:
            members.add(pid)
    grew = True
    while grew:  # add children of members until nothing changes
        grew = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return sorted(members)


def run_root(orchestrator: int, pid: int | None = None) -> int:
    """The ancestor of ``pid`` (default: this process) that ``orchestrator`` started: the run's session leader."""
    pid = os.getpid() if pid is None else pid
    while True:
        fields = _stat(pid)
        if fields is None or int(fields[1]) in (0, 1):
            raise RuntimeError(f"process {pid} does not descend from {orchestrator}")
        if int(fields[1]) == orchestrator:
            return pid
        pid = int(fields[1])


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (tells a reused pid apart), or None."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (not its children), or None if gone."""
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pss_mib(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MiB (/proc/<pid>/smaps_rollup), or None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def command(pid: int, width: int = 80) -> str:
    """A short command line for ``pid`` (program name and arguments, cut to ``width``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
             for i, a in enumerate(argv) if a]
    return " ".join(words)[:width]


def memory_of(pids: list[int]) -> dict:
    """PSS per process and in total, for the given processes (those still alive)."""
    procs = []
    for pid in pids:
        pss = pss_mib(pid)
        if pss is not None:
            procs.append({"pid": pid, "command": command(pid), "pss_mib": round(pss, 1)})
    return {"processes": procs, "count": len(procs), "total_mib": round(sum(p["pss_mib"] for p in procs), 1),
            "max_mib": round(max((p["pss_mib"] for p in procs), default=0.0), 1)}


def kill_tree(sid: int, known: list[tuple[int, int]] = (), grace: float = 2.0) -> int:
    """End session ``sid``'s processes and descendants, and any of ``known`` (pid, start time) still alive.

    SIGTERM first, SIGKILL after ``grace`` seconds. Returns how many processes were signalled.
    """
    targets = {pid: start_time(pid) for pid in session_tree(sid)}
    for pid, started in known:
        if start_time(pid) == started and started is not None:
            targets[pid] = started
    targets.pop(os.getpid(), None)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, started in targets.items() if started is not None and start_time(pid) == started]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(start_time(p) == targets[p] for p in alive):
                time.sleep(0.05)
    return len(targets)
