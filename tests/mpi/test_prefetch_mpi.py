"""Prefetch without head-of-line blocking, and revokes (drain, cancel) under real MPI.

    timeout -k 5 300 mpiexec -n 6 python -m pytest --with-mpi -p no:cacheprovider -q tests/mpi/test_prefetch_mpi.py

Assertions are on order and outcome (which task ended before which, which ones started),
never on durations. To see the tests fail on the old behaviour, run them with
``PILOTQ_PREFETCH_HORIZON=inf`` (prefetch behind anything) for the head-of-line tests;
the revoke tests set that themselves, so that tasks really wait on the workers.
"""
import json
import math
import os
import tempfile
import time
from concurrent.futures import CancelledError, wait

import pytest

from pilotq_mpi import Pilot, WalltimeError
from pilotq_mpi.runtime import session
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions, prefetch_horizon_from_env

pytestmark = [pytest.mark.mpi(min_size=4), pytest.mark.timeout(120)]
HORIZON = prefetch_horizon_from_env(os.environ)
"""The head-of-line tests' prefetch horizon: the default, or PILOTQ_PREFETCH_HORIZON to see them fail."""


def worker_count():
    """Worker ranks of the running pilot (world size - 1, or fewer under sub-masters); on rank 0."""
    return len(session.current().inventory.ranks)


def is_master():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank() == 0


def hold(comm, seconds):
    """Sleep, then say when this task ended (the issue's reproducer task)."""
    time.sleep(seconds)
    return time.time()


def hold_again(comm, seconds):
    """hold() under another function id: its first copy to a worker travels with a revoked task."""
    time.sleep(seconds)
    return time.time()


def trace_tasks(path):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("type") == "task"]


def short_tasks_ending_after_a_long_one(pilot) -> list[int]:
    """The issue's reproducer: hold(2.0), 0.2 s later 8 x hold(0.0); which short ones ended after the long one."""
    long = pilot.submit(hold, 2.0)
    time.sleep(0.2)
    short = [pilot.submit(hold, 0.0) for _ in range(8)]
    ends = [f.result() for f in short]
    long_end = long.result()
    return [i for i, end in enumerate(ends) if end >= long_end]


def test_short_tasks_never_wait_behind_a_running_long_one():
    """Issue 8.2: hold(2.0), then 8 x hold(0.0): every short one ends before the long one."""
    def driver():
        with Pilot() as pilot:
            late = short_tasks_ending_after_a_long_one(pilot)
        assert not late, f"short tasks {late} ended after the long one: they waited behind it"

    run_pilot(driver, options=PilotOptions(quiet=True, prefetch_horizon=HORIZON))


def test_no_task_waits_behind_one_that_runs_past_its_estimate():
    """The long task's function is known to be fast; this run is slow: nothing may queue behind it."""
    def driver():
        with Pilot() as pilot:
            for f in [pilot.submit(hold, 0.0) for _ in range(3 * worker_count())]:
                f.result()                  # hold() is now predicted to take about nothing
            late = short_tasks_ending_after_a_long_one(pilot)  # the long one is overdue after 0.2 s
        assert not late, f"short tasks {late} ended after the overdue long one"

    run_pilot(driver, options=PilotOptions(quiet=True, prefetch_horizon=HORIZON))


@pytest.fixture
def prefetch_behind_anything():
    """Options with the old rule (one task prefetched behind anything), so that tasks wait on workers to be revoked."""
    return {"prefetch_horizon": math.inf, "prefetch": 1}


def test_drain_starts_nothing_new_and_revoked_tasks_end_cancelled_once(prefetch_behind_anything):
    """Issue 9.3: tasks prefetched on workers when the drain begins never start."""
    trace = os.path.join(tempfile.mkdtemp(prefix="pilotq-drain-"), "trace.jsonl") if is_master() else None
    state = {}

    def driver():
        workers = state["workers"] = worker_count()
        with Pilot() as pilot:
            # every worker runs one and holds one more behind it (prefetch 1)
            futures = [pilot.submit(hold, 1.5) for _ in range(2 * workers)]
            time.sleep(0.5)
            master = session.current()
            master.post("drain", 30.0)
            wait(futures, timeout=60)
            state["drain_at"] = master._draining[0]
            state["outcomes"] = ["done" if f.exception() is None else type(f.exception()).__name__
                                 for f in futures]

    run_pilot(driver, options=PilotOptions(quiet=True, trace=trace, **prefetch_behind_anything))
    if not is_master():
        return
    workers = state["workers"]
    tasks = trace_tasks(trace)
    started_late = [t for t in tasks if t["start"] is not None and t["start"] >= state["drain_at"]]
    assert not started_late, f"tasks started after the drain began: {started_late}"
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids)) == 2 * workers, "every task ends exactly once"
    # the drain comes before any 1.5 s task can end: at least the one waiting behind each is revoked
    assert set(state["outcomes"]) <= {"done", "WalltimeError"}, state
    assert state["outcomes"].count("WalltimeError") >= workers, state
    revoked = [t for t in tasks if t["state"] == "cancelled"]
    assert len(revoked) == state["outcomes"].count("WalltimeError")
    assert all(t["start"] is None and "WalltimeError" in t["error"] for t in revoked), revoked
    assert all(t["state"] == "done" for t in tasks if t["start"] is not None)


def test_cancel_of_a_prefetched_future_revokes_it_from_its_worker(prefetch_behind_anything):
    trace = os.path.join(tempfile.mkdtemp(prefix="pilotq-cancel-"), "trace.jsonl") if is_master() else None
    state = {}

    def driver():
        workers = state["workers"] = worker_count()
        with Pilot() as pilot:
            running = [pilot.submit(hold, 2.0) for _ in range(workers)]
            waiting = [pilot.submit(hold_again, 0.0) for _ in range(workers)]   # prefetched behind them
            while not all(f.running() for f in running):  # placed (the pytest timeout bounds this)
                time.sleep(0.01)
            queued = pilot.submit(hold_again, 0.0)                            # waits in the master
            assert all(f.cancel() for f in waiting), "a task waiting on a worker can still be cancelled"
            assert not any(f.cancel() for f in running), "a running task cannot be cancelled"
            assert queued.cancel()
            done, _ = wait([queued], timeout=30)
            assert done == {queued}, "wait() sees a cancelled queued task as done"
            done, not_done = wait(running + waiting, timeout=60)
            assert not not_done
            for f in waiting:
                with pytest.raises(CancelledError):
                    f.result()
            assert all(isinstance(f.result(), float) for f in running)
            # the workers go on normally afterwards (a revoked task's function reaches them later)
            again = [pilot.submit(hold_again, 0.0) for _ in range(2 * workers)]
            assert all(isinstance(f.result(), float) for f in again)

    run_pilot(driver, options=PilotOptions(quiet=True, trace=trace, **prefetch_behind_anything))
    if not is_master():
        return
    tasks = trace_tasks(trace)
    assert len({t["id"] for t in tasks}) == len(tasks), "every task ends exactly once"
    cancelled = [t for t in tasks if t["state"] == "cancelled"]
    assert len(cancelled) == state["workers"] + 1, "the revoked ones and the one queued in the master"
    assert all(t["start"] is None for t in cancelled), "a revoked task never started"


def test_walltime_error_is_what_drained_futures_raise(prefetch_behind_anything):
    """A revoked task's future raises WalltimeError (not CancelledError) after a drain."""
    def driver():
        with Pilot() as pilot:
            futures = [pilot.submit(hold, 1.0) for _ in range(2 * worker_count())]
            time.sleep(0.3)
            session.current().post("drain", 30.0)
            wait(futures, timeout=60)
            errors = [f.exception() for f in futures]
        assert any(isinstance(e, WalltimeError) for e in errors)
        assert all(e is None or isinstance(e, WalltimeError) for e in errors)

    run_pilot(driver, options=PilotOptions(quiet=True, **prefetch_behind_anything))
