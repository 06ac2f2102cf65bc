"""Adjoint gradients of pilotq_mpi.statevector on one rank (COMM_SELF).

References that share no code with the adjoint sweep: the parameter-shift rule and
fourth-order central finite differences on qiskit's ``Statevector``, and PennyLane
lightning.qubit's own adjoint method on the same StronglyEntanglingLayers circuit.
The multi-rank checks are in tests/mpi/test_statevector_gradients_mpi.py.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qiskit")
from mpi4py import MPI  # noqa: E402
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit import Parameter, library  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector, random_statevector  # noqa: E402

from pilotq_mpi.statevector import (  # noqa: E402
    DistributedStatevector, check_memory, memory_per_rank, simulate, statevector_task,
)
from pilotq_mpi.statevector import DIFFERENTIABLE_GATES  # noqa: E402
from pilotq_mpi.statevector.adjoint import overlap_matrix  # noqa: E402
from pilotq_mpi.statevector.backends import NumpyBackend  # noqa: E402
from pilotq_mpi.statevector.observables import apply_observable  # noqa: E402
from pilotq_mpi.statevector.parameters import FREQUENCIES, gate_angle_derivative  # noqa: E402
from pilotq_mpi.workflows.families import strongly_entangling_layers as sel_circuit  # noqa: E402

pytestmark = pytest.mark.timeout(120)
SELF = MPI.COMM_SELF


def shared_circuit(n: int) -> QuantumCircuit:
    """Parameters used in several gates, in linear and non-linear expressions, in many gate kinds."""
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(n, global_phase=a)
    for q in range(n):
        qc.ry(0.3 + q * a, q)
    qc.crx(2 * a - b, 0, n - 1)
    qc.rzz(b, 1, n - 1)
    qc.u(a, b * c, -c, 1)
    qc.cp(c, n - 1, 0)
    qc.rxx(a + b + c, 0, 1)
    qc.cry(b, 1, 0, ctrl_state=0)
    qc.append(library.XXPlusYYGate(a, c), [0, n - 1])
    qc.r(b, a, n - 1)
    qc.rz(a.sin() * b, 0)
    qc.h(1)
    qc.ryy(c, 0, 1)
    return qc


def exact_expectations(qc, values, observables) -> np.ndarray:
    state = Statevector(qc.assign_parameters(values))
    return np.array([state.expectation_value(op).real for op in observables])


def parameter_shift(qc, values, observables) -> np.ndarray:
    """Circuit-level parameter shift (exact when every parameter is one RX/RY/RZ-type angle)."""
    out = np.zeros((len(observables), len(values)))
    for k in range(len(values)):
        e = np.zeros(len(values))
        e[k] = np.pi / 2
        out[:, k] = (exact_expectations(qc, values + e, observables)
                     - exact_expectations(qc, values - e, observables)) / 2
    return out


def finite_differences(qc, values, observables, h: float = 1e-3) -> np.ndarray:
    """Fourth-order central differences (error ~h^4)."""
    out = np.zeros((len(observables), len(values)))
    for k in range(len(values)):
        e = np.zeros(len(values))
        e[k] = h
        f = [exact_expectations(qc, values + s * e, observables) for s in (2, 1, -1, -2)]
        out[:, k] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h)
    return out


OBSERVABLES_5 = [
    SparsePauliOp.from_list([("ZZZZZ", 1.0), ("XIYIZ", 0.5), ("IIXXI", -0.3)]),
    SparsePauliOp("IIIIY"),
    SparsePauliOp.from_list([("ZIIII", 0.7), ("IIIIX", 0.2), ("IIIII", 3.0)]),
]


def test_sel_gradients_equal_parameter_shift():
    qc = sel_circuit(5, 2)
    values = np.random.default_rng(1).uniform(0, 2 * np.pi, qc.num_parameters)
    res, _ = simulate(SELF, qc, OBSERVABLES_5, parameter_values=values, gradient="adjoint")
    assert res.gradients.shape == (3, 30)
    assert res.parameters == [p.name for p in qc.parameters]
    ref = parameter_shift(qc, values, OBSERVABLES_5)
    assert np.abs(ref).max() > 0.1  # not a trivial gradient
    np.testing.assert_allclose(res.gradients, ref, atol=1e-11, rtol=0)
    np.testing.assert_allclose(res.expectations, exact_expectations(qc, values, OBSERVABLES_5), atol=1e-12)


@pytest.mark.parametrize("fused", [1, 2, 3, 5])
def test_shared_parameters_and_expressions_equal_finite_differences(fused):
    qc = shared_circuit(5)
    values = np.array([0.7, -1.3, 2.1])
    res, _ = simulate(SELF, qc, OBSERVABLES_5, parameter_values=values, gradient="adjoint",
                      max_fused_qubits=fused)
    ref = finite_differences(qc, values, OBSERVABLES_5)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(res.gradients, ref, atol=1e-9, rtol=0)


def test_sel_gradients_equal_lightning_adjoint():
    qml = pytest.importorskip("pennylane")
    n, layers = 4, 3
    qc = sel_circuit(n, layers)
    weights = np.random.default_rng(7).uniform(0, 2 * np.pi, (layers, n, 3))
    dev = qml.device("lightning.qubit", wires=n)

    @qml.qnode(dev, diff_method="adjoint")
    def circuit(w):
        qml.StronglyEntanglingLayers(w, wires=range(n))
        # Qiskit label "XIZY" = X on qubit 3, Z on qubit 1, Y on qubit 0.
        return qml.expval(qml.PauliX(3) @ qml.PauliZ(1) @ qml.PauliY(0))

    w = qml.numpy.array(weights, requires_grad=True)
    ref = np.asarray(qml.grad(circuit)(w)).reshape(-1)
    res = statevector_task(SELF, qc, [SparsePauliOp("XIZY")], parameter_values=weights.reshape(-1),
                           gradient="adjoint")
    assert res.expectations[0] == pytest.approx(float(circuit(w)), abs=1e-12)
    np.testing.assert_allclose(res.gradients[0], ref, atol=1e-10, rtol=0)


def test_complex64_gradients_are_close():
    qc = sel_circuit(6, 2)
    values = np.random.default_rng(3).uniform(0, 2 * np.pi, qc.num_parameters)
    obs = [SparsePauliOp("ZIIIIZ")]
    res, _ = simulate(SELF, qc, obs, parameter_values=values, gradient="adjoint", dtype="complex64")
    np.testing.assert_allclose(res.gradients, parameter_shift(qc, values, obs), atol=1e-5, rtol=0)


def test_values_by_mapping_and_results_beside_gradients():
    qc = shared_circuit(3)
    obs = [SparsePauliOp("ZZI")]
    by_list = statevector_task(SELF, qc, obs, parameter_values=[0.1, 0.2, 0.3], gradient="adjoint",
                               shots=200, seed=4, probabilities=True)
    a, b, c = qc.parameters
    by_name = statevector_task(SELF, qc, obs, parameter_values={"a": 0.1, "b": 0.2, "c": 0.3},
                               gradient="adjoint", shots=200, seed=4)
    by_param = statevector_task(SELF, qc, obs, parameter_values={c: 0.3, a: 0.1, b: 0.2})
    np.testing.assert_array_equal(by_list.gradients, by_name.gradients)
    assert by_param.gradients is None and by_param.expectations == by_list.expectations
    # Counts and probabilities come from the final state, taken before the sweep uncomputes it.
    ref = Statevector(qc.assign_parameters([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(by_list.probabilities, ref.probabilities(), atol=1e-12)
    assert by_list.counts == by_name.counts and sum(by_list.counts.values()) == 200
    assert by_list.timings["gradient"] > 0 and by_list.timings["gradient_sweeps"] == 1


def test_circuit_without_parameters_has_empty_gradient_columns():
    qc = QuantumCircuit(2)
    qc.h(0)
    res = statevector_task(SELF, qc, [SparsePauliOp("IX"), SparsePauliOp("ZI")], gradient="adjoint")
    assert res.gradients.shape == (2, 0) and res.parameters == []
    assert res.expectations == [pytest.approx(1.0), pytest.approx(1.0)]


@pytest.mark.parametrize("name", sorted(FREQUENCIES))
def test_every_gate_derivative_equals_finite_differences(name):
    cls = getattr(library, name)
    rng = np.random.default_rng(len(name))
    count = len(FREQUENCIES[name])
    params = list(rng.uniform(-3, 3, count))
    variants = [cls(*params)]
    if name.startswith("C"):
        variants.append(cls(*params, ctrl_state=0))
    for gate in variants:
        for j in range(count):
            got = gate_angle_derivative(gate, j, pos=0)
            h = 1e-4
            f = []
            for s in (2, 1, -1, -2):
                shifted = list(params)
                shifted[j] += s * h
                kw = {"ctrl_state": gate.ctrl_state} if name.startswith("C") else {}
                f.append(cls(*shifted, **kw).to_matrix())
            ref = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h)
            np.testing.assert_allclose(got, ref, atol=1e-10, rtol=0, err_msg=f"{gate.name} angle {j}")


class InPlaceBackend(NumpyBackend):
    """numpy, but like the CuPy/cuStateVec backend: ``apply`` never changes the layout, so the
    adjoint reads its overlap matrices with the targets anywhere (the GPU path's case)."""

    name = "numpy-in-place"

    def apply(self, state, buf, layout, matrix, qubits):
        new = super().apply(state, buf, layout, matrix, qubits)
        if new != list(layout):
            m = len(layout)
            state[:] = state.reshape((2,) * m).transpose([new.index(q) for q in layout]).reshape(-1)
        return list(layout)


def test_gradients_with_a_layout_keeping_backend_as_on_gpu():
    qc = sel_circuit(5, 2)
    values = np.random.default_rng(9).uniform(0, 2 * np.pi, qc.num_parameters)
    ref, _ = simulate(SELF, qc, OBSERVABLES_5, parameter_values=values, gradient="adjoint")
    got, sv = simulate(SELF, qc, OBSERVABLES_5, parameter_values=values, gradient="adjoint",
                       backend=InPlaceBackend())
    assert sv.layout == [4, 3, 2, 1, 0]  # the layout never moved
    np.testing.assert_allclose(got.gradients, ref.gradients, atol=1e-12, rtol=0)


def test_differentiable_gate_names_match_the_derivative_table():
    names = sorted(getattr(library, cls)(*[0.1] * len(f)).name for cls, f in FREQUENCIES.items())
    assert names == DIFFERENTIABLE_GATES


def test_apply_observable_matches_the_dense_matrix():
    n = 5
    psi = random_statevector(2**n, seed=2).data
    sv = DistributedStatevector(n, SELF)
    sv.layout = [1, 4, 0, 3, 2]  # a scrambled layout, as left by earlier gates
    sv.state[:] = psi.reshape((2,) * n).transpose([n - 1 - q for q in sv.layout]).reshape(-1)
    out = sv.backend.empty(sv.state.size, sv.dtype)
    for op in OBSERVABLES_5:
        apply_observable(sv, op, out)
        sv.state, out = out, sv.state
        got = sv.gather()
        sv.state, out = out, sv.state
        np.testing.assert_allclose(got, op.to_matrix() @ psi, atol=1e-12, rtol=0)


def test_overlap_matrix_matches_einsum_in_any_layout():
    rng = np.random.default_rng(5)
    m = 5
    bra = rng.normal(size=2**m) + 1j * rng.normal(size=2**m)
    ket = rng.normal(size=2**m) + 1j * rng.normal(size=2**m)
    layout = [3, 0, 4, 1, 2]
    for qubits in [(0,), (2, 4), (4, 2), (1, 3, 0), (2, 1, 0, 3, 4)]:
        # Reference: move the targets last in the matrix order (qubits[-1] most significant).
        axes = [layout.index(q) for q in reversed(qubits)]
        rest = [a for a in range(m) if a not in axes]
        k = len(qubits)
        b2 = bra.reshape((2,) * m).transpose(rest + axes).reshape(-1, 2**k)
        k2 = ket.reshape((2,) * m).transpose(rest + axes).reshape(-1, 2**k)
        np.testing.assert_allclose(overlap_matrix(np, bra, ket, layout, qubits), b2.conj().T @ k2,
                                   atol=1e-12, rtol=0)


def test_memory_per_rank_counts_the_second_state_vector():
    assert memory_per_rank(20, 1, gradient="adjoint") == (2 * 16 + 8) * 2**20
    assert memory_per_rank(20, 4, gradient="adjoint") == (2 * 16 + 8) * 2**18
    assert memory_per_rank(3, 4, gradient="adjoint") == (2 * 2 + 2) * 16
    assert memory_per_rank(20, 1, gradient=None) == memory_per_rank(20, 1)
    assert check_memory(20, 1, 24 * 2**20) == 24 * 2**20  # fits without gradients...
    with pytest.raises(ValueError, match="with adjoint gradients need 0.0391 GiB"):
        check_memory(20, 1, 24 * 2**20, gradient="adjoint")  # ...not with them
    with pytest.raises(ValueError, match="gradient must be None or 'adjoint'"):
        memory_per_rank(20, 1, gradient="backprop")
    qc = sel_circuit(10, 1)
    with pytest.raises(ValueError, match="adjoint gradients need"):
        simulate(SELF, qc, [SparsePauliOp("Z" * 10)], parameter_values=np.zeros(30), gradient="adjoint",
                 memory_budget=memory_per_rank(10, 1))
    res, _ = simulate(SELF, qc, [SparsePauliOp("Z" * 10)], parameter_values=np.zeros(30), gradient="adjoint",
                      memory_budget=memory_per_rank(10, 1, gradient="adjoint"))
    assert res.gradients.shape == (1, 30)


def test_bad_gradient_inputs_raise_clear_errors():
    qc = shared_circuit(3)
    obs = [SparsePauliOp("ZZZ")]
    with pytest.raises(ValueError, match=r"unbound parameters \(a, b, c\); pass parameter_values"):
        simulate(SELF, qc, obs)
    with pytest.raises(ValueError, match="has 2 value.*3 parameter.*a, b, c"):
        simulate(SELF, qc, obs, parameter_values=[1, 2])
    with pytest.raises(ValueError, match="lacks a value for c"):
        simulate(SELF, qc, obs, parameter_values={"a": 1, "b": 2})
    with pytest.raises(ValueError, match="'d', which is not a parameter"):
        simulate(SELF, qc, obs, parameter_values={"a": 1, "b": 2, "c": 3, "d": 4})
    with pytest.raises(ValueError, match="parameter b must be finite"):
        simulate(SELF, qc, obs, parameter_values=[1, np.nan, 3])
    with pytest.raises(ValueError, match="gradient must be None or 'adjoint'"):
        simulate(SELF, qc, obs, parameter_values=[1, 2, 3], gradient="parameter-shift")
    with pytest.raises(ValueError, match="needs at least one observable"):
        simulate(SELF, qc, parameter_values=[1, 2, 3], gradient="adjoint")
    with pytest.raises(ValueError, match="Hermitian observables.*IXZ"):
        simulate(SELF, qc, [SparsePauliOp(["IXZ", "ZZZ"], coeffs=[1j, 1.0])], parameter_values=[1, 2, 3],
                 gradient="adjoint")
    # A parameter inside a gate whose derivative is not known: refused, with the way out.
    theta = Parameter("theta")
    sub = QuantumCircuit(1, name="mine")
    sub.rx(theta, 0)
    custom = QuantumCircuit(2)
    custom.append(sub.to_gate(), [1])
    with pytest.raises(ValueError, match=r"instruction 0 \(mine\) .* not known here.*transpile"):
        simulate(SELF, custom, [SparsePauliOp("ZI")], parameter_values=[0.4], gradient="adjoint")
    # Without gradients the same circuit just runs with its value bound.
    res, _ = simulate(SELF, custom, [SparsePauliOp("ZI")], parameter_values=[0.4])
    assert res.expectations[0] == pytest.approx(np.cos(0.4), abs=1e-12)
