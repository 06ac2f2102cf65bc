"""Results of very short tasks travelling together (worker -> master), under real MPI.

    timeout -k 5 120 mpiexec -n 4 python -m pytest --with-mpi -p no:cacheprovider -q tests/mpi/test_result_batching_mpi.py

A worker holds the result of a very short task while the next task in its backlog is of a
function known to be short, and sends several results in one message. These tests check
outcomes only (which value or error each future got; that a result is not held behind a
task that is not known short), never durations.
"""
import os
import tempfile
import time

import pytest

from pilotq_mpi import Pilot
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions
from pilotq_mpi.runtime.worker import SHORT_STREAK

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


def echo_or_raise(comm, i):
    """A no-op task that fails for every 7th argument."""
    if i % 7 == 3:
        raise ValueError(f"task {i} fails")
    return i


def noop(comm, i):
    return i


def wait_for_file(comm, path):
    """Block until the driver creates ``path`` (it does so only after it saw the short results)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return "released"


def test_each_future_gets_its_own_value_or_error_when_results_travel_together():
    def driver():
        with Pilot() as pilot:
            futures = [pilot.submit(echo_or_raise, i) for i in range(400)]
            outcomes = []
            for i, future in enumerate(futures):
                error = future.exception(timeout=30)
                outcomes.append((i, None if error is None else str(error), None if error else future.result()))
            return outcomes

    outcomes = run_pilot(driver, options=PilotOptions(quiet=True))
    if outcomes is not None:
        for i, error, value in outcomes:
            if i % 7 == 3:
                assert error == f"task {i} fails" and value is None
            else:
                assert error is None and value == i


@pytest.mark.mpi(min_size=3)
def test_a_short_result_is_not_held_behind_a_task_not_known_short():
    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "go")

        def driver():
            with Pilot() as pilot:
                workers = len(pilot.resources.ranks)
                # every worker learns that noop is short
                for future in [pilot.submit(noop, i) for i in range(workers * (SHORT_STREAK + 4) * 4)]:
                    future.result(timeout=30)
                # one worker stays free of blockers, so every short task has somewhere to run
                pairs = [(pilot.submit(noop, i), pilot.submit(wait_for_file, flag)) for i in range(workers - 1)]
                # each short result arrives while the blocking tasks still wait (held behind one of
                # them, it would never come: the blockers wait for this driver)
                shorts = [short.result(timeout=20) for short, _ in pairs]
                blocked = sum(not blocker.done() for _, blocker in pairs)
                open(flag, "w").close()
                released = [blocker.result(timeout=30) for _, blocker in pairs]
                return shorts, blocked, released

        outcome = run_pilot(driver, options=PilotOptions(quiet=True))
        if outcome is not None:
            shorts, blocked, released = outcome
            assert shorts == list(range(len(shorts)))
            assert blocked > 0 and released == ["released"] * len(released)
