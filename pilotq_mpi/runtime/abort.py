"""Ending the whole MPI job from one rank, without losing the explanation."""
from __future__ import annotations

import sys
import time


def abort_job(world, code: int, message: str) -> None:
    """Print ``message`` and abort every rank with exit code ``code`` (does not return)."""
    sys.stderr.write(f"pilotq-mpi: {message}\n")
    sys.stderr.flush()
    time.sleep(0.5)  # let the launcher forward stderr before it kills every process
    world.Abort(code)
