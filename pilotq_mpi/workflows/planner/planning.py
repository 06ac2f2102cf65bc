"""``plan()``: rank every way to run a circuit on a pilot's free resources.

A :class:`Plan` holds the strategies ranked by predicted time, feasible ones first,
``plan.best`` (the pick) and ``plan.table()``. When no strategy is feasible, :func:`plan`
raises :class:`~.problem.PlanningError` naming the constraints that failed and what would
satisfy them (the plan is on the error's ``plan``).
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

from .cutplan import cut_options
from .problem import PlanningError, Problem, make_problem
from .profile import CostProfile
from .resources import QpuInfo, Resources
from .strategies import Strategy, enumerate_strategies, problem_stats

DEFAULT_MAX_CUTS = 3
_CUT_CACHE: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
_CUT_CACHE_SIZE = 32


@dataclass
class Plan:
    """Ranked strategies for one problem on one set of resources."""

    problem: Problem
    resources: Resources
    profile: CostProfile
    strategies: list[Strategy]
    settings: dict = field(default_factory=dict)
    """target_error, shots, time_budget, max_cuts, sizes, seed (what the plan was made with)."""
    timings: dict = field(default_factory=dict)
    """Seconds spent planning: ``cut_search``, ``convert``, ``total``."""
    notes: list = field(default_factory=list)

    @property
    def best(self) -> Strategy | None:
        """The pick: the feasible strategy with the least predicted time (None if none is feasible)."""
        return next((s for s in self.strategies if s.feasible), None)

    @property
    def feasible(self) -> list[Strategy]:
        return [s for s in self.strategies if s.feasible]

    def get(self, label: str) -> Strategy:
        """The strategy called ``label`` (KeyError listing the labels otherwise)."""
        for s in self.strategies:
            if s.label == label:
                return s
        raise KeyError(f"no strategy {label!r} in this plan; labels: {', '.join(s.label for s in self.strategies)}")

    def table(self) -> str:
        """A plain-text table: rank, label, predicted time, memory per rank, tasks, std error, and why not."""
        p = self.problem
        head = (f"plan for {p.num_qubits} qubits, {p.gates} gates (depth {p.depth}), {len(p.observables)} observable(s),"
                f" {len(p.terms)} Pauli term(s) on {self.resources.describe()}")
        cal = [b for b in self.profile.calibrated]
        head += f"\nprofile: {'calibrated ' + ', '.join(sorted(cal)) if cal else 'built-in defaults (run `pilotq-mpi calibrate`)'}"
        rows = [("#", "strategy", "predicted", "mem/rank", "tasks", "std err", "status")]
        for i, s in enumerate(self.strategies, 1):
            pred = "-" if not math.isfinite(s.predicted_time) else f"{s.predicted_time:.3g} s"
            err = "exact" if s.std_error == 0 else ("-" if math.isnan(s.std_error) else f"{s.std_error:.2g}")
            mem = f"{s.memory_per_rank / 2**20:.3g} MiB" if s.memory_per_rank else "-"
            status = ("best" if s is self.best else "ok") if s.feasible else f"no: {s.reason}"
            rows.append((str(i), s.label, pred, mem, str(s.tasks), err, status))
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = [head]
        for r in rows:
            lines.append("  ".join(r[c].ljust(widths[c]) if c == 1 else r[c].rjust(widths[c]) for c in range(6))
                         + "  " + r[6])
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def replan(self, pilot: Any, **changes: Any) -> "Plan":
        """The same problem planned again on ``pilot``'s resources now (cut searches are reused)."""
        settings = {**self.settings, **changes}
        return plan(self.problem.circuit, self.problem.observables, pilot, profile=self.profile, **settings)


def _check_number(name: str, value, *, integer: bool = False) -> None:
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
        raise PlanningError(f"{name} must be a positive {'integer' if integer else 'number'} or None, got {value!r}")


def _cuts(problem: Problem, max_cuts: int, sizes, seed: int, limit: float):
    key = (problem.digest, max_cuts, tuple(sorted(sizes)) if sizes is not None else None, seed)
    if key in _CUT_CACHE:
        _CUT_CACHE.move_to_end(key)
        return _CUT_CACHE[key], 0.0
    t0 = time.perf_counter()
    found = cut_options(problem.circuit, problem.terms, max_cuts=max_cuts, sizes=sizes, seed=seed, time_limit=limit)
    _CUT_CACHE[key] = found
    while len(_CUT_CACHE) > _CUT_CACHE_SIZE:
        _CUT_CACHE.popitem(last=False)
    return found, time.perf_counter() - t0


def resources_of(pilot: Any, qpu_info: dict[str, QpuInfo] | None = None) -> Resources:
    """``pilot`` as :class:`Resources`: a Resources as is, a live Pilot's inventory now."""
    if isinstance(pilot, Resources):
        return pilot
    if hasattr(pilot, "resources"):
        return Resources.from_pilot(pilot, qpu_info)
    raise TypeError(f"pilot must be a running Pilot or a planner Resources, got {type(pilot).__name__}")


def plan(circuit, observables, pilot, *, target_error: float | None = None, shots: int | None = None,
         time_budget: float | None = None, profile: CostProfile | str | None = None,
         max_cuts: int = DEFAULT_MAX_CUTS, sizes=None, seed: int = 0,
         qpu_info: dict[str, QpuInfo] | None = None, cut_search_limit: float = 20.0,
         search_cuts: "str | bool" = True) -> Plan:
    """Rank every way to run ``circuit`` for ``observables`` on ``pilot``'s free resources.

    Args:
        circuit: a bound ``QuantumCircuit`` (final measurements are ignored).
        observables: a Pauli string, ``SparsePauliOp``, ``PauliList`` or a list of them; one
            value is estimated per observable (per Pauli of a ``PauliList``).
        pilot: a running :class:`~pilotq_mpi.Pilot` (its resources now) or a :class:`Resources`.
        target_error: wanted standard error of every value; sampled strategies get the shots
            that reach it (exact ones always do).
        shots: shots per sampled circuit (instead of choosing them from ``target_error``).
        time_budget: seconds; slower strategies are infeasible.
        profile: a :class:`CostProfile`, a path to a profile file, or None (this host's saved
            profile, else the built-in defaults).
        max_cuts: most cuts a cutting strategy may have (each multiplies the subexperiments by ~6).
        sizes: subcircuit sizes to consider for cutting (default: searched, see :mod:`.cutplan`).
        seed: seed of the cut search.
        qpu_info: planner's view of declared QPUs by name (width, latency), when the declaration
            does not tell.
        cut_search_limit: seconds the cut search may take.
        search_cuts: True (default: list cutting at every size found), ``"auto"`` (skip the cut
            search, and cutting, when an exact strategy is predicted faster than any cut can be;
            a note says so: planning takes a fraction of a second instead of seconds) or False.

    Raises:
        PlanningError: bad input (observable width, parameters), or no strategy is feasible
            (the message says which constraints failed and what would satisfy them).
    """
    t0 = time.perf_counter()
    _check_number("target_error", target_error)
    _check_number("shots", shots, integer=True)
    _check_number("time_budget", time_budget)
    _check_number("max_cuts", max_cuts, integer=True)
    resources = resources_of(pilot, qpu_info)
    if profile is None or isinstance(profile, (str, bytes)) or hasattr(profile, "__fspath__"):
        profile = CostProfile.load(profile, host=resources.host if profile is None else None)
    problem = circuit if isinstance(circuit, Problem) else make_problem(circuit, observables)
    settings = {"target_error": target_error, "shots": shots, "time_budget": time_budget, "max_cuts": max_cuts,
                "sizes": sizes, "seed": seed, "qpu_info": qpu_info, "cut_search_limit": cut_search_limit,
                "search_cuts": search_cuts}
    if search_cuts not in ("auto", True, False):
        raise PlanningError(f"search_cuts must be 'auto', True or False, got {search_cuts!r}")
    stats = problem_stats(problem)
    skipped = ""
    if search_cuts == "auto" and sizes is None and not problem.mid_measurements:
        skipped = _cut_search_not_worth_it(problem, resources, profile, stats, shots, target_error)
    if problem.mid_measurements or skipped or search_cuts is False:
        (options, too_many, note), search_s = ([], None, skipped or ("cut search off (search_cuts=False)"
                                                                     if search_cuts is False else "")), 0.0
    else:
        (options, too_many, note), search_s = _cuts(problem, max_cuts, sizes, seed, cut_search_limit)
    strategies = enumerate_strategies(problem, resources, profile, options=options, too_many=too_many,
                                      search_note=note, shots=shots, target_error=target_error,
                                      time_budget=time_budget, stats=stats, cut_placeholder=not skipped)
    strategies.sort(key=lambda s: (not s.feasible, s.predicted_time if math.isfinite(s.predicted_time) else math.inf))
    result = Plan(problem, resources, profile, strategies, settings,
                  timings={"cut_search": search_s, "convert": stats.convert_s, "total": time.perf_counter() - t0})
    if note:
        result.notes.append(note)
    if result.best is None:
        raise PlanningError(_no_strategy_message(result), result)
    return result


def cutting_lower_bound(profile: CostProfile, resources: Resources) -> float:
    """Seconds no cutting strategy can beat: one cut (6 QPD terms) over two partitions is at least
    12 subexperiments to generate, plus their per-circuit cost spread over the workers."""
    return 12 * profile.get("cutting", "generate_s") + 12 * profile.get("aer-sampler", "circuit_s") / max(
        1, min(resources.workers, resources.cpu_cores))


def _cut_search_not_worth_it(problem: Problem, resources: Resources, profile: CostProfile, stats, shots,
                             target_error) -> str:
    """Why searching cuts is pointless here (an exact strategy beats any cut), or "" to search."""
    if any(q.qubits is not None and problem.num_qubits > q.qubits for q in resources.qpus):
        return ""  # a narrower QPU needs the cuts
    exact = enumerate_strategies(problem, resources, profile, options=[], too_many=None, search_note="",
                                 shots=shots, target_error=target_error, stats=stats, cut_placeholder=False)
    fastest = min((s for s in exact if s.feasible and s.kind in ("statevector", "single")),
                  key=lambda s: s.predicted_time, default=None)
    bound = cutting_lower_bound(profile, resources)
    if fastest is None or fastest.predicted_time >= bound:
        return ""
    return (f"cut search skipped: {fastest.label} takes {fastest.predicted_time:.3g} s, less than any cut can"
            f" (>= {bound:.3g} s); pass search_cuts=True to list cutting strategies anyway")


def _no_strategy_message(p: Plan) -> str:
    by_constraint: dict[str, list[Strategy]] = {}
    for s in p.strategies:
        by_constraint.setdefault(s.reason.split(":", 1)[0], []).append(s)
    parts = []
    budget = p.settings.get("time_budget")
    target = p.settings.get("target_error")
    timed = by_constraint.get("time budget", [])
    if timed:
        fastest = min(timed, key=lambda s: s.predicted_time)
        what = f"time_budget={budget:g} s"
        if target is not None:
            what = f"target_error={target:g} within {what}"
        parts.append(f"no strategy reaches {what}: the fastest that meets every other constraint is {fastest.label}"
                     f" at {fastest.predicted_time:.3g} s; raise time_budget to >= {fastest.predicted_time:.3g} s"
                     + (", or loosen target_error (the shots grow as 1/target_error^2)" if target is not None else ""))
    for constraint, group in by_constraint.items():
        if constraint == "time budget":
            continue
        parts.append(f"{constraint}: " + "; ".join(f"{s.label}: {s.reason.split(':', 1)[-1].strip()}"
                                                   for s in group[:4]) + ("; ..." if len(group) > 4 else ""))
    return "no strategy is feasible for this circuit on these resources. " + " | ".join(parts)
