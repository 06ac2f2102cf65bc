"""step_task under pytest-mpi: run with  mpiexec -n 2 python -m pytest --with-mpi tests/mpi.

Both ranks form one task (COMM_WORLD); rank 0 launches a nested mpiexec of 2 ranks
(inside this mpiexec job: the case env cleaning exists for).
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "tests" / "e2e" / "programs" / "step_engine.py"


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(90)
def test_step_width_equals_task_width():
    from mpi4py import MPI
    from pilotq_mpi.context import TaskContext, running
    from pilotq_mpi.workflows.step import step_task

    comm = MPI.COMM_WORLD
    ctx = TaskContext(task_id=1, name="t", world_ranks=tuple(range(comm.size)),
                      world_rank=comm.rank, node=MPI.Get_processor_name(), gpus=(comm.rank,))
    with running(ctx):
        value = step_task(comm, [sys.executable, str(ENGINE), str(comm.size)], env=_env(),
                          timeout=60)
    if comm.rank == 0:
        gpus = ",".join(map(str, range(comm.size)))
        assert value == {"size": comm.size, "rank_sum": comm.size * (comm.size - 1) // 2,
                         "cuda_visible_devices": [gpus] * comm.size}
    else:
        assert value is None


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(90)
def test_step_failure_raises_on_rank0_only():
    from mpi4py import MPI
    from pilotq_mpi.workflows.step import StepError, step_task

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        with pytest.raises(StepError, match="exited with status 7") as info:
            step_task(comm, [sys.executable, str(ENGINE), str(comm.size), "fail"], env=_env(),
                      timeout=60)
        assert info.value.returncode == 7
        assert "deliberate failure" in info.value.stderr_tail
    else:
        assert step_task(comm, [sys.executable, str(ENGINE), str(comm.size), "fail"],
                         env=_env(), timeout=60) is None
