"""The cost model: predicted seconds of each strategy as a sum of named, explainable terms.

Every function returns ``{term: seconds}``; a strategy's predicted time is the sum. The
constants come from a :class:`~.profile.CostProfile`; the counts (fused gates, swaps, cuts,
subexperiments, shots, batches) from the problem and the resources. Terms:

- distributed state vector on ``k`` ranks (``n`` qubits, ``m = n - log2 k`` local):
  ``task`` (the calibrated wall time of a tiny state-vector task on ``k`` ranks, else the pilot
  round trip, + sending the circuit), ``convert`` (circuit to fused gates:
  the circuit's gates x a calibrated seconds-per-gate constant), ``init`` (zeroing ``2^m``
  amplitudes), ``apply`` (fused gates x ``2^n`` amplitudes x seconds per amplitude-gate at
  ``m`` local qubits, over the ``k`` ranks' CPU share, see below), ``swap`` (index-bit swaps x
  (latency + ``2^(m-1)`` amplitudes / bandwidth)), ``observables`` (one sweep per X-group of
  Pauli terms);
- one-rank Aer: ``task``, ``setup``, ``simulate`` (fused gates x ``2^n`` x seconds per
  amplitude-gate: Aer fuses gates too, and is calibrated per fused gate; over one rank's
  CPU share), ``observables`` (per Pauli term);
- cutting (and a QPU's subexperiments): ``generate`` (subexperiments, on the driver),
  ``send`` (QPY of every subexperiment and unpickling every result, on the driver),
  ``sample`` (the makespan of the guided batches over the workers, each batch a pilot task
  plus its subexperiments: per circuit, per gate, shot by shot for those with a mid-circuit
  measurement, else one simulation plus sampling), ``reconstruct`` and ``stderr``;
- QPU: ``queue`` (latency per job, jobs over the pinned slots), ``device`` (per circuit and
  per shot), plus the cutting terms above when the circuit is cut.

CPU work over the cores the ranks get (model v3). The profile's compute constants are CPU
seconds (the calibration times them with ``time.process_time``/``thread_time``: far less
sensitive to the load than wall time, though contention still inflates CPU time: on the 2-vCPU
build machine up to 4x for the state vector between load averages 2 and 26). A strategy's predicted wall time is its CPU
work divided by the cores its busy processes actually get, plus what is really wall
(communication latency, the pilot's task round trip, a QPU's queue):

- :func:`cpu_share`: ``k`` busy ranks on ``C`` cores with ``L`` runnable processes of others
  (the *external load*) get ``C * k / (k + L)`` cores under fair-share scheduling, never more
  than ``k`` (one core each) or ``C``; with ``L = 0`` that is ``min(k, C)``;
- :func:`stretch` ``= k / cpu_share``: how much longer each rank's CPU work takes in wall time.
  Every rank of the distributed state vector does its own share of the work *and* the per-rank
  fixed costs (converting the circuit, the Python cost of each fused gate, its half of each
  swap), so on an idle machine with ``C = 2`` cores, 4 ranks take ``stretch = 2`` times their
  per-rank work: their amplitude work ties with 2 ranks and their fixed costs are paid twice.
  4 ranks beat 2 on 2 cores only when the load says so (``L > 0``: they get a larger share);
- Aer's one rank and the driver's own work (generating and reconstructing cut experiments)
  take ``stretch(1) = 1 / cpu_share(1, C, L)``; cut subexperiments run on
  ``busy = min(workers, tasks)`` ranks at ``cpu_share(busy) / busy`` of a core each.

Model v2 scaled only the amplitude work by the share, with constants timed in wall seconds
(best of a few), v1 used ``min(k, C)`` (see ``MODEL_VERSION``).
"""
from __future__ import annotations

import bisect
import heapq
import math
from typing import Sequence

from ..cutting import guided_batch_sizes
from .profile import CostProfile

MODEL_VERSION = 3
"""1: parallel speed ``min(ranks, cores)``, ``convert`` timed while planning (the planner
benchmark's measured run); 2: the load-aware :func:`cpu_share` and ``convert`` from gate counts;
3: CPU-time constants, every per-rank cost stretched by :func:`stretch` (fixed costs included),
an observable cost per Pauli term besides the one per X-group."""


def cpu_share(ranks: int, cores: int, external_load: float = 0.0) -> float:
    """Cores ``ranks`` busy ranks get on ``cores`` cores with ``external_load`` runnable processes of others.

    Fair share: ``cores * ranks / (ranks + external_load)`` when the ``ranks + external_load``
    runnable processes outnumber the cores, capped at ``ranks`` (one core each) and ``cores``.
    ``external_load = 0`` gives ``min(ranks, cores)``.
    """
    if ranks < 1 or cores < 1:
        raise ValueError(f"ranks and cores must be >= 1, got ranks={ranks!r}, cores={cores!r}")
    if not external_load >= 0 or not math.isfinite(external_load):
        raise ValueError(f"external_load must be a finite number >= 0, got {external_load!r}")
    return min(float(ranks), float(cores), cores * ranks / (ranks + external_load))


def stretch(ranks: int, cores: int, external_load: float = 0.0) -> float:
    """Wall seconds per CPU second of each of ``ranks`` busy ranks: ``ranks / cpu_share(...)`` (>= 1)."""
    return ranks / cpu_share(ranks, cores, external_load)


def count_swaps(gates: Sequence, num_qubits: int, num_global: int) -> int:
    """Index-bit swaps the distributed state vector (numpy backend) makes for ``gates``: a dry run.

    Mirrors :meth:`DistributedStatevector.run` without amplitudes: before each gate, each of
    its global qubits is swapped into the local axis whose qubit is used furthest in the future
    (ties: the outermost axis), and the layout then changes as ``NumpyBackend.apply`` leaves it
    (targets last). Gates wider than the local qubits (gathered, not swapped) are skipped.
    """
    if num_global == 0:
        return 0
    m = num_qubits - num_global
    layout = list(range(m - 1, -1, -1))
    glob = list(range(m, num_qubits))
    uses: dict[int, list[int]] = {}
    for i, g in enumerate(gates):
        for q in g.qubits:
            uses.setdefault(q, []).append(i)

    def next_use(q: int, i: int) -> int:
        lst = uses.get(q, [])
        j = bisect.bisect_right(lst, i)
        return lst[j] if j < len(lst) else len(gates)

    swaps = 0
    for i, g in enumerate(gates):
        k = len(g.qubits)
        if k > m:
            continue
        for q in g.qubits:
            if q in glob:
                cands = [a for a, lq in enumerate(layout) if lq not in g.qubits]
                axis = max(cands, key=lambda a: (next_use(layout[a], i), -a))
                slot = glob.index(q)
                layout[axis], glob[slot] = glob[slot], layout[axis]
                swaps += 1
        pos = {q: a for a, q in enumerate(layout)}
        tax = sorted(pos[q] for q in g.qubits)
        tq = [layout[a] for a in tax]
        nt = [a for a in range(m) if a not in tax]
        if not nt or (m - 1 - nt[0]) < k:
            layout = [layout[a] for a in nt] + tq
        else:
            a = nt[0]
            order = [layout[b] for b in nt[1:]] + tq
            layout = order[:a] + [layout[a]] + order[a:]
    return swaps


def statevector_task_seconds(profile: CostProfile, ranks: int, backend: str = "numpy") -> float:
    """Fixed wall seconds of a ``ranks``-rank state-vector task: the calibrated tiny task's time
    (``pilot.sv_task_s``) when measured at that width for numpy ranks, else the no-op round trip
    times ``1 + log2(ranks)``."""
    measured = profile.get("pilot", "sv_task_s") if backend == "numpy" else {}
    if str(ranks) in measured:
        return float(measured[str(ranks)])
    return profile.get("pilot", "task_s") * (1 + math.log2(ranks))


def statevector_terms(profile: CostProfile, *, num_qubits: int, ranks: int, fused_gates: int, swaps: int,
                      x_groups: int, terms: int, cores: int, convert_s: float, backend: str = "numpy",
                      itemsize: int = 16, external_load: float = 0.0) -> dict[str, float]:
    """Terms of the distributed state vector on ``ranks`` ranks (see the module docstring).

    Each term is one rank's CPU seconds (``convert_s``: converting the circuit, which every
    rank does) times :func:`stretch` of the ``ranks`` on the ``cores`` under ``external_load``
    runnable processes of others; the task round trip is wall. GPU ranks are not stretched.
    """
    g = int(ranks).bit_length() - 1
    m = num_qubits - g
    local = float(2**m)
    slow = stretch(ranks, cores, external_load) if backend == "numpy" else 1.0
    per_amp_gate = profile.by_size(backend, "amp_gate_s", m)
    latency = profile.get("comm", "latency_s")
    bandwidth = profile.get("comm", "bytes_per_s")
    observable = x_groups * profile.get(backend, "observable_amp_s") + terms * profile.get(backend,
                                                                                            "observable_term_amp_s")
    out = {
        "task": statevector_task_seconds(profile, ranks, backend) + profile.get("pilot", "circuit_s"),
        "convert": convert_s * slow,
        "init": profile.get(backend, "init_amp_s") * local * slow,
        "apply": fused_gates * (local * per_amp_gate + profile.get(backend, "gate_s")) * slow,
        "swap": swaps * (2 * latency + local / 2 * itemsize / bandwidth) * slow if ranks > 1 else 0.0,
        "observables": (observable * local + terms * 1e-5) * slow,
    }
    if backend != "numpy":
        out["setup"] = profile.get(backend, "setup_s")
    return out


def aer_terms(profile: CostProfile, *, num_qubits: int, fused_gates: int, terms: int, cores: int = 1,
              external_load: float = 0.0) -> dict[str, float]:
    """Terms of the one-rank Aer exact estimate (``fused_gates``: as the state vector fuses them).

    Its CPU seconds (set-up, simulation, observables) are stretched by :func:`stretch` of one
    rank on ``cores`` under ``external_load``.
    """
    amps = float(2**num_qubits)
    slow = stretch(1, cores, external_load)
    return {
        "task": profile.get("pilot", "task_s") + profile.get("pilot", "circuit_s"),
        "setup": profile.get("aer", "setup_s") * slow,
        "simulate": fused_gates * amps * profile.by_size("aer", "amp_gate_s", num_qubits) * slow,
        "observables": terms * amps * profile.get("aer", "observable_amp_s") * slow,
    }


def subexperiment_seconds(profile: CostProfile, backend: str, *, width: int, gates: int, shots: int,
                          mid_fraction: float) -> float:
    """Expected seconds to transpile and sample one subexperiment with Aer's sampler."""
    sim = gates * 2.0**width * profile.get(backend, "amp_gate_s")
    shot_by_shot = shots * (profile.get(backend, "shot_s") + sim)
    once = sim + shots * profile.get(backend, "sample_s")
    return (profile.get(backend, "circuit_s") + gates * profile.get(backend, "gate_s")
            + mid_fraction * shot_by_shot + (1 - mid_fraction) * once)


def list_schedule(costs: Sequence[float], workers: int, speed: float = 1.0) -> float:
    """Makespan of running ``costs`` in order, each on the first worker to be free (as the pilot does)."""
    if not costs:
        return 0.0
    free = [0.0] * max(1, workers)
    heapq.heapify(free)
    end = 0.0
    for c in costs:
        start = heapq.heappop(free)
        finish = start + c / speed
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def batch_costs(per_partition: Sequence[tuple[int, float]], sizes: Sequence[int], per_task: float) -> list[float]:
    """Cost of each batch: ``per_task`` plus its subexperiments, walked in the order make_batches uses.

    ``per_partition``: ``(subexperiments, seconds each)`` per partition, in plan order.
    """
    out = []
    queue = [[count, each] for count, each in per_partition if count]
    for size in sizes:
        cost, left = per_task, size
        while left and queue:
            take = min(left, queue[0][0])
            cost += take * queue[0][1]
            queue[0][0] -= take
            left -= take
            if not queue[0][0]:
                queue.pop(0)
        out.append(cost)
    return out


def cutting_terms(profile: CostProfile, option, *, shots: int, workers: int, cores: int, terms: int,
                  backend: str = "aer-sampler", external_load: float = 0.0) -> tuple[dict[str, float], int]:
    """Terms of cutting with ``option`` sampled on ``workers`` single-rank tasks; also the number of tasks.

    Each of the ``busy = min(workers, tasks)`` CPU workers samples at ``cpu_share(busy, cores,
    external_load) / busy`` of a core; the driver's CPU work (generation, QPY, reconstruction)
    is stretched by :func:`stretch` of one rank.
    """
    total = option.subexperiments()
    sizes = guided_batch_sizes(total, workers)
    per_partition = []
    for label, width in option.widths.items():
        each = subexperiment_seconds(profile, backend, width=width, gates=option.gates[label] + width, shots=shots,
                                     mid_fraction=option.mid_fraction[label])
        per_partition.append((option.subexperiments(label), each))
    busy = max(1, min(workers, len(sizes)))
    speed = 1.0 / stretch(busy, cores, external_load) if backend == "aer-sampler" else 1.0
    # each batch: the pilot's round trip (wall; over the speed too, a simplification) and the sampler task's fixed cost
    costs = batch_costs(per_partition, sizes, profile.get("pilot", "task_s") + profile.get(backend, "batch_s"))
    driver = stretch(1, cores, external_load)
    out = {
        "generate": total * profile.get("cutting", "generate_s") * driver,
        "send": total * (profile.get("pilot", "circuit_s") + profile.get("pilot", "result_s")) * driver,
        "sample": list_schedule(costs, workers, speed),
        "reconstruct": total * terms * profile.get("cutting", "reconstruct_s") * driver,
        "stderr": total * terms * profile.get("cutting", "stderr_s") * driver,
    }
    return out, len(sizes)


def qpu_terms(profile: CostProfile, option, qpu, *, shots: int, terms: int) -> tuple[dict[str, float], int]:
    """Terms of sampling ``option``'s subexperiments on a QPU (one job per pinned slot); also the jobs."""
    total = option.subexperiments()
    slots = qpu.ranks * qpu.concurrency
    jobs = min(total, slots)
    per_job = math.ceil(total / jobs)
    out = {
        "generate": total * profile.get("cutting", "generate_s") if option.cuts else 0.0,
        "send": total * (profile.get("pilot", "circuit_s") + profile.get("pilot", "result_s")),
        "queue": qpu.latency_s + profile.get("pilot", "task_s"),
        "device": per_job * (qpu.circuit_s + shots * qpu.shot_s),
        "reconstruct": total * terms * profile.get("cutting", "reconstruct_s"),
        "stderr": total * terms * profile.get("cutting", "stderr_s"),
    }
    return out, jobs
