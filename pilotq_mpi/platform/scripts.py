"""The ``pilotq-srun`` and ``pilotq-mpiexec`` commands (console scripts of the package).

Installing pilotq-mpi puts them on PATH, so a batch script finds its launcher wherever it
was submitted from. Each builds its command with :mod:`pilotq_mpi.platform.launch` and
replaces itself with it (``exec``): the launcher's pid, signals and exit status are the
command's own.

    pilotq-srun [srun options] python -m pilotq_mpi app.py [args]
    pilotq-mpiexec N app.py [args]

``launch/pilotq-srun`` and ``launch/pilotq-mpiexec`` in a checkout are shell versions that
behave the same (a test keeps them equal).
"""
from __future__ import annotations

import os
import sys

from .launch import default_mpiexec, pilot_mpiexec_argv, pilot_srun_argv


def _exec(argv: list[str]) -> int:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"{os.path.basename(sys.argv[0])}: cannot run {argv[0]!r}: {exc}\n")
        return 127
    return 0  # not reached


def srun_main(argv: list[str] | None = None) -> int:
    """``pilotq-srun ARGS``: ``srun --mpi=pmi2 ARGS`` (``$SRUN``, ``$PILOTQ_SRUN_MPI``)."""
    return _exec(pilot_srun_argv(sys.argv[1:] if argv is None else argv, os.environ))


def mpiexec_main(argv: list[str] | None = None) -> int:
    """``pilotq-mpiexec N app.py [args]``: ``mpiexec -n N python -m pilotq_mpi app.py [args]``.

    Defaults: the mpiexec beside this Python (else PATH) and this Python; ``$MPIEXEC`` and
    ``$PYTHON`` override them.
    """
    try:
        words = pilot_mpiexec_argv(sys.argv[1:] if argv is None else argv, os.environ,
                                   python=sys.executable, mpiexec=default_mpiexec())
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return _exec(words)
