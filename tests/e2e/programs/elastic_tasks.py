"""Tasks of the elastic-pilot tests (importable on every rank: the driver's folder is on sys.path)."""
import os
import time


def square(comm, i, seconds, marks):
    """Mark the start as ``<marks>/start-<i>-rank<r>``, sleep, return ``(i*i, pilot ranks, comm size)``."""
    from pilotq_mpi import current_task

    ranks = current_task().world_ranks
    if comm.Get_rank() == 0:
        with open(os.path.join(marks, f"start-{i}-rank{ranks[0]}"), "w"):
            pass
    time.sleep(seconds)
    total = comm.allreduce(i)  # a collective on the task's own sub-communicator
    return total // comm.Get_size() * i, tuple(ranks), comm.Get_size()


def started_on(marks, ranks):
    """How many tasks started on any of ``ranks``."""
    return sum(1 for name in os.listdir(marks) if int(name.rsplit("rank", 1)[1]) in ranks)
