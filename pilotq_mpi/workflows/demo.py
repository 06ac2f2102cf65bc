"""The main job: the three Pilot-Quantum motifs side by side in one pilot.

    pilotq-mpi demo                      # 8 ranks on local mpiexec (1 master + 7 workers)
    mpiexec -n 8 python -m pilotq_mpi pilotq_mpi/workflows/demo.py [--quick]
    srun -n 16 python -m pilotq_mpi pilotq_mpi/workflows/demo.py   # the same program on a cluster

At the same time: one distributed state-vector task on 4 ranks (its own sub-communicator),
a circuit-cutting ensemble of the same circuit family streaming through the other workers,
and calls to a fake IBM backend (with emulated queue latency) on a pinned worker. Prints
each motif's result next to the exact value.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pilotq_mpi import QPU, Pilot
from pilotq_mpi.statevector import memory_per_rank, statevector_task
from pilotq_mpi.workflows.cutting import efficient_su2_problem, run_cutting
from pilotq_mpi.workflows.qpu import sample_on_backend
from pilotq_mpi.workflows.utilization import queue_utilization_line


def parity_expectation(counts: dict[str, int]) -> float:
    """<Z...Z> from measured counts: the mean of (-1)^(number of ones)."""
    shots = sum(counts.values())
    return sum((-1) ** bits.count("1") * n for bits, n in counts.items()) / shots


def exact_expectation(circuit, observable) -> float:
    from qiskit.quantum_info import Statevector

    return float(np.real(Statevector(circuit).expectation_value(observable)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qubits", type=int, default=12, help="cutting circuit width (cut in two halves)")
    parser.add_argument("--sv-qubits", type=int, default=20, help="state-vector circuit width (4 ranks)")
    parser.add_argument("--shots", type=int, default=2000, help="shots per cutting subexperiment")
    parser.add_argument("--qpu-calls", type=int, default=4, help="calls to the fake QPU")
    parser.add_argument("--qpu-latency", type=float, default=1.0, help="emulated queue+network seconds per call")
    parser.add_argument("--quick", action="store_true", help="a smaller problem (tests)")
    args = parser.parse_args()
    if args.quick:
        args.qubits, args.sv_qubits, args.shots, args.qpu_calls, args.qpu_latency = 10, 16, 1000, 2, 0.3
    return args


def main() -> None:
    args = parse_args()
    fake_qpu = QPU("fake_manila", factory="pilotq_mpi.workflows.qpu:fake_backend",
                   options={"name": "fake_manila", "latency_s": args.qpu_latency, "seed": 7},
                   ranks=1, concurrency=2)
    started = time.perf_counter()
    with Pilot(qpus=[fake_qpu]) as pilot:
        # 1. tightly coupled: a distributed state vector on its own 4-rank sub-communicator
        sv_circuit, sv_observable = efficient_su2_problem(args.sv_qubits, observable="z_sum")
        statevector = pilot.submit(statevector_task, sv_circuit, [sv_observable], ranks=4, name="statevector",
                                   memory_per_rank=memory_per_rank(args.sv_qubits, 4))
        # 3. QPU calls, routed to the worker pinned to the fake backend
        qpu_circuit, qpu_observable = efficient_su2_problem(4, reps=1, seed=3)
        measured = qpu_circuit.measure_all(inplace=False)
        qpu_calls = [pilot.submit(sample_on_backend, [measured], 2000, seed=i, qpu="fake_manila", name="qpu")
                     for i in range(args.qpu_calls)]
        # 2. loosely coupled: the cutting ensemble streams through the remaining workers meanwhile
        cut_circuit, cut_observable = efficient_su2_problem(args.qubits, observable="z_product")
        cutting = run_cutting(pilot, cut_circuit, cut_observable, qubits_per_subcircuit=args.qubits // 2,
                              shots=args.shots)
        sv = statevector.result()
        qpu_values = [parity_expectation(f.result()[0]) for f in qpu_calls]
    wall = time.perf_counter() - started

    sv_exact = exact_expectation(sv_circuit, sv_observable)
    qpu_exact = exact_expectation(qpu_circuit, qpu_observable[0])
    rows = [
        ("state vector", f"{args.sv_qubits} qubits on 4 ranks", sv.expectations[0], sv_exact, "1 task",
         f"|diff| {abs(sv.expectations[0] - sv_exact):.1e}"),
        ("circuit cutting", f"{args.qubits} qubits, {cutting.num_cuts} cuts, {cutting.num_subexperiments} subexp.",
         cutting.estimates[0], cutting.exact[0], f"{cutting.num_tasks} tasks",
         f"± {cutting.standard_errors[0]:.4f} (1 sigma)"),
        ("QPU (fake_manila)", f"4 qubits, noisy, {args.qpu_latency:g}s latency", float(np.mean(qpu_values)),
         qpu_exact, f"{len(qpu_values)} calls", "device noise"),
    ]
    print(f"\npilotq-mpi demo: {len(pilot.resources.ranks)} workers "
          f"({len(pilot.resources.qpu_ranks('fake_manila'))} pinned to the QPU), driver time {wall:.1f} s"
          " (from Pilot() to the last result)\n")
    print(f"{'motif':<18} {'problem':<38} {'result':>9} {'exact':>9}  {'tasks':<10} note")
    for motif, problem, value, exact, tasks, note in rows:
        print(f"{motif:<18} {problem:<38} {value:>9.4f} {exact:>9.4f}  {tasks:<10} {note}")
    print("\ncutting phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in cutting.timings.items()))
    print(f"cutting batches: {cutting.num_tasks}, sizes {cutting.batch_sizes[0]} down to {cutting.batch_sizes[-1]}")
    line = queue_utilization_line(os.environ["PILOTQ_TRACE"]) if os.environ.get("PILOTQ_TRACE") else None
    if line:  # how busy the compute ranks were while work waited, and the tail (issue 8.2)
        print(line)


if __name__ == "__main__":
    main()
