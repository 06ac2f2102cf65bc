"""The distributed state vector on the GPU, ranks sharing the GPU(s), against numpy on one rank.

Run under ``mpiexec -n 2`` and ``-n 4`` (plain ``python -m pytest``; pytest-mpi not needed):
every rank checks the gathered state, expectation values and adjoint gradients. Exchanges
are staged through host memory unless the MPI is CUDA-aware (``PILOTQ_CUDA_AWARE_MPI``).
Skipped on one rank, on a world size that is not a power of two, and without a GPU.
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from benchmarks.gpu_circuits import random_gates, random_pauli_sum, sel_gates
from pilotq_mpi.statevector import DistributedStatevector, fuse_gates
from pilotq_mpi.statevector.adjoint import adjoint_gradients
from pilotq_mpi.statevector.observables import expectations
from pilotq_mpi.statevector.staging import cuda_aware_mpi

WORLD = MPI.COMM_WORLD
SIZE = WORLD.Get_size()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(SIZE < 2 or SIZE & (SIZE - 1) != 0,
                       reason=f"run under mpiexec -n 2 or 4 (a power of two > 1); this run has {SIZE} rank(s)"),
    pytest.mark.timeout(240, method="thread"),
]


@pytest.fixture(scope="module", autouse=True)
def device():
    import cupy

    cupy.cuda.Device(WORLD.Get_rank() % cupy.cuda.runtime.getDeviceCount()).use()


def simulate(n: int, gates, backend, comm):
    sv = DistributedStatevector(n, comm, backend=backend)
    sv.run(gates, 0.2)
    return sv


@pytest.mark.parametrize("n", [3, 6, 11])
def test_state_matches_numpy(n):
    """Random 1-3 qubit gates, fused up to 4: swaps, and (n=3 on 4 ranks) gates wider than a rank."""
    gates = fuse_gates(random_gates(n, 50, seed=n, max_qubits=3), 4)
    gpu = simulate(n, gates, "cupy", WORLD)
    want = simulate(n, gates, "numpy", MPI.COMM_SELF).gather()
    got = gpu.gather(root=None)
    assert np.max(np.abs(got - want)) <= 1e-10
    assert gpu.swaps > 0 or n == 3  # n=3: every fused gate is wider than a rank's part
    assert gpu.exchanger.staged == (not cuda_aware_mpi())
    expectations(gpu, ["X" * n])  # flips every global qubit: exchanges chunks with a partner
    assert (gpu.exchanger.staged_bytes > 0) == gpu.exchanger.staged


@pytest.mark.parametrize("n", [3, 8])
def test_expectations_match_numpy(n):
    """X parts on global qubits exchange chunks with the partner rank."""
    gates = fuse_gates(random_gates(n, 40, seed=20 + n, max_qubits=2), 4)
    obs = [random_pauli_sum(n, 10, seed=n), "X" * n, [("XY" + "Z" * (n - 2), 1.5)]]
    got = expectations(simulate(n, gates, "cupy", WORLD), obs)
    want = expectations(simulate(n, gates, "numpy", MPI.COMM_SELF), obs)
    assert np.allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [4, 7])
def test_adjoint_gradients_match_numpy(n):
    fused = fuse_gates(sel_gates(n, layers=2, derivatives=True), 4)
    obs = [random_pauli_sum(n, 5, seed=n)]
    grads = []
    for backend, comm in (("cupy", WORLD), ("numpy", MPI.COMM_SELF)):
        sv = simulate(n, fused, backend, comm)
        grads.append(adjoint_gradients(sv, fused, 0.2, obs, 6 * n)[0])
    assert np.max(np.abs(grads[0] - grads[1])) <= 1e-10
    assert np.max(np.abs(grads[1])) > 1e-3
