"""Ending the whole MPI job from rank 0 with the right exit code, without losing the explanation.

Under ``srun --mpi=pmi2`` an ``MPI_Abort(code)`` makes Slurm kill the step, so srun returns
137 whatever ``code`` was, and ``MPI_Abort`` may even return. So rank 0 always writes the
job's exit code to ``$PILOTQ_EXIT_CODE_FILE`` (when set) before it ends, cleanly or by abort;
the batch scripts (and ``pilotq-mpi run``) exit with that code, which is what Slurm records.
"""
from __future__ import annotations

import os
import sys
import time

EXIT_CODE_FILE_VAR = "PILOTQ_EXIT_CODE_FILE"


def exit_code_file(env=os.environ) -> str | None:
    """The file rank 0 writes the job's exit code to, or None when not asked for."""
    return env.get(EXIT_CODE_FILE_VAR) or None


def clear_exit_code(env=os.environ) -> None:
    """Remove a code file left by an earlier run, so that a stale code never stands for this one."""
    path = exit_code_file(env)
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def write_exit_code(code: int, env=os.environ) -> None:
    """Record ``code`` as this job's exit code (atomically: a reader never sees half a file)."""
    path = exit_code_file(env)
    if not path:
        return
    partial = f"{path}.{os.getpid()}.tmp"
    try:
        with open(partial, "w") as handle:
            handle.write(f"{code}\n")
        os.replace(partial, path)
    except OSError as exc:  # the code still reaches mpiexec; say why Slurm may not see it
        sys.stderr.write(f"pilotq-mpi: could not write the exit code to {path}: {exc}\n")


def abort_job(world, code: int, message: str):
    """Print ``message``, record ``code`` and abort every rank. Never returns.

    ``MPI_Abort`` may return under srun; this process then exits at once with ``code``
    (no code after an abort runs as if it had not happened).
    """
    write_exit_code(code)
    sys.stderr.write(f"pilotq-mpi: {message}\n")
    sys.stderr.flush()
    time.sleep(0.5)  # let the launcher forward stderr before it kills every process
    try:
        world.Abort(code)
    finally:
        os._exit(code)
