"""The task functions of ``peers.py``, importable by every peer's workers (``benchmarks/`` is on their PYTHONPATH).

Each has a plain form for peers that call ``fn(*args)`` and a ``*_comm`` form for pilotq-mpi,
which passes the task's communicator first. ``python -m peers_tasks wide SECONDS`` runs the
wide task as a program (Parsl's MPI apps start one ``mpiexec`` per task).
"""
from __future__ import annotations

import io
import sys
import time

_SIMULATOR = None


def noop(x):
    """Return ``x``."""
    return x


def noop_comm(comm, x):
    """Return ``x`` (pilotq-mpi form)."""
    return x


def noop_chunk(xs):
    """One task for a chunk of items (bulk runs of peers without a chunked map)."""
    return [x for x in xs]


def wide_comm(comm, seconds):
    """A mixed-width task: sleep, then an allreduce over the task's ranks; returns the task's width."""
    time.sleep(seconds)
    return comm.allreduce(1) if comm.Get_size() > 1 else 1


def wide_world(seconds):
    """The same on ``MPI.COMM_WORLD`` (peers that launch one MPI job per task: executorlib, Parsl)."""
    from mpi4py import MPI

    return wide_comm(MPI.COMM_WORLD, seconds)


def sample(qpy_bytes, shots, seed):
    """A cutting subexperiment: load one transpiled circuit (QPY) and sample it with Aer on one thread.

    Returns the counts. The simulator is built once per worker process (like a warm worker).
    """
    global _SIMULATOR
    from qiskit import qpy
    from qiskit_aer import AerSimulator

    if _SIMULATOR is None:
        _SIMULATOR = AerSimulator(max_parallel_threads=1)
    circuit = qpy.load(io.BytesIO(qpy_bytes))[0]
    return _SIMULATOR.run(circuit, shots=shots, seed_simulator=seed).result().get_counts()


def sample_comm(comm, qpy_bytes, shots, seed):
    """:func:`sample` (pilotq-mpi form)."""
    return sample(qpy_bytes, shots, seed)


def loaded_modules(comm):
    """Names of the modules loaded in this worker process (what a pilotq-mpi worker imports)."""
    return sorted(sys.modules)


def wide_bash(seconds, parsl_resource_specification=None):
    """Parsl bash app body: the wide task as a fresh MPI job of the task's width (``$PARSL_MPI_PREFIX``)."""
    return f"$PARSL_MPI_PREFIX {sys.executable} -m peers_tasks wide {seconds}"


if __name__ == "__main__":  # python -m peers_tasks wide SECONDS (under mpiexec)
    if len(sys.argv) != 3 or sys.argv[1] != "wide":
        sys.exit("usage: python -m peers_tasks wide SECONDS")
    print(wide_world(float(sys.argv[2])))
