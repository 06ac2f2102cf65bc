"""Run by `srun -n 4 --gpus-per-task=1`: checks COMM_WORLD size 4 and that each rank's
CUDA_VISIBLE_DEVICES equals its SLURM_LOCALID; rank 0 prints one line per rank."""
import os

from mpi4py import MPI

world = MPI.COMM_WORLD
mine = (world.rank, os.environ.get("SLURM_LOCALID"), os.environ.get("CUDA_VISIBLE_DEVICES"))
rows = world.gather(mine, root=0)
if world.rank == 0:
    print(f"SIZE {world.size}", flush=True)
    for rank, local, cvd in rows:
        print(f"RANK {rank} LOCALID {local} CVD {cvd} {'OK' if local == cvd else 'MISMATCH'}",
              flush=True)
