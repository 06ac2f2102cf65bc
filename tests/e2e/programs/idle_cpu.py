"""Measure how much CPU idle workers burn while one rank computes (must be little)."""
import json
import time

from pilotq_mpi import Pilot


def cpu_times(comm):
    return time.process_time()


def spin(comm, seconds):
    # CPU seconds, not wall seconds: on a loaded machine the rank still burns exactly this much
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds


with Pilot() as pilot:
    workers = len(pilot.resources.ranks)
    before = pilot.submit(cpu_times, ranks=workers, gather=True).result()
    start = time.perf_counter()
    pilot.submit(spin, 1.0).result()
    time.sleep(1.0)
    wall = time.perf_counter() - start
    after = pilot.submit(cpu_times, ranks=workers, gather=True).result()
    print(json.dumps({"wall": wall, "cpu": [a - b for a, b in zip(after, before)]}))
