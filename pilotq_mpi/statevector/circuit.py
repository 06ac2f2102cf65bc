"""Qiskit circuit -> list of dense gates, and greedy gate fusion.

A :class:`Gate` is a dense unitary on a few qubits in Qiskit's convention: bit ``j``
of a matrix row/column index is the state of ``qubits[j]`` (``qubits[0]`` is the
least significant). Fusion multiplies consecutive gates into one larger matrix so
that the state vector is swept fewer times; it never changes the result beyond
floating-point rounding.

For gradients a gate also carries ``derivatives``: ``(k, M_k)`` pairs with
``M_k = U^dagger dU/dtheta_k`` for each circuit parameter ``theta_k`` it depends on. Fusion
keeps them exact: a block ``B = G_r ... G_1`` gets
``B^dagger dB/dtheta_k = sum_j (G_{j-1}...G_1)^dagger M_{j,k} (G_{j-1}...G_1)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .parameters import bind_values, circuit_parameters, expression_gradient, gate_angle_derivative

# Instructions that do not act on the quantum state and are skipped.
_IGNORED = frozenset({"barrier", "delay", "measure"})


@dataclass(frozen=True)
class Gate:
    """A dense unitary ``matrix`` (2^k x 2^k, complex128) on ``qubits`` (k distinct ints)."""

    qubits: tuple[int, ...]
    matrix: np.ndarray
    derivatives: tuple = field(default=(), compare=False)
    """``((k, M_k), ...)``: ``M_k = matrix^dagger d(matrix)/d(theta_k)``, sorted by parameter index ``k``."""

    @property
    def num_qubits(self) -> int:
        return len(self.qubits)


def circuit_to_gates(circuit, parameter_values=None, derivatives: bool = False
                     ) -> tuple[int, list[Gate], float]:
    """Convert a Qiskit ``QuantumCircuit`` to ``(num_qubits, gates, global_phase)``.

    A circuit with parameters needs ``parameter_values`` (see
    :func:`~pilotq_mpi.statevector.parameters.bind_values`). With ``derivatives=True`` each
    gate that depends on a parameter carries its exact ``derivatives`` (gate kinds in
    :data:`~pilotq_mpi.statevector.parameters.DIFFERENTIABLE_GATES`; others raise ``ValueError``).
    Barriers and delays are skipped. Measurements are accepted only at the end of the
    circuit (no gate after them on the same qubit) and are skipped: ask for ``shots``
    to sample instead. Mid-circuit measurements, resets and classically conditioned
    operations raise ``ValueError``.
    """
    try:
        from qiskit import QuantumCircuit
    except ImportError as exc:  # pragma: no cover - qiskit is a declared extra
        raise ImportError("pilotq_mpi.statevector needs qiskit: pip install 'pilotq-mpi[quantum]'") from exc
    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"expected a qiskit QuantumCircuit, got {type(circuit).__name__}")
    values = bind_values(circuit, parameter_values)
    bound = circuit.assign_parameters(values) if values else circuit
    column = {p: k for k, p in enumerate(circuit_parameters(circuit))}
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    measured: set[int] = set()
    gates: list[Gate] = []
    for pos, (inst, original) in enumerate(zip(bound.data, circuit.data)):
        op = inst.operation
        qubits = tuple(index[q] for q in inst.qubits)
        if op.name in _IGNORED:
            if op.name == "measure":
                measured.update(qubits)
            continue
        if getattr(op, "condition", None) is not None:
            raise ValueError(f"instruction {pos} ({op.name}) is classically conditioned; not supported")
        if measured.intersection(qubits):
            raise ValueError(
                f"instruction {pos} ({op.name}) acts on qubit(s) {sorted(measured.intersection(qubits))} "
                "after a measurement; only final measurements are supported (remove mid-circuit ones)"
            )
        matrix = _matrix_of(op, pos)
        derivs = _derivatives(original.operation, op, matrix, pos, column, values) if derivatives and values else ()
        gates.append(Gate(qubits, matrix, derivs))
    return circuit.num_qubits, gates, float(bound.global_phase)


def _derivatives(original, op, matrix: np.ndarray, pos: int, column: dict, values: dict) -> tuple:
    """``((k, U^dagger dU/dtheta_k), ...)`` of one bound gate ``op`` whose unbound form is ``original``."""
    total: dict[int, np.ndarray] = {}
    for j, angle in enumerate(original.params):
        used = getattr(angle, "parameters", None)
        if not used:
            continue
        d_gate = gate_angle_derivative(op, j, pos)
        for param in used:
            d_angle = expression_gradient(angle, param, values)
            k = column[param]
            total[k] = total.get(k, 0) + d_angle * d_gate
    adj = matrix.conj().T
    return tuple((k, adj @ total[k]) for k in sorted(total))


def _matrix_of(op, pos: int) -> np.ndarray:
    try:
        mat = op.to_matrix()
    except Exception:  # noqa: BLE001 - to_matrix is missing or fails for composite gates
        try:
            from qiskit.quantum_info import Operator

            mat = Operator(op).data
        except Exception as exc:  # noqa: BLE001
            raise ValueError(
                f"instruction {pos} ({op.name}) is not a unitary gate and cannot be simulated "
                "(resets, initialize and other non-unitary operations are not supported)"
            ) from exc
    return np.ascontiguousarray(mat, dtype=np.complex128)


def expand_matrix(matrix: np.ndarray, qubits: Sequence[int], onto: Sequence[int]) -> np.ndarray:
    """Embed ``matrix`` on ``qubits`` into the larger ordered qubit set ``onto`` (identity elsewhere)."""
    k, n = len(qubits), len(onto)
    if k == n and tuple(qubits) == tuple(onto):
        return matrix
    others = [q for q in onto if q not in qubits]
    big = np.kron(np.eye(1 << len(others)), matrix)  # qubit order (LSB first): qubits..., others...
    order = list(qubits) + others
    # Tensor axes are most-significant first: axis i <-> order[n-1-i] (rows then columns).
    t = big.reshape((2,) * (2 * n))
    axis_of = {q: n - 1 - i for i, q in enumerate(order)}
    perm = [axis_of[q] for q in reversed(onto)]
    t = t.transpose(perm + [p + n for p in perm])
    return np.ascontiguousarray(t.reshape(1 << n, 1 << n))


def fuse_gates(gates: Iterable[Gate], max_qubits: int = 4) -> list[Gate]:
    """Merge gates into blocks of at most ``max_qubits`` qubits; return the blocks in a valid order.

    Several blocks on disjoint qubits stay open at once (they commute). A gate joins the
    open blocks it overlaps when the union fits in ``max_qubits``; otherwise those blocks
    are emitted and the gate opens a new one. Gates wider than ``max_qubits`` are emitted
    as they are. ``max_qubits < 1`` raises ``ValueError``.
    """
    if max_qubits < 1:
        raise ValueError(f"max_qubits must be >= 1, got {max_qubits}")
    out: list[Gate] = []
    open_blocks: list[Gate] = []  # disjoint qubit sets
    for g in gates:
        hit = [b for b in open_blocks if not set(b.qubits).isdisjoint(g.qubits)]
        union: list[int] = []
        for b in hit:
            union.extend(b.qubits)
        union.extend(q for q in g.qubits if q not in union)
        open_blocks = [b for b in open_blocks if b not in hit]
        if len(union) <= max_qubits:
            mat = np.eye(1 << len(union), dtype=np.complex128)
            derivs: dict[int, np.ndarray] = {}
            for b in hit:  # disjoint, so their order does not matter (nor for their derivatives)
                mat = expand_matrix(b.matrix, b.qubits, union) @ mat
                for k, d in b.derivatives:
                    derivs[k] = derivs.get(k, 0) + expand_matrix(d, b.qubits, union)
            for k, d in g.derivatives:  # g comes after the blocks: conjugate by them
                derivs[k] = derivs.get(k, 0) + mat.conj().T @ expand_matrix(d, g.qubits, union) @ mat
            open_blocks.append(Gate(tuple(union), expand_matrix(g.matrix, g.qubits, union) @ mat,
                                    tuple(sorted(derivs.items()))))
        else:
            out.extend(hit)
            if g.num_qubits > max_qubits:
                out.append(g)
            else:
                open_blocks.append(g)
    out.extend(open_blocks)
    return out
