"""Fig. 7 reproduced: time of one mini-batch gradient of the QML classifier by batch size,
sequential vs vmap vs JIT vs both.

The classifier of :mod:`pilotq_mpi.workflows.qml.classifier` (StatePrep of a 7-qubit digit
state, rotation layers and CNOT rings, Pauli-Z read-outs, cross-entropy) in PennyLane with
JAX: per-sample gradients without compilation (sequential), ``vmap`` over the batch, ``jit``
per sample, and ``jit`` of the ``vmap`` (both); lightning.qubit with adjoint gradients (per
sample) as the non-JAX reference. One process (``drivers/fig7_driver.py``), one thread for
BLAS/OpenMP; the time of the first call (compilation for the jit modes) is kept apart from
the steady time (median of repeats); the uncompiled modes' first calls compile too (eager JAX
compiles each primitive at its first use), and the first mode measured also pays JAX's warm-up.
This is the kernel each rank runs in the data-parallel
training task; the allreduce across ranks is checked by ``tests/mpi/test_qml_mpi.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.figures.drivers import REPO

FIGURE = 7
TITLE = "QML classifier: mini-batch gradient time by batch size (sequential, vmap, JIT, both)"

DRIVER = Path(__file__).resolve().parent / "drivers" / "fig7_driver.py"

PAPER = {
    "figure": "Fig. 7 of Pilot-Quantum (Mantha et al., arXiv:2412.18519): a variational quantum classifier "
              "on the compressed images, batch processing time with JAX vmap, JIT and both, vs sequential.",
    "numbers": {},
    "ours": "steady seconds per mini-batch gradient per mode and batch size (series '<mode>', key 'steady_s'), "
            "and the first call (compilation) apart ('first_s')",
    "comparable": "In kind only: the paper's per-batch times are not restated here (we compare the shape: "
                  "how much vmap and JIT save over sequential as the batch grows). Ours is a 7-qubit circuit "
                  "on one CPU thread of a shared 2-core machine; compile times are large here and are shown "
                  "apart because a training run pays them once per input shape.",
}

SIZES = {
    # eager JAX compiles a kernel per primitive and shape on first use (tens of seconds on a loaded
    # 2-core machine), so tiny uses one batch shape and the uncompiled modes stop at small batches
    "tiny": {"batch_sizes": "2", "eager_max": 2, "qubits": 2, "classes": 2, "layers": 1, "repeats": 1,
             "timeout": 240},
    "small": {"batch_sizes": "1,4,16,64", "eager_max": 8, "qubits": 7, "classes": 4, "layers": 2, "repeats": 2,
              "timeout": 900},
}
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _args(p: dict) -> list[str]:
    return ["--batch-sizes", p["batch_sizes"], "--eager-max", str(p["eager_max"]), "--qubits", str(p["qubits"]),
            "--classes", str(p["classes"]), "--layers", str(p["layers"]), "--repeats", str(p["repeats"])]


def run(size: str, out_dir: Path) -> dict:
    """Run the driver in a fresh Python process and return its measurements."""
    p = SIZES[size]
    result = out_dir / "fig7.json"
    env = dict(os.environ, **SINGLE_THREAD)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    loadavg_before = list(os.getloadavg())
    argv = [sys.executable, str(DRIVER), "--result", str(result), *_args(p)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=p["timeout"], env=env, cwd=REPO, check=False)
    if out.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{DRIVER.name} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    data = json.loads(result.read_text())
    data.update({"size": size, "loadavg_before": loadavg_before, "loadavg": list(os.getloadavg()),
                 "cpus": os.cpu_count(), "python": sys.version.split()[0], "threads_per_rank": 1,
                 "command": f"python {DRIVER.relative_to(REPO)} --result OUT {' '.join(_args(p))}"})
    return data


def plot(data: dict, path: Path) -> None:
    """Left: steady seconds per batch (log-log); right: the first call (compilation) per mode."""
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    styles = {"sequential": "o-", "vmap": "s-", "jit": "^-", "jit+vmap": "d-", "lightning": "x--"}
    for mode, rows in data["series"].items():
        if rows:
            ax.plot([r["batch"] for r in rows], [r["steady_s"] for r in rows], styles.get(mode, "o-"),
                    label=f"{mode} (lightning.qubit, adjoint)" if mode == "lightning" else f"JAX {mode}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("seconds per mini-batch gradient (steady)")
    c = data["config"]
    ax.set_title(f"{c['qubits']} qubits, {c['layers']} layers, {c['classes']} classes", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if not data.get("jax"):
        ax.text(0.02, 0.02, data.get("note", "JAX not available"), transform=ax.transAxes, fontsize=8)
    modes = [m for m, rows in data["series"].items() if rows]
    ax2.bar(range(len(modes)), [data["series"][m][0]["first_s"] for m in modes], color="tab:gray")
    ax2.set_xticks(range(len(modes)), modes, fontsize=8, rotation=20)
    ax2.set_ylabel("first call at the smallest batch (s)")
    ax2.set_title("first call: JIT compiles here", fontsize=10)
    fig.suptitle(f"Fig. 7 reproduced, size {data['size']}: 1 thread, load avg {data['loadavg'][0]:.1f} on "
                 f"{data['cpus']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
