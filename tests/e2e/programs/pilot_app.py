"""A tiny pilot driver: N squaring tasks that each sleep DELAY s; prints the sum.

With DELAY large the pilot is still busy when the test sends SIGUSR1; the pilot then
drains and exits 75. Task failures caused by the drain are counted, not raised."""
import sys
import time
from concurrent.futures import wait

from pilotq_mpi.api import Pilot


def work(comm, x, delay):
    time.sleep(delay)
    return x * x


n, delay = int(sys.argv[1]), float(sys.argv[2])
with Pilot() as pilot:
    print("APP STARTED", flush=True)
    futures = [pilot.submit(work, i, delay) for i in range(n)]
    wait(futures)
done = [f.result() for f in futures if not f.cancelled() and f.exception() is None]
print(f"APP RESULT {sum(done)} from {len(done)} of {n}", flush=True)
