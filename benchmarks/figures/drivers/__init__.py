"""Pilot drivers of the figures, and :func:`launch_pilot`, which runs one under ``mpiexec``.

A driver is an ordinary pilotq-mpi driver script (rank 0 under ``python -m pilotq_mpi``): it
submits the figure's work as tasks and writes what it measured as JSON to the path given by
``--result``. The figure module starts it with :func:`launch_pilot` and reads that file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["REPO", "launch_pilot", "mpiexec"]

REPO = Path(__file__).resolve().parents[3]


def mpiexec() -> Path:
    """The ``mpiexec`` beside this Python (the virtual environment's MPICH)."""
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        raise FileNotFoundError(f"no mpiexec beside {sys.executable}; install the 'mpich' extra "
                                f"(pip install -e '.[mpich]') or put this Python's MPI on PATH")
    return path


def launch_pilot(driver: Path, args: list[str], *, ranks: int, result: Path, timeout: float,
                 env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run ``mpiexec -n ranks python -m pilotq_mpi driver --result result ARGS`` and return
    ``(the JSON the driver wrote to result, the command line)``.

    Args:
        driver: the driver script.
        args: the driver's own arguments.
        ranks: MPI ranks (rank 0 is the master and driver, the others are workers).
        result: where the driver writes its JSON.
        timeout: hard limit in seconds; past it the job is killed and ``TimeoutExpired`` raised.
        env: extra environment variables (the pilot runs quiet, without progress display).

    Raises:
        RuntimeError: the job failed or wrote no result; the message holds the end of its output.
    """
    argv = [str(mpiexec()), "-n", str(ranks), sys.executable, "-m", "pilotq_mpi", str(driver),
            "--result", str(result), *args]
    full_env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off", **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO,
                         check=False)
    command = " ".join(["mpiexec", "-n", str(ranks), "python", "-m", "pilotq_mpi",
                        str(driver.relative_to(REPO)), *args])
    if out.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{command} failed (exit code {out.returncode}):\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(result.read_text()), command
