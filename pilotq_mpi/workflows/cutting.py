"""Circuit cutting on the pilot: plan, run batched subexperiments, reconstruct.

The workflow is qiskit-addon-cutting's (find_cuts -> cut_wires -> expand_observables ->
partition_problem -> generate_cutting_experiments -> sample -> reconstruct_expectation_values)
with the sampling step spread over worker ranks:

- :func:`plan_cutting` does everything up to the subexperiments, on the driver, and
  records the counts (cuts, subexperiments, sampling overhead) and phase times.
- :func:`execute_plan` groups the subexperiments into batches (one single-rank task per
  batch, so thousands of subexperiments cost tens of round trips, not thousands),
  submits :func:`run_subexperiment_batch` for each to an executor, gathers and
  reconstructs. By default batch sizes are *guided* (:func:`guided_batch_sizes`): large
  batches first, smaller ones towards the end, so that the last batches are short and
  every worker finishes at about the same time (equal batches left a tail in which a few
  workers finished long batches while the others idled).
- :func:`run_cutting` = plan + execute.

Executors: anything with ``submit(fn, *args) -> Future`` whose tasks are called as
``fn(comm, *args)`` (the :class:`pilotq_mpi.Pilot` contract). Batches are seeded from
``(seed, batch index)``, so results do not depend on how many workers ran them.

Statistical error (``CuttingResult.standard_errors``): the estimate is
``sum_i c_i * prod_p m_ip`` where ``m_ip`` is partition ``p``'s mean of ``shots`` values
of +-1 for coefficient ``i``. The means of different partitions and coefficients are
independent and ``Var(m_ip) = (1 - mu_ip^2) / shots``, so
``Var = sum_i c_i^2 * (prod_p (mu_ip^2 + Var(m_ip)) - prod_p mu_ip^2)``; we plug the measured
``m_ip`` in for ``mu_ip``. (Exact when every sub-observable is measured in one group, as
for Z-type observables; with several groups per sub-observable it is an upper estimate.)
"""
from __future__ import annotations

import io
import math
import os
import socket
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import Pauli, PauliList, SparsePauliOp

__all__ = [
    "CuttingPlan",
    "CuttingResult",
    "efficient_su2_problem",
    "execute_plan",
    "guided_batch_sizes",
    "make_batches",
    "plan_cutting",
    "run_cutting",
    "run_subexperiment_batch",
]

#: Largest circuit for which the exact value is computed with a Statevector.
EXACT_MAX_QUBITS = 20


# --------------------------------------------------------------------------- problems


def efficient_su2_problem(
    num_qubits: int, reps: int = 2, seed: int = 0, observable: str = "z_product"
) -> tuple[QuantumCircuit, PauliList | SparsePauliOp]:
    """A demo/benchmark problem: EfficientSU2 (linear entanglement) with random angles.

    Args:
        num_qubits: circuit width (>= 2).
        reps: EfficientSU2 repetitions; each cut between neighbouring blocks costs
            ``reps`` CX cuts.
        seed: seed for the angles, drawn uniformly from [-pi, pi).
        observable: ``"z_product"`` -> ``PauliList(["Z" * n])``; ``"z_sum"`` -> the average
            magnetisation ``SparsePauliOp`` ``sum_i Z_i / n``.

    Returns:
        ``(circuit, observable)`` with all parameters bound.
    """
    from qiskit.circuit.library import efficient_su2

    if not isinstance(num_qubits, int) or num_qubits < 2:
        raise ValueError(f"num_qubits must be an integer >= 2, got {num_qubits!r}")
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")
    circuit = efficient_su2(num_qubits, entanglement="linear", reps=reps)
    rng = np.random.default_rng(seed)
    circuit.assign_parameters(rng.uniform(-np.pi, np.pi, circuit.num_parameters), inplace=True)
    if observable == "z_product":
        return circuit, PauliList(["Z" * num_qubits])
    if observable == "z_sum":
        terms = ["I" * (num_qubits - 1 - i) + "Z" + "I" * i for i in range(num_qubits)]
        return circuit, SparsePauliOp(terms, coeffs=np.full(num_qubits, 1.0 / num_qubits))
    raise ValueError(f"observable must be 'z_product' or 'z_sum', got {observable!r}")


# --------------------------------------------------------------------------- planning


@dataclass
class CuttingPlan:
    """Everything needed to run and reconstruct a cut circuit (built by :func:`plan_cutting`)."""

    circuit: QuantumCircuit
    observables: PauliList
    observable_coeffs: np.ndarray | None
    """Coefficients when the observable was a SparsePauliOp (its terms are ``observables``)."""
    subcircuits: dict[Hashable, QuantumCircuit]
    subobservables: dict[Hashable, PauliList]
    subexperiments: dict[Hashable, list[QuantumCircuit]]
    coefficients: list[tuple[float, Any]]
    cuts: list[tuple[str, int]]
    sampling_overhead: float
    num_samples: float
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: ``plan`` (find cuts + partition) and ``generate``."""

    @property
    def num_cuts(self) -> int:
        """Number of cut gates and wires."""
        return len(self.cuts)

    @property
    def num_subexperiments(self) -> int:
        """Circuits to sample, over all partitions."""
        return sum(len(v) for v in self.subexperiments.values())

    @property
    def subcircuit_widths(self) -> dict[Hashable, int]:
        """Qubits of each partition's subcircuit."""
        return {label: c.num_qubits for label, c in self.subcircuits.items()}


def _as_paulis(observables, num_qubits: int) -> tuple[PauliList, np.ndarray | None]:
    coeffs = None
    if isinstance(observables, SparsePauliOp):
        coeffs = np.asarray(observables.coeffs)
        if np.any(np.abs(coeffs.imag) > 1e-12):
            raise ValueError("observable has complex coefficients; only Hermitian (real) ones are supported")
        coeffs = coeffs.real.copy()
        paulis = observables.paulis
    elif isinstance(observables, (str, Pauli)):
        paulis = PauliList([observables])
    elif isinstance(observables, PauliList):
        paulis = observables
    elif isinstance(observables, Sequence) and observables:
        try:
            paulis = PauliList(list(observables))
        except Exception as exc:
            raise ValueError(f"observables {observables!r} are not Pauli strings: {exc}") from None
    else:
        raise TypeError(
            "observables must be a Pauli string, a list of them, a PauliList or a SparsePauliOp; "
            f"got {type(observables).__name__}"
        )
    if paulis.num_qubits != num_qubits:
        raise ValueError(
            f"observables act on {paulis.num_qubits} qubits but the circuit has {num_qubits}"
        )
    if np.any(paulis.phase != 0):
        raise ValueError("observables must have no phase (e.g. '-Z' or 'iZ' are not allowed)")
    return paulis, coeffs


def _check_circuit(circuit) -> None:
    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"circuit must be a qiskit QuantumCircuit, got {type(circuit).__name__}")
    if circuit.parameters:
        names = sorted(p.name for p in circuit.parameters)
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(
            f"circuit has {len(names)} unbound parameters ({shown}); "
            "bind them first with circuit.assign_parameters(values)"
        )
    if circuit.num_clbits or any(i.operation.name == "measure" for i in circuit.data):
        raise ValueError(
            "circuit has classical bits or measurements; cutting needs the bare unitary circuit "
            "(use circuit.remove_final_measurements())"
        )


def plan_cutting(
    circuit: QuantumCircuit,
    observables,
    *,
    qubits_per_subcircuit: int | None = None,
    partition_labels: Sequence[Hashable] | str | None = None,
    num_samples: float = np.inf,
    seed: int = 0,
) -> CuttingPlan:
    """Cut ``circuit`` and generate the subexperiments that estimate ``observables``.

    Give exactly one of:

    - ``qubits_per_subcircuit``: ``find_cuts`` chooses gate/wire cuts so that every
      subcircuit has at most that many qubits (``DeviceConstraints``), seeded by ``seed``;
    - ``partition_labels``: one label per qubit (e.g. ``"AAAABBBB"``); every gate across
      two labels is cut.

    Args:
        circuit: bound circuit without measurements.
        observables: Pauli string(s), ``PauliList`` or ``SparsePauliOp`` on all qubits.
        num_samples: samples drawn from the quasi-probability distribution;
            ``numpy.inf`` (default) enumerates all terms exactly.
        seed: seed for the cut search and for finite ``num_samples``.

    Raises:
        ValueError/TypeError: bad circuit, observables, size or labels (message says which).
    """
    from qiskit_addon_cutting import (
        DeviceConstraints,
        OptimizationParameters,
        cut_wires,
        expand_observables,
        find_cuts,
        generate_cutting_experiments,
        partition_problem,
    )

    _check_circuit(circuit)
    n = circuit.num_qubits
    paulis, coeffs = _as_paulis(observables, n)
    if (qubits_per_subcircuit is None) == (partition_labels is None):
        raise ValueError(
            "give exactly one of qubits_per_subcircuit (let find_cuts choose the cuts) "
            "or partition_labels (one label per qubit)"
        )
    if not (num_samples >= 1):
        raise ValueError(f"num_samples must be >= 1 or numpy.inf, got {num_samples!r}")

    t0 = time.perf_counter()
    cuts: list[tuple[str, int]]
    if qubits_per_subcircuit is not None:
        k = qubits_per_subcircuit
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"qubits_per_subcircuit must be a positive integer, got {k!r}")
        if k >= n:
            raise ValueError(
                f"qubits_per_subcircuit={k} is not smaller than the circuit's {n} qubits: "
                "nothing to cut; choose a size below the circuit width"
            )
        cut_circuit, meta = find_cuts(
            circuit, OptimizationParameters(seed=seed), DeviceConstraints(qubits_per_subcircuit=int(k))
        )
        cuts = [tuple(c) for c in meta["cuts"]]
        wired = cut_wires(cut_circuit)
        problem = partition_problem(circuit=wired, observables=expand_observables(paulis, circuit, wired))
        too_wide = {lab: c.num_qubits for lab, c in problem.subcircuits.items() if c.num_qubits > k}
        if too_wide:  # find_cuts guarantees this; check rather than trust silently
            raise RuntimeError(f"find_cuts produced subcircuits wider than {k} qubits: {too_wide}")
    else:
        labels = list(partition_labels)
        if len(labels) != n:
            raise ValueError(
                f"partition_labels has {len(labels)} labels but the circuit has {n} qubits; "
                "give one label per qubit"
            )
        if len(set(labels)) < 2:
            raise ValueError(f"partition_labels {partition_labels!r} name a single partition: nothing to cut")
        problem = partition_problem(circuit=circuit, partition_labels=labels, observables=paulis)
        cuts = [("Gate Cut", i) for i in range(len(problem.bases))]
    overhead = float(np.prod([b.overhead for b in problem.bases])) if problem.bases else 1.0
    t1 = time.perf_counter()

    rng_state = np.random.get_state()
    try:  # finite num_samples draws from numpy's global RNG; seed it, then restore it
        np.random.seed(seed % 2**32)
        subexperiments, coefficients = generate_cutting_experiments(
            problem.subcircuits, problem.subobservables, num_samples=num_samples
        )
    finally:
        np.random.set_state(rng_state)
    t2 = time.perf_counter()
    return CuttingPlan(
        circuit=circuit,
        observables=paulis,
        observable_coeffs=coeffs,
        subcircuits=dict(problem.subcircuits),
        subobservables=dict(problem.subobservables),
        subexperiments=dict(subexperiments),
        coefficients=list(coefficients),
        cuts=cuts,
        sampling_overhead=overhead,
        num_samples=num_samples,
        timings={"plan": t1 - t0, "generate": t2 - t1},
    )


# --------------------------------------------------------------------------- execution


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def guided_batch_sizes(total: int, workers: int, *, factor: float = 2.0, min_size: int | None = None) -> list[int]:
    """Batch sizes for ``total`` items on ``workers`` workers, largest first (guided self-scheduling).

    Each batch takes ``ceil(remaining / (factor * workers))`` items, but at least
    ``min_size`` (default ``ceil(total / (32 * workers))``: at most ~32 small batches per
    worker, so per-task costs stay small). Early batches are large (few round trips);
    the last ones are small, so when the queue runs dry every worker is at most one small
    batch from the end. ``factor`` 2 (rather than GSS's 1) leaves room for batches whose
    cost differs or workers that join late (the demo's state vector holds 4 ranks first).
    """
    if not _positive_int(workers):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not (isinstance(total, (int, np.integer)) and total >= 0):
        raise ValueError(f"total must be an integer >= 0, got {total!r}")
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    floor = max(1, math.ceil(total / (32 * workers))) if min_size is None else min_size
    if not _positive_int(floor):
        raise ValueError(f"min_size must be a positive integer or None, got {min_size!r}")
    sizes, remaining = [], int(total)
    while remaining > 0:
        size = min(remaining, max(floor, math.ceil(remaining / (factor * workers))))
        sizes.append(size)
        remaining -= size
    return sizes


def make_batches(plan: CuttingPlan, batch_size: int | Sequence[int]) -> list[list[tuple[Hashable, int]]]:
    """Split the plan's subexperiments into batches of ``(label, index)`` keys, in order.

    ``batch_size`` is one size for every batch (the last may be smaller), or the list of
    sizes (e.g. from :func:`guided_batch_sizes`), which must add up to the subexperiments.
    """
    keys = [(label, i) for label, subs in plan.subexperiments.items() for i in range(len(subs))]
    if isinstance(batch_size, Sequence):
        sizes = list(batch_size)
        if not all(_positive_int(n) for n in sizes) or sum(sizes) != len(keys):
            raise ValueError(f"batch sizes must be positive integers adding up to {len(keys)} subexperiments,"
                             f" got {sizes!r}")
        batches, start = [], 0
        for n in sizes:
            batches.append(keys[start : start + n])
            start += n
        return batches
    if not _positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return [keys[j : j + batch_size] for j in range(0, len(keys), batch_size)]


def batch_seed(seed: int, index: int) -> int:
    """Simulator seed of batch ``index``: independent streams from ``(seed, index)``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def to_qpy(circuits: Sequence[QuantumCircuit]) -> bytes:
    """Circuits as QPY bytes: about 5x cheaper to write and read than pickled circuits."""
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(list(circuits), buffer)
    return buffer.getvalue()


def run_subexperiment_batch(
    comm,
    circuits: list[QuantumCircuit] | bytes,
    shots: int,
    seed: int,
    optimization_level: int = 1,
    max_parallel_threads: int | None = None,
) -> dict[str, Any]:
    """Pilot task: transpile and sample a batch of subexperiments with Aer's SamplerV2.

    Runs on ``AerSimulator(device="GPU")`` when ``pilotq_mpi.context.current_task()`` says
    this rank owns a GPU, on the CPU otherwise. ``comm`` (the task's communicator) is not
    used: a batch is a single-rank task. ``circuits`` may be QPY bytes (:func:`to_qpy`,
    what :func:`execute_plan` sends). ``max_parallel_threads`` caps Aer's threads (by
    default Aer uses every core, which oversubscribes a node running one task per core).

    Returns:
        ``{"results": [SamplerPubResult, ...] (input order), "seconds": compute time,
        "device": "CPU"|"GPU", "host": hostname, "pid": process id}``.
    """
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    from pilotq_mpi.context import current_task

    t0 = time.perf_counter()
    if isinstance(circuits, (bytes, bytearray)):
        from qiskit import qpy

        circuits = qpy.load(io.BytesIO(circuits))
    task = current_task()
    device = "GPU" if task is not None and task.has_gpu else "CPU"
    backend_options: dict[str, Any] = {"device": device}
    if max_parallel_threads is not None:
        backend_options["max_parallel_threads"] = int(max_parallel_threads)
    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=AerSimulator(**backend_options))
    isa = pm.run(list(circuits))
    sampler = SamplerV2(default_shots=shots, seed=seed, options={"backend_options": backend_options})
    results = list(sampler.run(isa).result())
    return {
        "results": results,
        "seconds": time.perf_counter() - t0,
        "device": device,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


@dataclass
class CuttingResult:
    """Outcome of :func:`run_cutting` / :func:`execute_plan`."""

    estimates: list[float]
    """Reconstructed expectation value of each observable (each term of a SparsePauliOp)."""
    exact: list[float] | None
    """Statevector values (circuits of <= 20 qubits), else None."""
    standard_errors: list[float] | None
    """Estimated standard error of each estimate (see module docstring), or None."""
    value: float | None
    """For a SparsePauliOp observable: sum of coefficient * estimate; else None."""
    exact_value: float | None
    value_standard_error: float | None
    """Upper bound sum(|coeff| * stderr) for ``value``."""
    num_cuts: int
    num_subexperiments: int
    sampling_overhead: float
    num_tasks: int
    batch_size: int
    """The largest batch (the first one)."""
    shots: int
    timings: dict[str, float]
    """Seconds: ``plan``, ``generate``, ``execute`` (submit to last result), ``reconstruct``."""
    task_seconds: float
    """Sum of the compute time reported by the tasks (transpile + sample)."""
    devices: list[str]
    workers: int
    """Distinct (host, pid) that ran batches."""
    batch_sizes: list[int] = field(default_factory=list)
    """Subexperiments per task, in submission order."""


def _workers(executor) -> int:
    workers = getattr(executor, "num_workers", None) or getattr(executor, "_max_workers", None)
    if not workers and hasattr(executor, "resources"):  # pilotq_mpi.Pilot: its ranks not pinned to a QPU
        resources = executor.resources
        ranks = getattr(resources, "compute_ranks", None) or getattr(resources, "ranks", ())
        workers = len(ranks) or None
    return int(workers or 8)


def execute_plan(
    executor,
    plan: CuttingPlan,
    *,
    shots: int = 4000,
    batch_size: int | None = None,
    seed: int = 0,
    standard_error: bool = True,
    exact: bool = True,
    max_parallel_threads: int | None = None,
) -> CuttingResult:
    """Sample ``plan``'s subexperiments as batched single-rank tasks and reconstruct.

    Args:
        executor: ``submit(fn, *args) -> Future``; tasks run as ``fn(comm, *args)``.
        shots: shots per subexperiment.
        batch_size: subexperiments per task; ``None`` -> guided sizes, large first and small
            last (:func:`guided_batch_sizes` over ``executor.num_workers``, or the compute
            ranks of a ``Pilot``, else 8 assumed).
        seed: base seed; batch ``b`` is sampled with ``batch_seed(seed, b)``.
        standard_error: also estimate each estimate's standard error (costs about as
            much again as reconstruction).
        exact: compute the Statevector value when the circuit has <= 20 qubits.
        max_parallel_threads: Aer threads per task (``None``: Aer's default, all cores).
    """
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    if batch_size is None:
        batches = make_batches(plan, guided_batch_sizes(plan.num_subexperiments, _workers(executor)))
    else:
        batches = make_batches(plan, batch_size)

    t0 = time.perf_counter()
    futures = []
    for b, keys in enumerate(batches):
        circuits = [plan.subexperiments[label][i] for label, i in keys]
        futures.append(executor.submit(
            run_subexperiment_batch, to_qpy(circuits), int(shots), batch_seed(seed, b), 1, max_parallel_threads))
    pubs: dict[Hashable, list] = {label: [None] * len(s) for label, s in plan.subexperiments.items()}
    task_seconds = 0.0
    devices: set[str] = set()
    workers: set[tuple[str, int]] = set()
    for keys, fut in zip(batches, futures):
        out = fut.result()
        if len(out["results"]) != len(keys):
            raise RuntimeError(f"a batch of {len(keys)} subexperiments returned {len(out['results'])} results")
        for (label, i), pub in zip(keys, out["results"]):
            pubs[label][i] = pub
        task_seconds += out["seconds"]
        devices.add(out["device"])
        workers.add((out["host"], out["pid"]))
    t1 = time.perf_counter()

    results = {label: PrimitiveResult(lst) for label, lst in pubs.items()}
    estimates = [float(v) for v in reconstruct_expectation_values(results, plan.coefficients, plan.subobservables)]
    t2 = time.perf_counter()
    stderrs = _standard_errors(plan, pubs, int(shots)) if standard_error else None

    exact_values = None
    if exact and plan.circuit.num_qubits <= EXACT_MAX_QUBITS:
        from qiskit.quantum_info import Statevector

        sv = Statevector(plan.circuit)
        exact_values = [float(sv.expectation_value(p).real) for p in plan.observables]

    value = exact_value = value_se = None
    if plan.observable_coeffs is not None:
        c = plan.observable_coeffs
        value = float(np.dot(c, estimates))
        exact_value = float(np.dot(c, exact_values)) if exact_values is not None else None
        value_se = float(np.dot(np.abs(c), stderrs)) if stderrs is not None else None

    timings = dict(plan.timings)
    timings.update(execute=t1 - t0, reconstruct=t2 - t1)
    return CuttingResult(
        estimates=estimates,
        exact=exact_values,
        standard_errors=stderrs,
        value=value,
        exact_value=exact_value,
        value_standard_error=value_se,
        num_cuts=plan.num_cuts,
        num_subexperiments=plan.num_subexperiments,
        sampling_overhead=plan.sampling_overhead,
        num_tasks=len(batches),
        batch_size=max((len(b) for b in batches), default=0),
        shots=int(shots),
        timings=timings,
        task_seconds=task_seconds,
        devices=sorted(devices),
        workers=len(workers),
        batch_sizes=[len(b) for b in batches],
    )


def partition_factors(plan: CuttingPlan, pubs: dict[Hashable, list]) -> dict[Hashable, np.ndarray]:
    """Per-partition factors ``m[label][i, k]`` of coefficient ``i`` and observable ``k``.

    The reconstructed estimate is ``sum_i c_i * prod_label m[label][i, k]``. Computed by
    calling ``reconstruct_expectation_values`` on one coefficient and one partition at a time.
    """
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    factors = {}
    for label, subobs in plan.subobservables.items():
        groups = len(pubs[label]) // len(plan.coefficients)
        rows = []
        for i, (_, weight_type) in enumerate(plan.coefficients):
            part = PrimitiveResult(pubs[label][i * groups : (i + 1) * groups])
            rows.append(reconstruct_expectation_values({label: part}, [(1.0, weight_type)], {label: subobs}))
        factors[label] = np.asarray(rows, dtype=float)
    return factors


def _standard_errors(plan: CuttingPlan, pubs: dict[Hashable, list], shots: int) -> list[float]:
    factors = partition_factors(plan, pubs)
    coeffs = np.asarray([c for c, _ in plan.coefficients], dtype=float)
    second = np.ones((len(coeffs), len(plan.observables)))
    first = np.ones_like(second)
    for m in factors.values():
        var = np.clip(1.0 - m**2, 0.0, None) / shots
        second *= m**2 + var
        first *= m**2
    variance = (coeffs[:, None] ** 2 * (second - first)).sum(axis=0)
    return [float(s) for s in np.sqrt(variance)]


def run_cutting(
    executor,
    circuit: QuantumCircuit,
    observables,
    *,
    qubits_per_subcircuit: int | None = None,
    partition_labels: Sequence[Hashable] | str | None = None,
    shots: int = 4000,
    batch_size: int | None = None,
    seed: int = 0,
    num_samples: float = np.inf,
    standard_error: bool = True,
) -> CuttingResult:
    """Cut ``circuit``, sample the subexperiments on ``executor`` and reconstruct.

    ``plan_cutting(circuit, observables, qubits_per_subcircuit=..., partition_labels=...,
    num_samples=..., seed=seed)`` followed by ``execute_plan(executor, plan, shots=...,
    batch_size=..., seed=seed)``; see those for the arguments.

    Example (driver of ``mpiexec -n 5 python -m pilotq_mpi app.py``)::

        qc, obs = efficient_su2_problem(16)
        with Pilot() as pilot:
            res = run_cutting(pilot, qc, obs, qubits_per_subcircuit=8, shots=4000)
        print(res.estimates, res.exact, res.standard_errors)
    """
    if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    plan = plan_cutting(
        circuit,
        observables,
        qubits_per_subcircuit=qubits_per_subcircuit,
        partition_labels=partition_labels,
        num_samples=num_samples,
        seed=seed,
    )
    return execute_plan(
        executor, plan, shots=shots, batch_size=batch_size, seed=seed, standard_error=standard_error
    )
