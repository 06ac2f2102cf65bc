"""Careless input a user may try, and a task past its timeout: the driver prints what it was told."""
import sys
import time

from pilotq_mpi import Pilot


def size(comm, f):
    return len(f.read())


def slow(comm, seconds):
    time.sleep(seconds)
    return seconds


with Pilot() as pilot:
    with open(sys.argv[1]) as handle:  # read mode: must be refused, not sent as a snapshot
        try:
            pilot.submit(size, handle)
        except TypeError as exc:
            print(f"REFUSED {exc}", flush=True)
    try:
        pilot.submit(size, None, gpus_per_rank=1)
    except ValueError as exc:
        print(f"REFUSED {exc}", flush=True)
    late = pilot.submit(slow, 1.5, timeout=0.3)
    print(f"TIMEOUT {type(late.exception()).__name__}", flush=True)
