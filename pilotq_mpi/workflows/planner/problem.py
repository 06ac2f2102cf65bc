"""The problem a plan is made for: a bound circuit and the observables to estimate.

:func:`make_problem` checks the input once (clear errors for observables of the wrong width,
unbound parameters, non-circuits), strips final measurements, finds mid-circuit ones (which
no strategy here can take; :class:`Problem.mid_measurements` says where), and collects the
distinct Pauli terms of all observables: every strategy estimates those terms, and each
observable's value is ``sum coeff * term`` (:meth:`Problem.combine`).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import PilotError


class PlanningError(PilotError, ValueError):
    """The problem cannot be planned or run as asked; the message names the failed constraint
    and what would satisfy it. ``plan`` holds the plan when one was made (every strategy
    infeasible)."""

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


@dataclass
class Problem:
    """A checked circuit with its observables (see the module docstring)."""

    circuit: object
    """The circuit without final measurements (a ``QuantumCircuit``)."""
    observables: list
    """One ``SparsePauliOp`` per observable asked for."""
    terms: object
    """``PauliList`` of the distinct Pauli terms of all observables."""
    weights: np.ndarray
    """``weights[k, t]``: real coefficient of term ``t`` in observable ``k``."""
    mid_measurements: list = field(default_factory=list)
    """``(instruction index, qubits)`` of measurements followed by gates on the same qubits."""
    gates: int = 0
    two_qubit_gates: int = 0
    depth: int = 0
    digest: str = ""
    timings: dict = field(default_factory=dict)

    @property
    def num_qubits(self) -> int:
        return self.circuit.num_qubits

    @property
    def x_groups(self) -> int:
        """Distinct X parts of the terms (the state vector sweeps the amplitudes once per group)."""
        return len({tuple(np.asarray(p.x, dtype=bool).tolist()) for p in self.terms})

    def combine(self, term_values, term_errors=None) -> tuple[list[float], list[float]]:
        """Observable values (and standard errors, upper bound ``sum |coeff| * se``) from term values."""
        vals = self.weights @ np.asarray(term_values, dtype=float)
        if term_errors is None:
            errs = np.zeros(len(self.observables))
        else:
            errs = np.abs(self.weights) @ np.asarray(term_errors, dtype=float)
        return [float(v) for v in vals], [float(e) for e in errs]

    def abs_weight(self) -> float:
        """Largest ``sum_t |coeff|`` over observables (scales a term-wise standard error)."""
        return float(np.abs(self.weights).sum(axis=1).max()) if len(self.observables) else 1.0


def _as_ops(observables, n: int) -> list:
    from qiskit.quantum_info import Pauli, PauliList, SparsePauliOp

    if isinstance(observables, (str, Pauli, SparsePauliOp)):
        items = [observables]
    elif isinstance(observables, PauliList):
        items = list(observables)
    elif isinstance(observables, (list, tuple)) and observables:
        items = list(observables)
    else:
        raise TypeError("observables must be a Pauli string, Pauli, SparsePauliOp, PauliList or a non-empty list of"
                        f" them; got {type(observables).__name__}")
    ops = []
    for i, item in enumerate(items):
        try:
            op = item if isinstance(item, SparsePauliOp) else SparsePauliOp(item)
        except Exception as exc:  # noqa: BLE001 - qiskit says what is wrong with the label
            raise PlanningError(f"observable {i} ({item!r:.60}) is not a Pauli operator: {exc}") from None
        if op.num_qubits != n:
            raise PlanningError(
                f"observable {i} acts on {op.num_qubits} qubits but the circuit has {n}: give Pauli strings of"
                f" length {n} (qubit 0 rightmost), e.g. {'Z' + 'I' * (n - 1)!r}")
        if np.any(np.abs(np.asarray(op.coeffs).imag) > 1e-12):
            raise PlanningError(f"observable {i} has complex coefficients; give a Hermitian operator (real coefficients)")
        ops.append(op)
    return ops


def make_problem(circuit, observables) -> Problem:
    """Check ``circuit`` and ``observables`` and build the :class:`Problem` (see the module docstring)."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import PauliList

    t0 = time.perf_counter()
    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"circuit must be a qiskit QuantumCircuit, got {type(circuit).__name__}")
    if circuit.parameters:
        names = sorted(p.name for p in circuit.parameters)
        raise PlanningError(f"circuit has {len(names)} unbound parameters ({', '.join(names[:5])}"
                            f"{', ...' if len(names) > 5 else ''}); bind them with circuit.assign_parameters(values)")
    n = circuit.num_qubits
    if n < 2:
        raise PlanningError(f"circuit has {n} qubit(s); the planner needs at least 2")
    mids = mid_circuit_measurements(circuit)
    bare = circuit.remove_final_measurements(inplace=False) if not mids else circuit
    ops = _as_ops(observables, n)
    index: dict[str, int] = {}
    labels: list[str] = []
    for op in ops:
        for label in op.paulis.to_labels():
            key = label.lstrip("-i")
            if key not in index:
                index[key] = len(labels)
                labels.append(key)
    weights = np.zeros((len(ops), len(labels)))
    for k, op in enumerate(ops):
        for pauli, coeff in zip(op.paulis, op.coeffs):
            sign = (-1j) ** int(pauli.phase)
            label = pauli.to_labels()[0] if hasattr(pauli, "to_labels") else pauli.to_label()
            key = label.lstrip("-i")
            weights[k, index[key]] += float((coeff * sign).real)
    ops_count = bare.count_ops()
    gates = sum(v for k, v in ops_count.items() if k not in ("barrier", "measure", "delay"))
    two = sum(1 for inst in bare.data if inst.operation.num_qubits >= 2 and inst.operation.name != "barrier")
    digest = _digest(bare, labels)
    return Problem(circuit=bare, observables=ops, terms=PauliList(labels), weights=weights, mid_measurements=mids,
                   gates=int(gates), two_qubit_gates=int(two), depth=int(bare.depth()), digest=digest,
                   timings={"check": time.perf_counter() - t0})


def mid_circuit_measurements(circuit) -> list[tuple[int, tuple[int, ...]]]:
    """``(instruction index, qubits)`` of each measurement or reset that a later operation depends on."""
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    pending: dict[int, int] = {}
    found: list[tuple[int, tuple[int, ...]]] = []
    for pos, inst in enumerate(circuit.data):
        name = inst.operation.name
        qubits = tuple(index[q] for q in inst.qubits)
        if name == "barrier":
            continue
        if name in ("measure", "reset"):
            for q in qubits:
                pending.setdefault(q, pos)
            if name == "reset":
                found.append((pos, qubits))
            continue
        hit = sorted({pending[q] for q in qubits if q in pending})
        for where in hit:
            found.append((where, tuple(q for q, p in pending.items() if p == where)))
            for q in [q for q, p in pending.items() if p == where]:
                del pending[q]
        if getattr(inst.operation, "condition", None) is not None or getattr(inst.operation, "_condition", None):
            found.append((pos, qubits))
    return sorted(set(found))


def _digest(circuit, labels) -> str:
    from qiskit import qpy
    import io

    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    h = hashlib.sha256(buf.getvalue())
    h.update("|".join(labels).encode())
    return h.hexdigest()[:16]
