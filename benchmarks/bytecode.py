"""Start-up benchmarks measure pilotq-mpi as an installed package runs: with its bytecode compiled.

``pip install`` (not editable) compiles every module to ``__pycache__`` at install time, as it did
for the peers in site-packages; an editable install writes them on first import, unless
``PYTHONDONTWRITEBYTECODE`` is set (it is on the build machine): then every process of every run
compiled pilotq-mpi's ~50 modules again (~0.23 s of CPU each, measured with cProfile in a worker
of an 8-rank start on 2 cores). Python reads existing bytecode even with that variable set.
"""
from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pilotq_mpi"


def compile_package() -> bool:
    """Compile pilotq-mpi's modules to bytecode where it is missing or stale; True if all compiled."""
    return bool(compileall.compile_dir(str(PACKAGE), quiet=1))
