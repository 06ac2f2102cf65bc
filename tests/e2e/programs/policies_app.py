"""Failure policies of the pilot, one scenario per run: ``policies_app.py SCENARIO [DIR]``.

Every scenario prints lines ``CHECK <name> <json>`` that the test reads (stdout), e.g.
the type and message of a future's exception and how long after submit it resolved.

- ``segv``: an isolated task segfaults; tasks submitted after it still succeed.
- ``isolated_timeout``: an isolated task with timeout=1 sleeps 300 s: killed.
- ``inproc_timeout``: an in-process task with timeout=1 sleeps 3 s; then more tasks run.
- ``retries``: a task that fails twice (counter file in DIR) and then succeeds, retries=2.
- ``collective``: a 2-rank task whose rank 0 raises while rank 1 waits in comm.barrier().
- ``driver_raises``: workers busy in long tasks (their pids written to DIR), then the driver raises.
"""
import json
import os
import sys
import time

from pilotq_mpi import Pilot


def check(name, **fields):
    print(f"CHECK {name} {json.dumps(fields, sort_keys=True)}", flush=True)


def outcome(future, submitted):
    """How a future ended: value or exception type/message, and seconds from submit to resolve."""
    error = future.exception()
    elapsed = time.monotonic() - submitted
    if error is None:
        return {"ok": True, "value": future.result(), "elapsed": round(elapsed, 2)}
    return {"ok": False, "type": type(error).__name__, "message": str(error), "elapsed": round(elapsed, 2)}


def crash(comm):
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return "unreachable"


def square(comm, x):
    return x * x


def sleeper(comm, seconds, done_path=None, pid_path=None):
    if pid_path:
        with open(pid_path, "w") as handle:
            handle.write(str(os.getpid()))
    time.sleep(seconds)
    if done_path:
        with open(done_path, "w") as handle:
            handle.write("returned")
    return f"slept {seconds}"


def flaky(comm, counter, fail_times):
    """Fails the first ``fail_times`` calls (counted in a file: attempts may run on other ranks)."""
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"x")
    os.close(fd)
    calls = os.path.getsize(counter)
    if calls <= fail_times:
        raise RuntimeError(f"flaky failure on call {calls}")
    return f"ok after {calls} calls"


def raise_or_block(comm):
    if comm.Get_rank() == 0:
        raise ValueError("rank 0 of the collective task failed")
    comm.barrier()  # never completes: rank 0 does not come
    return "rank 1 passed the barrier"


def busy_then_pid(comm, directory, seconds):
    with open(os.path.join(directory, f"worker-{os.getpid()}.pid"), "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(seconds)


def _alive(pid_path):
    """Whether the process whose pid is in ``pid_path`` still runs (zombies count as dead)."""
    with open(pid_path) as handle:
        pid = int(handle.read())
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    scenario = sys.argv[1]
    directory = sys.argv[2] if len(sys.argv) > 2 else "."
    pilot = Pilot()
    if scenario == "segv":
        t0 = time.monotonic()
        bad = pilot.submit(crash, isolate=True, name="crash")
        check("crash", **outcome(bad, t0))
        t1 = time.monotonic()
        later = [pilot.submit(square, i, name="later") for i in range(12)]
        later_iso = [pilot.submit(square, i, isolate=True, name="later_iso") for i in range(4)]
        check("later", values=[f.result() for f in later], elapsed=round(time.monotonic() - t1, 2))
        check("later_isolated", values=[f.result() for f in later_iso])
    elif scenario == "isolated_timeout":
        t0 = time.monotonic()
        slow = pilot.submit(sleeper, 300, None, os.path.join(directory, "isolated.pid"), isolate=True,
                            timeout=1, name="slow")
        check("slow", **outcome(slow, t0))
        check("child", alive_when_future_failed=_alive(os.path.join(directory, "isolated.pid")))
        check("after", value=pilot.submit(square, 9).result())
    elif scenario == "inproc_timeout":
        t0 = time.monotonic()
        done_path = os.path.join(directory, "slow.returned")
        slow = pilot.submit(sleeper, 3, done_path, timeout=1, name="slow")
        check("slow", task_had_returned=os.path.exists(done_path), **outcome(slow, t0))
        later = [pilot.submit(square, i) for i in range(8)]
        check("later", values=[f.result() for f in later])
    elif scenario == "retries":
        counter = os.path.join(directory, "flaky.count")
        t0 = time.monotonic()
        good = pilot.submit(flaky, counter, 2, retries=2, retry_backoff=0.1, name="flaky")
        check("flaky", **outcome(good, t0))
        counter2 = os.path.join(directory, "flaky2.count")
        t0 = time.monotonic()
        bad = pilot.submit(flaky, counter2, 3, retries=2, retry_backoff=0.1, name="flaky_too_often")
        check("flaky_too_often", **outcome(bad, t0))
        check("calls", first=os.path.getsize(counter), second=os.path.getsize(counter2))
    elif scenario == "collective":
        t0 = time.monotonic()
        stuck = pilot.submit(raise_or_block, ranks=2, name="collective")
        check("collective", **outcome(stuck, t0))
        check("after", values=[pilot.submit(square, i).result() for i in range(4)])
    elif scenario == "driver_raises":
        futures = [pilot.submit(busy_then_pid, directory, 300) for _ in range(20)]
        deadline = time.monotonic() + 60
        workers = pilot.resources.ranks
        while len([n for n in os.listdir(directory) if n.startswith("worker-")]) < len(workers):
            if time.monotonic() > deadline:
                raise SystemExit("workers never started their tasks")
            time.sleep(0.05)
        with open(os.path.join(directory, "rank0.pid"), "w") as handle:
            handle.write(str(os.getpid()))
        check("busy", workers=len(workers), queued=len(futures))
        raise RuntimeError("driver bug while tasks run")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    pilot.shutdown()
    check("end", scenario=scenario)


main()
