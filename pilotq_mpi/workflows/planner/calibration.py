"""Calibration: short microbenchmarks on the pilot's own ranks that fill a :class:`~.profile.CostProfile`.

Compute constants are **CPU seconds** (``time.process_time`` in a worker rank, whose only
thread runs the task; ``time.thread_time`` on the driver, whose process also runs the master
thread): the model divides CPU work by the cores the ranks get (see :mod:`.model`). CPU time moves
far less with the load than wall time, but contention still inflates it (shared caches, memory
bandwidth, hyperthreads): calibrate on a machine as quiet as the runs will be. Only what is wall time by nature is timed on
the wall clock: the pilot's task round trip and the ``Sendrecv`` latency and bandwidth between
ranks (measured first, before the other probes load the ranks), and GPU work.

The CPU probes run **at once**, each on its own worker rank (CPU time does not change when
they share the cores), and the driver-side probes run meanwhile on the driver, so
:func:`calibrate` takes about the largest probe (3.4 s at load 2, 33-69 s at load 9-26 on a
2-core machine):

- ``numpy`` state vector: random 2-qubit layers, fused as the simulator fuses them, at 14, 18
  and 20 qubits (CPU seconds per amplitude per fused gate), observables (per X-group sweep and
  per Pauli term), the fixed cost per gate, zeroing the state;
- ``aer``: Aer's exact estimator at 14 and 18 qubits (per fused gate, as the state vector
  fuses them, since Aer fuses too), its set-up and the cost per Pauli term;
- ``aer-sampler``: real cut subexperiments (an EfficientSU2 cut in two) at 4 and 9 qubits,
  with and without a mid-circuit measurement, at two shot counts;
- ``comm``: ``Sendrecv`` latency and bandwidth between two worker ranks (a 2-rank task, wall);
- ``pilot``: the round trip of a no-op task (wall), QPY of a circuit and unpickling a result
  (driver CPU), and the first imports of qiskit and Aer in a fresh interpreter (its CPU time;
  what a cold worker pays once);
- ``cutting``: generating subexperiments (driver), reconstruction and standard errors (driver,
  with a whole small cut problem sampled on a worker meanwhile);
- ``numpy.convert_gate_s``: converting a circuit to fused gates, per gate (driver).

GPU ranks (``cupy``, ``aer-sampler-gpu``) are measured too when the pilot has them (wall
time, GPU work is asynchronous). With no pilot (``pilot=None``) everything runs in this
process, one probe after the other, and ``comm`` keeps its default.
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


def _haar_unitary(rng, dim: int = 4) -> np.ndarray:
    """A Haar-random ``dim x dim`` unitary (QR of a complex Gaussian matrix, phases fixed); numpy only
    (qiskit's ``random_unitary`` imports scipy.stats: over a CPU second the first time, on every rank)."""
    z = (rng.normal(size=(dim, dim)) + 1j * rng.normal(size=(dim, dim))) / np.sqrt(2)
    q, r = np.linalg.qr(z)
    d = np.diag(r)
    return q * (d / np.abs(d))


def _random_layers(n: int, layers: int, seed: int):
    from qiskit import QuantumCircuit

    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for layer in range(layers):
        for q in range(layer % 2, n - 1, 2):
            qc.unitary(_haar_unitary(rng), [q, q + 1])
    return qc


def _clock(device: str = "CPU"):
    """The clock of a worker-rank probe: process CPU time on CPU, the wall clock for GPU work."""
    return time.process_time if device.upper() == "CPU" else time.perf_counter


def bench_statevector(comm, sizes=NUMPY_SIZES, backend: str = "numpy") -> dict[str, Any]:
    """Task: CPU seconds per amplitude per fused gate by qubit count, per X-group sweep and per Pauli
    term of the observables, per gate, per zeroed amplitude (see the module docstring)."""
    from qiskit.quantum_info import SparsePauliOp

    from ...statevector import DistributedStatevector, circuit_to_gates, expectations, fuse_gates

    clock = _clock("CPU" if backend == "numpy" else "GPU")
    c0 = time.process_time()
    out: dict[str, Any] = {"amp_gate_s": {}}
    for n in (6, *sizes):
        _, gates, _ = circuit_to_gates(_random_layers(n, 4, n))
        fused = fuse_gates(gates, 4)
        best = float("inf")
        for _ in range(2 if n < 20 else 1):  # CPU time: the least of 2 (cache-resident sizes suffer from heavy load)
            sv = DistributedStatevector(n, comm, backend=backend)
            t0 = clock()
            sv.run(fused)
            best = min(best, clock() - t0)
        if n == 6:
            out["gate_s"] = best / len(fused)
            continue
        work = best - len(fused) * out["gate_s"]
        if work > 0.5 * best or n == max(sizes):  # sizes where fixed costs dominate say nothing about amplitudes
            out["amp_gate_s"][str(n)] = max(1e-12, work / (len(fused) * 2**n))
        if n == max(sizes):
            amps = float(2**n)
            expectations(sv, [SparsePauliOp("X" * n)])  # warm-up
            t0 = clock()
            expectations(sv, [SparsePauliOp("Z" * n)])  # one X-group, one term
            one = clock() - t0
            # one X-group, a Z term on every qubit (a term's cost depends on where its qubits lie)
            zsum = SparsePauliOp.from_sparse_list([("Z", [i], 1.0) for i in range(n)], num_qubits=n)
            t0 = clock()
            expectations(sv, [zsum])
            every = clock() - t0
            term = max(1e-13, (every - one) / (n - 1) / amps)
            out["observable_term_amp_s"] = term
            out["observable_amp_s"] = max(1e-13, one / amps - term)
            t0 = clock()
            sv.state[:] = 0
            out["init_amp_s"] = max(1e-13, (clock() - t0) / amps)
    out["probe_cpu_s"] = time.process_time() - c0
    return out


def bench_aer(comm, sizes=AER_SIZES) -> dict[str, Any]:
    """Task: Aer exact estimator, CPU seconds per amplitude per gate by qubit count, set-up, per term sweep."""
    from .execute import aer_estimate_task

    from ...statevector import circuit_to_gates, fuse_gates

    c0 = time.process_time()

    def best(fn, repeats=1):
        times = []
        for _ in range(repeats):
            t0 = time.process_time()  # all of Aer's threads: its CPU work
            fn()
            times.append(time.process_time() - t0)
        return min(times)

    small = _random_layers(4, 2, 0)
    aer_estimate_task(comm, small, ["ZZZZ"])  # import and warm up
    setup = best(lambda: aer_estimate_task(comm, small, ["ZZZZ"]), 2)
    out: dict[str, Any] = {"setup_s": setup, "amp_gate_s": {}}
    for n in sizes:
        qc = _random_layers(n, 4, n)
        # per fused gate (as the state vector fuses them): Aer fuses too, so this tracks its work
        gates = len(fuse_gates(circuit_to_gates(qc)[1], 4))
        one = best(lambda: aer_estimate_task(comm, qc, ["Z" * n]))
        # 16 terms, so that their cost stands out of the timing noise of one simulation
        labels = ["".join("IXYZ"[(7 * i + 3 * q + i * q) % 4] for q in range(n)) for i in range(16)]
        many = best(lambda: aer_estimate_task(comm, qc, labels))
        per_term = max(0.0, (many - one) / (len(labels) - 1))
        work = one - setup - per_term
        if work > 0.5 * one or n == max(sizes):  # sizes where the set-up dominates say nothing about amplitudes
            out["amp_gate_s"][str(n)] = max(1e-12, work / (gates * 2**n))
        if n == max(sizes):
            out["observable_amp_s"] = max(1e-13, per_term / 2**n)
    out["probe_cpu_s"] = time.process_time() - c0
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
    """Task: Aer sampler on real subexperiments, split into the model's constants (see :mod:`.profile`);
    CPU seconds on CPU (wall on GPU)."""
    from ..cutting import to_qpy
    from .execute import aer_sample_batch

    clock = _clock(device)
    c0 = time.process_time()

    batch = 0.0  # fixed cost of one sampler task (loading, sampler set-up), taken out of the per-circuit costs

    def timed(circuits, s):
        payload = to_qpy(circuits)
        t0 = clock()
        aer_sample_batch(comm, payload, s, 1, device)
        return (clock() - t0 - batch) / len(circuits)

    warm, _ = cut_problem(2)
    warm_subs = next(iter(warm.subexperiments.values()))
    aer_sample_batch(comm, to_qpy(warm_subs[:2]), 10, 1, device)
    one, four = timed(warm_subs[:1], shots[0]), timed(warm_subs[:4], shots[0]) * 4  # T(k) = batch + k * c
    batch = max(0.0, one - (four - one) / 3)
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
            "batch_s": batch, "points": points, "probe_cpu_s": time.process_time() - c0}


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


def convert_gate_seconds(circuit, repeats: int = 3) -> float:
    """CPU seconds (this thread) per gate to convert ``circuit`` to the state vector's fused gates
    (best of ``repeats``)."""
    from ...statevector import circuit_to_gates, fuse_gates

    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        _, gates, _ = circuit_to_gates(circuit)
        fuse_gates(gates, 4)
        best = min(best, time.thread_time() - t0)
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


class _Done:
    """A finished value with a future's ``result()`` (probes run in this process when there is no pilot)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _tiny_statevector_tasks(pilot, workers: int, repeats: int = 5) -> dict[str, float]:
    """Median wall seconds of a tiny distributed state-vector task on k = 1, 2, 4, ... ranks.

    The fixed cost of a k-rank ``statevector_task`` (round trip, sub-communicator, sending and
    converting the circuit, gathering the result), run the way :func:`run` runs the strategy.
    A 6-gate circuit on ``log2(k) + 4`` qubits makes its compute negligible.
    """
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    from ...statevector import statevector_task

    out: dict[str, float] = {}
    k = 1
    while k <= min(workers, 8):
        n = k.bit_length() - 1 + 4
        qc = QuantumCircuit(n)
        qc.h(range(3))
        qc.cx(0, n - 1)
        qc.cx(1, 2)
        qc.rz(0.3, n - 1)
        observable = [SparsePauliOp("Z" * n)]
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pilot.submit(statevector_task, qc, observable, ranks=k, name="calibrate:statevector_task").result()
            walls.append(time.perf_counter() - t0)
        out[str(k)] = statistics.median(walls[1:])  # the first one warms the ranks
        k *= 2
    return out


def _start(pilot, fn, *args, ranks: int = 1, gpus: int = 0):
    """Submit a probe to ``pilot`` (a future), or run it here at once when ``pilot`` is None."""
    if pilot is None:
        from mpi4py import MPI

        return _Done(fn(MPI.COMM_SELF, *args))
    return pilot.submit(fn, *args, ranks=ranks, gpus_per_rank=gpus, name=f"calibrate:{fn.__name__}")


_IMPORT_PROBE = ("import time; t = time.process_time(); import qiskit; from qiskit import qpy, transpile;"
                 " a = time.process_time(); import qiskit_aer.primitives;"
                 " from qiskit.transpiler import generate_preset_pass_manager; print(a - t, time.process_time() - a)")


def calibrate(pilot=None, *, profile: CostProfile | None = None, save: bool | str = True,
              quick: bool = False) -> CostProfile:
    """Measure this pilot's cost profile (see the module docstring) and save it (``save``: True or a path).

    ``pilot``: a running Pilot (the probes run at once on its worker ranks), or None or a
    :class:`~.resources.Resources` (in this process, one after the other; communication keeps
    its default). ``quick``: smaller sizes (for tests). Returns the profile; ``profile.meta``
    says how long each probe took (wall, and CPU where it is a CPU probe) and the load average.
    """
    import socket
    import subprocess
    import sys

    from ..cutting import _standard_errors, to_qpy
    from .resources import Resources

    if isinstance(pilot, Resources):  # a description has no ranks to run on: measure in this process
        pilot = None
    started = time.perf_counter()
    load_start = list(os.getloadavg())
    profile = profile or CostProfile(host=socket.gethostname())
    sv_sizes = (12, 16) if quick else NUMPY_SIZES
    aer_sizes = (12, 14) if quick else AER_SIZES
    halves = (3, 6) if quick else (4, 9)
    gpu = pilot is not None and any(r.gpus for r in pilot.resources.compute_ranks)
    workers = len(pilot.resources.compute_ranks) if pilot is not None else 0
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}

    # 1. wall-clock probes first, while the ranks are quiet: task round trip, then Sendrecv
    if pilot is not None:
        [f.result() for f in [pilot.submit(_noop) for _ in range(2 * workers)]]  # every worker warm
        trips = []
        for _ in range(15):
            t0 = time.perf_counter()
            pilot.submit(_noop).result()
            trips.append(time.perf_counter() - t0)
        task_s = statistics.median(trips)
        sv_task_s = _tiny_statevector_tasks(pilot, workers)
    else:
        task_s, sv_task_s = 0.0, {}
    seconds["round_trip"] = time.perf_counter() - started
    if workers >= 2:
        t0 = time.perf_counter()
        comm = _start(pilot, bench_comm, ranks=2).result()
        seconds["comm"] = time.perf_counter() - t0
        if comm:
            profile.update("comm", comm)

    # 2. CPU probes, all at once on their own ranks; a fresh interpreter's imports meanwhile
    t_probes = time.perf_counter()
    try:
        importer = subprocess.Popen([sys.executable, "-c", _IMPORT_PROBE], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
    except OSError:
        importer = None
    probes = {"numpy": _start(pilot, bench_statevector, sv_sizes),
              "aer": _start(pilot, bench_aer, aer_sizes),
              "aer-sampler": _start(pilot, bench_sampler, "CPU", halves),
              "whole_problem": _start(pilot, sample_whole_problem, halves[0], 100)}
    if gpu:
        probes["cupy"] = _start(pilot, bench_statevector, sv_sizes, "cupy", gpus=1)
        probes["aer-sampler-gpu"] = _start(pilot, bench_sampler, "GPU", halves, gpus=1)

    # 3. driver-side probes (this thread's CPU time) while the ranks work
    t0 = time.perf_counter()
    c0 = time.thread_time()
    plan, terms = cut_problem(halves[0], observables=4)  # partition + generation, as a cutting run does
    total = plan.num_subexperiments
    generate_s = (time.thread_time() - c0) / total
    profile.update("numpy", {"convert_gate_s": convert_gate_seconds(plan.circuit)})
    circuits = [c for subs in plan.subexperiments.values() for c in subs]
    c1 = time.thread_time()
    payload = to_qpy(circuits)
    from qiskit import qpy
    import io

    qpy.load(io.BytesIO(payload))
    qpy_s = (time.thread_time() - c1) / len(circuits)
    cpu_seconds["driver"] = time.thread_time() - c0

    results: dict[str, Any] = {}
    for name, future in probes.items():
        results[name] = future.result()
        seconds[name] = time.perf_counter() - t_probes  # wall until this probe was in (they ran at once)
    for name in ("numpy", "aer", "aer-sampler", "cupy", "aer-sampler-gpu"):
        if name in results:
            values = dict(results[name])
            cpu_seconds[name] = values.pop("probe_cpu_s", None)
            values.pop("points", None)
            profile.update(name, values)

    pubs = results["whole_problem"]
    c0 = time.thread_time()
    blob = pickle.dumps(pubs)
    c1 = time.thread_time()
    pickle.loads(blob)
    result_s = (time.thread_time() - c1) / total
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    c1 = time.thread_time()
    reconstruct_expectation_values({k: PrimitiveResult(v) for k, v in pubs.items()}, plan.coefficients,
                                   plan.subobservables)
    c2 = time.thread_time()
    _standard_errors(plan, pubs, 100)
    c3 = time.thread_time()
    cpu_seconds["driver"] += c3 - c0
    profile.update("cutting", {"generate_s": generate_s, "reconstruct_s": (c2 - c1) / (total * len(terms)),
                               "stderr_s": (c3 - c2) / (total * len(terms))})
    seconds["driver"] = time.perf_counter() - t0
    pilot_values = {"task_s": task_s, "circuit_s": qpy_s, "result_s": result_s}
    if sv_task_s:
        pilot_values["sv_task_s"] = sv_task_s
    if importer is not None:
        try:
            out, _ = importer.communicate(timeout=120)
            import_qiskit, import_aer = (float(x) for x in out.split())
            pilot_values.update(import_qiskit_s=import_qiskit, import_aer_s=import_aer)
        except (subprocess.SubprocessError, ValueError):
            importer.kill()
            importer.communicate()
    seconds["probes"] = time.perf_counter() - t_probes
    profile.update("pilot", pilot_values)
    profile.meta = {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "clock": "cpu", "loadavg": list(os.getloadavg()), "loadavg_start": load_start,
                    "workers": workers, "seconds": seconds, "cpu_seconds": cpu_seconds,
                    "total_s": time.perf_counter() - started, "quick": quick,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if save:
        path = profile.save(None if save is True else save)
        profile.meta["path"] = str(path)
    return profile
