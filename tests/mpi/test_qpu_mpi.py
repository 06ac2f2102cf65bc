"""QPU-pinned workers under real MPI: routing, the concurrency limit, retries of a failing backend call.

The QPU here is a small in-test backend (built by ``counting_backend`` on the pinned worker),
so the test sees exactly how many calls ran at once and how often a call was retried.
"""
import threading
import time

import pytest

from pilotq_mpi import QPU, Pilot, ResourceError, current_task
from pilotq_mpi.runtime import session
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions

pytestmark = [pytest.mark.mpi(min_size=4), pytest.mark.timeout(120)]
OPTIONS = PilotOptions(quiet=True)


class CountingBackend:
    """Counts concurrent calls and remembers how often each flaky call was tried."""

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.tries = {}

    def call(self, label, fail_times=0):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.tries[label] = self.tries.get(label, 0) + 1
            tries = self.tries[label]
        try:
            time.sleep(self.delay)
            if tries <= fail_times:
                raise ConnectionError(f"{label}: transient backend failure {tries}")
            return label
        finally:
            with self.lock:
                self.running -= 1


def counting_backend(delay=0.2):
    return CountingBackend(delay)


def qpu_call(backend, label, fail_times=0):
    task = current_task()
    value = backend.call(label, fail_times)
    return value, task.world_rank, backend.peak, id(backend), task.qpu


def compute(comm):
    return current_task().world_rank


QPU_SPEC = QPU("counting", factory=f"{__name__}:counting_backend", options={"delay": 0.3}, concurrency=2)


def test_qpu_tasks_run_only_on_the_pinned_rank_within_the_concurrency_limit():
    def driver():
        with Pilot(qpus=[QPU_SPEC]) as pilot:
            pinned = [r.rank for r in pilot.resources.qpu_ranks("counting")]
            assert len(pinned) == 1
            calls = [pilot.submit(qpu_call, f"c{i}", qpu="counting") for i in range(8)]
            others = [pilot.submit(compute) for _ in range(20)]
            results = [f.result() for f in calls]
            assert [r[0] for r in results] == [f"c{i}" for i in range(8)]
            assert {r[1] for r in results} == set(pinned), "QPU calls ran only on the pinned worker"
            assert {r[4] for r in results} == {"counting"}
            assert len({r[3] for r in results}) == 1, "the backend was built once and reused"
            assert max(r[2] for r in results) == 2, "two calls at once, never more"
            assert not {f.result() for f in others} & set(pinned), "compute tasks avoid the QPU worker"

    run_pilot(driver, options=OPTIONS)


def test_failing_backend_call_is_retried_then_fails_only_its_own_task():
    def driver():
        with Pilot(qpus=[QPU_SPEC]) as pilot:
            flaky = pilot.submit(qpu_call, "flaky", 1, qpu="counting", retries=2, retry_backoff=0.01)
            broken = pilot.submit(qpu_call, "broken", 10, qpu="counting", retries=1, retry_backoff=0.01)
            fine = pilot.submit(qpu_call, "fine", qpu="counting")
            assert flaky.result()[0] == "flaky"
            with pytest.raises(ConnectionError, match="broken: transient backend failure 2"):
                broken.result()
            assert fine.result()[0] == "fine"

    run_pilot(driver, options=OPTIONS)


def test_qpu_declaration_errors_are_immediate():
    def driver():
        with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
            Pilot(qpus=[QPU("bad", factory="no_such_module:make")])
        with Pilot() as pilot:
            with pytest.raises(ResourceError, match="QPU 'elsewhere', which this pilot does not declare"):
                pilot.submit(qpu_call, "x", qpu="elsewhere")

    run_pilot(driver, options=OPTIONS)


def test_statevector_task_that_cannot_fit_is_refused_at_submit():
    from pilotq_mpi.statevector import memory_per_rank, statevector_task

    def driver():
        with Pilot() as pilot:
            with pytest.raises(ResourceError, match="GiB per rank"):
                pilot.submit(statevector_task, None, ranks=2, memory_per_rank=memory_per_rank(30, 2))

    run_pilot(driver, options=PilotOptions(quiet=True, memory_per_rank=2**30))


def test_map_over_a_qpu_batches_calls_on_the_pinned_worker():
    def driver():
        with Pilot(qpus=[QPU_SPEC]) as pilot:
            results = list(pilot.map(qpu_call, ["a", "b", "c"], chunksize=2, qpu="counting"))
            assert [r[0] for r in results] == ["a", "b", "c"]
            assert len({r[1] for r in results}) == 1
        with pytest.raises(ValueError, match="lives in the driver script"):
            Pilot(qpus=[QPU("main", factory="__main__:make")])

    run_pilot(driver, options=OPTIONS)


def test_late_qpu_declaration_that_would_starve_a_queued_task_is_refused():
    def driver():
        workers = len(Pilot().resources.ranks)
        groups = getattr(session.current(), "groups", [])  # under sub-masters a task fits in one group
        widest = max((len(group.workers) for group in groups), default=workers)
        with Pilot() as pilot:
            blocker = [pilot.submit(interval_task, 0.5) for _ in range(2 * workers)]
            wide = pilot.submit(interval_task, 0.0, ranks=widest)
            with pytest.raises(ResourceError, match="declaring QPU 'counting' now would pin ranks"):
                Pilot(qpus=[QPU_SPEC])
            assert wide.result() is not None and all(f.result() is not None for f in blocker)

    run_pilot(driver, options=OPTIONS)


def interval_task(comm, seconds):
    time.sleep(seconds)
    return comm.Get_size()
