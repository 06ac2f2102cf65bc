"""Driver of Fig. 5: circuit cutting (2 and 4 cuts) vs full state-vector simulation of the same circuit.

    python benchmarks/figures/drivers/fig5_driver.py --plan --sequential --plans DIR --result seq.json ...
    mpiexec -n K+1 python -m pilotq_mpi benchmarks/figures/drivers/fig5_driver.py --plans DIR --result k.json ...

1. ``--plan``: builds each configuration's circuit (EfficientSU2, linear, ``reps`` = cuts, cut
   into two halves, so the boundary is crossed once per CX layer) and its cutting plan
   (``plan_cutting``), and pickles both into ``--plans`` so every run samples exactly the same
   subexperiments; planning and generation times are reported once, here.
2. ``--sequential`` (after ``--plan`` in the same process), without MPI launcher: the sequential
   baseline, one process, no pilot: the full state vector (``statevector_task`` on one process)
   and every subexperiment in one batch (``execute_plan`` on an in-process executor).
3. Under ``python -m pilotq_mpi`` with K workers: the full state vector as one task on the largest
   power of two <= K ranks (its own sub-communicator), and the cutting subexperiments as guided
   batches of single-rank tasks over the K workers (``execute_plan``).

Everything single-threaded per rank (Aer ``max_parallel_threads=1``; the caller sets
``OMP_NUM_THREADS=1``), so K workers use K cores.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from concurrent.futures import Future
from pathlib import Path

THREADS = 1


class InProcess:
    """An executor that runs each task at once in this process (the sequential baseline)."""

    num_workers = 1

    def submit(self, fn, *args, **kwargs):
        future: Future = Future()
        future.set_result(fn(None, *args, **kwargs))
        return future


def make_plans(configs: dict, plans: Path) -> dict:
    """Build and pickle each configuration's circuit, observable and cutting plan."""
    from pilotq_mpi.workflows.cutting import efficient_su2_problem, plan_cutting

    out = {}
    for name, cfg in configs.items():
        n = cfg["qubits"]
        circuit, observable = efficient_su2_problem(n, reps=cfg["cuts"], seed=cfg["seed"])
        labels = "A" * (n // 2) + "B" * (n - n // 2)
        num_samples = cfg.get("num_samples") or float("inf")
        plan = plan_cutting(circuit, observable, partition_labels=labels, seed=cfg["seed"], num_samples=num_samples)
        if plan.num_cuts != cfg["cuts"]:
            raise RuntimeError(f"{name}: expected {cfg['cuts']} cuts, the planner made {plan.num_cuts}")
        (plans / f"{name}.pkl").write_bytes(pickle.dumps(plan))
        out[name] = {"qubits": n, "cuts": plan.num_cuts, "subexperiments": plan.num_subexperiments,
                     "sampling_overhead": plan.sampling_overhead, "num_samples": cfg.get("num_samples"),
                     "subcircuit_widths": sorted(plan.subcircuit_widths.values()), "timings": plan.timings}
    return out


def warm_up(comm, seconds: float) -> int:
    """Task: import and exercise Aer and the state vector once, then hold the rank a moment so
    that every worker gets one."""
    from qiskit import QuantumCircuit

    from pilotq_mpi.statevector import statevector_task
    from pilotq_mpi.workflows.cutting import run_subexperiment_batch

    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    statevector_task(comm, qc.remove_final_measurements(inplace=False))
    qc.measure([0, 1], [0, 1])
    run_subexperiment_batch(comm, [qc], 10, 0, max_parallel_threads=THREADS)
    time.sleep(seconds)
    return os.getpid()


def run_configs(executor, configs: dict, plans: Path, sv_submit) -> dict:
    """Full state vector and cutting of every configuration on ``executor``."""
    from qiskit.quantum_info import SparsePauliOp

    from pilotq_mpi.workflows.cutting import execute_plan

    out = {}
    for name, cfg in configs.items():
        plan = pickle.loads((plans / f"{name}.pkl").read_bytes())
        start = time.perf_counter()
        sv = sv_submit(plan.circuit, [SparsePauliOp(p) for p in plan.observables])
        sv_seconds = time.perf_counter() - start
        res = execute_plan(executor, plan, shots=cfg["shots"], seed=cfg["seed"], standard_error=True, exact=False,
                           max_parallel_threads=THREADS,
                           batch_size=plan.num_subexperiments if isinstance(executor, InProcess) else None)
        out[name] = {
            "statevector": {"seconds": sv_seconds, "task_seconds": sv.timings["total"], "ranks": sv.ranks,
                            "value": float(sv.expectations[0])},
            "cutting": {"execute_s": res.timings["execute"], "reconstruct_s": res.timings["reconstruct"],
                        "task_seconds": res.task_seconds, "tasks": res.num_tasks, "batch_sizes": res.batch_sizes,
                        "workers_used": res.workers, "shots": res.shots, "estimate": res.estimates[0],
                        "standard_error": res.standard_errors[0]},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--plans", type=Path, required=True, help="folder of the pickled plans")
    parser.add_argument("--configs", required=True, help="JSON: {name: {qubits, cuts, shots, seed, num_samples}}")
    parser.add_argument("--plan", action="store_true", help="build and pickle the plans (first)")
    parser.add_argument("--sequential", action="store_true", help="the baseline: one process, no pilot")
    args = parser.parse_args()
    configs = json.loads(args.configs)

    result: dict = {}
    if args.plan:
        args.plans.mkdir(parents=True, exist_ok=True)
        result["plans"] = make_plans(configs, args.plans)
    if args.sequential:
        from pilotq_mpi.statevector import statevector_task

        warm_up(None, 0.0)
        result.update(workers=1, configs=run_configs(InProcess(), configs, args.plans,
                                                     lambda qc, obs: statevector_task(None, qc, obs)))
    elif not args.plan:
        from pilotq_mpi import Pilot
        from pilotq_mpi.statevector import statevector_task

        with Pilot() as pilot:
            workers = len(pilot.resources.ranks)
            sv_ranks = 1 << (workers.bit_length() - 1)  # the largest power of two <= workers
            pids = {f.result() for f in [pilot.submit(warm_up, 0.5) for _ in range(workers)]}
            configs_out = run_configs(pilot, configs, args.plans,
                                      lambda qc, obs: pilot.submit(statevector_task, qc, obs, ranks=sv_ranks).result())
        result.update(workers=workers, warmed_workers=len(pids), configs=configs_out)
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
