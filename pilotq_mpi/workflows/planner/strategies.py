"""Strategies: every way to run a problem on the resources, with its prediction and feasibility.

:func:`enumerate_strategies` lists, for a :class:`~.problem.Problem`:

- ``statevector/<k>`` (and ``statevector/<k>/gpu``): the distributed state vector on ``k``
  ranks for every power of two up to the worker (GPU) ranks; exact;
- ``single/aer``: Aer's exact estimate on one rank;
- ``cutting/<w>q`` (and ``.../gpu``): circuit cutting into subcircuits of at most ``w``
  qubits (one per number of cuts, up to ``max_cuts``; see :mod:`.cutplan`), subexperiments
  sampled in guided batches over the worker ranks, then reconstructed; sampled, so it has a
  standard error, and its shots are chosen to reach ``target_error``;
- ``qpu/<name>``: a declared QPU samples the circuit's measurement groups (or, when the
  circuit is wider than the device, the subexperiments of the widest cut that fits).

Each one is checked against the constraints (memory per rank, qubits and ranks, mid-circuit
measurements, ``target_error`` with the given ``shots``, ``time_budget``); an infeasible one
keeps its prediction and says why in ``reason``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ...statevector.memory import memory_per_rank as sv_memory
from . import model
from .cutplan import CutOption, uncut_option
from .problem import Problem
from .profile import CostProfile
from .resources import Resources

DEFAULT_SHOTS = 4000
KINDS = ("statevector", "cutting", "single", "qpu")


@dataclass
class Strategy:
    """One way to run the problem (see the module docstring); ``terms`` sum to ``predicted_time``."""

    kind: str
    params: dict
    label: str
    predicted_time: float
    memory_per_rank: int
    tasks: int
    std_error: float
    feasible: bool = True
    reason: str = ""
    terms: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    option: Any = field(default=None, repr=False, compare=False)
    """For cutting and QPU strategies: the :class:`~.cutplan.CutOption` to run."""

    def explain(self) -> str:
        """The prediction term by term, with the parameters and (if infeasible) the reason."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        lines = [f"{self.label}: {self.predicted_time:.3g} s predicted ({params})"]
        total = sum(self.terms.values()) or 1.0
        for name, seconds in sorted(self.terms.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<12}{seconds:>11.4g} s  {seconds / total:6.1%}")
        lines.append(f"  memory/rank {self.memory_per_rank / 2**20:.3g} MiB, tasks {self.tasks}, "
                     f"std error {'exact' if self.std_error == 0 else format(self.std_error, '.3g')}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if not self.feasible:
            lines.append(f"  infeasible: {self.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-able summary (no cut option)."""
        return {"kind": self.kind, "label": self.label, "params": dict(self.params),
                "predicted_time": self.predicted_time, "memory_per_rank": self.memory_per_rank,
                "tasks": self.tasks, "std_error": self.std_error, "feasible": self.feasible,
                "reason": self.reason, "terms": dict(self.terms)}


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB" if b >= 2**30 else f"{b / 2**20:.3g} MiB"


@dataclass
class Stats:
    """Counts of the problem the model needs (computed once per plan)."""

    fused: list
    convert_s: float
    """Seconds converting took in the planning process (reported in ``Plan.timings``; the
    ``convert`` term is predicted from gate counts, see :func:`convert_seconds`)."""


def problem_stats(problem: Problem) -> Stats:
    """Fused gates of the circuit (as the state vector fuses them) and what converting cost."""
    from ...statevector import circuit_to_gates, fuse_gates

    t0 = time.perf_counter()
    if problem.mid_measurements:
        return Stats([], 0.0)
    _, gates, _ = circuit_to_gates(problem.circuit)
    fused = fuse_gates(gates, 4) if gates else []
    return Stats(fused, time.perf_counter() - t0)


def convert_seconds(profile: CostProfile, problem: Problem) -> float:
    """Predicted seconds to convert the circuit to fused gates: its gates x ``numpy.convert_gate_s``.

    A model term, not a timing taken while planning (that one varies with the load on the
    planning process, and is not what the run will pay)."""
    return problem.gates * profile.get("numpy", "convert_gate_s")


def _share_note(ranks: int, cores: int, load: float) -> str:
    share = model.cpu_share(ranks, cores, load)
    return (f"CPU share: {ranks} busy rank(s) get {share:.3g} of {cores} cores at external load {load:.3g}"
            f" (cores*k/(k+load), at most k and cores); each rank's CPU work takes {ranks / share:.3g}x"
            f" its CPU seconds")


def _shots_for(option: CutOption, problem: Problem, shots: int | None, target_error: float | None) -> tuple[int, str]:
    if shots is not None:
        return int(shots), "given"
    if target_error is not None:
        return option.shots_for(target_error / problem.abs_weight()), f"for target_error={target_error:g}"
    return DEFAULT_SHOTS, "default"


def _error_check(strategy: Strategy, option: CutOption, problem: Problem, shots: int,
                 target_error: float | None) -> None:
    if target_error is not None and strategy.std_error > target_error * (1 + 1e-9):
        need = option.shots_for(target_error / problem.abs_weight())
        _infeasible(strategy, f"target_error: std error {strategy.std_error:.3g} > target_error {target_error:g}"
                              f" with shots={shots}; use shots >= {need} (or leave shots unset)")


LIBRARIES = {"statevector": ("qiskit",), "single": ("qiskit", "aer"), "cutting": ("qiskit", "aer")}
"""What each kind of task imports on its workers (paid once per worker: the ``imports`` term)."""


def import_seconds(profile: CostProfile, resources: Resources, kind: str, workers: int) -> float:
    """Seconds of first imports on the workers a strategy uses that have not imported its libraries yet."""
    if resources.warm is None:
        return 0.0
    total = 0.0
    for lib in LIBRARIES.get(kind, ()):
        cold = workers - resources.warm.get(lib, 0)
        if cold > 0:
            total += profile.get("pilot", f"import_{lib}_s") * max(1.0, cold / resources.cpu_cores)
    return total


def _add_imports(strategy: Strategy, profile: CostProfile, resources: Resources, workers: int) -> None:
    seconds = import_seconds(profile, resources, strategy.kind, workers)
    if seconds:
        strategy.terms["imports"] = seconds
        strategy.predicted_time += seconds
        strategy.notes.append(f"includes first imports on {workers} worker(s) (once per pilot)")


def _infeasible(strategy: Strategy, reason: str) -> None:
    if strategy.feasible:
        strategy.feasible = False
        strategy.reason = reason


def enumerate_strategies(problem: Problem, resources: Resources, profile: CostProfile, *,
                         options: list[CutOption], too_many: int | None, search_note: str,
                         shots: int | None = None, target_error: float | None = None,
                         time_budget: float | None = None, stats: Stats | None = None,
                         cut_placeholder: bool = True) -> list[Strategy]:
    """All strategies for ``problem`` on ``resources`` (unranked); see the module docstring.

    ``cut_placeholder``: list an infeasible ``cutting`` entry saying why when there is no cut option.
    """
    stats = stats or problem_stats(problem)
    n = problem.num_qubits
    terms = len(problem.terms)
    cores = resources.cpu_cores
    load = resources.external_load
    convert_s = convert_seconds(profile, problem) if stats.fused else 0.0
    mids = problem.mid_measurements
    mid_reason = ""
    if mids:
        where = ", ".join(f"instruction {i} on qubit(s) {list(q)}" for i, q in mids[:3])
        mid_reason = (f"mid-circuit measurement ({where}): this strategy needs a unitary circuit with at most final"
                      " measurements; defer the measurements to the end (e.g. qiskit's deferred measurement) or"
                      " remove them")
    out: list[Strategy] = []

    # --- distributed state vector, CPU and GPU ranks
    variants = [("numpy", resources.workers, resources.cpu_memory, "")]
    if resources.gpu_workers:
        variants.append(("cupy", resources.gpu_workers, resources.gpu_bytes, "/gpu"))
    for backend, available, budget, suffix in variants:
        k = 1
        while k <= max(available, 1) * 2 and k <= 2 ** (n - 1):
            g = k.bit_length() - 1
            swaps = model.count_swaps(stats.fused, n, g) if stats.fused else 0
            t = model.statevector_terms(profile, num_qubits=n, ranks=k, fused_gates=len(stats.fused), swaps=swaps,
                                        x_groups=problem.x_groups, terms=terms, cores=cores,
                                        convert_s=convert_s, backend=backend, external_load=load)
            mem = sv_memory(n, k)
            s = Strategy("statevector", {"ranks": k, "backend": backend, "swaps": swaps,
                                         "fused_gates": len(stats.fused)},
                         f"statevector/{k}{suffix}", sum(t.values()), mem, 1, 0.0, terms=t)
            _add_imports(s, profile, resources, k)
            if backend == "numpy":
                s.notes.append(_share_note(k, cores, load))
            if not profile.is_calibrated(backend):
                s.notes.append(f"{backend} constants not calibrated on this host (run `pilotq-mpi calibrate`)")
            if mids:
                _infeasible(s, mid_reason)
            if k > available:
                _infeasible(s, f"qubits/ranks: needs {k} {'GPU ' if suffix else ''}worker ranks, the pilot has"
                               f" {available}")
            if mem > budget:
                fits = k
                while fits <= 2 ** (n - 1) and sv_memory(n, fits) > budget:
                    fits *= 2
                _infeasible(s, f"memory: {_gib(mem)} per rank > {_gib(budget)} available; use >= {fits} ranks,"
                               " cutting, or complex64")
            out.append(s)
            k *= 2

    # --- one rank, Aer
    t = model.aer_terms(profile, num_qubits=n, fused_gates=len(stats.fused) or problem.gates, terms=terms,
                        cores=cores, external_load=load)
    mem = 2**n * 16
    s = Strategy("single", {"backend": "aer"}, "single/aer", sum(t.values()), mem, 1, 0.0, terms=t)
    _add_imports(s, profile, resources, 1)
    s.notes.append(_share_note(1, cores, load))
    if mids:
        _infeasible(s, mid_reason)
    if mem > resources.cpu_memory:
        _infeasible(s, f"memory: {_gib(mem)} on one rank > {_gib(resources.cpu_memory)} available;"
                       " use the distributed state vector on more ranks or cutting")
    out.append(s)

    # --- cutting, CPU and GPU workers
    cut_variants = [("aer-sampler", resources.workers, resources.cpu_memory, "")]
    if resources.gpu_workers:
        cut_variants.append(("aer-sampler-gpu", resources.gpu_workers, resources.gpu_bytes, "/gpu"))
    for option in options:
        for backend, workers, budget, suffix in cut_variants:
            shots_used, why = _shots_for(option, problem, shots, target_error)
            t, tasks = model.cutting_terms(profile, option, shots=shots_used, workers=workers, cores=cores,
                                           terms=terms, backend=backend, external_load=load)
            mem = 2**option.size * 16
            se = option.std_error(shots_used) * problem.abs_weight()
            s = Strategy("cutting", {"subcircuit_qubits": option.size, "cuts": option.num_cuts,
                                     "overhead": option.overhead, "subexperiments": option.subexperiments(),
                                     "shots": shots_used, "workers": workers, "backend": backend},
                         f"cutting/{option.size}q{suffix}", sum(t.values()), mem, tasks, se, terms=t, option=option)
            s.notes.append(f"shots {why}; std error is an upper estimate")
            if backend == "aer-sampler":
                s.notes.append(_share_note(workers, cores, load))
            _add_imports(s, profile, resources, min(workers, tasks))
            if mem > budget:
                _infeasible(s, f"memory: a {option.size}-qubit subexperiment needs {_gib(mem)} > {_gib(budget)}")
            _error_check(s, option, problem, shots_used, target_error)
            out.append(s)
    if mids:
        out.append(Strategy("cutting", {}, "cutting", float("inf"), 0, 0, float("nan"), False, mid_reason))
    elif not options and cut_placeholder:
        why = search_note or (f"no cut with at most the allowed cuts was found (sizes down to {too_many} need more)"
                              if too_many else "no cut found")
        out.append(Strategy("cutting", {}, "cutting", float("inf"), 0, 0, float("nan"), False,
                            f"qubits: {why}; raise max_cuts"))

    # --- declared QPUs
    for qpu in resources.qpus:
        label = f"qpu/{qpu.name}"
        if mids:
            out.append(Strategy("qpu", {"qpu": qpu.name}, label, float("inf"), 0, 0, float("nan"), False, mid_reason))
            continue
        if qpu.qubits is None or n <= qpu.qubits:
            option = uncut_option(problem.circuit, problem.terms)
        else:
            fitting = [o for o in options if o.size <= qpu.qubits]
            option = max(fitting, key=lambda o: o.size) if fitting else None
        if option is None:
            out.append(Strategy("qpu", {"qpu": qpu.name}, label, float("inf"), 0, 0, float("nan"), False,
                                f"qubits: the circuit has {n} qubits and the QPU {qpu.qubits}; no cut into"
                                f" subcircuits of <= {qpu.qubits} qubits within max_cuts (raise max_cuts)"))
            continue
        shots_used, why = _shots_for(option, problem, shots, target_error)
        t, jobs = model.qpu_terms(profile, option, qpu, shots=shots_used, terms=terms)
        se = option.std_error(shots_used) * problem.abs_weight()
        s = Strategy("qpu", {"qpu": qpu.name, "subcircuit_qubits": option.size, "cuts": option.num_cuts,
                             "subexperiments": option.subexperiments(), "shots": shots_used},
                     label, sum(t.values()), 0, jobs, se, terms=t, option=option)
        s.notes.append(f"shots {why}; device noise is not in the std error")
        _error_check(s, option, problem, shots_used, target_error)
        out.append(s)

    if time_budget is not None:
        for s in out:
            if s.predicted_time > time_budget:
                _infeasible(s, f"time budget: {s.predicted_time:.3g} s predicted > time_budget {time_budget:g} s")
    return out
