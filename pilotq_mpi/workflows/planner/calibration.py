"""Calibration: short microbenchmarks on the pilot's own ranks that fill a :class:`~.profile.CostProfile`.

:func:`calibrate` runs, in well under a minute on a 2-core machine:

- ``numpy`` state vector: random 2-qubit layers, fused as the simulator fuses them, at 14,
  18 and 20 qubits (seconds per amplitude per fused gate), one observable sweep, the fixed
  cost per gate, and zeroing the state (on one worker rank);
- ``aer``: Aer's exact estimator at 14 and 18 qubits (per fused gate, as the state vector
  fuses them, since Aer fuses too) and its set-up (one worker);
- ``aer-sampler``: real cut subexperiments (an EfficientSU2 cut in two) at 4 and 9 qubits,
  with and without a mid-circuit measurement, at two shot counts (one worker);
- ``comm``: ``Sendrecv`` latency and bandwidth between two worker ranks (a 2-rank task);
- ``pilot``: the round trip of a no-op task, QPY of a circuit, unpickling a result, and the
  first imports of qiskit and Aer in a fresh interpreter (what a cold worker pays once);
- ``cutting``: generating subexperiments, reconstruction and standard errors (on the driver,
  with the sampled results of a whole small cut problem);
- ``numpy.convert_gate_s``: converting a circuit to fused gates, per gate (on the driver).

Each timing is the best of two or three runs (the machine may be shared: the load average
is stored with the profile).

GPU ranks (``cupy``, ``aer-sampler-gpu``) are measured too when the pilot has them. With no
pilot (``pilot=None``) everything runs in this process and ``comm`` keeps its default.
"""
from __future__ import annotations

import os
import pickle
import statistics
import time
from typing import Any

import numpy as np

from .profile import CostProfile

NUMPY_SIZES = (14, 18, 20)
AER_SIZES = (14, 18)


def _random_layers(n: int, layers: int, seed: int):
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import random_unitary

    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for layer in range(layers):
        for q in range(layer % 2, n - 1, 2):
            qc.unitary(random_unitary(4, seed=int(rng.integers(1 << 30))), [q, q + 1])
    return qc


def bench_statevector(comm, sizes=NUMPY_SIZES, backend: str = "numpy") -> dict[str, Any]:
    """Task: seconds per amplitude per fused gate by qubit count, per observable sweep, per gate, per zeroed amplitude."""
    from qiskit.quantum_info import SparsePauliOp

    from ...statevector import DistributedStatevector, circuit_to_gates, expectations, fuse_gates

    out: dict[str, Any] = {"amp_gate_s": {}}
    for n in (6, *sizes):
        _, gates, _ = circuit_to_gates(_random_layers(n, 4, n))
        fused = fuse_gates(gates, 4)
        best = float("inf")
        for _ in range(3 if n < 20 else 2):  # best of a few: the machine may be shared
            sv = DistributedStatevector(n, comm, backend=backend)
            t0 = time.perf_counter()
            sv.run(fused)
            best = min(best, time.perf_counter() - t0)
        if n == 6:
            out["gate_s"] = best / len(fused)
            continue
        work = best - len(fused) * out["gate_s"]
        if work > 0.5 * best or n == max(sizes):  # sizes where fixed costs dominate say nothing about amplitudes
            out["amp_gate_s"][str(n)] = max(1e-12, work / (len(fused) * 2**n))
        if n == max(sizes):
            ops = [SparsePauliOp("X" + "I" * (n - 1)), SparsePauliOp("Z" * n)]
            t0 = time.perf_counter()
            expectations(sv, ops)
            out["observable_amp_s"] = (time.perf_counter() - t0) / (2 * 2**n)
            t0 = time.perf_counter()
            sv.state[:] = 0
            out["init_amp_s"] = max(1e-13, (time.perf_counter() - t0) / 2**n)
    return out


def bench_aer(comm, sizes=AER_SIZES) -> dict[str, Any]:
    """Task: Aer exact estimator, seconds per amplitude per gate by qubit count, set-up, per term sweep."""
    from .execute import aer_estimate_task

    from ...statevector import circuit_to_gates, fuse_gates

    def best(fn, repeats=3):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    small = _random_layers(4, 2, 0)
    aer_estimate_task(comm, small, ["ZZZZ"])  # import and warm up
    setup = best(lambda: aer_estimate_task(comm, small, ["ZZZZ"]), 2)
    out: dict[str, Any] = {"setup_s": setup, "amp_gate_s": {}}
    for n in sizes:
        qc = _random_layers(n, 4, n)
        # per fused gate (as the state vector fuses them): Aer fuses too, so this tracks its work
        gates = len(fuse_gates(circuit_to_gates(qc)[1], 4))
        one = best(lambda: aer_estimate_task(comm, qc, ["Z" * n]), 2)
        five = best(lambda: aer_estimate_task(
            comm, qc, ["Z" * n, "X" * n, "Y" * n, "X" + "Z" * (n - 1), "Z" + "X" * (n - 1)]), 1)
        per_term = max(0.0, (five - one) / 4)
        work = one - setup - per_term
        if work > 0.5 * one or n == max(sizes):  # sizes where the set-up dominates say nothing about amplitudes
            out["amp_gate_s"][str(n)] = max(1e-12, work / (gates * 2**n))
        if n == max(sizes):
            out["observable_amp_s"] = max(1e-13, per_term / 2**n)
    return out


def cut_problem(half: int, observables: int = 1, seed: int = 0):
    """An EfficientSU2 on ``2 * half`` qubits cut into two halves: (CuttingPlan, Z terms)."""
    from ..cutting import efficient_su2_problem, plan_cutting

    qc, _ = efficient_su2_problem(2 * half, reps=2, seed=seed)
    n = 2 * half
    from qiskit.quantum_info import PauliList

    labels = ["Z" * n] + ["I" * (n - 1 - i) + "Z" + "I" * i for i in range(observables - 1)]
    terms = PauliList(labels)
    return plan_cutting(qc, terms, partition_labels="A" * half + "B" * half, seed=seed), terms


def _has_mid(circuit) -> bool:
    return any(inst.operation.name == "measure" and circuit.find_bit(inst.clbits[0]).registers[0][0].name
               == "qpd_measurements" for inst in circuit.data)


def bench_sampler(comm, device: str = "CPU", halves=(4, 9), shots=(30, 300), per_class: int = 4) -> dict[str, Any]:
    """Task: Aer sampler on real subexperiments, split into the model's constants (see :mod:`.profile`)."""
    from ..cutting import to_qpy
    from .execute import aer_sample_batch

    def timed(circuits, s):
        payload = to_qpy(circuits)
        times = []
        for _ in range(2):  # best of two: the machine may be shared
            t0 = time.perf_counter()
            aer_sample_batch(comm, payload, s, 1, device)
            times.append(time.perf_counter() - t0)
        return min(times) / len(circuits)

    warm, _ = cut_problem(2)
    aer_sample_batch(comm, to_qpy(next(iter(warm.subexperiments.values()))[:2]), 10, 1, device)
    points = []
    for half in halves:
        plan, _ = cut_problem(half)
        subs = next(iter(plan.subexperiments.values()))
        mid = [c for c in subs if _has_mid(c)][:per_class]
        flat = [c for c in subs if not _has_mid(c)][:per_class]
        gates = float(np.mean([sum(1 for i in c.data if i.operation.name != "barrier") for c in subs]))
        row = {"width": subs[0].num_qubits, "gates": gates}
        for name, group in (("mid", mid), ("flat", flat)):
            lo, hi = timed(group, shots[0]), timed(group, shots[1])
            slope = max(0.0, (hi - lo) / (shots[1] - shots[0]))
            row[name] = (lo - slope * shots[0], slope)
        points.append(row)
    a, b = points[0], points[-1]
    # mid slope = shot_s + amp_gate_s * g * 2^w  at two widths
    x_a, x_b = a["gates"] * 2.0 ** a["width"], b["gates"] * 2.0 ** b["width"]
    amp = max(1e-12, (b["mid"][1] - a["mid"][1]) / (x_b - x_a))
    shot = max(1e-9, a["mid"][1] - amp * x_a)
    # mid intercept = circuit_s + gate_s * g  at two gate counts
    gate = max(0.0, (b["mid"][0] - a["mid"][0]) / max(1.0, b["gates"] - a["gates"]))
    circuit = max(1e-6, a["mid"][0] - gate * a["gates"])
    sample = max(1e-10, float(np.mean([a["flat"][1], b["flat"][1]])))
    return {"circuit_s": circuit, "gate_s": gate, "amp_gate_s": amp, "shot_s": shot, "sample_s": sample,
            "points": points}


def bench_comm(comm, sizes=(1 << 8, 1 << 22), reps: int = 5) -> dict[str, float] | None:
    """Task on 2 ranks: ``Sendrecv`` latency (8-byte messages) and bandwidth (4 MiB)."""
    if comm.Get_size() < 2:
        return None
    rank = comm.Get_rank()
    partner = rank ^ 1
    out = {}
    for size in sizes:
        send = np.zeros(size, dtype=np.uint8)
        recv = np.empty_like(send)
        comm.Barrier()
        times = []
        for _ in range(reps if size > 1024 else 20):
            t0 = time.perf_counter()
            comm.Sendrecv(send, dest=partner, recvbuf=recv, source=partner)
            times.append(time.perf_counter() - t0)
        out[size] = statistics.median(times)
    small, big = sizes
    latency = out[small]
    return {"latency_s": latency, "bytes_per_s": big / max(1e-9, out[big] - latency)}


def convert_gate_seconds(circuit, repeats: int = 5) -> float:
    """Seconds per gate to convert ``circuit`` to the state vector's fused gates (best of ``repeats``)."""
    from ...statevector import circuit_to_gates, fuse_gates

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, gates, _ = circuit_to_gates(circuit)
        fuse_gates(gates, 4)
        best = min(best, time.perf_counter() - t0)
    return best / max(1, len(gates))


def sample_whole_problem(comm, half: int = 4, shots: int = 100, device: str = "CPU"):
    """Task: sample every subexperiment of a small cut problem (for the reconstruction benchmark)."""
    from ..cutting import to_qpy
    from .execute import aer_sample_batch

    plan, _ = cut_problem(half, observables=4)
    out = {}
    for label, subs in plan.subexperiments.items():
        out[label] = aer_sample_batch(comm, to_qpy(subs), shots, 3, device)["results"]
    return out


def _noop(comm):
    return None


def _run(pilot, fn, *args, ranks: int = 1, gpus: int = 0, **kwargs):
    if pilot is None:
        from mpi4py import MPI

        return fn(MPI.COMM_SELF, *args, **kwargs)
    return pilot.submit(fn, *args, ranks=ranks, gpus_per_rank=gpus, name=f"calibrate:{fn.__name__}",
                        **kwargs).result()


def calibrate(pilot=None, *, profile: CostProfile | None = None, save: bool | str = True,
              quick: bool = False) -> CostProfile:
    """Measure this pilot's cost profile (see the module docstring) and save it (``save``: True or a path).

    ``pilot``: a running Pilot (benchmarks run on its worker ranks), or None or a
    :class:`~.resources.Resources` (in this process; communication keeps its default).
    ``quick``: smaller sizes (for tests). Returns the profile.
    """
    import socket

    from ..cutting import _standard_errors, to_qpy

    from .resources import Resources

    if isinstance(pilot, Resources):  # a description has no ranks to run on: measure in this process
        pilot = None
    started = time.perf_counter()
    profile = profile or CostProfile(host=socket.gethostname())
    sv_sizes = (12, 16) if quick else NUMPY_SIZES
    aer_sizes = (12, 14) if quick else AER_SIZES
    halves = (3, 6) if quick else (4, 9)
    gpu = pilot is not None and any(r.gpus for r in pilot.resources.compute_ranks)
    seconds: dict[str, float] = {}

    def step(name, fn):
        t0 = time.perf_counter()
        value = fn()
        seconds[name] = time.perf_counter() - t0
        return value

    # first imports in a fresh interpreter (what a cold worker pays once)
    import subprocess
    import sys

    probe = ("import time; t = time.perf_counter(); import qiskit; from qiskit import qpy, transpile;"
             " a = time.perf_counter(); import qiskit_aer.primitives;"
             " from qiskit.transpiler import generate_preset_pass_manager; print(a - t, time.perf_counter() - a)")
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
        import_qiskit, import_aer = (float(x) for x in out.stdout.split())
    except (subprocess.SubprocessError, ValueError, OSError):
        import_qiskit = import_aer = None
    seconds["imports"] = time.perf_counter() - t0

    # pilot round trip (after a warm-up task on every worker)
    if pilot is not None:
        workers = len(pilot.resources.compute_ranks)
        [f.result() for f in [pilot.submit(_noop) for _ in range(2 * workers)]]
        trips = []
        for _ in range(15):
            t0 = time.perf_counter()
            pilot.submit(_noop).result()
            trips.append(time.perf_counter() - t0)
        task_s = statistics.median(trips)
    else:
        task_s = 0.0
    profile.update("numpy", step("numpy", lambda: _run(pilot, bench_statevector, sv_sizes)))
    if gpu:
        profile.update("cupy", step("cupy", lambda: _run(pilot, bench_statevector, sv_sizes, "cupy", gpus=1)))
    profile.update("aer", step("aer", lambda: _run(pilot, bench_aer, aer_sizes)))
    sampler = step("aer-sampler", lambda: _run(pilot, bench_sampler, "CPU", halves))
    profile.update("aer-sampler", {k: v for k, v in sampler.items() if k != "points"})
    if gpu:
        gs = step("aer-sampler-gpu", lambda: _run(pilot, bench_sampler, "GPU", halves, gpus=1))
        profile.update("aer-sampler-gpu", {k: v for k, v in gs.items() if k != "points"})
    if pilot is not None and len(pilot.resources.compute_ranks) >= 2:
        comm = step("comm", lambda: _run(pilot, bench_comm, ranks=2))
        if comm:
            profile.update("comm", comm)

    # driver-side costs: QPY, results, generation, reconstruction
    t0 = time.perf_counter()
    plan, terms = cut_problem(halves[0], observables=4)
    profile.update("numpy", {"convert_gate_s": convert_gate_seconds(plan.circuit)})
    total = plan.num_subexperiments
    circuits = [c for subs in plan.subexperiments.values() for c in subs]
    generate_s = plan.timings["generate"] / total
    t1 = time.perf_counter()
    payload = to_qpy(circuits)
    from qiskit import qpy
    import io

    qpy.load(io.BytesIO(payload))
    qpy_s = (time.perf_counter() - t1) / len(circuits)
    pubs = _run(pilot, sample_whole_problem, halves[0], 100)
    blob = pickle.dumps(pubs)
    t1 = time.perf_counter()
    pickle.loads(blob)
    result_s = (time.perf_counter() - t1) / total
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    t1 = time.perf_counter()
    reconstruct_expectation_values({k: PrimitiveResult(v) for k, v in pubs.items()}, plan.coefficients,
                                   plan.subobservables)
    t2 = time.perf_counter()
    _standard_errors(plan, pubs, 100)
    t3 = time.perf_counter()
    profile.update("cutting", {"generate_s": generate_s, "reconstruct_s": (t2 - t1) / (total * len(terms)),
                               "stderr_s": (t3 - t2) / (total * len(terms))})
    pilot_values = {"task_s": task_s, "circuit_s": qpy_s, "result_s": result_s}
    if import_qiskit is not None:
        pilot_values.update(import_qiskit_s=import_qiskit, import_aer_s=import_aer)
    profile.update("pilot", pilot_values)
    seconds["driver"] = time.perf_counter() - t0
    profile.meta = {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "loadavg": list(os.getloadavg()), "workers": len(pilot.resources.compute_ranks) if pilot else 0,
                    "seconds": seconds, "total_s": time.perf_counter() - started, "quick": quick,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if save:
        path = profile.save(None if save is True else save)
        profile.meta["path"] = str(path)
    return profile
