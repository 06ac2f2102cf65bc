"""Gate lists built without Qiskit, for the GPU checks (the GPU machine has no Qiskit).

:func:`sel_gates` is the circuit of ``benchmarks/statevector.py``'s ``strongly_entangling``
(PennyLane's StronglyEntanglingLayers: RZ RY RZ on every qubit, then a ring of CNOTs
``i -> (i + r) mod n``, ``r = (layer mod (n - 1)) + 1``), gate for gate and with the same random
angles; :func:`random_gates` draws Haar-random unitaries on random qubit sets.
Matrices follow Qiskit's convention (bit ``j`` of an index is ``qubits[j]``), as
:class:`pilotq_mpi.statevector.Gate` expects.
"""
from __future__ import annotations

import numpy as np

from pilotq_mpi.statevector.circuit import Gate

PAULI = {
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.array([[1, 0], [0, -1]], dtype=np.complex128),
}
CX = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=np.complex128)
"""CNOT on ``qubits=(control, target)`` in Qiskit's order (the control is bit 0)."""


def rotation(axis: str, theta: float) -> np.ndarray:
    """``exp(-i theta P / 2)`` for ``P`` = X, Y or Z (Qiskit's RX/RY/RZ)."""
    return np.cos(theta / 2) * np.eye(2, dtype=np.complex128) - 1j * np.sin(theta / 2) * PAULI[axis]


def sel_gates(n: int, layers: int = 2, seed: int = 1, derivatives: bool = False) -> list[Gate]:
    """StronglyEntanglingLayers on ``n >= 2`` qubits as gates (angles as in ``strongly_entangling``).

    ``derivatives=True``: every rotation gets its own parameter column (in gate order) with
    ``M = U^dagger dU/dtheta = -i P / 2``, for :func:`pilotq_mpi.statevector.adjoint.adjoint_gradients`.
    """
    if n < 2:
        raise ValueError(f"sel_gates needs at least 2 qubits, got {n}")
    rng = np.random.default_rng(seed)
    gates: list[Gate] = []
    col = 0
    for layer in range(layers):
        for q in range(n):
            for axis, angle in zip("ZYZ", rng.uniform(0, 2 * np.pi, 3)):
                derivs = ((col, -0.5j * PAULI[axis]),) if derivatives else ()
                gates.append(Gate((q,), rotation(axis, angle), derivs))
                col += 1
        r = (layer % (n - 1)) + 1
        for q in range(n):
            gates.append(Gate((q, (q + r) % n), CX))
    return gates


def random_unitary(k: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random ``2**k x 2**k`` unitary (QR of a complex Gaussian matrix, phases fixed)."""
    d = 1 << k
    z = (rng.standard_normal((d, d)) + 1j * rng.standard_normal((d, d))) / np.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_gates(n: int, count: int, seed: int, max_qubits: int = 2) -> list[Gate]:
    """``count`` random unitaries on ``1..min(max_qubits, n)`` random distinct qubits each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        k = int(rng.integers(1, min(max_qubits, n) + 1))
        qubits = tuple(int(q) for q in rng.permutation(n)[:k])
        out.append(Gate(qubits, random_unitary(k, rng)))
    return out


def random_pauli_sum(n: int, terms: int, seed: int) -> list[tuple[str, float]]:
    """``terms`` random Pauli labels on ``n`` qubits with real coefficients (a Hermitian observable)."""
    rng = np.random.default_rng(seed)
    return [("".join(rng.choice(list("IXYZ"), n)), float(rng.uniform(-1, 1))) for _ in range(terms)]
