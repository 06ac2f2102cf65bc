"""Driver of benchmarks/elastic.py (run by the pilot): waits for allocations, runs sleep tasks, prints JSON.

argv: ALLOCATIONS TASKS SECONDS [MARKS]: wait until ALLOCATIONS (main included) are there, then
run TASKS tasks of SECONDS each, timed from the first submit to the last result. With MARKS,
each task start writes ``MARKS/<i>-rank<r>`` holding the start time.
"""
import argparse
import json
import time

from pilotq_mpi import Pilot


def nap(comm, seconds, marks=None, i=0):
    """A task that occupies its rank without using a core (the benchmark measures scheduling)."""
    if marks:
        from pilotq_mpi import current_task

        import os

        path = f"{marks}/{i}-rank{current_task().world_ranks[0]}"
        with open(path + ".tmp", "w") as handle:
            handle.write(repr(time.time()))
        os.replace(path + ".tmp", path)  # a reader never sees an empty mark
    time.sleep(seconds)
    return seconds


parser = argparse.ArgumentParser()
parser.add_argument("allocations", type=int)
parser.add_argument("tasks", type=int)
parser.add_argument("seconds", type=float)
parser.add_argument("marks", nargs="?")
args = parser.parse_args()

with Pilot() as pilot:
    deadline = time.time() + 120
    while len(pilot.resources.allocations) < args.allocations and time.time() < deadline:
        time.sleep(0.01)
    ranks = len(pilot.resources.ranks)
    started = time.perf_counter()
    futures = [pilot.submit(nap, args.seconds, args.marks, i) for i in range(args.tasks)]
    for future in futures:
        future.result()
    elapsed = time.perf_counter() - started
    print("RESULT " + json.dumps({"ranks": ranks, "allocations": list(pilot.resources.allocations),
                                  "tasks": args.tasks, "seconds": args.seconds, "elapsed": elapsed,
                                  "tasks_per_s": args.tasks / elapsed}), flush=True)
