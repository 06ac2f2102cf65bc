"""A journaled workload of mixed widths, for resume tests: ``resume_app.py JOURNAL LOG [N_SINGLE N_WIDE DELAY]``.

N_SINGLE single-rank tasks ``single(i)`` and N_WIDE 2-rank tasks ``wide(i)``; every task
sleeps DELAY s, appends the line ``ran <key>`` to LOG (one ``os.write`` on an O_APPEND
file, so lines from several ranks never interleave) and returns a deterministic value:
``single(i) = i*i + 7``, ``wide(i) = 2*(1000 + i) + 1`` (an allreduce over its 2 ranks).
Explicit ``key=`` per task: the default key hashes the arguments, and LOG differs per run.
Tasks cancelled by a drain are counted, not raised. The last stdout line is JSON:
``{"restored": ..., "results": {key: value}, "failed": {key: error}}``.
"""
import json
import os
import sys
import time
from concurrent.futures import wait

from pilotq_mpi import Pilot


def single_key(i):
    return f"single-{i}"


def wide_key(i):
    return f"wide-{i}"


def _mark(log, key, rank):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"ran {key} rank {rank}\n".encode())
    finally:
        os.close(fd)


def single(comm, i, log, delay):
    time.sleep(delay)
    _mark(log, single_key(i), 0)
    return i * i + 7


def wide(comm, i, log, delay):
    time.sleep(delay)
    _mark(log, wide_key(i), comm.Get_rank())
    # the sum over the task's 2 ranks of (1000 + i + rank): needs the sub-communicator
    return comm.allreduce(1000 + i + comm.Get_rank())


def main():
    journal, log = sys.argv[1], sys.argv[2]
    n_single = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    n_wide = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    delay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.2
    futures = {}
    with Pilot(journal=journal) as pilot:
        for i in range(n_single):
            futures[single_key(i)] = pilot.submit(single, i, log, delay, key=single_key(i))
            if i % 15 == 7 and i // 15 < n_wide:
                j = i // 15
                futures[wide_key(j)] = pilot.submit(wide, j, log, delay, ranks=2, key=wide_key(j))
        for j in range(len([k for k in futures if k.startswith("wide-")]), n_wide):
            futures[wide_key(j)] = pilot.submit(wide, j, log, delay, ranks=2, key=wide_key(j))
        wait(list(futures.values()))
        restored = pilot.restored
    results, failed = {}, {}
    for key, future in futures.items():
        error = future.exception()
        if error is None:
            results[key] = future.result()
        else:
            failed[key] = f"{type(error).__name__}: {error}"
    print(json.dumps({"restored": restored, "results": results, "failed": failed}), flush=True)


main()
