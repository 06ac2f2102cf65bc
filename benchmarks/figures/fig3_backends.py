"""Fig. 3 reproduced: one batch of random circuits (2 to 20 qubits) across the backends available
here, run as pilot tasks; time per circuit by qubit count.

Backends: Qiskit Aer (CPU state vector), our distributed state vector on one rank
(``pilotq_mpi.statevector``), PennyLane ``lightning.qubit``, and a fake IBM device
(``fake_guadalupe``, noisy Aer simulation of the device) behind an emulated queue/network
latency, pinned to its own worker as a pilot QPU. Every simulator runs single-threaded
(``OMP_NUM_THREADS=1``, Aer ``max_parallel_threads=1``) so that no backend gets more of the
2 cores than another. The driver is ``benchmarks/figures/drivers/fig3_driver.py``.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from benchmarks.figures import run_facts
from benchmarks.figures.drivers import launch_pilot

FIGURE = 3
TITLE = "Circuit execution across backends, through the pilot"

DRIVER = Path(__file__).resolve().parent / "drivers" / "fig3_driver.py"

PAPER = {
    "figure": "Fig. 3 of Pilot-Quantum (Mantha et al., arXiv:2412.18519): circuit execution across "
              "simulators and hardware (IBM's Eagle QPU among them) through the pilot.",
    "numbers": {},
    "comparable": "Shape only, not numbers: the paper ran on Perlmutter CPUs/GPUs and a real IBM QPU "
                  "whose time is dominated by its cloud queue; here 2 shared CPU cores, simulators "
                  "single-threaded, and the QPU is a fake device (noisy Aer simulation) behind an "
                  "emulated latency, so its time is that latency plus the cost of simulating the noise "
                  "(which explodes past ~8 qubits here, so the fake QPU series stops there).",
}

SIZES = {
    # qubit counts, circuits per count, layers, widest circuit for the fake QPU, latency, shots, timeout
    "tiny": {"qubits": [2, 4], "circuits": 1, "depth": 4, "qpu_max_qubits": 4, "latency": 0.1,
             "shots": 200, "timeout": 150},
    "small": {"qubits": list(range(2, 21, 2)), "circuits": 3, "depth": 10, "qpu_max_qubits": 8,
              "latency": 1.0, "shots": 1000, "timeout": 1200},
}
RANKS = 3  # master + one simulator worker + one worker pinned to the fake QPU
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LABELS = {"aer": "Qiskit Aer (CPU)", "pilotq_sv": "pilotq-mpi state vector (1 rank)",
          "lightning": "PennyLane lightning.qubit", "fake_qpu": "fake IBM QPU (fake_guadalupe + latency)"}


def _series(runs: list[dict]) -> dict[str, list[dict]]:
    """Per backend: per qubit count, median/min/max seconds over the circuits."""
    out: dict[str, list[dict]] = {}
    for backend in LABELS:
        rows = []
        for n in sorted({r["qubits"] for r in runs if r["backend"] == backend}):
            secs = [r["seconds"] for r in runs if r["backend"] == backend and r["qubits"] == n]
            rows.append({"qubits": n, "median_s": statistics.median(secs), "min_s": min(secs),
                         "max_s": max(secs), "circuits": len(secs)})
        if rows:
            out[backend] = rows
    return out


def _agreement(runs: list[dict]) -> dict:
    """Largest |<Z..Z>| difference between the simulators on the same circuit, and the fake
    QPU's largest difference from them (device noise and shot noise)."""
    by_circuit: dict[tuple, dict[str, float]] = {}
    for r in runs:
        by_circuit.setdefault((r["qubits"], r["circuit"]), {})[r["backend"]] = r["value"]
    sim_diff, qpu_diff = 0.0, 0.0
    for values in by_circuit.values():
        exact = values["aer"]
        sim_diff = max([sim_diff] + [abs(values[b] - exact) for b in ("pilotq_sv", "lightning")])
        if "fake_qpu" in values:
            qpu_diff = max(qpu_diff, abs(values["fake_qpu"] - exact))
    return {"simulators_max_abs_diff": sim_diff, "fake_qpu_max_abs_diff": qpu_diff}


def run(size: str, out_dir: Path) -> dict:
    """Run the batch through a pilot of :data:`RANKS` ranks; return series per backend."""
    p = SIZES[size]
    args = ["--qubits", *map(str, p["qubits"]), "--circuits", str(p["circuits"]), "--depth", str(p["depth"]),
            "--qpu-max-qubits", str(p["qpu_max_qubits"]), "--latency", str(p["latency"]),
            "--shots", str(p["shots"])]
    loadavg_before = list(os.getloadavg())
    result, command = launch_pilot(DRIVER, args, ranks=RANKS, result=out_dir / "fig3_driver.json",
                                   timeout=p["timeout"], env=SINGLE_THREAD)
    runs = result["runs"]
    return {
        **run_facts(size, command, loadavg_before),
        "params": {k: v for k, v in p.items() if k != "timeout"},
        "ranks": RANKS,
        "threads_per_task": 1,
        "series": _series(runs),
        "agreement": _agreement(runs),
        "batch_seconds": result["batch_seconds"],
        "tasks": result["tasks"],
        "qpu": result["qpu"],
        "runs": runs,
    }


def plot(data: dict, path: Path) -> None:
    """Seconds per circuit (median, min-max bars) by qubit count, log scale, one line per backend."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend, rows in data["series"].items():
        qubits = [r["qubits"] for r in rows]
        med = [r["median_s"] for r in rows]
        err = [[m - r["min_s"] for m, r in zip(med, rows)], [r["max_s"] - m for m, r in zip(med, rows)]]
        ax.errorbar(qubits, med, yerr=err, marker="o", capsize=3, label=LABELS.get(backend, backend))
    latency = data["qpu"]["latency_s"]
    ax.axhline(latency, color="grey", ls=":", lw=1)
    ax.text(min(r["qubits"] for rows in data["series"].values() for r in rows), latency * 1.15,
            f"emulated QPU latency {latency:g} s", color="grey", fontsize=8)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("qubits")
    ax.set_ylabel("seconds per circuit (median; bars: min-max)")
    ax.set_title(f"Fig. 3 reproduced: {data['tasks']} circuit tasks through the pilot "
                 f"({data['ranks'] - 1} workers), size {data['size']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, f"1 thread per task; load avg {data['loadavg'][0]:.1f} on {data['cpus']} cores; "
             f"depth {data['params']['depth']} layers RY/RZ + CX brick", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
