"""The circuit grid of the planner benchmark (``benchmarks/planner.py``): families and observables.

Every circuit is rebuilt from a small JSON-able spec ``{"family", "qubits", "depth",
"observables", "seed"}`` (:func:`build`), so the measuring MPI driver, the planner and the
rescoring all see the same circuit without shipping circuits around.

Families (all bound, no measurements):

- ``hea``: hardware-efficient ansatz, qiskit ``efficient_su2(n, entanglement="linear",
  reps=depth)`` with random angles (the Pilot-Quantum / Q-Dreamer circuit);
- ``qaoa``: QAOA-style ring: H on every qubit, then ``depth`` layers of RZZ(gamma) on the
  ring edges (i, i+1 mod n) and RX(beta) on every qubit;
- ``brick``: random brickwork: ``depth`` layers of random RZ-RY-RZ on every qubit followed
  by CX on the pairs (0,1),(2,3),... on even layers and (1,2),(3,4),... on odd layers;
- ``longrange``: a linear CX chain with random RY per layer (``depth`` layers) plus three
  long-range CZ gates in all, between qubits about n/2 apart, placed after random layers (few,
  but each crosses any balanced cut).

Observable sets (one SparsePauliOp per circuit; ``coeffs`` real):

- ``zprod``: ``Z...Z`` (one term);
- ``zsum``: ``sum_i Z_i / n`` (n commuting terms, one measurement group);
- ``mixed``: ``Z_0 Z_1 + X_{n/2} + Y_{n-1} + Z_{n/4} X_{3n/4}`` (four terms, several groups).
"""
from __future__ import annotations

import numpy as np

FAMILIES = ("hea", "qaoa", "brick", "longrange")
OBSERVABLE_SETS = ("zprod", "zsum", "mixed")


def _check(family: str, n: int, depth: int) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown circuit family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not isinstance(n, int) or n < 4:
        raise ValueError(f"qubits must be an integer >= 4, got {n!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")


def circuit(family: str, n: int, depth: int, seed: int = 0):
    """The bound ``QuantumCircuit`` of one family (see the module docstring)."""
    from qiskit import QuantumCircuit

    _check(family, n, depth)
    rng = np.random.default_rng([seed, n, depth, FAMILIES.index(family)])
    if family == "hea":
        from qiskit.circuit.library import efficient_su2

        qc = efficient_su2(n, entanglement="linear", reps=depth)
        return qc.assign_parameters(rng.uniform(-np.pi, np.pi, qc.num_parameters))
    qc = QuantumCircuit(n)
    if family == "qaoa":
        qc.h(range(n))
        for _ in range(depth):
            gamma, beta = rng.uniform(0, np.pi, 2)
            for i in range(n):
                qc.rzz(gamma, i, (i + 1) % n)
            qc.rx(beta, range(n))
    elif family == "brick":
        for layer in range(depth):
            for q in range(n):
                a, b, c = rng.uniform(-np.pi, np.pi, 3)
                qc.rz(a, q)
                qc.ry(b, q)
                qc.rz(c, q)
            for q in range(layer % 2, n - 1, 2):
                qc.cx(q, q + 1)
    else:  # longrange
        half = n // 2
        long_gates = {}  # layer -> first qubits of its long-range gates
        for q, layer in zip(rng.choice(n - half, size=3, replace=False), rng.integers(0, depth, size=3)):
            long_gates.setdefault(int(layer), []).append(int(q))
        for layer in range(depth):
            for q in range(n):
                qc.ry(rng.uniform(-np.pi, np.pi), q)
            for q in range(n - 1):
                qc.cx(q, q + 1)
            for q in long_gates.get(layer, []):
                qc.cz(q, q + half)
    return qc


def observable(kind: str, n: int):
    """The ``SparsePauliOp`` of one observable set on ``n`` qubits (qubit 0 is the rightmost letter)."""
    from qiskit.quantum_info import SparsePauliOp

    if kind == "zprod":
        return SparsePauliOp("Z" * n)
    if kind == "zsum":
        return SparsePauliOp.from_sparse_list([("Z", [i], 1.0 / n) for i in range(n)], num_qubits=n)
    if kind == "mixed":
        terms = [("ZZ", [0, 1], 1.0), ("X", [n // 2], 0.5), ("Y", [n - 1], 0.5),
                 ("ZX", [n // 4, (3 * n) // 4], 0.25)]
        return SparsePauliOp.from_sparse_list(terms, num_qubits=n)
    raise ValueError(f"unknown observable set {kind!r}; choose one of {', '.join(OBSERVABLE_SETS)}")


def build(spec: dict):
    """``(circuit, observable)`` of a grid spec ``{"family", "qubits", "depth", "observables", "seed"}``."""
    n = int(spec["qubits"])
    return circuit(spec["family"], n, int(spec["depth"]), int(spec.get("seed", 0))), observable(spec["observables"], n)


def spec_id(spec: dict) -> str:
    """A short unique name, e.g. ``hea-n16-d2-zsum``."""
    return f"{spec['family']}-n{spec['qubits']}-d{spec['depth']}-{spec['observables']}"
