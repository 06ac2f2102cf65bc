"""Cut options for a problem: how a circuit cuts at each subcircuit size, and what that costs in counts.

:func:`cut_options` searches cuts with qiskit-addon-cutting's ``find_cuts`` (with a bounded
number of backjumps, so one search takes ~0.1-0.5 s instead of minutes at four cuts) from
the widest subcircuit size down, and records for each distinct result the counts the cost
model needs, without generating the subexperiments: cuts, sampling overhead, QPD terms,
observable groups and subexperiments per partition, the fraction of subexperiments with a
mid-circuit (QPD) measurement, which Aer must simulate shot by shot, and the variance factor
``prod_b sum_i c_i^2`` of the estimate. :func:`build_cutting_plan` generates the
subexperiments of one option as a :class:`~pilotq_mpi.workflows.cutting.CuttingPlan`, which
the existing cutting workflow runs and reconstructs.

A search under size ``m`` whose widest subcircuit is ``w < m`` is also the answer for every
size in ``[w, m]`` (the same cuts are feasible there and were optimal under the looser
bound), so the next size searched is ``w - 1``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_BACKJUMPS = 50
"""find_cuts backjumps: as good as the default 10,000 on the benchmark families, 10-300x faster."""


@dataclass
class CutOption:
    """One way to cut the problem (see the module docstring)."""

    size: int
    """Widest subcircuit (qubits)."""
    cuts: list
    overhead: float
    coefficients: int
    widths: dict
    gates: dict
    """Gates per partition's subcircuit."""
    groups: dict
    """Observable groups (circuits per QPD term) per partition."""
    mid_fraction: dict
    """Per partition: fraction of its subexperiments with a mid-circuit QPD measurement."""
    variance_factor: float
    """``prod_b sum_i c_i^2``: a term's variance is at most ``partitions * this / shots``."""
    search_s: float = 0.0
    requested: int = 0
    """The size asked of find_cuts (``size`` is the widest subcircuit it returned)."""
    problem: Any = field(default=None, repr=False)
    """qiskit-addon-cutting's PartitionedCuttingProblem (to generate the subexperiments)."""

    @property
    def num_cuts(self) -> int:
        return len(self.cuts)

    @property
    def partitions(self) -> int:
        return len(self.widths)

    def subexperiments(self, label=None) -> int:
        """Subexperiments of partition ``label`` (all partitions when None)."""
        if label is not None:
            return self.coefficients * self.groups[label]
        return self.coefficients * sum(self.groups.values())

    def std_error(self, shots: int) -> float:
        """Upper estimate of one term's standard error with ``shots`` per subexperiment."""
        return float(np.sqrt(self.partitions * self.variance_factor / shots)) if self.cuts else float(
            np.sqrt(1.0 / shots))

    def shots_for(self, target: float) -> int:
        """Shots per subexperiment for a term standard error of at most ``target``."""
        factor = self.partitions * self.variance_factor if self.cuts else 1.0
        return max(1, int(np.ceil(factor / target**2)))


def _option(problem_part, size: int, cuts: list, seconds: float) -> CutOption:
    from qiskit_addon_cutting.qpd import generate_qpd_weights
    from qiskit_addon_cutting.utils.observable_grouping import ObservableCollection

    bases = problem_part.bases
    coefficients = len(generate_qpd_weights(bases, num_samples=np.inf)) if bases else 1
    widths, gates, groups, mids = {}, {}, {}, {}
    for label, sub in problem_part.subcircuits.items():
        widths[label] = sub.num_qubits
        gates[label] = sum(1 for inst in sub.data if inst.operation.name not in ("barrier",))
        groups[label] = len(ObservableCollection(problem_part.subobservables[label]).groups)
        none = 1.0
        for inst in sub.data:
            op = inst.operation
            basis = getattr(op, "basis", None)
            qid = getattr(op, "qubit_id", None)
            if basis is None or qid is None:
                continue
            measured = [any(m.name == "qpd_measure" for m in term[qid]) for term in basis.maps]
            none *= 1.0 - float(np.mean(measured))
        mids[label] = 1.0 - none
    overhead = float(np.prod([b.overhead for b in bases])) if bases else 1.0
    variance = float(np.prod([np.sum(np.square(b.coeffs)) for b in bases])) if bases else 1.0
    return CutOption(size=max(widths.values()), cuts=cuts, overhead=overhead, coefficients=coefficients,
                     widths=widths, gates=gates, groups=groups, mid_fraction=mids, variance_factor=variance,
                     search_s=seconds, problem=problem_part)


def uncut_option(circuit, terms) -> CutOption:
    """The whole circuit as one partition: one measured circuit per observable group (for QPUs)."""
    from qiskit_addon_cutting import partition_problem

    t0 = time.perf_counter()
    part = partition_problem(circuit=circuit, partition_labels="A" * circuit.num_qubits, observables=terms)
    return _option(part, circuit.num_qubits, [], time.perf_counter() - t0)


def search(circuit, terms, size: int, seed: int = 0, max_cuts: int | None = None) -> CutOption | None:
    """Cut ``circuit`` so that every subcircuit has at most ``size`` qubits (find_cuts).

    Returns None when no cuts of sampling overhead at most ``9**max_cuts`` exist (``max_cuts``
    CX cuts), so that hopeless sizes fail fast, and when ``find_cuts`` returns more than
    ``max_cuts`` cuts anyway (it can ignore ``max_gamma``: brick, 10 qubits, depth 4, size 3
    gave 8 cuts), before their ``6^cuts`` QPD weights are enumerated (that hung for minutes).
    """
    from qiskit_addon_cutting import (DeviceConstraints, OptimizationParameters, cut_wires, expand_observables,
                                      find_cuts, partition_problem)

    t0 = time.perf_counter()
    max_gamma = 3.0 ** max_cuts * 1.0001 if max_cuts is not None else 1e6
    try:
        cut, meta = find_cuts(circuit, OptimizationParameters(seed=seed, max_backjumps=MAX_BACKJUMPS,
                                                              max_gamma=max_gamma),
                              DeviceConstraints(qubits_per_subcircuit=int(size)))
    except ValueError:  # "None of the cut configurations ... satisfied the max_gamma"
        return None
    if max_cuts is not None and len(meta["cuts"]) > max_cuts:
        return None  # more cuts than allowed: what the caller reports as "needs more than max_cuts"
    wired = cut_wires(cut)
    part = partition_problem(circuit=wired, observables=expand_observables(terms, circuit, wired))
    return _option(part, size, [tuple(c) for c in meta["cuts"]], time.perf_counter() - t0)


def cut_options(circuit, terms, *, max_cuts: int = 4, min_size: int = 2, sizes=None, seed: int = 0,
                time_limit: float = 30.0) -> tuple[list[CutOption], int | None, str]:
    """The useful cut options, fewest cuts first (see below); ``sizes`` searches exactly those sizes instead.

    Automatic search: the number of cuts can only grow as the subcircuit size shrinks, and of
    two options with the same cuts the narrower one is cheaper to simulate, so for each
    number of cuts (up to ``max_cuts``) only the smallest size that achieves it is kept.
    Sizes are probed by halving from ``n - 1`` down, then bisected between probes whose cut
    counts differ. Returns ``(options, largest size found to need more than max_cuts cuts
    or None, note)``; ``note`` says why the search stopped early, if it did.
    """
    n = circuit.num_qubits
    started = time.perf_counter()
    known: dict[int, CutOption | None] = {}
    note = ""

    def at(m: int) -> CutOption | None:
        nonlocal note
        for option in known.values():  # a result of width w under bound M holds for every size in [w, M]
            if option is not None and option.size <= m <= option.requested:
                return option
        if m in known:
            return known[m]
        if time.perf_counter() - started > time_limit:
            note = f"cut search stopped after {time_limit:.0f} s (sizes searched: {sorted(known)})"
            raise TimeoutError
        option = search(circuit, terms, m, seed, max_cuts)
        if option is not None:
            option.requested = m
            option.size = max(option.widths.values())
        known[m] = option
        return option

    def cuts(m):
        option = at(m)
        return None if option is None else option.num_cuts

    try:
        if sizes is not None:
            for m in sorted({int(s) for s in sizes if 1 <= int(s) < n}, reverse=True):
                at(m)
        else:
            probes = []
            m = n - 1
            while m >= min_size:
                probes.append(m)
                if cuts(m) is None or cuts(m) > max_cuts:
                    break
                m = min(m - 1, (m + 1) // 2) if m > 2 else 0

            def explore(lo: int, hi: int) -> None:
                if hi - lo <= 1 or cuts(lo) == cuts(hi):
                    return
                mid = (lo + hi) // 2
                explore(lo, mid)
                explore(mid, hi)

            for lo, hi in zip(probes[1:], probes[:-1]):
                explore(lo, hi)
    except TimeoutError:
        pass
    best: dict[int, CutOption] = {}
    too_many = None
    for m, option in sorted(known.items()):
        if option is None or option.num_cuts > max_cuts:
            too_many = max(too_many or 0, m)
            continue
        if option.num_cuts == 0:
            continue
        if sizes is not None:
            best.setdefault(-m, option)
        elif option.num_cuts not in best or option.size < best[option.num_cuts].size:
            best[option.num_cuts] = option
    options = sorted({id(o): o for o in best.values()}.values(), key=lambda o: (o.num_cuts, o.size))
    return options, too_many, note


def build_cutting_plan(circuit, terms, option: CutOption, seed: int = 0):
    """The :class:`~pilotq_mpi.workflows.cutting.CuttingPlan` of ``option`` (subexperiments generated)."""
    from qiskit_addon_cutting import generate_cutting_experiments

    from ..cutting import CuttingPlan

    t0 = time.perf_counter()
    part = option.problem
    subexperiments, coefficients = generate_cutting_experiments(part.subcircuits, part.subobservables,
                                                                num_samples=np.inf)
    return CuttingPlan(circuit=circuit, observables=terms, observable_coeffs=None,
                       subcircuits=dict(part.subcircuits), subobservables=dict(part.subobservables),
                       subexperiments=dict(subexperiments), coefficients=list(coefficients),
                       cuts=list(option.cuts), sampling_overhead=option.overhead, num_samples=np.inf,
                       timings={"plan": option.search_s, "generate": time.perf_counter() - t0})
