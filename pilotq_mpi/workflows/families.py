"""Parameterised circuit families shared by the benchmarks, the figures and the tests."""
from __future__ import annotations


def strongly_entangling_layers(num_qubits: int, layers: int):
    """PennyLane's StronglyEntanglingLayers in Qiskit, with a free parameter per angle.

    Per layer: Rot = RZ(w0) RY(w1) RZ(w2) on every qubit, then CNOT q -> (q + r) % n with
    r = layer % (n - 1) + 1. Parameter ``w[3*(layer*n + q) + j]`` is Rot angle ``j`` of qubit
    ``q`` in ``layer`` (bind values in ``circuit.parameters`` order).
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    if num_qubits < 2 or layers < 1:
        raise ValueError(f"StronglyEntanglingLayers needs >= 2 qubits and >= 1 layer, got {num_qubits}, {layers}")
    w = ParameterVector("w", 3 * num_qubits * layers)
    qc = QuantumCircuit(num_qubits)
    for layer in range(layers):
        for q in range(num_qubits):
            i = 3 * (layer * num_qubits + q)
            qc.rz(w[i], q)
            qc.ry(w[i + 1], q)
            qc.rz(w[i + 2], q)
        r = layer % (num_qubits - 1) + 1
        for q in range(num_qubits):
            qc.cx(q, (q + r) % num_qubits)
    return qc
