"""Driver of the elastic-pilot tests: waits for joined allocations, runs tasks, prints CHECK lines.

argv: MARKS ALLOCATIONS TASKS SECONDS WIDE [--pool P] [--expect P] [--release NAME] [--release-after K]
"""
import argparse
import json
import time

from elastic_tasks import square, started_on

from pilotq_mpi import Pilot, ResourceError

parser = argparse.ArgumentParser()
parser.add_argument("marks")
parser.add_argument("allocations", type=int, help="wait until this many allocations (main included) are there")
parser.add_argument("tasks", type=int)
parser.add_argument("seconds", type=float)
parser.add_argument("wide", type=int, help="how many 2-rank tasks besides")
parser.add_argument("--pool", default=None, help="submit the single-rank tasks to this pool")
parser.add_argument("--expect", action="append", default=[], help="declare a pool expected to join")
parser.add_argument("--release", default=None, help="release this allocation or pool once tasks ran there")
parser.add_argument("--submit-first", action="store_true", help="submit before the allocations joined")
parser.add_argument("--journal", default=None, help="record finished tasks here (a rerun restores them)")
args = parser.parse_args()


def check(name, value):
    print(f"CHECK {name} {json.dumps(value)}", flush=True)


def wait_for_allocations(pilot):
    deadline = time.time() + 90
    while len(pilot.resources.allocations) < args.allocations and time.time() < deadline:
        time.sleep(0.05)
    check("allocations", list(pilot.resources.allocations))


with Pilot(pools=args.expect, journal=args.journal) as pilot:
    try:
        pilot.submit(square, 0, 0, args.marks, pool="no-such-pool")
    except ResourceError as exc:
        check("unknown_pool", str(exc))
    if not args.submit_first:
        wait_for_allocations(pilot)
        widest = max(sum(1 for r in pilot.resources.ranks if r.allocation == a) for a in pilot.resources.allocations)
        try:
            pilot.submit(square, 0, 0, args.marks, ranks=widest + 1)
        except ResourceError as exc:
            check("too_wide", str(exc))
    futures = {i: pilot.submit(square, i, args.seconds, args.marks, pool=args.pool) for i in range(args.tasks)}
    futures.update({1000 + i: pilot.submit(square, 1000 + i, args.seconds, args.marks, ranks=2)
                    for i in range(args.wide)})
    if args.submit_first:
        wait_for_allocations(pilot)
    if args.release:  # the pool's tasks first, then release it: what comes after runs elsewhere
        for future in futures.values():
            future.result()
        check("released", pilot.release(args.release))
        futures.update({2000 + i: pilot.submit(square, 2000 + i, args.seconds, args.marks) for i in range(10)})
    results = {i: f.result() for i, f in futures.items()}
    check("restored", pilot.restored)
    check("values_right", all(value == i * i for i, (value, _, _) in results.items()))
    check("ranks", {str(i): list(ranks) for i, (_, ranks, _) in results.items()})
    check("final_allocations", list(pilot.resources.allocations))
