"""Distributed state-vector simulator that runs on any mpi4py communicator.

Typical use inside a pilot task (``comm`` is the task's sub-communicator)::

    from pilotq_mpi.statevector import statevector_task
    result = statevector_task(comm, circuit, observables=[SparsePauliOp("Z" * n)], shots=1000, seed=7)

``result`` is a :class:`StatevectorResult` on comm rank 0 and ``None`` elsewhere.
Rank counts must be powers of two with at least one qubit per rank (``n`` qubits on at most
``2**(n-1)`` ranks); any circuit runs on such a layout, gates on more qubits than a rank holds
included. Check the layout and memory at submit time with :func:`memory_per_rank` /
:func:`check_memory` (both raise ``ValueError`` for a layout that cannot work), e.g.
``pilot.submit(statevector_task, qc, ranks=4, memory_per_rank=memory_per_rank(n, 4))``.
Circuit input rules (final measurements skipped, no resets) are in :func:`circuit_to_gates`.

Parameterised circuits take ``parameter_values=`` (a sequence in the order of
``circuit.parameters``, or a mapping). ``gradient="adjoint"`` also returns
``result.gradients[j, k] = d<O_j>/dtheta_k`` by adjoint differentiation on the same
communicator (:mod:`.adjoint`; about 2.5 state vectors per rank: pass
``memory_per_rank(n, ranks, gradient="adjoint")`` to ``submit``)::

    res = statevector_task(comm, qc, [SparsePauliOp("Z" * n)], parameter_values=theta,
                           gradient="adjoint")
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from .adjoint import adjoint_gradients
from .circuit import Gate, circuit_to_gates, fuse_gates
from .distributed import DistributedStatevector
from .memory import check_gradient, check_memory, memory_per_rank
from . import observables as _obs
from .observables import expectations, hermitian_terms, probabilities, sample_counts
from .parameters import DIFFERENTIABLE_GATES, circuit_parameters

__all__ = [
    "Gate", "circuit_to_gates", "fuse_gates", "DistributedStatevector", "StatevectorResult",
    "memory_per_rank", "check_memory", "simulate", "statevector_task",
    "expectations", "probabilities", "sample_counts", "DIFFERENTIABLE_GATES",
]

DEFAULT_MAX_FUSED_QUBITS = 4
_OPTIONS = {"dtype", "backend", "max_fused_qubits", "seed", "probabilities", "memory_budget",
            "parameter_values", "gradient"}


@dataclass
class StatevectorResult:
    """What a state-vector task returns (on comm rank 0)."""

    num_qubits: int
    ranks: int
    norm: float
    expectations: list = field(default_factory=list)
    """One value per observable: float when the imaginary part is negligible, else complex."""
    probabilities: object = None
    """numpy array of 2**n probabilities in Qiskit order, if asked for."""
    counts: dict | None = None
    """``{bitstring: count}`` (Qiskit order, qubit 0 rightmost) if ``shots > 0``."""
    timings: dict = field(default_factory=dict)
    """Seconds: convert, simulate (of which apply and swap), observables, total; plus gates/swaps counts.
    With ``gradient="adjoint"`` also gradient (all sweeps, of which gradient_forward: the forward
    passes recomputed between observables) and gradient_sweeps."""
    gradients: object = None
    """With ``gradient="adjoint"``: numpy array, one row per observable, one column per parameter."""
    parameters: list = field(default_factory=list)
    """Names of the circuit's parameters, in gradient-column order."""


def simulate(comm, circuit, observables: Sequence = (), shots: int = 0, *, dtype="complex128",
             backend="numpy", max_fused_qubits: int = DEFAULT_MAX_FUSED_QUBITS, seed=None,
             probabilities: bool = False, memory_budget: int | None = None,
             parameter_values=None, gradient=None):
    """Simulate ``circuit`` on ``comm``; return ``(StatevectorResult or None, DistributedStatevector)``.

    Every rank gets the state; the result object is built on rank 0 only. ``parameter_values``
    binds the circuit's parameters; ``gradient="adjoint"`` (needs observables, Hermitian ones)
    adds ``gradients``, and then the returned state is ``|0>`` again (the sweep uncomputes it;
    expectation values, probabilities and counts are taken before).
    """
    t_start = time.perf_counter()
    check_gradient(gradient)
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise ValueError(f"shots must be a non-negative int, got {shots!r}")
    if isinstance(observables, (str, bytes)) or not isinstance(observables, Sequence):
        observables = [observables]
    n, gates, phase = circuit_to_gates(circuit, parameter_values, derivatives=gradient == "adjoint")
    if gradient:
        if not observables:
            raise ValueError("gradient='adjoint' needs at least one observable (gradients of <O>)")
        for op in observables:
            hermitian_terms(op, n)  # refuses non-Hermitian ones before any work
        check_memory(n, comm.Get_size(), memory_budget, dtype, gradient)
    sv = DistributedStatevector(n, comm, dtype=dtype, backend=backend, memory_budget=memory_budget)
    fused = fuse_gates(gates, min(max_fused_qubits, sv.num_local)) if gates else []
    t_conv = time.perf_counter()
    sv.run(fused, phase)
    t_sim = time.perf_counter()
    values = expectations(sv, list(observables)) if observables else []
    norm = sv.norm()
    probs = _obs.probabilities(sv) if probabilities else None  # the argument shadows the function
    counts = sample_counts(sv, shots, seed) if shots else None
    t_obs = time.perf_counter()
    apply_s, swap_s, swaps = sv.timings["apply"], sv.timings["swap"], sv.swaps  # of the forward pass
    grads, grad_timings = None, {}
    if gradient:
        grads, grad_timings = adjoint_gradients(sv, fused, phase, list(observables),
                                                len(circuit_parameters(circuit)))
    t_end = time.perf_counter()
    if sv.rank != 0:
        return None, sv
    timings = {
        "convert": t_conv - t_start, "simulate": t_sim - t_conv, "apply": apply_s,
        "swap": swap_s, "observables": t_obs - t_sim, "total": t_end - t_start,
        "gates": len(gates), "fused_gates": len(fused), "swaps": swaps, **grad_timings,
    }
    vals = [v.real if abs(v.imag) <= 1e-12 * max(1.0, abs(v)) else v for v in values]
    names = [p.name for p in circuit_parameters(circuit)]
    return StatevectorResult(n, sv.size, norm, vals, probs, counts, timings, grads, names), sv


def statevector_task(comm, circuit, observables: Sequence = (), shots: int = 0, **options):
    """Pilot task: simulate ``circuit`` on ``comm``; return a :class:`StatevectorResult` on rank 0, else None.

    Options: ``dtype`` ('complex128' | 'complex64'), ``backend`` ('numpy' | 'cupy' | 'auto'),
    ``max_fused_qubits`` (default 4), ``seed`` (for ``shots``), ``probabilities`` (bool),
    ``memory_budget`` (bytes per rank), ``parameter_values`` (for a parameterised circuit:
    numbers in the order of ``circuit.parameters``, or ``{Parameter or name: value}``),
    ``gradient`` (``None`` or ``"adjoint"``: ``result.gradients`` holds ``d<O_j>/dtheta_k``,
    parameters in gates listed in ``DIFFERENTIABLE_GATES``, angle expressions included).
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown statevector option(s) {sorted(unknown)}; valid: {sorted(_OPTIONS)}")
    result, _ = simulate(comm, circuit, observables, shots, **options)
    return result
