"""Step mode: run an engine that only knows ``MPI_COMM_WORLD`` as a nested job step.

Qiskit Aer MPI, PennyLane lightning MPI and CUDA-Q < 0.15 cannot be given a
communicator: they use ``MPI_COMM_WORLD``. For them the pilot reserves a task's k
ranks (and their GPUs) and runs :func:`step_task` on all k of them: task rank 0
launches the engine program as a nested job of exactly k ranks
(:func:`~pilotq_mpi.platform.launch.nested_step_argv`: ``srun --exact --overlap``
under Slurm, ``mpiexec`` elsewhere) while the other k-1 ranks wait without spinning
a core. The program hands its result back with :func:`report_result`::

    # engine.py, run as the nested step
    from pilotq_mpi.workflows.step import report_result
    ...
    if MPI.COMM_WORLD.rank == 0:
        report_result(expectation_value)

    # driver
    fut = pilot.submit(step_task, [sys.executable, "engine.py", "--qubits", "30"], ranks=4)

The nested program's own ``MPI_COMM_WORLD`` has exactly k ranks; the GPUs of the k
task ranks (``current_task().gpus``) are exported to it as ``CUDA_VISIBLE_DEVICES``.
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..context import current_task
from ..platform.launch import check_program, clean_step_env, default_mpiexec, in_slurm, nested_step_argv
from ..runtime.polling import quiet_barrier

__all__ = ["STEP_RESULT_ENV", "StepError", "report_result", "step_task"]

STEP_RESULT_ENV = "PILOTQ_STEP_RESULT"
"""Environment variable naming the file :func:`report_result` writes the pickled value to."""

_STDERR_TAIL = 2000
_KILL_GRACE = 5.0


class StepError(RuntimeError):
    """The nested step failed, timed out, or reported no result.

    ``returncode`` is the launcher's exit status (None on timeout), ``stderr_tail``
    the end of its standard error, ``argv`` the command that was run.
    """

    def __init__(self, message: str, *, argv: Sequence[str] = (), returncode: int | None = None,
                 stderr_tail: str = ""):
        # keyword defaults: the exception is pickled back to the driver as StepError(message)
        # and its attributes restored from __dict__
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


def report_result(value) -> None:
    """Hand ``value`` back to :func:`step_task` (call it once, on the nested program's rank 0).

    The value is pickled to the file named by ``$PILOTQ_STEP_RESULT``; the write is
    atomic (temporary file + rename), so a crash never leaves half a result.
    """
    path = os.environ.get(STEP_RESULT_ENV)
    if not path:
        raise RuntimeError(f"report_result: ${STEP_RESULT_ENV} is not set; this program must "
                           "be started by pilotq_mpi.workflows.step.step_task")
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        rank = mpi.COMM_WORLD.Get_rank()
        if rank != 0:
            raise RuntimeError(f"report_result called on rank {rank}: call it on rank 0 only")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _node_name(env: Mapping[str, str]) -> str:
    ctx = current_task()
    if env.get("SLURMD_NODENAME"):
        return env["SLURMD_NODENAME"]
    if ctx is not None and ctx.node:
        return ctx.node
    from mpi4py import MPI
    return MPI.Get_processor_name()


def _run_step(argv: list[str], env: dict[str, str], result_path: Path,
              timeout: float | None, cwd) -> object:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _, err = proc.communicate()
        tail = err.decode(errors="replace")[-_STDERR_TAIL:]
        raise StepError(f"step {argv!r} did not finish within timeout={timeout} s and was "
                        f"killed; stderr tail:\n{tail}", argv=argv, returncode=None,
                        stderr_tail=tail) from None
    text = err.decode(errors="replace")
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()
    tail = text[-_STDERR_TAIL:]
    if proc.returncode != 0:
        raise StepError(f"step {argv!r} exited with status {proc.returncode}; stderr tail:\n"
                        f"{tail}", argv=argv, returncode=proc.returncode, stderr_tail=tail)
    if not result_path.exists():
        raise StepError(f"step {argv!r} exited with status 0 but reported no result: call "
                        "pilotq_mpi.workflows.step.report_result(value) on its rank 0; "
                        f"stderr tail:\n{tail}", argv=argv, returncode=0, stderr_tail=tail)
    with open(result_path, "rb") as f:
        return pickle.load(f)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=_KILL_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def step_task(comm, program_argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              timeout: float | None = None, cwd: str | os.PathLike | None = None,
              mpiexec: str | None = None):
    """Run ``program_argv`` as a nested MPI job with ``comm.Get_size()`` ranks; a pilot task.

    Call it on every rank of the task's communicator ``comm`` (the pilot does, when
    it is the task function). Task rank 0 launches the step with a cleaned copy of
    ``env`` (default ``os.environ``, see
    :func:`~pilotq_mpi.platform.launch.clean_step_env`), the task ranks' GPUs as
    ``CUDA_VISIBLE_DEVICES`` and ``$PILOTQ_STEP_RESULT`` set; the other ranks wait
    in a polled non-blocking barrier. Returns the value the program passed to
    :func:`report_result` on task rank 0 and None on the other ranks. Raises
    :class:`StepError` on task rank 0 when the step fails, times out (``timeout``
    seconds: the step's process group is killed) or reports nothing.
    ``mpiexec`` overrides the launcher used outside Slurm (default: the ``mpiexec``
    next to ``sys.executable``, else the one on PATH).
    """
    argv_in = list(check_program(program_argv))
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout={timeout!r}: must be > 0 seconds (or None)")
    base_env = dict(os.environ if env is None else env)
    ctx = current_task()
    mine = (tuple(ctx.gpus) if ctx is not None else (), _node_name(base_env))
    everyone = comm.gather(mine, root=0)

    outcome: tuple[bool, object] = (True, None)
    if comm.Get_rank() == 0:
        gpus = sorted({g for gpu_ids, _ in everyone for g in gpu_ids})
        nodes = list(dict.fromkeys(node for _, node in everyone))
        step_env = clean_step_env(base_env)
        spread = in_slurm(step_env) and len(nodes) > 1
        tmpdir = tempfile.mkdtemp(prefix="pilotq-step-",
                                  dir=os.fspath(cwd or os.getcwd()) if spread else None)
        result_path = Path(tmpdir) / "result.pickle"
        step_env[STEP_RESULT_ENV] = str(result_path)
        argv = nested_step_argv(comm.Get_size(), argv_in, step_env, gpus=gpus,
                                nodelist=nodes if in_slurm(step_env) else (),
                                mpiexec=mpiexec or default_mpiexec())
        try:
            outcome = (True, _run_step(argv, step_env, result_path, timeout, cwd))
        except BaseException as exc:  # re-raised below, after the other ranks are released
            outcome = (False, exc)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    quiet_barrier(comm, ceiling=0.05)  # the others wait for rank 0's step without spinning
    ok, value = outcome
    if not ok:
        raise value  # type: ignore[misc]
    return value
