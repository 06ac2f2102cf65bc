"""A task defined in this driver script raises on a worker; the driver does not catch it."""
from pilotq_mpi import Pilot


def boom(comm, x):
    y = x + 1
    raise ValueError(f"bad value {y}")  # the line a remote traceback must name


with Pilot() as pilot:
    pilot.submit(boom, 1).result()
