"""Long tasks and a walltime warning: ``slurm_long_tasks_app.py DIR N SECONDS``.

N tasks of SECONDS each; each writes ``DIR/started-<i>`` when its function starts. Rank 0
prints ``HANDED <unix time>`` when the warning reaches its signal handler (the pilot's drain
handler runs right after), and at the end ``APP SUMMARY {"done": ..., "cancelled": ...}``.
"""
import json
import os
import signal
import sys
import time
from concurrent.futures import wait

from pilotq_mpi import Pilot


def long_task(comm, directory, i, seconds):
    with open(os.path.join(directory, f"started-{i}"), "w"):
        pass
    time.sleep(seconds)
    return i


directory, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
drain = signal.getsignal(signal.SIGUSR1)  # the pilot's drain handler, installed before the driver runs


def handed(signum, frame):
    print(f"HANDED {time.time():.6f}", flush=True)
    drain(signum, frame)


signal.signal(signal.SIGUSR1, handed)
with Pilot() as pilot:
    futures = [pilot.submit(long_task, directory, i, seconds) for i in range(n)]
    wait(futures)
done = sum(1 for f in futures if not f.cancelled() and f.exception() is None)
print("APP SUMMARY " + json.dumps({"done": done, "cancelled": n - done}), flush=True)
