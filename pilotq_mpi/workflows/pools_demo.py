"""Two pilots serving one workload (the seed's "CPU pilot + GPU pilot"), joined into one.

On a cluster: a CPU job runs this driver with ``--pool cpu`` and publishes itself; a GPU
job joins it with ``--pool gpu`` (see the README's "Elastic pilots and pools")::

    pilotq-mpi submit pools_demo.py --run-dir $SCRATCH/run --pool cpu --target perlmutter-cpu --time 01:00:00
    pilotq-mpi submit --join $SCRATCH/run --pool gpu --target perlmutter-gpu --nodes 1 --time 01:00:00

On a workstation, two launches::

    mpiexec -n 3 python -m pilotq_mpi --run-dir run --pool cpu pilotq_mpi/workflows/pools_demo.py &
    mpiexec -n 3 python -m pilotq_mpi --join run --pool gpu

The circuit-cutting subexperiments run on the GPU pool only (they wait there until it
joins); calls to a (fake) QPU and the exact reference run on the CPU pool; the driver
(rank 0, in the CPU allocation) reconstructs the cut estimate.
"""
from __future__ import annotations

import argparse

from pilotq_mpi import QPU, Pilot
from pilotq_mpi.statevector import statevector_task
from pilotq_mpi.workflows.cutting import efficient_su2_problem, run_cutting
from pilotq_mpi.workflows.demo import parity_expectation
from pilotq_mpi.workflows.qpu import sample_on_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qubits", type=int, default=10, help="cutting circuit width (cut in two halves)")
    parser.add_argument("--shots", type=int, default=1000, help="shots per subexperiment")
    parser.add_argument("--cpu-pool", default="cpu")
    parser.add_argument("--gpu-pool", default="gpu")
    args = parser.parse_args()
    fake_qpu = QPU("fake_manila", factory="pilotq_mpi.workflows.qpu:fake_backend",
                   options={"name": "fake_manila", "latency_s": 0.2, "seed": 7})
    circuit, observable = efficient_su2_problem(args.qubits, observable="z_product")
    with Pilot(qpus=[fake_qpu], pools=[args.gpu_pool]) as pilot:
        reference = pilot.submit(statevector_task, circuit, [observable], pool=args.cpu_pool, name="reference")
        qpu_circuit, _ = efficient_su2_problem(4, reps=1, seed=3)
        qpu_calls = [pilot.submit(sample_on_backend, [qpu_circuit.measure_all(inplace=False)], 1000, seed=i,
                                  qpu="fake_manila", name="qpu") for i in range(2)]
        cutting = run_cutting(pilot.pool(args.gpu_pool), circuit, observable,
                              qubits_per_subcircuit=args.qubits // 2, shots=args.shots)
        exact = reference.result().expectations[0]
        qpu_values = [parity_expectation(f.result()[0]) for f in qpu_calls]
    print(f"cutting on pool {args.gpu_pool}: {cutting.estimates[0]:.4f} ± {cutting.standard_errors[0]:.4f}"
          f" ({cutting.num_subexperiments} subexperiments in {cutting.num_tasks} tasks)")
    print(f"exact on pool {args.cpu_pool}: {exact:.4f}")
    print(f"fake QPU on pool {args.cpu_pool}: {sum(qpu_values) / len(qpu_values):.4f} (noisy)")


if __name__ == "__main__":
    main()
