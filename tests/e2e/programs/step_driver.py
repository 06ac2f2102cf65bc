"""Runs step_task from a plain process (COMM_SELF) or from every rank of an mpiexec job.

argv: K MODE [GPUS]. Under mpiexec -n N the world is split into communicators of K
ranks; each runs step_task(sub, [python, step_engine.py, K, MODE]). Prints one line
per task rank 0: 'RESULT <repr>' or 'ERROR <type> <returncode>'.
"""
import os
import sys

from mpi4py import MPI

from pilotq_mpi.context import TaskContext, running
from pilotq_mpi.workflows.step import StepError, step_task

k = int(sys.argv[1])
mode = sys.argv[2]
gpus_per_rank = int(sys.argv[3]) if len(sys.argv) > 3 else 0
world = MPI.COMM_WORLD
comm = MPI.COMM_SELF if k == 1 else world.Split(world.rank // k, world.rank)
engine = os.path.join(os.path.dirname(os.path.abspath(__file__)), "step_engine.py")
gpus = tuple(range(world.rank * gpus_per_rank, (world.rank + 1) * gpus_per_rank))
ctx = TaskContext(task_id=world.rank // k, name="step", world_ranks=(), world_rank=world.rank,
                  node=MPI.Get_processor_name(), gpus=gpus)
with running(ctx):
    try:
        value = step_task(comm, [sys.executable, engine, str(k), mode], timeout=60)
        if comm.rank == 0:
            print("RESULT", repr(value), flush=True)
        elif value is not None:
            print("UNEXPECTED", repr(value), flush=True)
    except StepError as exc:
        print("ERROR", type(exc).__name__, exc.returncode, repr(exc.stderr_tail[-200:]),
              flush=True)
MPI.COMM_WORLD.Barrier()
