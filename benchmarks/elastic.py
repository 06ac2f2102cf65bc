"""Elastic pilots: join latency, throughput with 1 vs 2 allocations, resuming a drained allocation's tasks.

    python benchmarks/elastic.py            # all measurements, 3 repeats (~2 min)
    python benchmarks/elastic.py --quick    # 1 repeat

Every run is a real pilot (``mpiexec -n R python -m pilotq_mpi --run-dir DIR``) and, where
it says so, a second launch joining it (``mpiexec -n M python -m pilotq_mpi --join DIR``),
both on this machine. Tasks sleep: they measure scheduling, not compute, so the figures hold
on an oversubscribed 2-core machine.

* ``join``: a pilot of 3 workers runs a stream of 50 ms tasks; a joiner of 3 ranks is
  launched mid-run. Join latency = the joiner's launch (Popen) to the first task starting on
  one of its ranks, split into launch-to-joined (MPI start-up, handshake) and joined-to-first-
  task. Also the time the master's loop spent in ``Accept`` (it never waits otherwise).
* ``throughput``: 600 tasks of 20 ms on 3 workers in one allocation; on 3 + 3 workers in two
  allocations (one joined); and on 6 workers in one allocation (the same ranks without the
  intercommunicator path).
* ``polling``: 3,000 no-op tasks on 3 workers with and without ``--run-dir``: what the
  master's run-directory polling costs (it stats a few files every 0.1 s).
* ``resume``: the pilot's 2 workers declare fake GPUs, so CPU tasks go to the joined
  (CPU-only) ranks first; 3 tasks of 3 s start there; the joiner gets SIGUSR1 with a drain
  grace of 0 s; resume time = signal to the moved task's start on a pilot rank.

Results: ``benchmarks/results/elastic.json``; the table in ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DRIVER = HERE / "elastic_driver.py"
TIMEOUT_S = 180


def launch(ranks: int, args: list[str], **env) -> subprocess.Popen:
    argv = ["timeout", "-s", "KILL", str(TIMEOUT_S), str(BIN / "mpiexec"), "-n", str(ranks), sys.executable,
            "-m", "pilotq_mpi", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PILOTQ_PROGRESS="off", **env), start_new_session=True)


def finish(proc: subprocess.Popen, what: str) -> tuple[str, str]:
    out, err = proc.communicate(timeout=TIMEOUT_S + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{err[-2000:]}")
    return out, err


def result_of(out: str) -> dict:
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def wait_for(path: Path) -> None:
    deadline = time.time() + 60
    while not path.exists():
        if time.time() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.01)


def marks_of(folder: Path) -> list[tuple[int, int, float]]:
    """(task, rank, start time) of every task start."""
    found = []
    for path in folder.iterdir():
        if path.suffix == ".tmp":
            continue
        task, rank = path.name.split("-rank")
        found.append((int(task), int(rank), float(path.read_text())))
    return found


def measure_join(work: Path) -> dict:
    run_dir, marks = work / "run", work / "marks"
    marks.mkdir()
    main = launch(4, ["--run-dir", str(run_dir), str(DRIVER), "1", "400", "0.05", str(marks)])
    wait_for(run_dir / "pilot.json")
    while not any(marks.iterdir()):  # the pilot is running tasks
        time.sleep(0.01)
    time.sleep(0.5)
    launched = time.time()
    joiner = launch(3, ["--join", str(run_dir)])
    finish(joiner, "joiner")
    _, err = finish(main, "pilot")
    joined_rank = [(start, task) for task, rank, start in marks_of(marks) if rank >= 4]
    accept_ms = float(re.search(r"waited (\d+) ms in Accept", err).group(1))
    joined_at = (run_dir / "allocations" / "join-1").stat().st_ctime
    first = min(joined_rank)[0]
    return {"launch_to_first_task_s": first - launched, "launch_to_joined_s": joined_at - launched,
            "joined_to_first_task_s": first - joined_at, "master_in_accept_ms": accept_ms}


def measure_throughput(work: Path, mode: str) -> dict:
    run_dir = work / "run"
    if mode == "one allocation, 3 workers":
        out, _ = finish(launch(4, ["--run-dir", str(run_dir), str(DRIVER), "1", "600", "0.02"]), "pilot")
    elif mode == "one allocation, 6 workers":
        out, _ = finish(launch(7, ["--run-dir", str(run_dir), str(DRIVER), "1", "600", "0.02"]), "pilot")
    else:
        main = launch(4, ["--run-dir", str(run_dir), str(DRIVER), "2", "600", "0.02"])
        wait_for(run_dir / "pilot.json")
        finish(launch(3, ["--join", str(run_dir)]), "joiner")
        out, _ = finish(main, "pilot")
    return result_of(out)


def measure_polling(work: Path, with_run_dir: bool) -> dict:
    args = ["--run-dir", str(work / "run")] if with_run_dir else []
    out, _ = finish(launch(4, [*args, str(DRIVER), "1", "3000", "0"]), "pilot")
    return result_of(out)


def measure_resume(work: Path) -> dict:
    run_dir, marks = work / "run", work / "marks"
    marks.mkdir()
    main = launch(3, ["--run-dir", str(run_dir), str(DRIVER), "2", "3", "3", str(marks)], PILOTQ_GPUS_PER_NODE="2")
    wait_for(run_dir / "pilot.json")
    joiner = launch(3, ["--join", str(run_dir)], PILOTQ_GPUS_PER_NODE="0", PILOTQ_DRAIN_GRACE="0")
    while len(list(marks.iterdir())) < 3:
        time.sleep(0.01)
    on_joined = {task for task, rank, _ in marks_of(marks) if rank >= 3}
    signalled = time.time()
    for pid in _ranks_of(run_dir, "--join"):
        os.kill(pid, signal.SIGUSR1)
    finish(joiner, "joiner")
    finish(main, "pilot")
    restarts = [start - signalled for task, rank, start in marks_of(marks) if task in on_joined and rank < 3]
    return {"moved_tasks": len(restarts), "resume_s": statistics.median(restarts) if restarts else None,
            "tasks_on_joined_ranks": len(on_joined)}


def _ranks_of(run_dir: Path, flag: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(run_dir) in cmd and flag in cmd and "pilotq_mpi" in cmd and "mpiexec" not in cmd \
                    and "hydra" not in cmd and not cmd.startswith("timeout"):
                found.append(int(entry))
    return found


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "elastic.json")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    results: dict = {"command": "python benchmarks/elastic.py" + (" --quick" if args.quick else ""),
                     "host": platform.node(), "cpus": os.cpu_count(), "repeats": repeats, "loadavg_before": os.getloadavg()}

    def once(fn, *extra) -> dict:
        with tempfile.TemporaryDirectory(prefix="pilotq-elastic-") as work:
            return fn(Path(work), *extra)

    def runs(fn, *extra) -> list[dict]:
        return [once(fn, *extra) for _ in range(repeats)]

    def interleaved(fn, modes) -> dict:
        """Each repeat runs every mode once, in turn, so that load changes hit all modes alike."""
        found: dict = {mode: [] for mode in modes}
        for _ in range(repeats):
            for mode in modes:
                found[mode].append(once(fn, mode))
        return {mode: {"tasks_per_s": median_of(runs_, "tasks_per_s"), "runs": runs_} for mode, runs_ in found.items()}

    joins = runs(measure_join)
    results["join"] = {key: median_of(joins, key) for key in joins[0]} | {"runs": joins}
    print("join", {key: value for key, value in results["join"].items() if key != "runs"}, flush=True)
    results["throughput"] = interleaved(measure_throughput, ("one allocation, 3 workers",
                                                             "two allocations, 3 + 3 workers",
                                                             "one allocation, 6 workers"))
    results["polling"] = interleaved(lambda work, mode: measure_polling(work, mode == "with --run-dir"),
                                     ("without --run-dir", "with --run-dir"))
    for section in ("throughput", "polling"):
        for mode, found in results[section].items():
            print(mode, round(found["tasks_per_s"]), flush=True)
    resumes = runs(measure_resume)
    results["resume"] = {"resume_s": statistics.median(r["resume_s"] for r in resumes if r["resume_s"] is not None),
                         "runs": resumes}
    print("resume", results["resume"]["resume_s"], flush=True)
    results["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
