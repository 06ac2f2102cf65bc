"""Single-rank (COMM_SELF) tests of pilotq_mpi.statevector against qiskit.quantum_info."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

qiskit = pytest.importorskip("qiskit")
from mpi4py import MPI  # noqa: E402
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit import Parameter  # noqa: E402
from qiskit.quantum_info import Operator, SparsePauliOp, Statevector, random_pauli_list, random_unitary  # noqa: E402

from pilotq_mpi.statevector import (  # noqa: E402
    DistributedStatevector, check_memory, circuit_to_gates, fuse_gates, memory_per_rank, simulate,
    statevector_task,
)

pytestmark = pytest.mark.timeout(120)


def random_mixed_circuit(n: int, depth: int, seed: int) -> QuantumCircuit:
    """Rotations, CX/CZ, SWAP, CCX/CSWAP and random 2-3 qubit unitaries on random qubits."""
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n, global_phase=0.3)
    for _ in range(depth):
        kind = rng.integers(0, 6 if n >= 3 else 3)
        q = [int(v) for v in rng.permutation(n)[:3]]
        if kind == 0:
            getattr(qc, ["rx", "ry", "rz"][rng.integers(3)])(rng.uniform(0, 2 * np.pi), q[0])
            qc.h(q[1 % n])
        elif kind == 1:
            (qc.cx if rng.integers(2) else qc.cz)(q[0], q[1])
        elif kind == 2:
            qc.swap(q[0], q[1])
        elif kind == 3:
            qc.ccx(q[0], q[1], q[2])
        elif kind == 4:
            qc.cswap(q[0], q[1], q[2])
        else:
            k = int(rng.integers(2, 4))
            qc.unitary(random_unitary(2**k, seed=int(rng.integers(1 << 30))), q[:k])
    return qc


def run_state(qc, **options):
    result, sv = simulate(MPI.COMM_SELF, qc, **options)
    return result, sv.gather()


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 20])
def test_random_circuits_match_qiskit(n):
    qc = random_mixed_circuit(n, depth=4 * n if n < 20 else 40, seed=n)
    _, got = run_state(qc)
    np.testing.assert_allclose(got, Statevector(qc).data, atol=1e-10, rtol=0)


@pytest.mark.parametrize("fused", [1, 2, 3, 5])
def test_fusion_width_does_not_change_state(fused):
    qc = random_mixed_circuit(7, 40, seed=11)
    _, got = run_state(qc, max_fused_qubits=fused)
    np.testing.assert_allclose(got, Statevector(qc).data, atol=1e-10, rtol=0)


def test_fused_blocks_have_the_circuit_unitary():
    qc = random_mixed_circuit(5, 30, seed=3)
    n, gates, phase = circuit_to_gates(qc)
    blocks = fuse_gates(gates, 3)
    assert len(blocks) < len(gates)
    assert max(b.num_qubits for b in blocks) <= 3
    rebuilt = QuantumCircuit(n, global_phase=phase)
    for b in blocks:
        rebuilt.unitary(b.matrix, list(b.qubits))
    assert Operator(rebuilt).equiv(Operator(qc)) and np.allclose(Operator(rebuilt).data, Operator(qc).data)


def test_complex64_is_close():
    qc = random_mixed_circuit(9, 30, seed=5)
    _, got = run_state(qc, dtype="complex64")
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, Statevector(qc).data, atol=2e-5, rtol=0)


def test_expectations_match_qiskit():
    n = 8
    qc = random_mixed_circuit(n, 30, seed=8)
    ref = Statevector(qc)
    rng = np.random.default_rng(1)
    ops = [SparsePauliOp(random_pauli_list(n, 6, seed=s, phase=True), coeffs=rng.normal(size=6))
           for s in range(4)]
    ops.append(SparsePauliOp.from_list([("Y" * n, 1.0), ("Z" * n, -0.5), ("I" * n, 2.0)]))
    result, _ = run_state(qc, observables=ops)
    for got, op in zip(result.expectations, ops):
        assert abs(got - ref.expectation_value(op)) < 1e-10
    assert abs(result.norm - 1.0) < 1e-12


def test_single_observable_and_label_accepted():
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    result, _ = run_state(qc, observables=SparsePauliOp("IXX"))
    assert result.expectations == [pytest.approx(1.0, abs=1e-12)]


def test_probabilities_and_seeded_counts():
    qc = random_mixed_circuit(6, 20, seed=2)
    qc.measure_all()  # final measurements are skipped
    ref = Statevector(qc.remove_final_measurements(inplace=False))
    result, _ = run_state(qc, shots=20000, seed=42, probabilities=True)
    np.testing.assert_allclose(result.probabilities, ref.probabilities(), atol=1e-12)
    again, _ = run_state(qc, shots=20000, seed=42)
    assert result.counts == again.counts
    assert sum(result.counts.values()) == 20000
    probs = ref.probabilities_dict()
    for key, count in result.counts.items():
        assert probs[key] > 0
    # Frequencies agree with the distribution: total variation distance is small.
    tvd = 0.5 * sum(abs(result.counts.get(k, 0) / 20000 - p) for k, p in probs.items())
    assert tvd < 0.05


def test_ghz_counts_only_two_outcomes():
    n = 10
    qc = QuantumCircuit(n)
    qc.h(0)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    result, _ = run_state(qc, shots=1000, seed=1)
    assert set(result.counts) <= {"0" * n, "1" * n}
    assert 400 < result.counts["1" * n] < 600


def test_task_returns_result_dataclass():
    qc = QuantumCircuit(4)
    qc.x(3)
    res = statevector_task(MPI.COMM_SELF, qc, [SparsePauliOp("ZIII")], shots=10, seed=0)
    assert res.num_qubits == 4 and res.ranks == 1
    assert res.expectations == [pytest.approx(-1.0)]
    assert res.counts == {"1000": 10}
    assert res.timings["gates"] == 1 and res.timings["total"] > 0


def test_memory_per_rank_values_and_budget():
    assert memory_per_rank(20, 1) == 16 * 2**20 + 8 * 2**20
    assert memory_per_rank(20, 4) == (16 * 2**20 + 8 * 2**20) // 4
    assert memory_per_rank(20, 1, dtype="complex64") == 12 * 2**20
    assert check_memory(20, 1, 2**25) == 24 * 2**20
    with pytest.raises(ValueError, match="budget"):
        check_memory(30, 2, 2**30)
    with pytest.raises(ValueError, match="power-of-two"):
        memory_per_rank(10, 6)
    with pytest.raises(ValueError, match="no local qubit"):
        memory_per_rank(2, 4)
    with pytest.raises(ValueError, match="complex128"):
        memory_per_rank(4, 1, dtype="float64")
    with pytest.raises(ValueError, match="budget"):
        DistributedStatevector(20, MPI.COMM_SELF, memory_budget=2**20)


def test_one_local_qubit_layout_memory_and_buffer():
    # One local qubit per rank (n qubits on 2^(n-1) ranks): 2 local amplitudes and a swap
    # buffer of 2 (not 1: the observables receive the partner's 2 amplitudes into it).
    assert memory_per_rank(1, 1) == (2 + 2) * 16
    assert memory_per_rank(3, 4) == (2 + 2) * 16
    assert memory_per_rank(3, 4, dtype="complex64") == (2 + 2) * 8
    assert memory_per_rank(4, 4) == (4 + 2) * 16  # two local qubits: half of 4
    sv = DistributedStatevector(1, MPI.COMM_SELF)
    assert (sv.num_local, sv.state.size, sv.buf.size) == (1, 2, 2)
    with pytest.raises(ValueError, match=r"3 qubits on 8 ranks leaves no local qubit .* use at most 4 ranks"):
        memory_per_rank(3, 8)


def test_one_qubit_bloch_vector():
    # RY(pi/3) then RZ(pi/4) on |0>: Bloch vector (sin 60 cos 45, sin 60 sin 45, cos 60).
    qc = QuantumCircuit(1)
    qc.ry(np.pi / 3, 0)
    qc.rz(np.pi / 4, 0)
    result, _ = run_state(qc, observables=[SparsePauliOp(p) for p in "XYZ"])
    s = np.sqrt(3) / 2 * np.sqrt(2) / 2  # 0.6124
    assert result.expectations == [pytest.approx(s, abs=1e-12), pytest.approx(s, abs=1e-12),
                                   pytest.approx(0.5, abs=1e-12)]


def test_bad_inputs_raise_clear_errors():
    theta = Parameter("theta")
    qc = QuantumCircuit(2)
    qc.rx(theta, 0)
    with pytest.raises(ValueError, match="theta.*assign_parameters"):
        simulate(MPI.COMM_SELF, qc)
    mid = QuantumCircuit(2, 1)
    mid.h(0)
    mid.measure(0, 0)
    mid.x(0)
    with pytest.raises(ValueError, match="after a measurement"):
        simulate(MPI.COMM_SELF, mid)
    reset = QuantumCircuit(2)
    reset.reset(0)
    with pytest.raises(ValueError, match="not a unitary"):
        simulate(MPI.COMM_SELF, reset)
    ok = QuantumCircuit(2)
    with pytest.raises(TypeError, match="QuantumCircuit"):
        simulate(MPI.COMM_SELF, "not a circuit")
    with pytest.raises(ValueError, match="acts on 3 qubits"):
        simulate(MPI.COMM_SELF, ok, observables=[SparsePauliOp("ZZZ")])
    with pytest.raises(ValueError, match="shots"):
        simulate(MPI.COMM_SELF, ok, shots=-1)
    with pytest.raises(TypeError, match="unknown statevector option"):
        statevector_task(MPI.COMM_SELF, ok, shotz=3)
    with pytest.raises(ValueError, match="backend"):
        simulate(MPI.COMM_SELF, ok, backend="tpu")
    with pytest.raises(ValueError, match="max_qubits"):
        fuse_gates([], 0)


def test_package_imports_without_cupy():
    code = ("import sys, pilotq_mpi.statevector as s; "
            "assert 'cupy' not in sys.modules and 'cuquantum' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
