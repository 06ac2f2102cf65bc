"""Fig. 6 driver: compress digits through the pilot in two phases, sweeping then BFGS.

    mpiexec -n K+1 python -m pilotq_mpi benchmarks/figures/drivers/fig6_driver.py --result out.json \
        --images 128 --batch-size 8 --layers 2 --sweeps 2 --bfgs-maxiter 100

Phase 1 submits every image's stage 1 (MPS layers + sweeps) as single-rank tasks of
``--batch-size`` images and waits for all; phase 2 submits stage 2 (BFGS from the stage-1
gates) the same way. So each stage has its own wall time on the pilot's workers (the QML
demo runs both stages in one task instead). ``--sequential`` runs the same two phases in this
process without a pilot (the baseline; then start it with plain ``python``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from pilotq_mpi.workflows.qml.compress import CompressionConfig, fidelity, mps_layers, refine_bfgs, sweep
from pilotq_mpi.workflows.qml.data import frqi_state, load_digits_images
from pilotq_mpi.workflows.qml.threads import one_thread


def stage_one(comm, images, config):
    """MPS layers + sweeps for each image: [(gates, qubits, fidelity, task seconds, CPU seconds)]."""
    out = []
    with one_thread():
        for image in images:
            started, cpu = time.perf_counter(), time.thread_time()
            target = frqi_state(image)
            gates, qubits = mps_layers(target, config.layers)
            gates = sweep(target, gates, qubits, config.sweeps)
            out.append((gates, qubits, fidelity(target, gates, qubits), time.perf_counter() - started,
                        time.thread_time() - cpu))
    return out


def stage_two(comm, images, circuits, config):
    """BFGS from the stage-1 gates for each image: [(fidelity, iterations, task seconds, CPU seconds)]."""
    out = []
    with one_thread():
        for image, (gates, qubits) in zip(images, circuits):
            started, cpu = time.perf_counter(), time.thread_time()
            target = frqi_state(image)
            refined, iterations = refine_bfgs(target, gates, qubits, config.bfgs_maxiter, config.bfgs_gtol)
            out.append((fidelity(target, refined, qubits), iterations, time.perf_counter() - started,
                        time.thread_time() - cpu))
    return out


def _batches(count: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, count, size)]


def run(images, config, batch_size: int, submit) -> dict:
    """Both phases; ``submit(fn, *args)`` returns something with ``.result()``."""
    batches = _batches(len(images), batch_size)
    started = time.perf_counter()
    futures = [submit(stage_one, images[b], config) for b in batches]
    first = [item for f in futures for item in f.result()]
    middle = time.perf_counter()
    futures = [submit(stage_two, images[b], [(g, q) for g, q, *_ in first[b]], config) for b in batches]
    second = [item for f in futures for item in f.result()]
    ended = time.perf_counter()
    return {
        "images": len(images), "tasks_per_phase": len(batches), "batch_size": batch_size,
        "sweep_wall_s": middle - started, "bfgs_wall_s": ended - middle, "wall_s": ended - started,
        "sweep_task_s": float(sum(r[3] for r in first)), "bfgs_task_s": float(sum(r[2] for r in second)),
        # CPU time the tasks' threads got: on a shared machine wall time also counts waiting for a core
        "sweep_cpu_s": float(sum(r[4] for r in first)), "bfgs_cpu_s": float(sum(r[3] for r in second)),
        "fidelity_sweep": float(np.mean([r[2] for r in first])),
        "fidelity_bfgs": float(np.mean([r[0] for r in second])),
        "bfgs_iterations": float(np.mean([r[1] for r in second])),
    }


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", required=True, help="write the measurements here (JSON)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--bfgs-maxiter", type=int, default=100)
    parser.add_argument("--sequential", action="store_true", help="no pilot: both phases in this process")
    args = parser.parse_args()
    images, _ = load_digits_images(limit=args.images, seed=0)
    config = CompressionConfig(layers=args.layers, sweeps=args.sweeps, bfgs_maxiter=args.bfgs_maxiter)
    if args.sequential:
        data = run(images, config, args.batch_size, lambda fn, *a: _Done(fn(None, *a)))
        data["workers"] = 0
    else:
        from pilotq_mpi import Pilot

        with Pilot() as pilot:
            data = run(images, config, args.batch_size, lambda fn, *a: pilot.submit(fn, *a, name=fn.__name__))
            data["workers"] = len(pilot.resources.compute_ranks)
    data["loadavg"] = list(os.getloadavg())
    Path(args.result).write_text(json.dumps(data))


if __name__ == "__main__":
    main()
