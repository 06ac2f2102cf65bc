"""Adjoint gradients of pilotq_mpi.statevector on 1, 2 and 4 ranks (run under mpiexec with --with-mpi).

    timeout 300 .venv/bin/mpiexec -n 4 .venv/bin/python -m pytest --with-mpi -p no:cacheprovider \
        tests/mpi/test_statevector_gradients_mpi.py      # and -n 6 (make test-mpi)

Every test runs on sub-communicators of the first 1, 2 and 4 world ranks (those that exist), so
it runs whole at any world size of 4 or more. The circuits put parameterised gates on global
qubits, across the local/global boundary, and on more qubits than a rank holds (3 qubits on 4
ranks: one local qubit, so every two-qubit gate is applied and differentiated within its rank
group). References (world rank 0 only): the parameter-shift rule and fourth-order finite
differences on qiskit's ``Statevector``, and the single-rank result.
"""
from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qiskit")
from mpi4py import MPI  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, random_statevector  # noqa: E402

from pilotq_mpi.statevector import DistributedStatevector, memory_per_rank, simulate  # noqa: E402
from pilotq_mpi.statevector.observables import apply_observable  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_statevector_gradients import (  # noqa: E402
    InPlaceBackend, finite_differences, parameter_shift, sel_circuit, shared_circuit,
)

WORLD = MPI.COMM_WORLD
SIZE = WORLD.Get_size()
WIDTHS = [w for w in (1, 2, 4) if w <= SIZE]

pytestmark = [
    pytest.mark.mpi(min_size=2),
    # "thread": a rank blocked inside an MPI call (a hang) is ended too, which ends the job
    pytest.mark.timeout(120, method="thread"),
]


@contextlib.contextmanager
def first_ranks(width: int):
    """The communicator of world ranks ``0..width-1`` (None on the others); freed afterwards."""
    group = WORLD.Get_group().Incl(list(range(width)))
    sub = WORLD.Create_group(group) if WORLD.rank < width else MPI.COMM_NULL
    group.Free()
    try:
        yield None if sub == MPI.COMM_NULL else sub
    finally:
        if sub != MPI.COMM_NULL:
            sub.Free()
        WORLD.Barrier()


def labels_across(n: int) -> list[SparsePauliOp]:
    """Observables with X/Y on the top (global) qubits, Z on the low (local) ones, and a sum."""
    return [
        SparsePauliOp("X" + "I" * (n - 2) + "Z"),
        SparsePauliOp.from_list([("Y" * n, 0.8), ("Z" * n, -0.4), ("I" * (n - 1) + "X", 0.3)]),
    ]


@functools.lru_cache(maxsize=None)
def reference(kind: str, n: int) -> tuple:
    """(values, references) of one circuit; computed once, on world rank 0 only."""
    if kind == "sel":
        qc = sel_circuit(n, 2)
        values = np.random.default_rng(n).uniform(0, 2 * np.pi, qc.num_parameters)
        return qc, values, parameter_shift(qc, values, labels_across(n))
    qc = shared_circuit(n)
    values = np.array([0.4, -2.2, 1.1])
    return qc, values, finite_differences(qc, values, labels_across(n))


def check(kind: str, n: int, width: int, fused: int = 4, atol: float = 1e-10, backend="numpy") -> None:
    qc = sel_circuit(n, 2) if kind == "sel" else shared_circuit(n)
    values = (np.random.default_rng(n).uniform(0, 2 * np.pi, qc.num_parameters) if kind == "sel"
              else np.array([0.4, -2.2, 1.1]))
    with first_ranks(width) as sub:
        if sub is None:
            return
        res, sv = simulate(sub, qc, labels_across(n), parameter_values=values, gradient="adjoint",
                           max_fused_qubits=fused, backend=backend)
        assert sv.num_local == n - (width.bit_length() - 1)
        if sub.rank != 0:
            assert res is None
            return
        _, ref_values, ref = reference(kind, n)
        np.testing.assert_array_equal(values, ref_values)
        assert np.abs(ref).max() > 0.1  # a real gradient, not zeros
        np.testing.assert_allclose(res.gradients, ref, atol=atol, rtol=0,
                                   err_msg=f"{kind} circuit, {n} qubits on {width} rank(s)")


@pytest.mark.parametrize("width", WIDTHS)
def test_sel_gradients_equal_parameter_shift(width):
    """5 qubits: 2 global on 4 ranks; the CNOT rings cross the boundary, rotations sit on global qubits."""
    check("sel", 5, width, atol=1e-11)


@pytest.mark.parametrize("width", WIDTHS[1:])
def test_layout_keeping_backend_as_on_gpu(width):
    """The CuPy/cuStateVec backend never moves the layout; a numpy stand-in that behaves so gives
    the same gradients (overlap matrices with the targets anywhere, swaps of unmoved layouts)."""
    check("sel", 5, width, atol=1e-11, backend=InPlaceBackend())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("fused", [1, 3])
def test_shared_parameters_equal_finite_differences(width, fused):
    check("shared", 4, width, fused=fused, atol=1e-9)


@pytest.mark.parametrize("width", WIDTHS)
def test_gates_wider_than_the_local_part(width):
    """3 qubits: on 4 ranks one local qubit, so every 2-qubit parameterised gate is gathered
    within its rank group (and its derivative terms counted once per group)."""
    check("shared", 3, width, fused=2, atol=1e-9)


def test_every_width_gives_the_single_rank_gradient():
    """The gradients on 2 and 4 ranks equal the one-rank gradients to rounding."""
    qc = sel_circuit(5, 2)
    values = np.random.default_rng(11).uniform(0, 2 * np.pi, qc.num_parameters)
    got = {}
    for width in WIDTHS:
        with first_ranks(width) as sub:
            if sub is not None:
                res, _ = simulate(sub, qc, labels_across(5), parameter_values=values, gradient="adjoint")
                if sub.rank == 0:
                    got[width] = res.gradients
    if WORLD.rank == 0:
        for width in WIDTHS[1:]:
            np.testing.assert_allclose(got[width], got[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n", [3, 4])
def test_apply_observable_matches_the_dense_matrix(width, n):
    """O|psi> on the distributed state (X and Y on global qubits exchange with the partner rank)."""
    psi = random_statevector(2**n, seed=n).data
    with first_ranks(width) as sub:
        if sub is None:
            return
        sv = DistributedStatevector(n, sub)
        full = psi.reshape((2,) * n).transpose([n - 1 - q for q in sv.global_qubits[::-1] + sv.layout])
        sv.state[:] = full.reshape(sub.size, -1)[sub.rank]
        out = sv.backend.empty(sv.state.size, sv.dtype)
        for op in labels_across(n):
            apply_observable(sv, op, out)
            sv.state, out = out, sv.state
            got = sv.gather(root=None)
            sv.state, out = out, sv.state
            np.testing.assert_allclose(got, op.to_matrix() @ psi, atol=1e-12, rtol=0)


@pytest.mark.parametrize("width", WIDTHS[1:])
def test_memory_budget_is_refused_on_every_rank(width):
    """A budget that holds the state but not the adjoint's second vector: every rank refuses
    before any message is sent (no hang), with the gradient named."""
    qc = sel_circuit(6, 1)
    with first_ranks(width) as sub:
        if sub is None:
            return
        with pytest.raises(ValueError, match="with adjoint gradients need"):
            simulate(sub, qc, [SparsePauliOp("Z" * 6)], parameter_values=np.zeros(18), gradient="adjoint",
                     memory_budget=memory_per_rank(6, width))
