"""Benchmark: pilotq_mpi.statevector on 1/2/4 ranks vs AerSimulator(method="statevector").

Both run the same circuits in the same invocation: random circuits (qiskit ``random_circuit``,
depth 10, up to 2-qubit gates) and the Pilot-Quantum paper's family, PennyLane's 2-layer
``StronglyEntanglingLayers`` built in Qiskit (per layer RZ RY RZ on each qubit, then CNOT
i -> (i + r) mod n with r = (layer mod (n - 1)) + 1). Our simulator runs in ``mpiexec -n k``
subprocesses of this file (``--runner``); each rank gets ``cores // k`` BLAS threads.
Time = median of ``--repeats`` runs of the whole simulation (circuit conversion included),
without observables. Writes JSON (default ``benchmarks/results/statevector.json``).

    python benchmarks/statevector.py            # 16, 20, 22 qubits; 1, 2, 4 ranks
    python benchmarks/statevector.py --quick    # 14, 16 qubits; 1, 2 ranks; 1 repeat
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def strongly_entangling(n: int, layers: int = 2, seed: int = 1):
    """The circuit of PennyLane's StronglyEntanglingLayers with random weights."""
    from qiskit import QuantumCircuit

    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for layer in range(layers):
        for q in range(n):
            phi, theta, omega = rng.uniform(0, 2 * np.pi, 3)
            qc.rz(phi, q)
            qc.ry(theta, q)
            qc.rz(omega, q)
        r = (layer % (n - 1)) + 1
        for q in range(n):
            qc.cx(q, (q + r) % n)
    return qc


def build(family: str, n: int):
    if family == "sel":
        return strongly_entangling(n)
    if family == "random":
        from qiskit.circuit.random import random_circuit

        return random_circuit(n, 10, max_operands=2, seed=n)
    raise ValueError(f"unknown family {family!r}; use 'sel' or 'random'")


def runner(args) -> None:
    """Inside mpiexec: time ``simulate`` on COMM_WORLD; rank 0 prints one JSON line."""
    from mpi4py import MPI

    from pilotq_mpi.statevector import simulate

    comm = MPI.COMM_WORLD
    qc = build(args.family, args.qubits[0])
    times, info = [], {}
    for _ in range(args.repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        result, sv = simulate(comm, qc, max_fused_qubits=args.max_fused)
        comm.Barrier()
        times.append(time.perf_counter() - t0)
        if result is not None:
            info = {"fused_gates": result.timings["fused_gates"], "swaps": result.timings["swaps"],
                    "swap_s": result.timings["swap"], "norm": result.norm}
        del sv
    if comm.rank == 0:
        print(json.dumps({"times": times, **info}), flush=True)


def time_aer(qc, repeats: int) -> list[float]:
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    sim = AerSimulator(method="statevector")
    circ = transpile(qc, sim, optimization_level=0)  # only renames gates Aer lacks (not timed)
    circ.save_statevector()
    sim.run(circ).result()  # warm-up (library loading)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim.run(circ).result()
        out.append(time.perf_counter() - t0)
    return out


def time_ours(family: str, n: int, ranks: int, args) -> dict:
    threads = str(args.threads_per_rank or max(1, (os.cpu_count() or 1) // ranks))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
               MKL_NUM_THREADS=threads, PYTHONPATH=str(HERE.parent))
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    cmd = ["timeout", str(args.timeout), mpiexec, "-n", str(ranks), sys.executable, __file__,
           "--runner", "--family", family, "--qubits", str(n), "--repeats", str(args.repeats),
           "--max-fused", str(args.max_fused)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qubits", type=int, nargs="+", default=[16, 20, 22])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--families", nargs="+", default=["random", "sel"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-fused", type=int, default=4)
    p.add_argument("--threads-per-rank", type=int, default=0,
                   help="BLAS threads per rank (default: cores // ranks)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per mpiexec subprocess")
    p.add_argument("--quick", action="store_true", help="14 and 16 qubits, 1 and 2 ranks, 1 repeat")
    p.add_argument("--out", type=Path, default=HERE / "results" / "statevector.json")
    p.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--family", default="sel", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runner:
        runner(args)
        return 0
    if args.quick:
        args.qubits, args.ranks, args.repeats = [14, 16], [1, 2], 1
    rows = []
    for family in args.families:
        for n in args.qubits:
            qc = build(family, n)
            gates = len(qc.data)
            aer = statistics.median(time_aer(qc, args.repeats))
            base = None
            for k in args.ranks:
                r = time_ours(family, n, k, args)
                t = statistics.median(r["times"])
                base = t if k == 1 else base
                row = {
                    "family": family, "qubits": n, "gates": gates, "ranks": k,
                    "time_s": t, "per_gate_us": t / gates * 1e6,
                    "aer_time_s": aer, "aer_per_gate_us": aer / gates * 1e6,
                    "ratio_to_aer": t / aer,
                    "parallel_efficiency": (base / (k * t)) if base else None,
                    "fused_gates": r.get("fused_gates"), "swaps": r.get("swaps"),
                    "swap_s": r.get("swap_s"), "all_times_s": r["times"],
                }
                rows.append(row)
                eff = f"{row['parallel_efficiency']:.0%}" if row["parallel_efficiency"] else "-"
                print(f"{family:6s} n={n:2d} k={k} {t:8.3f}s  {row['per_gate_us']:9.1f} us/gate  "
                      f"aer {aer:7.3f}s  x{row['ratio_to_aer']:.2f}  eff {eff}", flush=True)
    meta = {"command": " ".join([Path(sys.executable).name, "benchmarks/statevector.py"] + (argv or sys.argv[1:])),
            "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "repeats": args.repeats, "max_fused_qubits": args.max_fused,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(markdown(rows))
    return 0


def markdown(rows) -> str:
    lines = ["| circuit | qubits | gates | ranks | time (s) | us/gate | Aer (s) | ours/Aer | par. eff. | swaps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eff = f"{r['parallel_efficiency']:.0%}" if r["parallel_efficiency"] else "-"
        lines.append(f"| {r['family']} | {r['qubits']} | {r['gates']} | {r['ranks']} | {r['time_s']:.3f} | "
                     f"{r['per_gate_us']:.0f} | {r['aer_time_s']:.3f} | {r['ratio_to_aer']:.2f} | {eff} | {r['swaps']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
