"""Circuit cutting: plans, batching, and reconstruction against the exact Statevector value.

Tasks run through a tiny local executor that calls ``fn(MPI.COMM_SELF, *args)`` as the
pilot does. Real Aer sampling throughout; the whole file takes ~40-60 s on 2 cores.
"""
from __future__ import annotations

import io
import math
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from mpi4py import MPI
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import Parameter
from qiskit.quantum_info import PauliList

from pilotq_mpi.workflows.cutting import (
    efficient_su2_problem,
    execute_plan,
    guided_batch_sizes,
    make_batches,
    partition_factors,
    plan_cutting,
    run_cutting,
)


class LocalExecutor:
    """Runs each task at once in this process, as a one-rank pilot task; records the calls."""

    def __init__(self):
        self.calls: list[tuple] = []

    def submit(self, fn, *args, **kwargs):
        self.calls.append(args)
        future: Future = Future()
        future.set_result(fn(MPI.COMM_SELF, *args, **kwargs))
        return future


class ThreadExecutor:
    """A ThreadPoolExecutor adapter with the pilot's calling convention (2 workers)."""

    num_workers = 2

    def __init__(self):
        self._pool = ThreadPoolExecutor(2)

    def submit(self, fn, *args, **kwargs):
        return self._pool.submit(fn, MPI.COMM_SELF, *args, **kwargs)

    def shutdown(self):
        self._pool.shutdown()


# k = 4: the estimator is a sum of many independent shot averages, so it is close to
# Gaussian; P(|error| > 4 sd) = 6e-5 per value, < 2e-3 over all values asserted in this
# file. The standard error is the plug-in formula of the cutting module; a 12-repeat check
# (10 qubits, 1,000 shots) gave empirical sd / estimated se = 0.88 on average (0.53-1.11).
K_SIGMA = 4.0


def _check_against_exact(result, plan, shots):
    est, exact, se = map(np.asarray, (result.estimates, result.exact, result.standard_errors))
    assert exact.shape == est.shape == se.shape == (len(plan.observables),)
    # The estimated se can never exceed the worst case sqrt(P * sum c_i^2 / shots)
    # (each partition factor is a mean of +-1 values); and it is not degenerate.
    coeffs = np.array([c for c, _ in plan.coefficients])
    worst = math.sqrt(len(plan.subcircuits) * float(coeffs @ coeffs) / shots)
    assert np.all(se > 0) and np.all(se <= worst + 1e-12), (se, worst)
    # the test can tell right from wrong: some exact values are far from zero in se units
    assert np.max(np.abs(exact) / se) > 2 * K_SIGMA
    deviations = np.abs(est - exact) / se
    assert np.all(deviations <= K_SIGMA), deviations
    if result.value is not None:
        assert abs(result.value - result.exact_value) <= K_SIGMA * result.value_standard_error


def test_10_qubits_two_halves_matches_exact_value():
    shots = 2000
    circuit, observable = efficient_su2_problem(10, seed=5, observable="z_sum")
    executor = LocalExecutor()
    result = run_cutting(executor, circuit, observable, qubits_per_subcircuit=5, shots=shots, batch_size=10, seed=1)
    plan = plan_cutting(circuit, observable, qubits_per_subcircuit=5, seed=1)
    _check_against_exact(result, plan, shots)
    # 2 CX cuts (reps=2 crosses the middle twice): 6^2 = 36 QPD terms x 2 halves = 72
    assert (result.num_cuts, result.num_subexperiments, result.sampling_overhead) == (2, 72, 81.0)
    assert result.num_tasks == len(executor.calls) == math.ceil(72 / 10) == 8
    # each task carries its batch as QPY bytes
    batches = [qpy.load(io.BytesIO(call[0])) for call in executor.calls]
    assert [len(b) for b in batches] == [10] * 7 + [2]
    assert result.devices == ["CPU"] and result.workers == 1
    assert set(result.timings) == {"plan", "generate", "execute", "reconstruct"}
    assert all(isinstance(t, float) for t in result.timings.values()) and isinstance(result.task_seconds, float)


def test_16_qubits_find_cuts_matches_exact_value_and_factors_reproduce_estimate():
    shots = 2000
    circuit, observable = efficient_su2_problem(16, seed=2, observable="z_sum")
    plan = plan_cutting(circuit, observable, qubits_per_subcircuit=8, seed=0)
    assert plan.num_cuts == 2 and max(plan.subcircuit_widths.values()) <= 8
    executor = ThreadExecutor()
    try:
        result = execute_plan(executor, plan, shots=shots, seed=7)
    finally:
        executor.shutdown()
    # default: guided sizes over 2 workers, large first and small last (72 = 18 + 14 + ... + 2)
    assert result.batch_sizes == guided_batch_sizes(72, 2) == [18, 14, 10, 8, 6, 4, 3, 3, 2, 2, 2]
    assert (result.batch_size, result.num_tasks) == (18, 11)
    _check_against_exact(result, plan, shots)


def test_partition_factors_reproduce_the_library_reconstruction():
    circuit, observable = efficient_su2_problem(6, seed=4, observable="z_sum")
    plan = plan_cutting(circuit, observable, partition_labels="AAABBB")
    pubs = {}
    for label, subs in plan.subexperiments.items():
        out = LocalExecutor().submit(_batch, subs).result()
        pubs[label] = out["results"]
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    library = reconstruct_expectation_values(
        {k: PrimitiveResult(v) for k, v in pubs.items()}, plan.coefficients, plan.subobservables
    )
    factors = partition_factors(plan, pubs)
    coeffs = np.array([c for c, _ in plan.coefficients])
    ours = coeffs @ np.prod(np.stack(list(factors.values())), axis=0)
    np.testing.assert_allclose(ours, library, rtol=0, atol=1e-9)


def _batch(comm, circuits):
    from pilotq_mpi.workflows.cutting import run_subexperiment_batch

    return run_subexperiment_batch(comm, circuits, 300, 11)


def test_batches_are_seeded_so_results_do_not_depend_on_the_executor():
    circuit, observable = efficient_su2_problem(4, reps=1, seed=0)
    plan = plan_cutting(circuit, observable, partition_labels="AABB")
    # one CX cut: 6 QPD terms x 2 partitions
    assert (plan.num_cuts, plan.num_subexperiments, len(plan.coefficients)) == (1, 12, 6)
    serial = execute_plan(LocalExecutor(), plan, shots=300, batch_size=5, seed=3, standard_error=False)
    threads = ThreadExecutor()
    try:
        parallel = execute_plan(threads, plan, shots=300, batch_size=5, seed=3, standard_error=False)
    finally:
        threads.shutdown()
    assert serial.num_tasks == parallel.num_tasks == 3
    assert serial.estimates == parallel.estimates
    other_seed = execute_plan(LocalExecutor(), plan, shots=300, batch_size=5, seed=4, standard_error=False)
    assert other_seed.estimates != serial.estimates


@pytest.mark.parametrize("batch_size, tasks", [(1, 12), (5, 3), (12, 1), (100, 1)])
def test_make_batches_covers_every_subexperiment_once(batch_size, tasks):
    circuit, observable = efficient_su2_problem(4, reps=1, seed=0)
    plan = plan_cutting(circuit, observable, partition_labels="AABB")
    batches = make_batches(plan, batch_size)
    assert len(batches) == tasks
    keys = [key for batch in batches for key in batch]
    assert sorted(keys) == sorted((label, i) for label, subs in plan.subexperiments.items() for i in range(len(subs)))
    assert all(1 <= len(b) <= batch_size for b in batches)


def test_plan_counts_for_three_cuts_and_two_observable_groups():
    circuit, _ = efficient_su2_problem(8, reps=3, seed=1)
    # reps=3 crosses the 4|4 boundary three times: 3 CX cuts, 6^3 = 216 terms, gamma^2 = 9^3
    plan = plan_cutting(circuit, "Z" * 8, partition_labels="AAAABBBB")
    assert (plan.num_cuts, len(plan.coefficients), plan.num_subexperiments) == (3, 216, 432)
    assert plan.sampling_overhead == pytest.approx(729.0)
    # X...X and Z...Z do not commute qubit-wise: two measurement groups per partition
    circuit, _ = efficient_su2_problem(8, reps=2, seed=1)
    plan = plan_cutting(circuit, ["Z" * 8, "X" * 8], partition_labels="AAAABBBB")
    assert (plan.num_cuts, len(plan.coefficients), plan.num_subexperiments) == (2, 36, 144)
    assert plan.timings["plan"] >= 0 and plan.timings["generate"] > 0


def test_finite_num_samples_is_seeded_and_leaves_numpy_rng_alone():
    circuit, observable = efficient_su2_problem(6, seed=0)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = plan_cutting(circuit, observable, partition_labels="AAABBB", num_samples=50, seed=9)
    assert np.array_equal(np.random.get_state()[1], before)
    second = plan_cutting(circuit, observable, partition_labels="AAABBB", num_samples=50, seed=9)
    assert [c for c, _ in first.coefficients] == [c for c, _ in second.coefficients]


def test_bad_inputs_fail_early_with_clear_messages():
    circuit, observable = efficient_su2_problem(6, seed=0)
    with pytest.raises(ValueError, match="give exactly one of qubits_per_subcircuit"):
        plan_cutting(circuit, observable)
    with pytest.raises(ValueError, match="give exactly one of qubits_per_subcircuit"):
        plan_cutting(circuit, observable, qubits_per_subcircuit=3, partition_labels="AAABBB")
    with pytest.raises(ValueError, match="qubits_per_subcircuit=6 is not smaller than the circuit's 6 qubits"):
        plan_cutting(circuit, observable, qubits_per_subcircuit=6)
    with pytest.raises(ValueError, match="qubits_per_subcircuit=9 is not smaller"):
        plan_cutting(circuit, observable, qubits_per_subcircuit=9)
    with pytest.raises(ValueError, match="positive integer, got 0"):
        plan_cutting(circuit, observable, qubits_per_subcircuit=0)
    with pytest.raises(ValueError, match="partition_labels has 4 labels but the circuit has 6"):
        plan_cutting(circuit, observable, partition_labels="AABB")
    with pytest.raises(ValueError, match="single partition"):
        plan_cutting(circuit, observable, partition_labels="AAAAAA")
    with pytest.raises(ValueError, match="observables act on 4 qubits but the circuit has 6"):
        plan_cutting(circuit, "ZZZZ", qubits_per_subcircuit=3)
    with pytest.raises(ValueError, match="no phase"):
        plan_cutting(circuit, PauliList(["-ZZZZZZ"]), qubits_per_subcircuit=3)
    with pytest.raises(TypeError, match="QuantumCircuit, got str"):
        plan_cutting("circuit", observable, qubits_per_subcircuit=3)

    unbound = QuantumCircuit(2)
    unbound.ry(Parameter("theta"), 0)
    unbound.cx(0, 1)
    with pytest.raises(ValueError, match=r"1 unbound parameters \(theta\).*assign_parameters"):
        plan_cutting(unbound, "ZZ", partition_labels="AB")
    measured = circuit.copy()
    measured.measure_all()
    with pytest.raises(ValueError, match="remove_final_measurements"):
        plan_cutting(measured, observable, qubits_per_subcircuit=3)

    executor = LocalExecutor()
    with pytest.raises(ValueError, match="shots must be a positive integer, got 0"):
        run_cutting(executor, circuit, observable, qubits_per_subcircuit=3, shots=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None, got 0"):
        run_cutting(executor, circuit, observable, qubits_per_subcircuit=3, batch_size=0)
    assert executor.calls == []  # nothing was submitted
    with pytest.raises(ValueError, match="num_qubits must be an integer >= 2"):
        efficient_su2_problem(1)
    with pytest.raises(ValueError, match="observable must be 'z_product' or 'z_sum'"):
        efficient_su2_problem(4, observable="xx")


@pytest.mark.parametrize("total, workers", [(0, 3), (1, 3), (72, 2), (144, 6), (3888, 7), (10, 32)])
def test_guided_batch_sizes_cover_everything_large_first(total, workers):
    sizes = guided_batch_sizes(total, workers)
    assert sum(sizes) == total and all(n >= 1 for n in sizes)
    assert sizes == sorted(sizes, reverse=True), "never a larger batch after a smaller one"
    if total >= 4 * workers:
        assert sizes[-1] * 4 <= sizes[0], "the last batches are much smaller than the first"


def test_make_batches_takes_a_list_of_sizes():
    circuit, observable = efficient_su2_problem(6, seed=4, observable="z_sum")
    plan = plan_cutting(circuit, observable, partition_labels="AAABBB")
    n = plan.num_subexperiments
    batches = make_batches(plan, [n - 1, 1])
    assert [len(b) for b in batches] == [n - 1, 1]
    with pytest.raises(ValueError, match="adding up to"):
        make_batches(plan, [n, 1])
