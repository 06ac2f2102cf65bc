"""Driver of the adapt test on Slurm: queued work makes the policy submit a join job, idleness releases it.

argv: MARKS TASKS SECONDS. Prints CHECK lines (allocations seen, values, the adapt records).
"""
import json
import sys
import time

from elastic_tasks import square

from pilotq_mpi import Pilot
from pilotq_mpi.core.adapt import Adapt, JoinTemplate

marks, tasks, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
policy = Adapt(template=JoinTemplate(nodes=1, ranks_per_node=3, walltime="00:05:00", signal_lead=30),
               max_jobs=1, busy_after=2.0, idle_release=3.0, cooldown=0.0, join_timeout=120.0, interval=0.5,
               unknown_task_seconds=seconds)


def check(name, value):
    print(f"CHECK {name} {json.dumps(value)}", flush=True)


with Pilot(adapt=policy) as pilot:
    futures = [pilot.submit(square, i, seconds, marks) for i in range(tasks)]
    seen = set()
    while not all(f.done() for f in futures):
        seen.update(pilot.resources.allocations)
        time.sleep(0.05)
    check("values_right", all(f.result()[0] == i * i for i, f in enumerate(futures)))
    check("ranks", sorted({r for f in futures for r in f.result()[1]}))
    check("allocations_seen", sorted(seen))
    deadline = time.time() + 60  # idle now: the policy releases the joined allocation
    while len(pilot.resources.allocations) > 1 and time.time() < deadline:
        time.sleep(0.1)
    check("allocations_at_end", list(pilot.resources.allocations))
