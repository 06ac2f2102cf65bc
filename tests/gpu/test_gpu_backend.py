"""The CuPy backend against the numpy one on one process: gates on random layouts, circuits,
expectation values, probabilities and adjoint gradients (``gpu`` marker: skipped without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from benchmarks.gpu_circuits import random_gates, random_pauli_sum, random_unitary, sel_gates
from pilotq_mpi.statevector import DistributedStatevector, fuse_gates
from pilotq_mpi.statevector.adjoint import adjoint_gradients
from pilotq_mpi.statevector.backends import CupyBackend, NumpyBackend, get_backend
from pilotq_mpi.statevector.distributed import to_canonical
from pilotq_mpi.statevector.memory import swap_buffer_length
from pilotq_mpi.statevector.observables import expectations, probabilities, sample_counts
from pilotq_mpi.statevector.staging import cuda_aware_mpi

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]
TOL = {np.complex128: 1e-10, np.complex64: 2e-5}


@pytest.fixture(params=["cupy", "custatevec"])
def backend(request):
    """The GPU backend with each engine (cuStateVec skipped where cuquantum-python is missing)."""
    try:
        return CupyBackend(engine=request.param)
    except ImportError as exc:
        pytest.skip(str(exc))


def run(n: int, gates, backend, dtype=np.complex128, phase: float = 0.0) -> DistributedStatevector:
    sv = DistributedStatevector(n, MPI.COMM_SELF, dtype=dtype, backend=backend)
    sv.run(gates, phase)
    return sv


def test_get_backend_needs_only_cupy():
    b = get_backend("cupy")
    assert b.device and b.name == "cupy" and b.engine in ("cupy", "custatevec")
    assert isinstance(get_backend("auto"), CupyBackend)
    sv = DistributedStatevector(3, MPI.COMM_SELF, backend="cupy")
    assert sv.exchanger.staged == (not cuda_aware_mpi())
    assert type(sv.state).__module__.startswith("cupy")


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_gate_on_random_layout_matches_numpy(backend, dtype):
    """One k-qubit gate (k = 1..4) on a random state in a random axis order, 1..11 local qubits."""
    import cupy

    rng = np.random.default_rng(11)
    cpu = NumpyBackend()
    for m in (1, 2, 3, 5, 8, 11):
        for _ in range(8):
            layout = [int(q) for q in rng.permutation(m)]
            k = int(rng.integers(1, min(4, m) + 1))
            qubits = [int(q) for q in rng.permutation(m)[:k]]
            u = random_unitary(k, rng)
            psi = (rng.standard_normal(1 << m) + 1j * rng.standard_normal(1 << m)).astype(dtype)
            host = psi.copy()
            lay_cpu = cpu.apply(host, np.empty(swap_buffer_length(m), dtype), layout, u, qubits)
            dev = cupy.asarray(psi)
            lay_gpu = backend.apply(dev, backend.empty(swap_buffer_length(m), dtype), layout, u, qubits)
            want = to_canonical(host, lay_cpu, [])
            got = to_canonical(cupy.asnumpy(dev), lay_gpu, [])
            assert np.max(np.abs(got - want)) <= TOL[dtype] * max(1.0, np.max(np.abs(want))), (m, layout, qubits)


@pytest.mark.parametrize("n", [2, 5, 9, 14, 18])
def test_random_circuit_matches_numpy(backend, n):
    gates = fuse_gates(random_gates(n, 60, seed=n, max_qubits=2), 4)
    want = run(n, gates, "numpy", phase=0.3)
    got = run(n, gates, backend, phase=0.3)
    assert np.max(np.abs(got.gather() - want.gather())) <= 1e-10
    assert abs(got.norm() - 1) <= 1e-10


def test_complex64_circuit(backend):
    n = 12
    gates = fuse_gates(random_gates(n, 60, seed=3, max_qubits=2), 4)
    want = run(n, gates, "numpy", np.complex64)
    got = run(n, gates, backend, np.complex64)
    assert np.max(np.abs(got.gather() - want.gather())) <= 1e-5


@pytest.mark.parametrize("n", [1, 4, 11])
def test_observables_match_numpy(backend, n):
    gates = fuse_gates(random_gates(n, 40, seed=7 + n, max_qubits=2), 4)
    obs = [random_pauli_sum(n, 12, seed=n), "Z" * n, "X" * n, [("Y" * n, 0.5), ("I" * n, 2.0)]]
    want = run(n, gates, "numpy")
    got = run(n, gates, backend)
    assert np.allclose(expectations(got, obs), expectations(want, obs), rtol=0, atol=1e-10)
    assert np.allclose(probabilities(got), probabilities(want), rtol=0, atol=1e-12)
    counts = sample_counts(got, 2000, seed=5)
    p = probabilities(want)
    assert sum(counts.values()) == 2000
    assert all(p[int(b, 2)] > 0 for b in counts)


@pytest.mark.parametrize("n", [2, 6, 10])
def test_adjoint_gradients_match_numpy(backend, n):
    gates = sel_gates(n, layers=2, derivatives=True)
    params = 6 * n
    fused = fuse_gates(gates, min(4, n))
    obs = [random_pauli_sum(n, 6, seed=n), "Z" + "I" * (n - 1)]
    results = []
    for b in ("numpy", backend):
        sv = run(n, fused, b)
        values = expectations(sv, obs)
        grads, _ = adjoint_gradients(sv, fused, 0.0, obs, params)
        results.append((np.asarray(values), grads))
    (v_cpu, g_cpu), (v_gpu, g_gpu) = results
    assert np.allclose(v_gpu, v_cpu, rtol=0, atol=1e-10)
    assert g_gpu.shape == (2, params)
    assert np.max(np.abs(g_gpu - g_cpu)) <= 1e-10
    assert np.max(np.abs(g_cpu)) > 1e-3  # a non-trivial gradient was compared
