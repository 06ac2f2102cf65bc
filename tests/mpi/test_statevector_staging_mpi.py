"""Host-staged exchanges (the GPU path without a CUDA-aware MPI) on numpy arrays, several ranks.

    timeout 300 .venv/bin/mpiexec -n 4 .venv/bin/python -m pytest --with-mpi -p no:cacheprovider \
        tests/mpi/test_statevector_staging_mpi.py

Staging only copies, so states, expectation values and gradients equal the direct path bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from benchmarks.gpu_circuits import random_gates, random_pauli_sum, sel_gates
from pilotq_mpi.statevector import DistributedStatevector, fuse_gates
from pilotq_mpi.statevector.adjoint import adjoint_gradients
from pilotq_mpi.statevector.observables import expectations

WORLD = MPI.COMM_WORLD
SIZE = WORLD.Get_size()
pytestmark = [
    pytest.mark.mpi(min_size=2),
    pytest.mark.skipif(SIZE & (SIZE - 1) != 0, reason=f"needs a power-of-two world size, got {SIZE}"),
    pytest.mark.timeout(120, method="thread"),
]


def run(n, gates, staged):
    sv = DistributedStatevector(n, WORLD, host_staging=staged)
    sv.run(gates, 0.1)
    return sv


@pytest.mark.parametrize("n", [3, 7])
def test_staged_equals_direct(n):
    gates = fuse_gates(random_gates(n, 40, seed=n, max_qubits=3), 4)
    obs = [random_pauli_sum(n, 8, seed=n), "X" * n]
    staged, direct = run(n, gates, True), run(n, gates, False)
    assert staged.swaps == direct.swaps and (staged.swaps > 0 or n == 3)  # n=3: only gates wider than a rank
    assert np.array_equal(staged.gather(root=None), direct.gather(root=None))
    assert expectations(staged, obs) == expectations(direct, obs)  # X on global qubits: exchanges
    assert staged.exchanger.staged and staged.exchanger.staged_bytes > 0
    assert not direct.exchanger.staged and direct.exchanger.staged_bytes == 0


def test_staged_gradients_equal_direct():
    n = 5
    fused = fuse_gates(sel_gates(n, derivatives=True), 4)
    obs = [random_pauli_sum(n, 4, seed=3)]
    grads = [adjoint_gradients(run(n, fused, s), fused, 0.1, obs, 6 * n)[0] for s in (True, False)]
    assert np.array_equal(grads[0], grads[1]) and np.max(np.abs(grads[0])) > 1e-3
