"""The QML mini-app: compress digits into shallow circuits as a task ensemble, then train a
variational classifier on the compressed states, data-parallel on a multi-rank task.

    pilotq-mpi demo qml                          # 8 ranks on local mpiexec, ~1-2 minutes on 2 cores
    pilotq-mpi demo qml -n 4 -- --images 1797 --classes 0,1,2,3,4,5,6 --journal qml.sqlite
    mpiexec -n 8 python -m pilotq_mpi pilotq_mpi/workflows/qml/demo.py [--quick] [--journal FILE]

1. Each image (scikit-learn's 8x8 digits, shipped with the package) is FRQI-encoded into
   7 qubits and compressed (stage 1: MPS layers + sweeping; stage 2: BFGS), ``--batch-size``
   images per single-rank task. With ``--journal FILE`` every finished batch is recorded:
   after a drain (exit code 75) or a kill, the same command resumes where it stopped.
2. The classifier trains on the compressed states of the training images on one task of
   ``--train-ranks`` ranks (each rank the gradient of its shard, one allreduce per step).
3. It prints the fidelities, the time of each stage, and the classifier's test accuracy
   next to logistic regression on the same features (the compressed states' amplitudes)
   and on the raw pixels. These are honest numbers for a 7-qubit toy: no claim of a
   quantum advantage.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from pilotq_mpi import Pilot
from pilotq_mpi.workflows.qml.classifier import ClassifierConfig, classical_baseline, train_task
from pilotq_mpi.workflows.qml.compress import CompressionConfig
from pilotq_mpi.workflows.qml.data import N_QUBITS, frqi_decode, load_digits_images
from pilotq_mpi.workflows.qml.ensemble import run_compression


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320, help="images to compress (default 320)")
    parser.add_argument("--classes", default="0,1,2,3", help="digits to use, comma-separated (2..7 of 0-9)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of the images held out for testing")
    parser.add_argument("--layers", type=int, default=2, help="gate layers of each compressed circuit")
    parser.add_argument("--sweeps", type=int, default=2, help="stage-1 sweeps")
    parser.add_argument("--bfgs-maxiter", type=int, default=80, help="stage-2 BFGS iterations at most")
    parser.add_argument("--batch-size", type=int, default=8, help="images per compression task")
    parser.add_argument("--train-ranks", type=int, default=2, help="ranks of the data-parallel training task")
    parser.add_argument("--epochs", type=int, default=8, help="classifier training epochs")
    parser.add_argument("--clf-layers", type=int, default=2, help="classifier rotation layers")
    parser.add_argument("--minibatch", type=int, default=32, help="classifier mini-batch size (all ranks together)")
    parser.add_argument("--backend", default="auto", choices=("auto", "jax", "lightning"), help="classifier backend")
    parser.add_argument("--journal", help="record finished tasks here; rerun with it to resume")
    parser.add_argument("--out", help="folder for qml.json and digits.png (originals vs compressed)")
    parser.add_argument("--quick", action="store_true", help="a small problem (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.bfgs_maxiter, args.epochs, args.layers = 48, 30, 2, 1
    args.classes = tuple(int(c) for c in args.classes.split(","))
    if not 2 <= len(args.classes) <= N_QUBITS:
        parser.error(f"--classes {args.classes}: use 2..{N_QUBITS} digits (one read-out qubit per class)")
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction {args.test_fraction}: use a share between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    images, digits = load_digits_images(args.classes, limit=args.images, seed=0)
    labels = np.searchsorted(np.array(sorted(args.classes)), digits)  # 0..k-1
    n_test = max(1, int(round(args.test_fraction * len(labels))))
    n_train = len(labels) - n_test
    compression = CompressionConfig(layers=args.layers, sweeps=args.sweeps, bfgs_maxiter=args.bfgs_maxiter)
    classifier = ClassifierConfig(n_qubits=N_QUBITS, n_classes=len(args.classes), layers=args.clf_layers,
                                  batch_size=args.minibatch, epochs=args.epochs, backend=args.backend)
    print(f"QML mini-app: {len(labels)} digits {args.classes} ({n_train} train, {n_test} test), "
          f"{N_QUBITS} qubits each; compression {compression}")
    started = time.perf_counter()
    done = [0]

    def progress(batch):
        done[0] += len(batch)
        if done[0] * 10 // len(labels) != (done[0] - len(batch)) * 10 // len(labels):
            print(f"  compressed {done[0]}/{len(labels)} images ({time.perf_counter() - started:.1f}s)", flush=True)

    with Pilot(journal=args.journal) as pilot:
        workers = len(pilot.resources.compute_ranks)
        train_ranks = max(1, min(args.train_ranks, workers))
        results = run_compression(pilot, images, compression, batch_size=args.batch_size, on_batch=progress)
        compressed_at = time.perf_counter()
        states = np.array([r.state() for r in results])
        training = pilot.submit(train_task, states[:n_train], labels[:n_train], states[n_train:], labels[n_train:],
                                classifier, ranks=train_ranks, name="qml-train").result()
        restored = pilot.restored
    wall = time.perf_counter() - started

    fidelity = {stage: float(np.mean([getattr(r, f"fidelity_{stage}") for r in results]))
                for stage in ("mps", "sweep", "bfgs")}
    seconds = {stage: float(np.sum([getattr(r, f"seconds_{stage}") for r in results])) for stage in ("sweep", "bfgs")}
    baseline_states = classical_baseline(states[:n_train], labels[:n_train], states[n_train:], labels[n_train:])
    flat = images.reshape(len(images), -1)
    baseline_pixels = classical_baseline(flat[:n_train], labels[:n_train], flat[n_train:], labels[n_train:])
    print(f"\ncompression: {len(results)} images on {workers} workers in {compressed_at - started:.1f}s"
          f" ({len(results) / (compressed_at - started):.1f} images/s; {restored} tasks restored from the journal)")
    print(f"  mean fidelity: MPS layers {fidelity['mps']:.4f} -> sweeps {fidelity['sweep']:.4f}"
          f" -> BFGS {fidelity['bfgs']:.4f} ({results[0].parameters} parameters per image vs 64 pixels)")
    print(f"  task time: sweeping {seconds['sweep']:.1f}s, BFGS {seconds['bfgs']:.1f}s (summed over tasks)")
    print(f"classifier ({training.backend}, {training.ranks} ranks, {training.steps} steps, {training.seconds:.1f}s):"
          f" loss {training.losses[0]:.3f} -> {training.losses[-1]:.3f}")
    chance = 1 / len(args.classes)
    rows = [("variational quantum classifier, compressed states", training.test_accuracy),
            ("logistic regression, compressed states (same features)", baseline_states),
            ("logistic regression, raw pixels", baseline_pixels), ("chance", chance)]
    print(f"\n{'test accuracy':<58}")
    for label, value in rows:
        print(f"  {label:<56} {value:6.1%}")
    print(f"\ndriver time {wall:.1f}s")
    if args.out:
        _write_outputs(Path(args.out), args, images, results, fidelity, seconds, training, rows, wall)


def _write_outputs(folder: Path, args, images, results, fidelity, seconds, training, rows, wall) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"images": len(results), "classes": list(args.classes), "fidelity": fidelity, "task_seconds": seconds,
               "classifier": {"backend": training.backend, "ranks": training.ranks, "losses": training.losses,
                              "train_accuracy": training.train_accuracy, "test_accuracy": training.test_accuracy},
               "test_accuracy": {label: value for label, value in rows}, "driver_seconds": wall,
               "loadavg": list(os.getloadavg())}
    (folder / "qml.json").write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(8, len(results))
    fig, axes = plt.subplots(2, shown, figsize=(1.3 * shown, 3), squeeze=False)
    for i in range(shown):
        axes[0, i].imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].imshow(frqi_decode(results[i].state()), cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].set_xlabel(f"F={results[i].fidelity_bfgs:.3f}", fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("compressed", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "digits.png", dpi=120)
    plt.close(fig)
    print(f"QML outputs in {folder}/ (qml.json, digits.png)")


if __name__ == "__main__":
    main()
