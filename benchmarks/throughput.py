"""No-op task throughput: pilotq-mpi vs mpi4py.futures, same machine, same run.

    python benchmarks/throughput.py                 # N = 1,000 and 10,000; 4 and 8 ranks; median of 5
    python benchmarks/throughput.py --quick         # one small round

For each (ranks, N) it launches, as fresh MPI jobs:
  * ``mpiexec -n R python -m pilotq_mpi benchmarks/throughput.py --inner pilot ...``
  * ``mpiexec -n R python -m mpi4py.futures benchmarks/throughput.py --inner futures ...``
  * the pilot again with ``PILOTQ_TRACE`` set (the cost of the task trace)
and times, inside the job, N one-by-one ``submit`` calls followed by waiting for all,
and ``map(chunksize=64)`` over N items. Start-up is measured from just before the
launch to the first task's result. Rank 0's CPU time (``time.process_time``: the driver
and, for the pilot, the master thread; for mpi4py.futures its client and manager thread)
per one-by-one task is recorded beside the wall-clock rate: on this shared 2-core machine
it is the figure that other people's load disturbs least, and rank 0 is the bottleneck of
one-by-one submits. The 1-minute load average is recorded before and after every launch.
Results go to ``benchmarks/results/throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def noop(comm, x):
    """The task: nothing (the pilot passes the communicator first)."""
    return x


def noop_futures(x):
    """The same task for mpi4py.futures (no communicator argument)."""
    return x


KINDS = ("pilot", "pilot+trace", "futures")


def inner(kind: str, tasks: int, chunksize: int) -> dict:
    """Run inside the MPI job on rank 0; return timings."""
    if kind.startswith("pilot"):
        from pilotq_mpi import Pilot as Executor

        fn = noop
    else:
        from mpi4py.futures import MPIPoolExecutor as Executor

        fn = noop_futures
    with Executor() as executor:
        first = executor.submit(fn, 0).result()
        first_at = time.time()
        cpu, start = time.process_time(), time.perf_counter()
        futures = [executor.submit(fn, i) for i in range(tasks)]
        total = sum(f.result() for f in futures)
        submit_s = time.perf_counter() - start
        submit_cpu_s = time.process_time() - cpu
        start = time.perf_counter()
        mapped = sum(executor.map(fn, range(tasks), chunksize=chunksize))
        map_s = time.perf_counter() - start
    assert first == 0 and total == mapped == tasks * (tasks - 1) // 2
    return {"first_result_at": first_at, "submit_s": submit_s, "submit_cpu_s": submit_cpu_s, "map_s": map_s}


def launch(kind: str, ranks: int, tasks: int, chunksize: int) -> dict:
    """Start one MPI job and return its timings (start-up measured from here)."""
    module = "pilotq_mpi" if kind.startswith("pilot") else "mpi4py.futures"
    argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", module, str(Path(__file__).resolve()),
            "--inner", kind, "--tasks", str(tasks), "--chunksize", str(chunksize)]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off")
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "pilot+trace":  # the cost of writing the task trace (target: < 5% of throughput)
            env["PILOTQ_TRACE"] = str(Path(tmp) / "trace.jsonl")
        load_before = os.getloadavg()[0]
        launched = time.time()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["startup_s"] = result.pop("first_result_at") - launched
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunksize", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="N=1000, 4 ranks, one repeat")
    parser.add_argument("--out", default=str(HERE / "results" / "throughput.json"))
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.tasks[0], args.chunksize)))
        return
    if args.quick:
        args.tasks, args.ranks, args.repeats = [1000], [4], 1
    rows = []
    load_before = os.getloadavg()
    for ranks in args.ranks:
        for tasks in args.tasks:
            runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
            for _ in range(args.repeats):  # interleaved, so slow drifts of the machine hit every kind alike
                for kind in KINDS:
                    runs[kind].append(launch(kind, ranks, tasks, args.chunksize))
            row = {"ranks": ranks, "tasks": tasks, "chunksize": args.chunksize}
            for kind, results in runs.items():
                row[kind] = {
                    "submit_tasks_per_s": statistics.median(tasks / r["submit_s"] for r in results),
                    "map_tasks_per_s": statistics.median(tasks / r["map_s"] for r in results),
                    "startup_s": statistics.median(r["startup_s"] for r in results),
                    "submit_rank0_cpu_us_per_task": statistics.median(1e6 * r["submit_cpu_s"] / tasks
                                                                      for r in results),
                    "load": [r["load"] for r in results],
                }
            rows.append(row)
            print(f"ranks={ranks} N={tasks}: " + "  ".join(
                f"{kind}: submit {row[kind]['submit_tasks_per_s']:,.0f}/s"
                f" (rank 0 {row[kind]['submit_rank0_cpu_us_per_task']:.0f} us CPU/task)"
                f" map {row[kind]['map_tasks_per_s']:,.0f}/s start-up {row[kind]['startup_s']:.2f}s"
                for kind in KINDS), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "throughput", "repeats": args.repeats, "statistic": "median",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before, "load_after": os.getloadavg(), "commit": _commit(),
        "command": "python benchmarks/throughput.py" + (" --quick" if args.quick else ""),
        "rows": rows}, indent=2))
    print(f"wrote {args.out}")


def _commit() -> str | None:
    """The checked-out commit (the code measured), if this is a git checkout."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE,
                         check=False)
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()
