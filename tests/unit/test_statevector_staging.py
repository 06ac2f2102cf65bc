"""CPU side of the GPU paths: the CUDA-aware switch, host-staged exchanges, observables given as
Pauli labels (no Qiskit needed), the Qiskit-free circuits of the GPU checks, backend errors."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from mpi4py import MPI

from benchmarks.gpu_circuits import random_gates, random_pauli_sum, sel_gates
from pilotq_mpi.statevector import DistributedStatevector, fuse_gates
from pilotq_mpi.statevector.backends import CupyBackend, NumpyBackend, get_backend
from pilotq_mpi.statevector.observables import expectations, hermitian_terms
from pilotq_mpi.statevector.staging import ENV, Exchanger, cuda_aware_mpi

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("value, aware", [("1", True), ("yes", True), ("0", False), ("off", False)])
def test_cuda_aware_switch_from_environment(monkeypatch, value, aware):
    monkeypatch.setenv(ENV, value)
    assert cuda_aware_mpi() is aware


def test_cuda_aware_switch_refuses_other_values(monkeypatch):
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ValueError, match="PILOTQ_CUDA_AWARE_MPI"):
        cuda_aware_mpi()


def test_cuda_aware_switch_asks_mpi(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    query = getattr(MPI, "Query_cuda_support", None)
    assert cuda_aware_mpi() is (bool(query()) if query else False)


def test_staged_exchange_equals_direct():
    """A Sendrecv to itself on COMM_SELF, through host buffers (grown on demand) and directly."""
    rng = np.random.default_rng(0)
    staged = Exchanger(MPI.COMM_SELF, NumpyBackend(), staged=True)
    direct = Exchanger(MPI.COMM_SELF, NumpyBackend(), staged=False)
    for size in (2, 64, 16):
        send = rng.standard_normal(size) + 1j * rng.standard_normal(size)
        a, b = np.empty_like(send), np.empty_like(send)
        staged.sendrecv(send, a, 0, 3)
        direct.sendrecv(send, b, 0, 3)
        assert np.array_equal(a, send) and np.array_equal(b, send)
    assert staged.staged_bytes == 2 * 16 * (2 + 64 + 16)
    assert direct.staged_bytes == 0
    with pytest.raises(ValueError, match="sizes differ"):
        staged.sendrecv(send, np.empty(3, complex), 0, 3)


def test_cpu_arrays_are_not_staged_by_default(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    assert not DistributedStatevector(3, MPI.COMM_SELF).exchanger.staged
    assert DistributedStatevector(3, MPI.COMM_SELF, host_staging=True).exchanger.staged


def test_label_observables_equal_qiskit():
    qi = pytest.importorskip("qiskit.quantum_info")
    n = 5
    sv = DistributedStatevector(n, MPI.COMM_SELF)
    sv.run(fuse_gates(random_gates(n, 30, seed=1), 3))
    pairs = random_pauli_sum(n, 8, seed=2) + [("XYZIY", 0.0), ("XYZIY", 0.25)]
    labels = [pairs, "XXYZI", [("ZZZZZ", 1j)]]
    qiskit_ops = [qi.SparsePauliOp.from_list(pairs), qi.SparsePauliOp("XXYZI"),
                  qi.SparsePauliOp.from_list([("ZZZZZ", 1j)])]
    assert np.allclose(expectations(sv, labels), expectations(sv, qiskit_ops), rtol=0, atol=1e-14)
    assert hermitian_terms(pairs, n) == hermitian_terms(qiskit_ops[0], n)
    with pytest.raises(ValueError, match="Hermitian"):
        hermitian_terms([("XX", 1j)], 2)
    with pytest.raises(ValueError, match="strings of I, X, Y, Z"):
        expectations(sv, [[("XXYZI", 1.0), ("XQ", 1.0)]])


def test_sel_gates_equal_the_qiskit_benchmark_circuit():
    pytest.importorskip("qiskit")
    from benchmarks.statevector import strongly_entangling
    from pilotq_mpi.statevector import circuit_to_gates

    for n in (2, 5):
        _, want, phase = circuit_to_gates(strongly_entangling(n))
        got = sel_gates(n)
        assert phase == 0 and [g.qubits for g in got] == [g.qubits for g in want]
        assert all(np.allclose(a.matrix, b.matrix, rtol=0, atol=1e-14) for a, b in zip(got, want))


def test_backend_choices():
    assert get_backend("numpy").engine == "numpy" and not get_backend("numpy").device
    with pytest.raises(ValueError, match="engine must be one of"):
        CupyBackend(engine="magic")
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(ImportError, match="needs CuPy"):
            get_backend("cupy")
        assert isinstance(get_backend("auto"), NumpyBackend)


def test_gpu_check_worker_row_on_numpy():
    """The benchmark worker of benchmarks/gpu_check.py, on numpy: one row with its rates and norm."""
    from benchmarks.gpu_check import LAYERS, worker

    row = worker({"backend": "numpy", "threads": 1, "qubits": 6, "dtype": "complex128", "repeats": 2})
    assert row["engine"] == "numpy" and row["gates"] == LAYERS * 4 * 6 and len(row["all_run_s"]) == 2
    assert row["warmup_run_s"] is None and abs(row["norm"] - 1) < 1e-12
    assert row["gates_per_s"] == pytest.approx(row["gates"] / row["run_s"])


def test_gemm_split_into_row_pieces_gives_the_same_state(monkeypatch):
    """Gemms longer than the 32-bit cuBLAS limit are cut into pieces; cut at 3 rows here."""
    import pilotq_mpi.statevector.backends as backends
    from benchmarks.gpu_circuits import random_unitary

    rng = np.random.default_rng(0)
    m = 9
    for _ in range(12):
        k = int(rng.integers(1, 5))
        qubits, layout = [int(q) for q in rng.permutation(m)[:k]], [int(q) for q in rng.permutation(m)]
        u = random_unitary(k, rng)
        psi = rng.standard_normal(1 << m) + 1j * rng.standard_normal(1 << m)
        whole, split = psi.copy(), psi.copy()
        lay_whole = NumpyBackend().apply(whole, np.empty(1 << (m - 1), complex), layout, u, qubits)
        monkeypatch.setattr(backends, "_MAX_ROWS", 3)
        lay_split = NumpyBackend().apply(split, np.empty(1 << (m - 1), complex), layout, u, qubits)
        monkeypatch.undo()
        assert lay_split == lay_whole
        assert np.max(np.abs(split - whole)) < 1e-13
