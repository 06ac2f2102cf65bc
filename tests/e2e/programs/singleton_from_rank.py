"""From rank 0 of an mpiexec job, start a plain (singleton) MPI program twice: with the
inherited environment and with clean_step_env. Prints 'dirty rc=..' and 'clean rc=..'."""
import os
import subprocess
import sys

from mpi4py import MPI

from pilotq_mpi.platform.launch import clean_step_env

CHILD = "from mpi4py import MPI; print('size=%d' % MPI.COMM_WORLD.Get_size())"
if MPI.COMM_WORLD.rank == 0:
    for name, env in (("dirty", dict(os.environ)), ("clean", clean_step_env(os.environ))):
        try:
            p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                               text=True, timeout=20)
            print(f"{name} rc={p.returncode} {p.stdout.strip()}", flush=True)
        except subprocess.TimeoutExpired:
            print(f"{name} rc=timeout", flush=True)
MPI.COMM_WORLD.Barrier()
