"""Heavy-tailed and mixed-width workloads: makespan vs the lower bound, pilotq-mpi vs mpi4py.futures.

    python benchmarks/mixed.py             # 5 ranks (4 workers): two workloads x 3 runners, horizon scan (~2 min)
    python benchmarks/mixed.py --quick     # smaller workloads, no scan
    python benchmarks/mixed.py --ranks 9 --tasks 2000

Tasks sleep (``time.sleep``): they measure scheduling, not compute, so the figures hold on
an oversubscribed 2-core machine. Workloads (seeded, identical for every runner):

* ``independent``: single-rank tasks with lognormal durations (median ``--median`` s,
  sigma 1) plus 0.6% "stragglers" of 100x the median, in random submission order;
* ``mixed``: the same plus multi-rank tasks (widths 2 and 4, up to 0.2 s) that run an
  allreduce on their sub-communicator;
* ``stream``: the issue's reproducer as a stream: 2 stragglers (100x the median), then short
  tasks (the median) submitted one every median/2 seconds, so workers are free most of
  the time. What counts here is the latency of the short tasks (completion - submit):
  a short task that waits behind a straggler shows up in the maximum.

Runners, each a fresh MPI job with the same rank count:

* ``pilot``: ``mpiexec -n R python -m pilotq_mpi`` with the default prefetch horizon;
* ``pilot-old``: the same with ``PILOTQ_PREFETCH_HORIZON=inf`` (prefetch behind anything,
  the rule before issue 8.2): short tasks can wait behind stragglers;
* ``futures``: ``mpiexec -n R python -m mpi4py.futures`` (MPIPoolExecutor). It has no
  multi-rank tasks: in ``mixed`` a k-rank task becomes k independent single-rank tasks of
  the same duration (same work, no gang constraint: an easier problem, so its figure is
  optimistic).

Makespan is timed in the driver from the first submit to the last result. The lower
bound is the list-scheduling bound ``max(total work / worker ranks, longest task)`` with
work = duration x ranks (for ``stream``: also the last submission + its duration).
Latency is per short task (at most 10x the median), completion - submit, in the driver. ``--scan`` (on by default) also measures what prefetch buys for
fixed-duration tasks (tasks/s with the horizon at inf vs 0), the figure that sets the
default ``PILOTQ_PREFETCH_HORIZON``. Results: ``benchmarks/results/mixed.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
if str(HERE.parent) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(HERE.parent))

RUNNERS = ("pilot", "pilot-old", "futures")
KINDS = ("independent", "mixed", "stream")
STRAGGLER_FRACTION = 0.006
STRAGGLER_FACTOR = 100.0
SCAN_DURATIONS = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def sleep_task(comm, seconds):
    """A single- or multi-rank task: sleep, then (multi-rank) an allreduce over the task's ranks."""
    time.sleep(seconds)
    if comm.Get_size() > 1:
        comm.allreduce(1)
    return seconds


def sleep_futures(seconds):
    """The same for mpi4py.futures (no communicator)."""
    time.sleep(seconds)
    return seconds


def workload(kind: str, tasks: int, median: float, seed: int) -> list[tuple[float, int, float]]:
    """``(duration s, ranks, submit offset s)`` per task, in submission order (same arguments, same list)."""
    rng = random.Random(seed)
    if kind == "stream":
        stragglers = [(STRAGGLER_FACTOR * median, 1, 0.0)] * 2
        gap = median / 2
        return stragglers + [(median, 1, 0.05 + i * gap) for i in range(tasks // 4)]
    out = []
    for _ in range(tasks):
        if rng.random() < STRAGGLER_FRACTION:
            out.append((STRAGGLER_FACTOR * median, 1))
        else:
            out.append((min(rng.lognormvariate(math.log(median), 1.0), 20 * median), 1))
    if kind == "mixed":
        wide = max(4, tasks // 50)
        for i in range(wide):
            out.append((rng.uniform(0.05, 0.2), 2 if i % 3 else 4))
    rng.shuffle(out)
    return [(d, r, 0.0) for d, r in out]


def lower_bound(tasks: list[tuple[float, int, float]], workers: int) -> float:
    """max(total work / worker ranks, longest task, last submission + its task): no schedule beats it."""
    return max(sum(d * r for d, r, _ in tasks) / workers, max(d + t for d, _, t in tasks))


# --- inside the MPI job (rank 0) --------------------------------------------------------------
def inner_makespan(runner: str, kind: str, tasks: int, median: float, seed: int) -> dict:
    work = workload(kind, tasks, median, seed)
    if runner.startswith("pilot"):
        from pilotq_mpi import Pilot as Executor

        def submit(d, r):
            return executor.submit(sleep_task, d, ranks=r)
    else:
        from mpi4py.futures import MPIPoolExecutor as Executor

        def submit(d, r):  # a k-rank task becomes k single-rank pieces (futures has no gang tasks)
            pieces = [executor.submit(sleep_futures, d) for _ in range(r)]
            return pieces[-1]
    latencies = []

    def track(future, submitted):
        future.add_done_callback(lambda f: latencies.append(time.perf_counter() - submitted))

    with Executor() as executor:
        submit(0.0, 1).result()  # warm: the function reaches a worker once
        futures = []
        start = time.perf_counter()
        for d, r, offset in work:
            if offset:
                delay = start + offset - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            future = submit(d, r)
            if r == 1 and d <= 10 * median:
                track(future, time.perf_counter())
            futures.append(future)
        for f in futures:
            f.result()
        makespan = time.perf_counter() - start
    latencies.sort()
    return {"makespan_s": makespan, "latency_p50_s": latencies[len(latencies) // 2],
            "latency_p99_s": latencies[int(0.99 * (len(latencies) - 1))], "latency_max_s": latencies[-1]}


def inner_scan(tasks_per_point: int) -> dict:
    """Tasks/s for fixed-duration single-rank tasks (the pilot's horizon is set by the launcher)."""
    from pilotq_mpi import Pilot

    rows = []
    with Pilot() as pilot:
        workers = len(pilot.resources.ranks)
        for d in SCAN_DURATIONS:
            n = tasks_per_point if d == 0 else max(2 * workers, min(tasks_per_point, int(0.4 * workers / d)))
            pilot.submit(sleep_task, d).result()  # the duration estimate exists before timing
            start = time.perf_counter()
            for f in [pilot.submit(sleep_task, d) for _ in range(n)]:
                f.result()
            elapsed = time.perf_counter() - start
            rows.append({"duration_s": d, "tasks": n, "tasks_per_s": n / elapsed,
                         "efficiency": (n * d / workers) / elapsed if d else None})
    return {"rows": rows}


# --- launcher -----------------------------------------------------------------------------------
def launch(runner: str, ranks: int, args: list[str], env_extra: dict | None = None) -> dict:
    module = "mpi4py.futures" if runner == "futures" else "pilotq_mpi"
    argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", module, str(Path(__file__).resolve()),
            "--inner", runner, *args]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off")
    env.pop("PILOTQ_PREFETCH_HORIZON", None)
    if runner == "pilot-old":
        env["PILOTQ_PREFETCH_HORIZON"] = "inf"
    env.update(env_extra or {})
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", choices=RUNNERS + ("scan",), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS, default="independent", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=5, help="MPI ranks per job (workers = ranks - 1)")
    parser.add_argument("--tasks", type=int, default=1000, help="single-rank tasks per workload")
    parser.add_argument("--median", type=float, default=0.004, help="median task duration, seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scan-tasks", type=int, default=600, help="tasks per duration in the horizon scan")
    parser.add_argument("--no-scan", dest="scan", action="store_false")
    parser.add_argument("--quick", action="store_true", help="400 tasks, one repeat, no scan")
    parser.add_argument("--out", default=str(HERE / "results" / "mixed.json"))
    args = parser.parse_args()
    if args.inner == "scan":
        print(json.dumps(inner_scan(args.scan_tasks)))
        return
    if args.inner:
        print(json.dumps(inner_makespan(args.inner, args.kind, args.tasks, args.median, args.seed)))
        return
    if args.quick:
        args.tasks, args.repeats, args.scan = 400, 1, False
    workers = args.ranks - 1
    rows = []
    for kind in KINDS:
        work = workload(kind, args.tasks, args.median, args.seed)
        bound = lower_bound(work, workers)
        runs: dict[str, list[dict]] = {r: [] for r in RUNNERS}
        for _ in range(args.repeats):  # interleaved: slow drifts of the shared machine hit every runner alike
            for runner in RUNNERS:
                result = launch(runner, args.ranks, ["--kind", kind, "--tasks", str(args.tasks),
                                                     "--median", str(args.median), "--seed", str(args.seed)])
                runs[runner].append(result)
        row = {"workload": kind, "tasks": len(work), "wide_tasks": sum(1 for _, r, _ in work if r > 1),
               "stragglers": sum(1 for d, _, _ in work if d >= STRAGGLER_FACTOR * args.median),
               "total_work_s": sum(d * r for d, r, _ in work), "longest_s": max(d for d, _, _ in work),
               "lower_bound_s": bound}
        for runner, results in runs.items():
            figures = {key: statistics.median(r[key] for r in results) for key in results[0]}
            figures["over_bound"] = figures["makespan_s"] / bound - 1
            figures["makespans"] = [r["makespan_s"] for r in results]
            row[runner] = figures
        rows.append(row)
        print(f"{kind}: bound {bound:.2f}s  " + "  ".join(
            f"{r}: {row[r]['makespan_s']:.2f}s ({row[r]['over_bound']:+.0%}, short-task latency max"
            f" {row[r]['latency_max_s'] * 1e3:.0f} ms)" for r in RUNNERS), flush=True)
    scan = None
    if args.scan:
        scan = {label: launch("scan", args.ranks, ["--scan-tasks", str(args.scan_tasks)],
                              {"PILOTQ_PREFETCH_HORIZON": horizon})
                for label, horizon in (("prefetch", "inf"), ("no_prefetch", "0"))}
        for a, b in zip(scan["prefetch"]["rows"], scan["no_prefetch"]["rows"]):
            print(f"scan {a['duration_s'] * 1e3:5.1f} ms: prefetch {a['tasks_per_s']:8.0f}/s,"
                  f" none {b['tasks_per_s']:8.0f}/s, gain {a['tasks_per_s'] / b['tasks_per_s'] - 1:+.1%}", flush=True)
    from pilotq_mpi.runtime.options import DEFAULT_PREFETCH_HORIZON

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "mixed", "repeats": args.repeats, "statistic": "median", "ranks": args.ranks,
        "workers": workers, "median_s": args.median, "seed": args.seed,
        "default_prefetch_horizon_s": DEFAULT_PREFETCH_HORIZON,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "python benchmarks/mixed.py" + (" --quick" if args.quick else ""),
        "rows": rows, "horizon_scan": scan}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
