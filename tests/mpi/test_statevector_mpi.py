"""pilotq_mpi.statevector on several ranks (run under mpiexec with --with-mpi).

    timeout 300 .venv/bin/mpiexec -n 2 .venv/bin/python -m pytest --with-mpi -p no:cacheprovider \
        tests/mpi/test_statevector_mpi.py      # and -n 4

Correct for any power-of-two world size; other sizes skip with the reason.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qiskit")
from mpi4py import MPI  # noqa: E402
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector, random_pauli_list, random_unitary  # noqa: E402

from pilotq_mpi.statevector import simulate, statevector_task  # noqa: E402

WORLD = MPI.COMM_WORLD
SIZE = WORLD.Get_size()
POW2 = SIZE & (SIZE - 1) == 0
G = SIZE.bit_length() - 1  # global qubits when the whole world simulates

pytestmark = [
    pytest.mark.mpi(min_size=2),
    pytest.mark.timeout(120),
    pytest.mark.skipif(not POW2, reason=f"the distributed state vector needs a power-of-two "
                       f"world size; this run has {SIZE} ranks"),
]


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


def test_gate_wider_than_local_part_raises_on_every_rank():
    qc = boundary_circuit(G + 2, seed=0)  # has 3-qubit gates, only 2 local qubits per rank
    with pytest.raises(ValueError, match="acts on 3 qubits.*only 2 local qubits"):
        simulate(WORLD, qc)


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


def test_seeded_counts_reproducible():
    qc = boundary_circuit(G + 4, seed=2)
    a = statevector_task(WORLD, qc, shots=500, seed=5)
    b = statevector_task(WORLD, qc, shots=500, seed=5)
    if WORLD.rank == 0:
        assert a.counts == b.counts


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
