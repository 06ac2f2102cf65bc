"""The master's CPU cost per task under real MPI, and where it goes.

    python benchmarks/master_cost.py                  # 4 and 8 ranks, 10,000 tasks, 3 repeats
    python benchmarks/master_cost.py --quick          # 4 ranks, 2,000 tasks, 1 repeat

Each run is a fresh ``mpiexec -n R python benchmarks/master_cost.py --inner ...`` job running
``run_pilot`` with no-op tasks, in one of these workloads:

* ``submit``: N ``Pilot.submit`` calls one by one, then wait for all;
* ``submit+journal``: the same with ``Pilot(journal=...)`` (a SQLite file in a temporary folder);
* ``submit+trace``: the same with ``PILOTQ_TRACE`` set (the task trace);
* ``map``: ``Pilot.map(noop, range(N), chunksize=64)`` (figures per chunk and per item).

Every run is done twice, interleaved: *plain* (only the master thread's total CPU time is read,
from its POSIX thread clock, before and after the loop) and *instrumented*: the benchmark wraps
the master's methods (and the scheduler's, the futures', the dependency tracker's, the
observers', the pickler and the communicator) with meters that charge the master thread's CPU
time (``time.thread_time``) to the innermost running part (exclusive time). The meters' own
cost is calibrated in the same process (a nested pair of metered no-op calls, minus the same
loop unmetered) and subtracted per call. That leaves part of the meters' cost over (here ~30-40% of
it: calls in the master's real code paths cost more than in a warm loop; ``meter_residual_us``), so
the reported parts keep each part's share of the metered run and are scaled to the plain runs'
busy total: shares, not independent timings. CPU time, not wall time: the 2 cores are shared.

Parts of the master's time:
    messages   ``improbe``/``recv`` of results, ``isend`` of task batches, ``Test`` of sends (MPI);
    pickle     pickling inside ``isend`` and unpickling inside ``recv`` and of result values;
    scheduler  ``Scheduler.submit/schedule/release``;
    bookkeeping records and counters (``_on_submit``, ``_dispatch``, ``_on_result``, ``_end``,
               ``_release``, ``_observe``, building task messages), the state machine (``_move``),
               futures (``set_result``, ``set_running_or_notify_cancel``), dependencies;
    observers  the journal and the trace (``task_ended``, and a pass-end hook if there is one);
    loop       the rest of the passes that did some work (the loop itself, the inbox).
Idle passes (a pass that found nothing, and its back-off wait) are counted apart: on this loaded
machine the workers are slow and the master idles between results, so its total CPU per task
includes polling that a saturated master does not do. ``busy`` = total - idle is the service
cost the scale model uses; both are reported.
Multi-process modes (sub-masters, env ``PILOTQ_SUBMASTERS``) are metered on every rank that runs
a ``Master``: each writes its own report.

Results: ``benchmarks/results/master_cost.json`` (medians over repeats, and every run).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE.parent))

WORKLOADS = ("submit", "submit+journal", "submit+trace", "map")
CHUNKSIZE = 64
WARMUP = 200


def noop(comm, x):
    """The task: nothing."""
    return x


# --- meters ------------------------------------------------------------------------------

class Meter:
    """Exclusive CPU time of the metered calls made by one thread (the master's)."""

    def __init__(self) -> None:
        self.owner: int | None = None
        self.stack = ["loop"]
        self.mark = 0.0
        self.cpu: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self.children: collections.Counter = collections.Counter()
        """Metered calls made while each part was the innermost one (for the calibration)."""

    def wrap(self, part: str, fn):
        clock = time.thread_time
        get_ident = threading.get_ident
        meter = self

        def metered(*args, **kwargs):
            if get_ident() != meter.owner:
                return fn(*args, **kwargs)
            stack = meter.stack
            now = clock()
            parent = stack[-1]
            meter.cpu[parent] += now - meter.mark
            meter.children[parent] += 1
            meter.calls[part] += 1
            stack.append(part)
            meter.mark = now
            try:
                return fn(*args, **kwargs)
            finally:
                now = clock()
                meter.cpu[part] += now - meter.mark
                stack.pop()
                meter.mark = now

        metered.__wrapped__ = fn
        return metered

    def start(self) -> None:
        self.owner = threading.get_ident()
        self.mark = time.thread_time()

    def stop(self) -> None:
        self.cpu[self.stack[-1]] += time.thread_time() - self.mark
        self.owner = None


def calibrate(rounds: int = 20000, repeats: int = 5) -> dict:
    """Per metered call: the meter's CPU charged to the called part and to its caller (best of repeats)."""
    def noop_call():
        return None

    own, parent = [], []
    for _ in range(repeats):
        meter = Meter()
        inner = meter.wrap("inner", noop_call)

        def loop(call):
            for _ in range(rounds):
                call()

        outer = meter.wrap("outer", loop)
        bare = time.thread_time()
        loop(noop_call)
        bare = time.thread_time() - bare
        meter.start()
        outer(inner)
        meter.stop()
        own.append(meter.cpu["inner"] / rounds)
        parent.append(max(0.0, meter.cpu["outer"] - bare) / rounds)
    return {"own_s": min(own), "parent_s": min(parent)}


class MeteredMessage:
    """A matched message whose ``recv`` is metered."""

    __slots__ = ("_message", "recv")

    def __init__(self, message, recv):
        self._message = message
        self.recv = recv


class MeteredRequest:
    __slots__ = ("_request", "Test")

    def __init__(self, request, test):
        self._request = request
        self.Test = test


class MeteredComm:
    """The world communicator seen by the master: ``improbe``/``recv``/``isend``/``Test`` metered."""

    def __init__(self, comm, meter: Meter):
        self._comm = comm
        self._meter = meter
        self.improbe = meter.wrap("messages", self._improbe)
        self.isend = meter.wrap("messages", self._isend)

    def _improbe(self, *args):
        message = self._comm.improbe(*args)
        if message is None:
            return None
        return MeteredMessage(message, self._meter.wrap("messages", message.recv))

    def _isend(self, *args, **kwargs):
        request = self._comm.isend(*args, **kwargs)
        return MeteredRequest(request, self._meter.wrap("messages", request.Test))

    def __getattr__(self, name):
        return getattr(self._comm, name)


def install_meters(meter: Meter) -> None:
    """Wrap the master-side code paths (class attributes: every Master of this process)."""
    from pilotq_mpi.api import TaskFuture
    from pilotq_mpi.core import dependencies, scheduler
    from pilotq_mpi.runtime import master, messages, observers, serialization

    def wrap(owner, name, part):
        if hasattr(owner, name):
            setattr(owner, name, meter.wrap(part, getattr(owner, name)))

    for name in ("submit", "schedule", "release"):
        wrap(scheduler.Scheduler, name, "scheduler")
    for name in ("add", "finished", "forget"):
        wrap(dependencies.DependencyTracker, name, "bookkeeping: dependencies")
    for name in ("set_result", "set_exception", "set_running_or_notify_cancel"):
        wrap(TaskFuture, name, "bookkeeping: futures")
    M = master.Master
    # the entry points of each kind of work; smaller helpers (_queue, _message, _send, _release,
    # _observe, _forget_if_finished) count in their caller's part, to keep the meters' calls few
    for name, part in (("_on_submit", "bookkeeping: submit"), ("_dispatch", "bookkeeping: dispatch"),
                       ("_on_result", "bookkeeping: result"), ("_end", "bookkeeping: end"),
                       ("_move", "bookkeeping: state machine")):
        wrap(M, name, part)
    wrap(observers.JournalObserver, "task_ended", "observers: journal")
    wrap(observers.JournalObserver, "pass_ended", "observers: journal")
    wrap(observers.TraceObserver, "task_ended", "observers: trace")
    from pilotq_mpi.journal import Journal

    wrap(Journal, "record_many", "observers: journal commit")  # its calls: commits (records per commit)
    # the top master of the hierarchical mode: its own overrides (inherited methods are metered above)
    from pilotq_mpi.core import group_queue
    from pilotq_mpi.runtime import top_master

    for name in ("submit", "assign", "finished"):
        wrap(group_queue.GroupQueue, name, "scheduler")
    for name, part in (("_dispatch", "bookkeeping: dispatch"), ("_on_up", "bookkeeping: result"),
                       ("_on_report", "bookkeeping: result"), ("_on_started", "bookkeeping: result")):
        if name in vars(top_master.TopMaster):  # only its own: an inherited one is metered already
            wrap(top_master.TopMaster, name, part)
    # pickling inside isend/recv goes through serialization.dumps/loads (installed into MPI.pickle
    # by run_pilot); result values are loaded by messages.unpack_result
    serialization.dumps = meter.wrap("pickle", serialization.dumps)
    serialization.loads = meter.wrap("pickle", serialization.loads)
    messages.loads = meter.wrap("pickle", messages.loads)


def group_parts(cpu: dict) -> dict:
    """Sum sub-parts ("bookkeeping: x") into their part."""
    out: dict = collections.Counter()
    for part, seconds in cpu.items():
        out[part.split(":")[0]] += seconds
    return dict(out)


# --- one MPI job -------------------------------------------------------------------------

def _copy(counter) -> dict:
    while True:  # the master thread may add a key meanwhile (it is idle here, so rarely)
        try:
            return dict(counter)
        except RuntimeError:
            continue


def _diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class IdleMeter:
    """CPU a Master's thread spends in idle passes (a pass that found nothing to do, and its wait).

    It wraps the instance's ``_drain_inbox`` (the first call of every pass) and ``_wait_idle``
    (called only at the end of a pass that did nothing). With a :class:`Meter`, what an idle pass
    charged to the parts is taken back, so the parts are those of the passes that worked.
    """

    def __init__(self, m, meter: Meter | None = None):
        self.idle = 0.0
        self.passes = 0
        self.idle_passes = 0
        self._start: float | None = None
        self._snap = None
        self._meter = meter
        drain, wait = m._drain_inbox, m._wait_idle
        clock = time.thread_time

        def drain_inbox():
            self.passes += 1
            if meter is not None and meter.owner == threading.get_ident():
                self._snap = (meter.cpu.copy(), meter.calls.copy(), meter.children.copy())
            self._start = clock()
            return drain()

        def wait_idle(backoff):
            now = clock()
            if self._start is not None:
                self.idle += now - self._start
            self.idle_passes += 1
            try:
                return wait(backoff)
            finally:
                done = clock()
                self.idle += done - now
                if self._snap is not None and meter is not None and meter.owner == threading.get_ident():
                    meter.cpu, meter.calls, meter.children = self._snap
                    meter.mark = done
                self._snap = None
                self._start = None

        m._drain_inbox, m._wait_idle = drain_inbox, wait_idle


class Window:
    """What a Master's thread spent between two moments: its CPU clock and (if metered) its parts."""

    def __init__(self, m, meter: Meter | None):
        self._clock = time.pthread_getcpuclockid(m._thread.ident)
        self._meter = meter
        self._counts = m.counts
        self.idle = IdleMeter(m, meter)

    def snapshot(self) -> dict:
        snap = {"cpu_s": time.clock_gettime(self._clock), "idle_s": self.idle.idle, "passes": self.idle.passes,
                "idle_passes": self.idle.idle_passes,
                "ended": sum(c.get(s, 0) for c in list(self._counts.values())
                             for s in ("done", "failed", "cancelled", "timed_out"))}
        if self._meter is not None:
            snap.update(parts=_copy(self._meter.cpu), calls=_copy(self._meter.calls),
                        children=_copy(self._meter.children))
        return snap

    @staticmethod
    def between(before: dict, after: dict) -> dict:
        out = {k: after[k] - before[k] for k in ("cpu_s", "idle_s", "passes", "idle_passes", "ended")}
        for key in ("parts", "calls", "children"):
            if key in after:
                out[key] = _diff(after[key], before[key])
        return out


def inner(args) -> None:
    """Run inside the MPI job (every rank); rank 0 writes the report of its master's window."""
    from mpi4py import MPI

    from pilotq_mpi.api import Pilot
    from pilotq_mpi.runtime import bootstrap, master, session

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    meter = Meter() if args.instrument else None
    if rank != 0:  # a sub-master (hierarchical mode) runs Master._loop in this rank's main thread
        loop_of_rank = master.Master._loop

        def submaster_loop(self):
            # sample (thread CPU, tasks ended) every 10 ms: the orchestrator takes the slope between
            # the end of the warm-up and the last task, leaving out start-up and the idle end
            clock = time.pthread_getcpuclockid(threading.get_ident())
            samples, stop = [], threading.Event()
            idle = IdleMeter(self)

            def ended() -> int:
                return sum(c.get(s, 0) for c in list(self.counts.values())
                           for s in ("done", "failed", "cancelled", "timed_out"))

            def sample():
                while not stop.wait(0.01):
                    samples.append((time.clock_gettime(clock), ended(), idle.idle))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                loop_of_rank(self)
            finally:
                stop.set()
                sampler.join()
                samples.append((time.clock_gettime(clock), ended(), idle.idle))
                (Path(args.out_dir) / f"rank{rank}.json").write_text(json.dumps(
                    {"rank": rank, "cpu_s": samples[-1][0], "ended": samples[-1][1], "samples": samples}))

        master.Master._loop = submaster_loop
    calibration = calibrate() if meter else None
    if meter:
        original_loop = master.Master._loop

        def loop(self):
            if threading.current_thread() is self._thread:
                meter.start()  # meters the pilot's (top) master thread only
            try:
                original_loop(self)
            finally:
                if meter.owner == threading.get_ident():
                    meter.stop()

        master.Master._loop = loop
        install_meters(meter)
    report: dict = {"rank": rank}

    def driver():
        window = Window(session.current(), meter)
        with tempfile.TemporaryDirectory() as tmp:
            journal = str(Path(tmp) / "journal.sqlite") if args.workload == "submit+journal" else None
            with Pilot(journal=journal) as pilot:
                warm = [pilot.submit(noop, -i - 1, key=f"warm-{i}") for i in range(WARMUP)]
                for f in warm:
                    f.result()
                time.sleep(0.05)  # the master goes idle
                before = window.snapshot()
                cpu = time.thread_time()
                wall = time.perf_counter()
                if args.workload == "map":
                    total = sum(pilot.map(noop, range(args.tasks), chunksize=CHUNKSIZE))
                    submit_cpu = None
                else:
                    futures = [pilot.submit(noop, i) for i in range(args.tasks)]
                    submit_cpu = time.thread_time() - cpu
                    total = sum(f.result() for f in futures)
                wall = time.perf_counter() - wall
                driver_cpu = time.thread_time() - cpu
                time.sleep(0.05)  # the master finishes its last pass
                after = window.snapshot()
                assert total == args.tasks * (args.tasks - 1) // 2
        report.update(Window.between(before, after), wall_s=wall, driver_submit_cpu_s=submit_cpu,
                      driver_cpu_s=driver_cpu, calibration=calibration)

    bootstrap.run_pilot(driver, world=MeteredComm(world, meter) if meter and rank == 0 else None)
    if rank == 0:
        report["trace"] = bool(os.environ.get("PILOTQ_TRACE"))
        (Path(args.out_dir) / "rank0.json").write_text(json.dumps(report))


def launch(workload: str, ranks: int, tasks: int, instrument: bool, extra_env: dict) -> dict:
    """One fresh MPI job; its rank 0 report."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()),
                "--inner", "--workload", workload, "--tasks", str(tasks), "--out-dir", tmp]
        if instrument:
            argv.append("--instrument")
        env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off", **extra_env)
        env.pop("PILOTQ_TRACE", None)
        if workload == "submit+trace":
            env["PILOTQ_TRACE"] = str(Path(tmp) / "trace.jsonl")
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        report = json.loads((Path(tmp) / "rank0.json").read_text())
        report["submasters"] = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))
                                if p.name != "rank0.json"]
        return report


def _slope(samples: list, after: int, busy: bool = False) -> float:
    """CPU seconds per task between the first sample past ``after`` tasks and the first at the final count
    (``busy``: without the CPU of idle passes)."""
    final = samples[-1][1]
    start = next((s for s in samples if s[1] >= after), samples[0])
    end = next(s for s in samples if s[1] >= final)
    cpu = end[0] - start[0] - ((end[2] - start[2]) if busy else 0.0)
    return cpu / (end[1] - start[1]) if end[1] > start[1] else math.nan


def per_task(report: dict, workload: str, tasks: int) -> dict:
    """Per-task figures of one run (a task is one message each way: one chunk for map)."""
    ended = report["ended"]
    row = {"tasks": tasks, "ended": ended,
           "loop_cpu_per_task_us": report["cpu_s"] / ended * 1e6,
           "busy_cpu_per_task_us": (report["cpu_s"] - report["idle_s"]) / ended * 1e6,
           "idle_cpu_per_task_us": report["idle_s"] / ended * 1e6,
           "passes_per_task": report["passes"] / ended, "idle_passes_per_task": report["idle_passes"] / ended,
           "wall_tasks_per_s": tasks / report["wall_s"],
           "driver_submit_cpu_per_task_us": None if report["driver_submit_cpu_s"] is None
           else report["driver_submit_cpu_s"] / tasks * 1e6,
           "driver_cpu_per_task_us": report["driver_cpu_s"] / ended * 1e6}
    if workload == "map":
        row["loop_cpu_per_item_us"] = report["cpu_s"] / tasks * 1e6
    subs = report.get("submasters") or []
    if subs:  # each sub-master's CPU per task from the end of the warm-up to its last task
        row["submaster_cpu_per_task_us"] = [_slope(s["samples"], WARMUP // len(subs)) * 1e6 for s in subs]
        row["submaster_busy_cpu_per_task_us"] = [_slope(s["samples"], WARMUP // len(subs), busy=True) * 1e6
                                                 for s in subs]
        row["submaster_ended"] = [s["ended"] for s in subs]
    if "parts" in report:
        cal = report["calibration"]
        parts = dict(report["parts"])
        overhead: collections.Counter = collections.Counter()
        for part, n in report["calls"].items():
            overhead[part] += n * cal["own_s"]
        for part, n in report["children"].items():
            overhead[part] += n * cal["parent_s"]
        for part, seconds in overhead.items():
            parts[part] = parts.get(part, 0.0) - seconds
        row["meter_overhead_us"] = {p: s / ended * 1e6 for p, s in sorted(overhead.items())}
        parts["loop"] = parts.get("loop", 0.0) + report["cpu_s"] - report["idle_s"] - sum(report["parts"].values())
        row["parts_us"] = {p: s / ended * 1e6 for p, s in sorted(parts.items())}
        row["grouped_us"] = {p: s / ended * 1e6 for p, s in sorted(group_parts(parts).items())}
        row["calibrated_total_us"] = sum(parts.values()) / ended * 1e6
        row["meter_calls_per_task"] = sum(report["calls"].values()) / ended
        row["calls_per_task"] = {p: n / ended for p, n in sorted(report["calls"].items())}
        commits = report["calls"].get("observers: journal commit")
        if commits:
            row["journal_records_per_commit"] = ended / commits
        row["calibration"] = cal
    return row


def aggregate(plain: list[dict], metered: list[dict], ranks: int, workload: str, repeats: int) -> dict:
    """One row of the results: medians over the plain runs, and the parts from the metered runs."""
    row = {"ranks": ranks, "workload": workload, "repeats": repeats,
           "loop_cpu_per_task_us": statistics.median(r["loop_cpu_per_task_us"] for r in plain),
           "busy_cpu_per_task_us": statistics.median(r["busy_cpu_per_task_us"] for r in plain),
           "idle_cpu_per_task_us": statistics.median(r["idle_cpu_per_task_us"] for r in plain),
           "passes_per_task": statistics.median(r["passes_per_task"] for r in plain),
           "wall_tasks_per_s": statistics.median(r["wall_tasks_per_s"] for r in plain)}
    if any("submaster_cpu_per_task_us" in r for r in plain):
        row["submaster_cpu_per_task_us"] = statistics.median(
            statistics.mean(r["submaster_cpu_per_task_us"]) for r in plain)
        row["submaster_busy_cpu_per_task_us"] = statistics.median(
            statistics.mean(r["submaster_busy_cpu_per_task_us"]) for r in plain)
        row["submaster_ended"] = plain[0]["submaster_ended"]
    if workload != "map":
        row["driver_submit_cpu_per_task_us"] = statistics.median(r["driver_submit_cpu_per_task_us"] for r in plain)
    else:
        row["loop_cpu_per_item_us"] = statistics.median(r["loop_cpu_per_item_us"] for r in plain)
    row["runs"] = {"plain": plain, "metered": metered}
    if not metered:
        return row
    row["metered_loop_cpu_per_task_us"] = statistics.median(r["loop_cpu_per_task_us"] for r in metered)
    row["calibrated_total_us"] = statistics.median(r["calibrated_total_us"] for r in metered)
    keys = sorted({k for r in metered for k in r["parts_us"]})
    calibrated = {k: statistics.median(r["parts_us"].get(k, 0.0) for r in metered) for k in keys}
    overhead = {k: statistics.median(r["meter_overhead_us"].get(k, 0.0) for r in metered) for k in keys}
    # the meters' calibration leaves some of their cost over (or takes too much): keep each part's
    # share of the metered run and scale the parts to the unmetered runs' busy total
    positive = {k: max(0.0, v) for k, v in calibrated.items()}
    scale = row["busy_cpu_per_task_us"] / (sum(positive.values()) or 1.0)
    row["parts_calibrated_us"] = calibrated
    row["meter_overhead_us"] = overhead
    row["meter_residual_us"] = sum(calibrated.values()) - row["busy_cpu_per_task_us"]
    row["parts_us"] = {k: v * scale for k, v in positive.items()}
    row["grouped_us"] = group_parts(row["parts_us"])
    commits = [r["journal_records_per_commit"] for r in metered if "journal_records_per_commit" in r]
    if commits:
        row["journal_records_per_commit"] = statistics.median(commits)
    return row


def journal_groups(sizes=(1, 2, 4, 16, 64), tasks: int = 2048, repeats: int = 5) -> dict:
    """The journal observer's CPU per task against the records each pass commits (no MPI).

    A real ``JournalObserver``, ``Journal`` (a temporary file, default durability) and futures
    resolved as the master resolves them; ``k`` records per pass, then ``pass_ended``. Beside it
    the observer before group commit: one ``Journal.record`` (its own transaction) per task.
    Best of ``repeats`` (thread CPU time).
    """
    from concurrent.futures import Future

    from pilotq_mpi.core.specs import TaskSpec
    from pilotq_mpi.core.states import TaskState
    from pilotq_mpi.journal import Journal
    from pilotq_mpi.runtime.observers import JournalObserver
    from pilotq_mpi.runtime.records import Submission, TaskRecord
    from pilotq_mpi.runtime.serialization import dumps

    spec = TaskSpec()
    serial = iter(range(10**9))

    def ended(journal, n):
        out = []
        for i in range(n):
            future = Future()
            future.set_running_or_notify_cancel()
            sub = Submission(i, 1, b"", b"", spec, future, frozenset(), "noop", 0.0, key=f"k{next(serial)}",
                             journal=journal)
            out.append(TaskRecord(sub, state=TaskState.DONE, result=i, started=1.0, ended=2.0))
        return out

    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "journal.sqlite") as journal:
        for _ in range(repeats):
            for k in sizes:
                observer, records = JournalObserver(), ended(journal, tasks)
                cpu = time.thread_time()
                for first in range(0, tasks, k):
                    for record in records[first:first + k]:
                        observer.task_ended(record)
                        record.sub.future.set_result(record.result)
                    observer.pass_ended()
                best[k] = min(best.get(k, 1.0), (time.thread_time() - cpu) / tasks)
            records = ended(journal, tasks)
            cpu = time.thread_time()
            for record in records:
                journal.record(record.sub.key, name=record.name, state="done", result=dumps(record.result),
                               error=None, started=1.0, ended=2.0, ranks=1)
                record.sub.future.set_result(record.result)
            best["alone"] = min(best.get("alone", 1.0), (time.thread_time() - cpu) / tasks)
    return {"tasks": tasks, "repeats": repeats, "statistic": "best",
            "grouped_us_per_task": {str(k): best[k] * 1e6 for k in sizes},
            "one_transaction_per_task_us": best["alone"] * 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--instrument", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=WORKLOADS, default="submit")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--submasters", type=int, default=None,
                        help="run with PILOTQ_SUBMASTERS=<groups> (hierarchical masters, when available)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="run with PILOTQ_PREFETCH=<n> (default: the runtime's); added to the label")
    parser.add_argument("--compare-single", type=int, nargs="+", default=None, metavar="RANKS",
                        help="with --submasters: run a single master at these rank counts too, interleaved with"
                             " the hierarchical runs (stored as 'single (interleaved with submasters=G)')")
    parser.add_argument("--quick", action="store_true", help="4 ranks, 2,000 tasks, one repeat")
    parser.add_argument("--plain-only", action="store_true", help="no metered runs (only the totals)")
    parser.add_argument("--journal-groups", action="store_true",
                        help="only the journal observer's cost per task against records per commit (no MPI)")
    parser.add_argument("--label", default=None, help="store the rows under this label (default: the mode)")
    parser.add_argument("--out", default=str(HERE / "results" / "master_cost.json"))
    args = parser.parse_args(argv)
    if args.inner:
        inner(args)
        return 0
    path = Path(args.out)
    if args.journal_groups:
        data = json.loads(path.read_text()) if path.exists() else {}
        result = journal_groups()
        result.update(command="python benchmarks/master_cost.py --journal-groups", commit=_git_commit(),
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      load_before=os.getloadavg())
        data["journal_group_commit"] = result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        print(json.dumps(result, indent=1))
        return 0
    if args.quick:
        args.ranks, args.tasks, args.repeats = [4], 2000, 1
    extra_env = {} if args.submasters is None else {"PILOTQ_SUBMASTERS": str(args.submasters)}
    label = args.label or ("single" if args.submasters is None else f"submasters={args.submasters}")
    prefetch_env = {} if args.prefetch is None else {"PILOTQ_PREFETCH": str(args.prefetch)}
    if args.prefetch is not None and not args.label:
        label += f" prefetch={args.prefetch}"
    modes = [(label, {**extra_env, **prefetch_env}, args.ranks)]
    if args.compare_single:
        modes.append((f"single (interleaved with {label})", prefetch_env, args.compare_single))
    load_before = os.getloadavg()
    runs: dict[tuple, list[dict]] = collections.defaultdict(list)
    for _ in range(args.repeats):  # interleaved: drifts in the machine's load hit every kind and mode alike
        for mode, env, rank_counts in modes:
            for ranks in rank_counts:
                for workload in args.workloads:
                    for instrument in (False,) if args.plain_only else (False, True):
                        load = os.getloadavg()[0]
                        result = per_task(launch(workload, ranks, args.tasks, instrument, env), workload, args.tasks)
                        result["load_1min"] = load
                        runs[(mode, ranks, workload, instrument)].append(result)
                        print(f"{mode} ranks={ranks} {workload:15s} {'metered' if instrument else 'plain  '}"
                              f" loop {result['loop_cpu_per_task_us']:6.1f} us/task"
                              f" busy {result['busy_cpu_per_task_us']:6.1f}"
                              + (f" (calibrated parts {result['calibrated_total_us']:6.1f})" if instrument else "")
                              + f"  {result['wall_tasks_per_s']:8,.0f} tasks/s  load {load:.1f}", flush=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({"benchmark": "master_cost", "chunksize": CHUNKSIZE, "warmup_tasks": WARMUP})
    for mode, _, rank_counts in modes:
        rows = [aggregate(runs[(mode, ranks, workload, False)], runs[(mode, ranks, workload, True)], ranks, workload,
                          args.repeats) for ranks in rank_counts for workload in args.workloads]
        previous = data.setdefault("modes", {}).get(mode, {})
        measured = {(r["ranks"], r["workload"]) for r in rows}
        kept = [r for r in previous.get("rows", []) if (r["ranks"], r["workload"]) not in measured
                and r.get("tasks_per_run", previous.get("tasks")) == args.tasks
                and previous.get("commit") == _git_commit()]
        for row in rows:
            row["tasks_per_run"] = args.tasks
        data["modes"][mode] = {
            "command": " ".join(["python", "benchmarks/master_cost.py", *(sys.argv[1:] if argv is None else argv)]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": _git_commit(), "load_before": load_before, "load_after": os.getloadavg(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "tasks": args.tasks,
            "rows": sorted(kept + rows, key=lambda r: (r["ranks"], WORKLOADS.index(r["workload"])))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path} ({', '.join(mode for mode, _, _ in modes)})")
    return 0


def _git_commit() -> str | None:
    """The commit measured: $PILOTQ_BENCH_COMMIT (a run from an exported tree), else this checkout's HEAD."""
    if os.environ.get("PILOTQ_BENCH_COMMIT"):
        return os.environ["PILOTQ_BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
