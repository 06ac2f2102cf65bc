"""Pilot driver of Fig. 4: the distributed state vector with and without adjoint gradients.

    mpiexec -n 9 python -m pilotq_mpi benchmarks/figures/drivers/fig4_driver.py --result out.json \
        --strong-qubits 21 --weak-base 18 --ranks 1 2 4 8 --layers 2 --repeats 2

The circuit is PennyLane's StronglyEntanglingLayers built in Qiskit with ``Parameter``s (per
layer RZ RY RZ on every qubit, then CNOT q -> (q + r) mod n, r = layer mod (n - 1) + 1);
``3 * n * layers`` parameters, values drawn once from a fixed seed. The observable is Z on
qubit 0. Each point is one pilot task on ``k`` ranks (its own sub-communicator), submitted
after the previous one finished, so points never share the cores. Inside the task, between
barriers, the task times (wall clock, and CPU time summed over its ranks: MPICH spins while it
waits, so that includes waiting) ``repeats`` plain evaluations (``simulate`` with the observable) and
``repeats`` evaluations with ``gradient="adjoint"`` (the same plus the gradients), and returns
the times, the expectation value and the gradient (checked across rank counts by the figure).

Strong scaling: ``--strong-qubits`` on every rank count. Weak scaling: ``--weak-base + log2(k)``
qubits on ``k`` ranks (the same amplitudes per rank).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pilotq_mpi import Pilot
from pilotq_mpi.workflows.families import strongly_entangling_layers

SEED = 2024


def measure(comm, num_qubits: int, layers: int, repeats: int) -> dict:
    """Task: time plain and adjoint-gradient evaluations of the SEL circuit on ``comm``."""
    import numpy as np
    from qiskit.quantum_info import SparsePauliOp

    from pilotq_mpi.statevector import memory_per_rank, simulate

    qc = strongly_entangling_layers(num_qubits, layers)
    values = np.random.default_rng(SEED).uniform(0, 2 * np.pi, qc.num_parameters)
    obs = [SparsePauliOp("I" * (num_qubits - 1) + "Z")]
    out = {"qubits": num_qubits, "ranks": comm.Get_size(), "layers": layers, "parameters": qc.num_parameters}
    for mode in ("plain", "adjoint"):
        times, cpus, parts = [], [], []
        for _ in range(repeats):
            comm.Barrier()
            start, cpu = time.perf_counter(), time.process_time()
            res, sv = simulate(comm, qc, obs, parameter_values=values,
                               gradient="adjoint" if mode == "adjoint" else None)
            comm.Barrier()
            times.append(time.perf_counter() - start)
            cpus.append(comm.allreduce(time.process_time() - cpu))  # summed over the task's ranks
            del sv
            if res is not None:
                parts.append({k: v for k, v in res.timings.items() if isinstance(v, (int, float))})
        out[mode] = {"seconds": times, "cpu_seconds": cpus, "timings": parts}
        if res is not None:
            out["expectation"] = float(res.expectations[0])
            if mode == "adjoint":
                out["gradient"] = [float(g) for g in res.gradients[0]]
    out["memory_per_rank"] = {"plain": memory_per_rank(num_qubits, comm.Get_size()),
                              "adjoint": memory_per_rank(num_qubits, comm.Get_size(), gradient="adjoint")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--strong-qubits", type=int, required=True, help="qubits of the strong-scaling series")
    parser.add_argument("--weak-base", type=int, required=True, help="qubits on 1 rank in the weak-scaling series")
    parser.add_argument("--ranks", type=int, nargs="+", required=True, help="rank counts (powers of two)")
    parser.add_argument("--layers", type=int, default=2, help="StronglyEntanglingLayers layers")
    parser.add_argument("--repeats", type=int, default=1, help="timed evaluations per mode and point")
    args = parser.parse_args()

    from pilotq_mpi.statevector import memory_per_rank

    points = [("strong", args.strong_qubits, k) for k in args.ranks]
    points += [("weak", args.weak_base + k.bit_length() - 1, k) for k in args.ranks]
    with Pilot() as pilot:
        widest = max(args.ranks)
        pilot.submit(measure, max(2, widest.bit_length()), 1, 1, ranks=widest, name="warm-up").result()
        runs = []
        for series, n, k in points:
            started = time.perf_counter()
            future = pilot.submit(measure, n, args.layers, args.repeats, ranks=k, name=f"{series}-{n}q-{k}r",
                                  memory_per_rank=memory_per_rank(n, k, gradient="adjoint"))
            row = future.result()
            row.update(series=series, task_seconds=time.perf_counter() - started)
            runs.append(row)
            print(f"fig4 {series:6s} n={n:2d} ranks={k}: plain {min(row['plain']['seconds']):.3f} s, "
                  f"adjoint {min(row['adjoint']['seconds']):.3f} s", flush=True)
        workers = len(pilot.resources.ranks)
    args.result.write_text(json.dumps({"runs": runs, "workers": workers}))


if __name__ == "__main__":
    main()
