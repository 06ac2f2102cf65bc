"""A driver that raises while tasks are still queued: every rank must exit non-zero quickly."""
import time

from pilotq_mpi import Pilot

pilot = Pilot()
for _ in range(50):
    pilot.submit(lambda comm: time.sleep(0.5))
raise RuntimeError("driver bug")
