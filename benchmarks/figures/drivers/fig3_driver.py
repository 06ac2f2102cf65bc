"""Pilot driver of Fig. 3: one batch of random circuits on every backend, as pilot tasks.

    mpiexec -n 3 python -m pilotq_mpi benchmarks/figures/drivers/fig3_driver.py --result out.json \
        --qubits 2 4 6 --circuits 2 --qpu-max-qubits 4 --latency 0.5

Rank 1 runs the simulator tasks (Aer, our state vector, PennyLane lightning.qubit); the last
rank is pinned to a fake IBM device (``pilotq_mpi.workflows.qpu:fake_backend``: noisy Aer
simulation of the device behind an emulated queue/network latency). Every circuit is one task
per backend; each task times its own execution (the backend call, circuit building excluded)
and returns the parity <Z...Z>, so the simulators can be checked against each other. One
untimed warm-up task per backend first pays the imports (and the device's noise model).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pilotq_mpi import QPU, Pilot

QPU_NAME = "fake_guadalupe"  # 16 qubits: room for every circuit the fake QPU gets here
BACKENDS = ("aer", "pilotq_sv", "lightning")


def random_circuit_spec(num_qubits: int, depth: int, seed: int) -> list[tuple]:
    """A hardware-efficient random circuit as plain data: ``depth`` layers of RY and RZ on every
    qubit with random angles, each followed by a brick of CX on neighbours (alternating offset)."""
    import numpy as np

    rng = np.random.default_rng([num_qubits, depth, seed])
    spec: list[tuple] = []
    for layer in range(depth):
        for q in range(num_qubits):
            spec.append(("ry", (q,), float(rng.uniform(-np.pi, np.pi))))
            spec.append(("rz", (q,), float(rng.uniform(-np.pi, np.pi))))
        for q in range(layer % 2, num_qubits - 1, 2):
            spec.append(("cx", (q, q + 1), None))
    return spec


def qiskit_circuit(num_qubits: int, spec: list[tuple]):
    """The spec as a qiskit ``QuantumCircuit``."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(num_qubits)
    for name, qubits, angle in spec:
        getattr(qc, name)(*((angle,) if angle is not None else ()), *qubits)
    return qc


def parity(counts: dict[str, int]) -> float:
    """<Z...Z> from sampled counts."""
    total = sum(counts.values())
    return sum((-1) ** bits.count("1") * c for bits, c in counts.items()) / total


def simulate(comm, backend: str, num_qubits: int, spec: list[tuple]) -> dict:
    """Task: run the circuit on ``backend`` (one thread) and time the backend call alone."""
    if backend == "aer":
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_aer import AerSimulator

        qc = qiskit_circuit(num_qubits, spec)
        qc.save_expectation_value(SparsePauliOp("Z" * num_qubits), list(range(num_qubits)), label="parity")
        sim = AerSimulator(method="statevector", max_parallel_threads=1)
        start = time.perf_counter()
        value = float(sim.run(qc).result().data()["parity"])
    elif backend == "pilotq_sv":
        from qiskit.quantum_info import SparsePauliOp

        from pilotq_mpi.statevector import statevector_task

        qc = qiskit_circuit(num_qubits, spec)
        start = time.perf_counter()
        value = float(statevector_task(comm, qc, [SparsePauliOp("Z" * num_qubits)]).expectations[0])
    elif backend == "lightning":
        import pennylane as qml

        dev = qml.device("lightning.qubit", wires=num_qubits)

        @qml.qnode(dev)
        def circuit():
            for name, qubits, angle in spec:
                if name == "ry":
                    qml.RY(angle, wires=qubits[0])
                elif name == "rz":
                    qml.RZ(angle, wires=qubits[0])
                else:
                    qml.CNOT(wires=list(qubits))
            return qml.expval(qml.prod(*[qml.PauliZ(q) for q in range(num_qubits)]))

        start = time.perf_counter()
        value = float(circuit())
    else:
        raise ValueError(f"unknown backend {backend!r}; one of {BACKENDS}")
    return {"backend": backend, "qubits": num_qubits, "seconds": time.perf_counter() - start, "value": value}


def on_qpu(device, num_qubits: int, spec: list[tuple], shots: int, seed: int) -> dict:
    """QPU task: sample the circuit on the pinned fake device (transpile, latency, noisy run)."""
    from pilotq_mpi.workflows.qpu import sample_on_backend

    qc = qiskit_circuit(num_qubits, spec)
    qc.measure_all()
    start = time.perf_counter()
    counts = sample_on_backend(device, [qc], shots, seed=seed)[0]
    return {"backend": "fake_qpu", "qubits": num_qubits, "seconds": time.perf_counter() - start,
            "value": parity(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--qubits", type=int, nargs="+", required=True, help="circuit widths")
    parser.add_argument("--circuits", type=int, default=1, help="random circuits per width")
    parser.add_argument("--depth", type=int, default=10, help="layers per circuit")
    parser.add_argument("--qpu-max-qubits", type=int, default=8, help="widest circuit sent to the fake QPU")
    parser.add_argument("--latency", type=float, default=1.0, help="emulated queue+network seconds per QPU job")
    parser.add_argument("--shots", type=int, default=1000, help="shots per QPU job")
    args = parser.parse_args()

    qpu = QPU(QPU_NAME, factory="pilotq_mpi.workflows.qpu:fake_backend",
              options={"name": QPU_NAME, "latency_s": args.latency, "seed": 7}, ranks=1)
    with Pilot(qpus=[qpu]) as pilot:
        warm = random_circuit_spec(2, 1, 0)
        for future in [pilot.submit(simulate, b, 2, warm, name=f"warm-{b}") for b in BACKENDS] + \
                [pilot.submit(on_qpu, 2, warm, 10, 0, qpu=QPU_NAME, name="warm-qpu")]:
            future.result()
        started = time.perf_counter()
        futures = []  # (circuit index, future)
        for n in args.qubits:
            for c in range(args.circuits):
                spec = random_circuit_spec(n, args.depth, c)
                futures += [(c, pilot.submit(simulate, b, n, spec, name=b)) for b in BACKENDS]
                if n <= args.qpu_max_qubits:
                    futures.append((c, pilot.submit(on_qpu, n, spec, args.shots, c, qpu=QPU_NAME, name="fake_qpu")))
        runs = [dict(f.result(), circuit=c) for c, f in futures]
        batch_seconds = time.perf_counter() - started
        workers = len(pilot.resources.ranks)
    args.result.write_text(json.dumps({
        "runs": runs, "batch_seconds": batch_seconds, "tasks": len(futures), "workers": workers,
        "qpu": {"device": QPU_NAME, "latency_s": args.latency, "shots": args.shots,
                "max_qubits": args.qpu_max_qubits}}))


if __name__ == "__main__":
    main()
