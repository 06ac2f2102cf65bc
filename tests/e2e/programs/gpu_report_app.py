"""Where do GPU tasks land? ``gpu_report_app.py N``: N single-rank tasks with gpus_per_rank=1.

Each task reports its world rank, the GPUs of its context, ``CUDA_VISIBLE_DEVICES`` and
the Slurm variables of its process. Rank 0 (driver and master) adds what Slurm gave it
and the pilot's inventory. Prints one line ``GPU_REPORT <json>``.
"""
import json
import os
import sys
import time

from pilotq_mpi import Pilot, current_task

SLURM_VARS = ("SLURM_LOCALID", "SLURM_PROCID", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE",
              "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")


def where(comm, i):
    time.sleep(0.05)  # long enough that every worker gets some of the tasks
    ctx = current_task()
    return {"task": i, "world_rank": ctx.world_rank, "gpus": list(ctx.gpus), "node": ctx.node,
            "pid": os.getpid(), "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
            **{var: os.environ.get(var) for var in SLURM_VARS}}


n = int(sys.argv[1])
master = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), **{var: os.environ.get(var) for var in SLURM_VARS}}
with Pilot() as pilot:
    inventory = [{"rank": r.rank, "node": r.node, "gpus": list(r.gpus)} for r in pilot.resources.ranks]
    futures = [pilot.submit(where, i, gpus_per_rank=1) for i in range(n)]
    tasks = [f.result() for f in futures]
print("GPU_REPORT " + json.dumps({"master": master, "inventory": inventory, "tasks": tasks}), flush=True)
