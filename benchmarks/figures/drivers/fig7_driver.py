"""Fig. 7 driver: time one mini-batch gradient of the QML classifier per batch size and mode.

    python benchmarks/figures/drivers/fig7_driver.py --result out.json --batch-sizes 1,4,16,64

Modes (JAX, :func:`pilotq_mpi.workflows.qml.classifier.make_model`): ``sequential`` (per-sample
gradients, no compilation), ``vmap`` (one vectorised call), ``jit`` (a compiled per-sample
gradient, looped), ``jit+vmap`` (one compiled vectorised call); and ``lightning`` (lightning.qubit,
adjoint gradients, per sample) as the non-JAX reference. For each: the first call (for the
``jit`` modes it includes XLA compilation) and the median of ``--repeats`` further calls.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from pilotq_mpi.workflows.qml.classifier import ClassifierConfig, available_backends, init_params, make_model
from pilotq_mpi.workflows.qml.data import frqi_states, load_digits_images
from pilotq_mpi.workflows.qml.threads import one_thread

MODES = ("sequential", "vmap", "jit", "jit+vmap")


def measure(model, params, states, labels, repeats: int) -> dict:
    """First call and median of ``repeats`` calls of the mini-batch gradient, in seconds."""
    weights = np.ones(len(labels))
    started = time.perf_counter()
    model.loss_and_grad(params, states, labels, weights)
    first = time.perf_counter() - started
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        model.loss_and_grad(params + 1e-3 * (i + 1), states, labels, weights)
        times.append(time.perf_counter() - started)
    steady = statistics.median(times) if times else first
    return {"batch": len(labels), "first_s": first, "steady_s": steady, "per_sample_s": steady / len(labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", required=True)
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    parser.add_argument("--eager-max", type=int, default=16, help="largest batch for the uncompiled modes")
    parser.add_argument("--qubits", type=int, default=7)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    images, digits = load_digits_images(classes=tuple(range(args.classes)), limit=max(sizes), seed=0)
    states = frqi_states(images)
    if args.qubits != 7:  # a smaller circuit for the tiny run: keep the first 2^qubits amplitudes
        states = states[:, : 1 << args.qubits]
        states /= np.linalg.norm(states, axis=1, keepdims=True)
    labels = digits % args.classes
    found = available_backends()
    series: dict[str, list[dict]] = {}
    compile_s: dict[str, float] = {}
    for mode in (MODES if "jax" in found else ()) + (("lightning",) if "lightning" in found else ()):
        config = ClassifierConfig(n_qubits=args.qubits, n_classes=args.classes, layers=args.layers,
                                  backend="lightning" if mode == "lightning" else "jax")
        params = init_params(config)
        model = make_model(config, mode="sequential" if mode == "lightning" else mode)
        rows = []
        with one_thread():
            for size in sizes:
                if mode in ("sequential", "vmap", "lightning") and size > args.eager_max:
                    continue
                rows.append(measure(model, params, states[:size], labels[:size], args.repeats))
                print(mode, rows[-1], flush=True)
        series[mode] = rows
        compile_s[mode] = rows[0]["first_s"] - rows[0]["steady_s"] if rows else 0.0
    data = {"series": series, "first_call_minus_steady_s": compile_s, "backends": found,
            "jax": "jax" in found, "config": {"qubits": args.qubits, "classes": args.classes, "layers": args.layers,
                                              "repeats": args.repeats, "eager_max": args.eager_max},
            "loadavg": list(os.getloadavg())}
    if "jax" not in found:
        data["note"] = "JAX is not installed here: only the lightning series was measured (pip install jax)"
    Path(args.result).write_text(json.dumps(data))


if __name__ == "__main__":
    main()
