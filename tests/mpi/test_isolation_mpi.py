"""run_isolated inside an MPI job: the child must not join or hang the parent's job.

Two ways to run them:

    mpiexec -n 2 python -m pytest --with-mpi -p no:cacheprovider tests/mpi/test_isolation_mpi.py
    python -m pytest --with-mpi tests/mpi/test_isolation_mpi.py   # no mpiexec

In the second form the ``mpi(min_size=2)`` tests skip on the singleton and
``test_launch_under_mpiexec`` runs them in an ``mpiexec -n 2`` subprocess with
a hard timeout. Note: pytest-mpi treats every test under a directory named
``mpi`` as an MPI test, so without ``--with-mpi`` this whole file is skipped.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from pilotq_mpi.runtime.isolation import run_isolated

REPO = Path(__file__).resolve().parents[2]
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


def _inside_mpi_launch() -> bool:
    return any(v in os.environ for v in _LAUNCHER_VARS)


# Task functions, imported by reference in the child (which must not touch the
# parent's job: mpi4py is imported inside the functions, never at module level).

def child_world(comm, x):
    from mpi4py import MPI

    launcher = sorted(k for k in os.environ if k.startswith(("PMI_", "PMIX_", "HYDRA_")))
    return comm.allreduce(x), MPI.COMM_WORLD.Get_size(), launcher


def child_segfault(comm):
    import ctypes

    ctypes.string_at(0)


def _isolated(fn, *args, timeout=30):
    return run_isolated(cloudpickle.dumps(fn), cloudpickle.dumps((args, {})), timeout=timeout,
                        forward_stderr=False)


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_mpi_child_gets_singleton_mpi_and_parent_job_survives():
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    total, child_world_size, launcher_vars = pickle.loads(_isolated(child_world, rank + 1).unwrap())
    assert total == rank + 1            # COMM_SELF: only its own contribution
    assert child_world_size == 1        # a singleton, not a member of this job
    assert launcher_vars == []
    # The parent's job still works after its ranks ran isolated children.
    assert world.allreduce(1) == world.Get_size()


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_mpi_crash_in_child_leaves_the_rank_serving():
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_rank() == 1:
        out = _isolated(child_segfault)
        assert out.kind == "crash" and out.signal == signal.SIGSEGV
    world.Barrier()
    assert world.allreduce(world.Get_rank()) == sum(range(world.Get_size()))


def _mpiexec() -> str | None:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


@pytest.mark.timeout(150)
@pytest.mark.skipif(_inside_mpi_launch(), reason="already inside an MPI launch")
def test_launch_under_mpiexec():
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [mpiexec, "-n", "2", sys.executable, "-m", "pytest", "--with-mpi", "-p",
           "no:cacheprovider", "-q", "-k", "test_mpi_", str(Path(__file__).resolve())]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n 2 run hung for 120 s (isolated child joined/hung the job?)\n"
                    f"{exc.stdout}\n{exc.stderr}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("2 passed") == 2, out  # each rank ran both MPI tests
