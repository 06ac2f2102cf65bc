"""A stand-in for a COMM_WORLD-only engine, run as a nested step by step_task.

argv: EXPECTED_SIZE [fail|silent]. Checks that MPI_COMM_WORLD has EXPECTED_SIZE ranks,
sums the ranks with an allreduce and reports a dict on rank 0 (unless 'silent');
'fail' exits with status 7 after printing to stderr.
"""
import os
import sys

from mpi4py import MPI

from pilotq_mpi.workflows.step import report_result

expected = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else ""
world = MPI.COMM_WORLD
if mode == "fail":
    if world.rank == 0:
        print("engine: deliberate failure", file=sys.stderr, flush=True)
    sys.exit(7)
if world.size != expected:
    print(f"engine: COMM_WORLD size {world.size} != expected {expected}", file=sys.stderr,
          flush=True)
    world.Abort(5)
total = world.allreduce(world.rank)
cvd = world.gather(os.environ.get("CUDA_VISIBLE_DEVICES"), root=0)
if world.rank == 0 and mode != "silent":
    report_result({"size": world.size, "rank_sum": total, "cuda_visible_devices": cvd})
