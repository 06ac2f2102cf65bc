"""pilotq_mpi.statevector on several ranks (run under mpiexec with --with-mpi).

    timeout 300 .venv/bin/mpiexec -n 2 .venv/bin/python -m pytest --with-mpi -p no:cacheprovider \
        tests/mpi/test_statevector_mpi.py      # and -n 4

Tests that simulate on the whole world need a power-of-two world size and skip otherwise
(with the reason); the ones on power-of-two sub-communicators run at any size. The layouts
at the boundary (one local qubit per rank, and none, which is refused) are checked against
an exact dense reference for X, Y and Z on every qubit.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qiskit")
from mpi4py import MPI  # noqa: E402
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector, random_pauli_list, random_unitary  # noqa: E402

from pilotq_mpi.statevector import memory_per_rank, simulate, statevector_task  # noqa: E402

WORLD = MPI.COMM_WORLD
SIZE = WORLD.Get_size()
POW2 = SIZE & (SIZE - 1) == 0
G = SIZE.bit_length() - 1  # global qubits when the whole world simulates

pytestmark = [
    pytest.mark.mpi(min_size=2),
    # "thread": a rank blocked inside an MPI call (a hang) is ended too, which ends the job
    pytest.mark.timeout(120, method="thread"),
]
whole_world = pytest.mark.skipif(not POW2, reason=f"the distributed state vector needs a power-of-two "
                                 f"world size; this run has {SIZE} ranks")
"""For tests that simulate on the whole world (the others use power-of-two sub-communicators)."""


def boundary_circuit(n: int, seed: int) -> QuantumCircuit:
    """Gates on global qubits, across the local/global boundary, and wide ones spanning both."""
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n, global_phase=0.7)
    for q in range(n):
        qc.ry(rng.uniform(0, np.pi), q)
    top, low = n - 1, 0
    qc.h(top)
    qc.cx(top, low)
    qc.cz(low, top - 1)
    qc.swap(top, 1)
    qc.ccx(top, top - 1, low)
    qc.cswap(low, top, top - 1)
    qc.unitary(random_unitary(8, seed=seed), [top, low, top - 1])
    for _ in range(3 * n):
        a, b, c = (int(v) for v in rng.permutation(n)[:3])
        qc.rz(rng.uniform(0, 2 * np.pi), a)
        qc.cx(a, b)
        if rng.random() < 0.3:
            qc.ccx(a, b, c)
        if rng.random() < 0.2:
            qc.unitary(random_unitary(4, seed=int(rng.integers(1 << 30))), [a, b])
    return qc


@whole_world
@pytest.mark.parametrize("extra", [3, 5, 8])
@pytest.mark.parametrize("fused", [1, 4])
def test_every_rank_agrees_with_qiskit(extra, fused):
    n = G + extra
    qc = boundary_circuit(n, seed=extra)
    result, sv = simulate(WORLD, qc, max_fused_qubits=fused)
    got = sv.gather(root=None)  # every rank checks the whole state
    np.testing.assert_allclose(got, Statevector(qc).data, atol=1e-10, rtol=0)
    assert sv.swaps > 0  # the circuit did cross the boundary
    assert (result is not None) == (WORLD.rank == 0)


PAULI = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
         "Z": np.diag([1.0, -1.0])}


def dense_expectation(psi: np.ndarray, label: str) -> complex:
    """<psi|P|psi> with P built as a dense 2^n x 2^n Kronecker product (label in Qiskit order:
    the last character acts on qubit 0). Independent of the simulator and of qiskit's Pauli code."""
    op = np.array([[1.0]])
    for ch in label:  # first character = highest qubit = most significant index bit
        op = np.kron(op, PAULI[ch])
    return complex(np.vdot(psi, op @ psi))


def entangling_circuit(n: int, seed: int) -> QuantumCircuit:
    """Rotations, then CX/CZ/CCX/2-qubit unitaries over every pair kind (local-global,
    global-global), then rotations again: a generic state where X, Y and Z all have nonzero,
    distinct expectation values."""
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n, global_phase=0.2)
    for q in range(n):
        qc.ry(rng.uniform(0.2, 2.9), q)
        qc.rz(rng.uniform(0, 2 * np.pi), q)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    if n >= 2:
        qc.cz(n - 1, 0)
        qc.unitary(random_unitary(4, seed=seed), [n - 1, 0])
    if n >= 3:
        qc.ccx(n - 1, 0, n - 2)
    for q in range(n):
        qc.rx(rng.uniform(0, 2 * np.pi), q)
        qc.ry(rng.uniform(0, 2 * np.pi), q)
    return qc


def boundary_labels(n: int) -> list[str]:
    """X, Y, Z on every qubit; pairs across the local/global boundary; all-X and all-Y."""
    labels = []
    for q in range(n):
        for p in "XYZ":
            labels.append("I" * (n - 1 - q) + p + "I" * q)
    top = n - 1
    for a, b in [("X", "Y"), ("Y", "Z"), ("X", "X")]:
        label = ["I"] * n
        label[0], label[n - 1 - 0] = a, b  # qubits top and 0
        labels.append("".join(label) if top else a)
    labels += ["X" * n, "Y" * n]
    return labels


def product_circuit(n: int, seed: int) -> QuantumCircuit:
    """Single-qubit rotations only (a product state, no entangling gate)."""
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(rng.uniform(0.2, 2.9), q)
        qc.rz(rng.uniform(0, 2 * np.pi), q)
    return qc


def check_observables(comm, qc: QuantumCircuit, fused: int = 4) -> None:
    """Every observable of :func:`boundary_labels` against :func:`dense_expectation`, on every rank."""
    n = qc.num_qubits
    labels = boundary_labels(n)
    psi = Statevector(qc).data
    result, sv = simulate(comm, qc, [SparsePauliOp(label) for label in labels], max_fused_qubits=fused)
    assert sv.num_local == n - (comm.size.bit_length() - 1)
    np.testing.assert_allclose(sv.gather(root=None), psi, atol=1e-10, rtol=0)
    expected = np.array([dense_expectation(psi, label).real for label in labels])
    assert np.ptp(expected) > 0.1  # not a trivial state: the values differ
    if comm.rank == 0:
        got = np.array(result.expectations, dtype=complex)
        np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0)
    else:
        assert result is None


@whole_world
def test_x_and_y_on_global_qubits_with_one_local_qubit():
    """The regression: with one local qubit per rank (3 qubits on 4 ranks), X or Y on a global
    qubit exchanged 2 amplitudes into a 1-amplitude buffer ("Message truncated")."""
    check_observables(WORLD, product_circuit(G + 1, seed=1))


@whole_world
@pytest.mark.parametrize("local", [1, 2, 3])
@pytest.mark.parametrize("fused", [1, 4])
def test_every_pauli_on_every_qubit_at_the_boundary(local, fused):
    """One, two and three local qubits per rank on the whole world (1 local: 3 qubits on 4 ranks)."""
    check_observables(WORLD, entangling_circuit(G + local, seed=10 * local + fused), fused=fused)


def test_one_local_qubit_on_every_smaller_communicator():
    """2^(n-1) ranks for n = 1, 2, ... up to the world: 1 qubit on 1 rank, 2 on 2, 3 on 4, ..."""
    width = 1
    while width <= SIZE:
        group = WORLD.Get_group().Incl(list(range(width)))
        sub = WORLD.Create_group(group) if WORLD.rank < width else MPI.COMM_NULL
        group.Free()
        if sub != MPI.COMM_NULL:
            try:
                check_observables(sub, product_circuit(width.bit_length(), seed=width))
                check_observables(sub, entangling_circuit(width.bit_length(), seed=width))
            finally:
                sub.Free()
        WORLD.Barrier()
        width *= 2


@whole_world
def test_probabilities_and_counts_with_one_local_qubit():
    n = G + 1
    qc = entangling_circuit(n, seed=4)
    ref = Statevector(qc)
    res = statevector_task(WORLD, qc, shots=3000, seed=3, probabilities=True)
    if WORLD.rank == 0:
        np.testing.assert_allclose(res.probabilities, ref.probabilities(), atol=1e-12)
        assert sum(res.counts.values()) == 3000 and abs(res.norm - 1) < 1e-12


@whole_world
def test_gates_wider_than_the_local_part():
    """3-qubit gates with 2 local qubits per rank, 2- and 3-qubit gates with 1: applied by
    gathering within the gate's rank group (they used to raise 'use fewer ranks')."""
    for n in (G + 1, G + 2):
        qc = boundary_circuit(n, seed=n) if n >= 3 else entangling_circuit(n, seed=0)
        _, sv = simulate(WORLD, qc)
        assert sv.num_local == n - G
        np.testing.assert_allclose(sv.gather(root=None), Statevector(qc).data, atol=1e-10, rtol=0)


@whole_world
def test_no_local_qubit_is_refused_with_a_clear_message():
    """n qubits on 2^n ranks (0 local qubits): check_layout refuses it, on every rank, and
    memory_per_rank (the submit-time memory check) refuses it before the task is submitted."""
    message = f"{G} qubits on {SIZE} ranks leaves no local qubit .* use at most {SIZE // 2} ranks"
    with pytest.raises(ValueError, match=message):
        simulate(WORLD, QuantumCircuit(G))
    with pytest.raises(ValueError, match=message):
        memory_per_rank(G, SIZE)


@whole_world
def test_expectations_probabilities_counts_on_rank0():
    n = G + 5
    qc = boundary_circuit(n, seed=1)
    ref = Statevector(qc)
    ops = [SparsePauliOp(random_pauli_list(n, 5, seed=s, phase=True),
                         coeffs=np.linspace(-1, 1, 5)) for s in range(3)]
    ops.append(SparsePauliOp.from_list([("X" * n, 1.0), ("Y" + "Z" * (n - 1), 0.5)]))
    res = statevector_task(WORLD, qc, ops, shots=4000, seed=9, probabilities=True)
    if WORLD.rank != 0:
        assert res is None
        return
    assert res.ranks == SIZE and res.num_qubits == n
    for got, op in zip(res.expectations, ops):
        assert abs(got - ref.expectation_value(op)) < 1e-10
    np.testing.assert_allclose(res.probabilities, ref.probabilities(), atol=1e-12)
    assert abs(res.norm - 1) < 1e-12
    assert sum(res.counts.values()) == 4000
    probs = ref.probabilities_dict()
    tvd = 0.5 * sum(abs(res.counts.get(k, 0) / 4000 - p) for k, p in probs.items())
    assert tvd < 0.15


@whole_world
def test_seeded_counts_reproducible():
    qc = boundary_circuit(G + 4, seed=2)
    a = statevector_task(WORLD, qc, shots=500, seed=5)
    b = statevector_task(WORLD, qc, shots=500, seed=5)
    if WORLD.rank == 0:
        assert a.counts == b.counts


@whole_world
def test_runs_on_a_sub_communicator():
    """Two halves of the world simulate different circuits at the same time."""
    color = WORLD.rank % 2
    sub = WORLD.Split(color, WORLD.rank)
    try:
        n = sub.size.bit_length() - 1 + 4
        qc = boundary_circuit(n, seed=10 + color)
        _, sv = simulate(sub, qc)
        got = sv.gather(root=None)
        np.testing.assert_allclose(got, Statevector(qc).data, atol=1e-10, rtol=0)
    finally:
        sub.Free()


@pytest.mark.mpi(min_size=4)
def test_non_power_of_two_communicator_raises():
    group = WORLD.Get_group().Incl([0, 1, 2])
    sub = WORLD.Create_group(group) if WORLD.rank < 3 else MPI.COMM_NULL
    group.Free()
    if sub == MPI.COMM_NULL:
        return
    try:
        with pytest.raises(ValueError, match="power-of-two"):
            simulate(sub, QuantumCircuit(4))
    finally:
        sub.Free()
