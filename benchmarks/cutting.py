"""Circuit-cutting study (after Pilot-Quantum), scaled to this machine.

    python benchmarks/cutting.py            # 2 cuts: 16 qubits -> 8+8, 4 cuts: 12 -> 4+4+4; 1..2 workers
    python benchmarks/cutting.py --quick    # smaller shots, 1..2 workers
    python benchmarks/cutting.py --workers 1 2 4 --shots2 10000 --shots4 1000

EfficientSU2 (linear entanglement, reps=2) is cut at fixed partition boundaries; each
boundary is crossed twice, so 2 partitions give 2 CX cuts (72 subexperiments) and 3
partitions give 4 cuts (3,888 subexperiments). For each configuration:

* sequential: one process, no pilot, no MPI: all subexperiments in one batch
  (``run_subexperiment_batch`` called directly);
* pilot: ``mpiexec -n k+1 python -m pilotq_mpi benchmarks/cutting.py --inner ...`` for
  each k in ``--workers``; the driver (rank 0) plans, warms the workers up (imports
  qiskit/Aer: a few seconds, paid once per pilot), then runs ``execute_plan`` with
  about 4 batches per worker.

Reported per run: execute time (submit to last result), speedup = sequential / pilot,
parallel efficiency = speedup / k, and per-task pilot overhead =
(k * execute - sum of task compute seconds) / tasks, which lumps dispatch, result
transfer and load imbalance. Plan/generate/reconstruct run on the driver and are
reported apart. Results: ``benchmarks/results/cutting.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
if str(HERE.parent) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(HERE.parent))

#: Aer threads per task. One per rank, so that k workers use k cores and the sequential
#: baseline one core (Aer's default, all cores per process, oversubscribes the node).
THREADS = 1

CONFIGS = {
    # name: (qubits, partition labels)
    "2cuts": (16, "A" * 8 + "B" * 8),
    "4cuts": (12, "A" * 4 + "B" * 4 + "C" * 4),
}


def make_plan(config: str, seed: int):
    """The circuit, observable and cutting plan of one configuration."""
    from pilotq_mpi.workflows.cutting import efficient_su2_problem, plan_cutting

    qubits, labels = CONFIGS[config]
    circuit, observable = efficient_su2_problem(qubits, seed=seed)
    return plan_cutting(circuit, observable, partition_labels=labels, seed=seed)


def warm_up(comm, seconds: float) -> int:
    """Pilot task: import and exercise qiskit + Aer once, then hold the rank a moment
    so that each worker gets one warm-up task."""
    from qiskit import QuantumCircuit

    from pilotq_mpi.workflows.cutting import run_subexperiment_batch

    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    run_subexperiment_batch(comm, [qc], 10, 0)
    time.sleep(seconds)
    return os.getpid()


def summary(result) -> dict:
    """The JSON-able part of a CuttingResult."""
    return {
        "estimate": result.estimates[0],
        "exact": result.exact[0] if result.exact else None,
        "num_cuts": result.num_cuts,
        "num_subexperiments": result.num_subexperiments,
        "sampling_overhead": result.sampling_overhead,
        "num_tasks": result.num_tasks,
        "batch_size": result.batch_size,
        "shots": result.shots,
        "timings": result.timings,
        "task_seconds": result.task_seconds,
        "workers_used": result.workers,
    }


class _InProcess:
    """Runs a task at once in this process (the sequential baseline)."""

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(None, *args))
        return future


def sequential(config: str, shots: int, seed: int) -> dict:
    """One process, no pilot: every subexperiment in a single batch."""
    from pilotq_mpi.workflows.cutting import execute_plan

    plan = make_plan(config, seed)
    warm_up(None, 0.0)
    result = execute_plan(_InProcess(), plan, shots=shots, batch_size=plan.num_subexperiments,
                          seed=seed, standard_error=False, max_parallel_threads=THREADS)
    return summary(result)


def inner(config: str, shots: int, seed: int, workers: int) -> dict:
    """Driver of the MPI job (rank 0 under ``python -m pilotq_mpi``)."""
    from pilotq_mpi import Pilot
    from pilotq_mpi.workflows.cutting import execute_plan

    plan = make_plan(config, seed)
    with Pilot() as pilot:
        pids = {f.result() for f in [pilot.submit(warm_up, 1.0) for _ in range(workers)]}
        result = execute_plan(pilot, plan, shots=shots, seed=seed, standard_error=False,
                              max_parallel_threads=THREADS)
    row = summary(result)
    row["warmed_workers"] = len(pids)
    return row


def launch(config: str, shots: int, seed: int, workers: int) -> dict:
    """Start one pilot with ``workers`` worker ranks and return the driver's summary."""
    argv = [str(BIN / "mpiexec"), "-n", str(workers + 1), sys.executable, "-m", "pilotq_mpi",
            str(Path(__file__).resolve()), "--inner", config, "--shots", str(shots),
            "--seed", str(seed), "--workers", str(workers)]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=env, check=False,
                         cwd=HERE.parent)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--shots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker ranks per pilot run (the job has one more rank)")
    parser.add_argument("--shots2", type=int, default=10000, help="shots per subexperiment, 2 cuts")
    parser.add_argument("--shots4", type=int, default=500, help="shots per subexperiment, 4 cuts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 cuts 2,000 shots, 4 cuts 100 shots")
    parser.add_argument("--out", default=str(HERE / "results" / "cutting.json"))
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.shots, args.seed, args.workers[0])))
        return
    if args.quick:
        args.shots2, args.shots4 = 2000, 100
    if min(args.workers) < 1:
        parser.error(f"--workers must all be >= 1, got {args.workers}")
    shots_of = {"2cuts": args.shots2, "4cuts": args.shots4}
    rows = []
    for config in args.configs:
        shots = shots_of[config]
        base = sequential(config, shots, args.seed)
        seq_s = base["timings"]["execute"]
        print(f"{config}: {base['num_subexperiments']} subexperiments x {shots} shots; "
              f"sequential execute {seq_s:.2f}s (plan {base['timings']['plan']:.2f}s, generate "
              f"{base['timings']['generate']:.2f}s, reconstruct {base['timings']['reconstruct']:.2f}s); "
              f"estimate {base['estimate']:.4f} exact {base['exact']:.4f}", flush=True)
        runs = []
        for k in args.workers:
            run = launch(config, shots, args.seed, k)
            ex = run["timings"]["execute"]
            run["workers"] = k
            run["speedup"] = seq_s / ex
            run["efficiency"] = run["speedup"] / k
            run["overhead_per_task_s"] = (k * ex - run["task_seconds"]) / run["num_tasks"]
            runs.append(run)
            print(f"  pilot k={k}: execute {ex:.2f}s, {run['num_tasks']} tasks of {run['batch_size']}, "
                  f"speedup {run['speedup']:.2f}, efficiency {run['efficiency']:.2f}, "
                  f"overhead/task {run['overhead_per_task_s'] * 1e3:.1f} ms, estimate {run['estimate']:.4f}",
                  flush=True)
        rows.append({"config": config, "qubits": CONFIGS[config][0], "partition_labels": CONFIGS[config][1],
                     "sequential": base, "pilot": runs})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "cutting",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "python " + " ".join([Path(__file__).relative_to(HERE.parent).as_posix(), *sys.argv[1:]]),
        "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
