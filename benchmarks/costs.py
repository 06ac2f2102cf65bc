"""Costs a pilotq-mpi user feels: idle worker CPU, memory per rank, start-up to the first result.

    python benchmarks/costs.py            # idle 10 s at 8 ranks; start-up at 8 and 32 ranks, median of 3
    python benchmarks/costs.py --quick    # idle 5 s; start-up at 8 ranks, one run

Each measurement is a fresh ``mpiexec -n R python -m pilotq_mpi benchmarks/costs.py --inner ...``:

* ``idle``: after 200 no-op tasks (every worker has run some), the driver waits ``--idle`` seconds
  with no task; the CPU time (``/proc/<pid>/stat`` utime + stime) that each process of the run
  used in that window, divided by the window, is its idle CPU%. Target: ~1% or less per worker.
* ``memory``: PSS (``/proc/<pid>/smaps_rollup``) of every process of the same run after the idle
  window, and the modules a worker has loaded (``sys.modules``), checked for heavy packages that a
  worker does not need unless a task imports them.
* ``startup``: from starting ``mpiexec`` to the first no-op result (target < 1 s at 8 ranks), each
  beside the start-up of plain MPI on the same ranks (``mpiexec -n R python -c`` importing mpi4py,
  one barrier): what the pilot adds to the launch itself.

Results: ``results/costs.json`` (with the load average: the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from bytecode import compile_package  # noqa: E402

#: packages a worker should not load unless a task needs them
HEAVY = ("numpy", "scipy", "qiskit", "qiskit_aer", "matplotlib", "rich", "jax", "pennylane", "cupy")


def heavy_modules(modules: list[str]) -> list[str]:
    """The top-level packages of ``HEAVY`` present in ``modules``."""
    tops = {m.split(".")[0] for m in modules}
    return [h for h in HEAVY if h in tops]


def role(command: str, own_pid: int, pid: int) -> str:
    """'master (rank 0)', 'worker', 'mpiexec' or 'hydra proxy' for a process of the run."""
    if pid == own_pid:
        return "master (rank 0)"
    if "hydra_pmi_proxy" in command:
        return "hydra proxy"
    if command.startswith("mpiexec"):
        return "mpiexec"
    return "worker" if "pilotq_mpi" in command else "other"


# --------------------------------------------------------------------------- inside the MPI job (rank 0)
def inner(kind: str, launched_at: float, orchestrator: int, idle_s: float) -> dict:
    import peers_procs
    import peers_tasks
    from pilotq_mpi import Pilot

    with Pilot() as pilot:
        pilot.submit(peers_tasks.noop_comm, 0).result()
        out: dict = {"startup_s": time.time() - launched_at}
        if kind == "idle":
            assert sum(pilot.map(peers_tasks.noop_comm, range(200))) == 199 * 200 // 2
            tree = peers_procs.session_tree(peers_procs.run_root(orchestrator))
            time.sleep(0.5)  # the back-off reaches its longest sleep
            before = {pid: peers_procs.cpu_seconds(pid) for pid in tree}
            t0 = time.perf_counter()
            time.sleep(idle_s)
            window = time.perf_counter() - t0
            after = {pid: peers_procs.cpu_seconds(pid) for pid in tree}
            procs = []
            for pid in tree:
                if before[pid] is None or after[pid] is None:
                    continue
                command = peers_procs.command(pid)
                procs.append({"pid": pid, "role": role(command, os.getpid(), pid),
                              "cpu_percent": 100 * (after[pid] - before[pid]) / window,
                              "pss_mib": peers_procs.pss_mib(pid)})
            modules = pilot.submit(peers_tasks.loaded_modules).result()
            out.update(window_s=window, processes=procs, worker_modules=len(modules),
                       worker_heavy_modules=heavy_modules(modules),
                       worker_top_level=sorted({m.split(".")[0] for m in modules if not m.startswith("_")}))
    return out


def launch(kind: str, ranks: int, idle_s: float, timeout: float = 300) -> dict:
    """One MPI job; its process tree is killed afterwards whatever happened."""
    import peers_procs

    argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "pilotq_mpi", str(Path(__file__).resolve()),
            "--inner", kind, "--idle", str(idle_s), "--orchestrator", str(os.getpid())]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off",
               PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    load = os.getloadavg()[0]
    launched = time.time()
    proc = subprocess.Popen(argv + ["--launched-at", repr(launched)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        peers_procs.kill_tree(proc.pid)
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout} s") from None
    finally:
        peers_procs.kill_tree(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(ranks=ranks, load_before=load, load_after=os.getloadavg()[0])
    return result


def mpi_baseline(ranks: int, timeout: float = 120) -> float:
    """Seconds from starting ``mpiexec -n ranks python`` to rank 0 past a barrier with mpi4py loaded (no pilot)."""
    import peers_procs

    code = ("import time; from mpi4py import MPI; MPI.COMM_WORLD.Barrier()\n"
            "if MPI.COMM_WORLD.Get_rank() == 0: print(repr(time.time()))")
    launched = time.time()
    proc = subprocess.Popen([str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-c", code],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        peers_procs.kill_tree(proc.pid)
    return float(stdout.split()[-1]) - launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", choices=("idle", "startup"), help=argparse.SUPPRESS)
    parser.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--orchestrator", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--idle-ranks", type=int, default=8)
    parser.add_argument("--startup-ranks", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="idle 5 s, start-up at 8 ranks once")
    parser.add_argument("--out", default=str(HERE / "results" / "costs.json"))
    args = parser.parse_args()
    if not args.inner:
        compile_package()  # start-up as an installed package runs (see bytecode.py)
    if args.inner:
        print(json.dumps(inner(args.inner, args.launched_at, args.orchestrator, args.idle)))
        return
    if args.quick:
        args.idle, args.startup_ranks, args.repeats = 5.0, [8], 1
    started = time.time()
    idle = launch("idle", args.idle_ranks, args.idle)
    workers = [p for p in idle["processes"] if p["role"] == "worker"]
    print(f"idle {args.idle:g} s at {args.idle_ranks} ranks: worker CPU% "
          + " ".join(f"{p['cpu_percent']:.1f}" for p in workers)
          + f"; master {next(p['cpu_percent'] for p in idle['processes'] if p['role'] == 'master (rank 0)'):.1f}%"
          + f"; worker PSS {statistics.median(p['pss_mib'] for p in workers):.1f} MiB; heavy modules on a worker:"
          f" {idle['worker_heavy_modules'] or 'none'}", flush=True)
    startup: dict[int, list[float]] = {r: [] for r in args.startup_ranks}
    baseline: dict[int, list[float]] = {r: [] for r in args.startup_ranks}
    runs = []
    for _ in range(args.repeats):  # interleaved rank counts, each beside plain MPI start-up of the same ranks
        for ranks in args.startup_ranks:
            run = launch("startup", ranks, args.idle)
            run["mpi_baseline_s"] = mpi_baseline(ranks)
            startup[ranks].append(run["startup_s"])
            baseline[ranks].append(run["mpi_baseline_s"])
            runs.append(run)
            print(f"start-up {ranks} ranks: {run['startup_s']:.2f} s (plain mpiexec + mpi4py + barrier"
                  f" {run['mpi_baseline_s']:.2f} s; load {run['load_before']:.1f})", flush=True)
    data = {"benchmark": "costs", "command": "python benchmarks/costs.py" + (" --quick" if args.quick else ""),
            "idle": idle, "idle_ranks": args.idle_ranks, "idle_s": args.idle,
            "startup": [{"ranks": r, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v),
                         "runs": len(v), "mpi_baseline_median_s": statistics.median(baseline[r])}
                        for r, v in startup.items()],
            "startup_runs": runs, "commit": __import__("peers").commit(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_s": time.time() - started}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
