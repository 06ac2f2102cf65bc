"""The adapt policy's side effects on Slurm: submit a join job, cancel one (sbatch, scancel).

``SlurmJobs(run_dir)`` renders the join script of a
:class:`~pilotq_mpi.core.adapt.JoinTemplate` for the pilot whose run directory is
``run_dir`` (:func:`pilotq_mpi.platform.sbatch.render`), gives it to ``sbatch`` and returns
the job id; ``cancel`` runs ``scancel``. The policy itself (when) is
:class:`pilotq_mpi.core.adapt.Adapt`.

sbatch runs in the calling process's working directory (the pilot's: the joined ranks start
where the pilot's did, so relative paths in tasks mean the same) with that environment
minus what belongs to the pilot's own job (see :func:`sbatch_environment`); the job's output
goes to ``run_dir/join-JOBID.out``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ..core.adapt import JoinTemplate
from .sbatch import SubmitError, render, submit
from .submit_cli import default_launcher

__all__ = ["CancelError", "SlurmJobs", "SubmitError", "sbatch_environment"]

#: Slurm variables a submitting command may need; every other SLURM_* describes the pilot's
#: own job or step and would leak into the join job (sbatch passes the environment on).
_SLURM_KEPT = frozenset({"SLURM_CONF", "SLURM_CLUSTERS", "SLURM_DEBUG_FLAGS", "SLURM_EXIT_ERROR"})
#: pilotq variables a user may set for every job (launcher, interpreter, PMI plugin).
_PILOTQ_KEPT = frozenset({"PILOTQ_SRUN", "PILOTQ_PYTHON", "PILOTQ_SRUN_MPI"})
_DROPPED_PREFIXES = ("SRUN_", "PMI_", "PMIX_", "HYDRA_")

#: scancel's words for a job that is not there to cancel any more (it ended, or is unknown).
_ALREADY_GONE = ("already completing or completed", "invalid job id")


class CancelError(RuntimeError):
    """scancel failed for a job that may still be there (its message is in the text)."""


def sbatch_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what describes the pilot's own job: its ``SLURM_*`` job and step
    variables (but ``SLURM_CONF`` and sbatch's other inputs), ``SRUN_*`` and MPI
    launcher variables (``PMI_*``, ``PMIX_*``, ``HYDRA_*``), and the pilot's ``PILOTQ_*``
    settings (run directory, pool, fake layout, declared GPUs, trace, ...; a join job's ranks
    find their own) but the launcher choices ``PILOTQ_SRUN``, ``PILOTQ_PYTHON``,
    ``PILOTQ_SRUN_MPI``. ``SBATCH_*`` (a user's defaults for sbatch) stay."""
    kept = {}
    for name, value in environ.items():
        if name.startswith("SLURM_") and name not in _SLURM_KEPT:
            continue
        if name.startswith("PILOTQ_") and name not in _PILOTQ_KEPT:
            continue
        if name.startswith(_DROPPED_PREFIXES):
            continue
        kept[name] = value
    return kept


class SlurmJobs:
    """Submit and cancel join jobs for the pilot whose run directory is ``run_dir``.

    ``sbatch``/``scancel``: the commands (found on PATH by default). ``python``/``launcher``:
    the defaults of ``$PILOTQ_PYTHON``/``$PILOTQ_SRUN`` in the script (default: this
    interpreter and the ``pilotq-srun`` beside it). ``env``: the environment to start from
    (default ``os.environ``), cleaned by :func:`sbatch_environment`. ``timeout``: seconds
    either command may take.
    """

    def __init__(self, run_dir: str | os.PathLike, *, sbatch: str = "sbatch", scancel: str = "scancel",
                 python: str | None = None, launcher: str | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        self.run_dir = Path(os.path.abspath(run_dir))
        self.sbatch = sbatch
        self.scancel = scancel
        self.python = python or sys.executable
        self.launcher = launcher or default_launcher()
        self.env = env
        self.timeout = timeout

    def _environment(self) -> dict[str, str]:
        return sbatch_environment(os.environ if self.env is None else self.env)

    def script(self, template: JoinTemplate) -> str:
        """The join script for ``template`` (what :meth:`submit` gives sbatch)."""
        name = f"pilotq-join-{template.pool}" if template.pool else "pilotq-join"
        request = template.request(str(self.run_dir), python=self.python, launcher=self.launcher,
                                   job_name=name, output=str(self.run_dir / "join-%j.out"))
        return render(request)

    def submit(self, template: JoinTemplate) -> str:
        """Submit a join job of ``template``; its Slurm job id. SubmitError with sbatch's
        message when sbatch fails, is missing, hangs or prints no job id."""
        return submit(self.script(template), sbatch=self.sbatch, env=self._environment(),
                      timeout=self.timeout)

    def cancel(self, job_id: str) -> bool:
        """``scancel job_id``: True if cancelled, False if the job was gone already (ended,
        or unknown to Slurm). CancelError with scancel's message otherwise."""
        job_id = str(job_id)
        if not job_id.isdigit():
            raise ValueError(f"job_id={job_id!r}: a Slurm job id is a number, e.g. '123'")
        try:
            proc = subprocess.run([self.scancel, job_id], capture_output=True, text=True,
                                  env=self._environment(), timeout=self.timeout)
        except FileNotFoundError:
            raise CancelError(f"scancel={self.scancel!r} not found: run where Slurm's commands "
                              "are, or pass the path to scancel") from None
        except subprocess.TimeoutExpired:
            raise CancelError(f"{self.scancel} {job_id} did not answer within {self.timeout:g} s "
                              "(is the Slurm controller reachable?)") from None
        message = (proc.stderr + proc.stdout).strip()
        if any(words in message.lower() for words in _ALREADY_GONE):
            return False
        if proc.returncode != 0:
            raise CancelError(f"{self.scancel} {job_id} failed with status {proc.returncode}: "
                              f"{message}")
        return True
