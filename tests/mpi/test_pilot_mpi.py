"""The pilot runtime under real MPI (pytest-mpi). Run with, e.g.:

    timeout 300 mpiexec -n 4 python -m pytest --with-mpi -p no:cacheprovider tests/mpi
    timeout 300 mpiexec -n 6 python -m pytest --with-mpi -p no:cacheprovider tests/mpi

Every test starts its own pilot with ``run_pilot``: rank 0 runs the ``driver`` closure
(the assertions), the other ranks serve as workers until it returns.
"""
import os
import tempfile
import time
from concurrent.futures import CancelledError, wait

import pytest

from pilotq_mpi import DependencyError, Pilot, RemoteTraceback, ResourceError, current_task
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions

pytestmark = [pytest.mark.mpi(min_size=4), pytest.mark.timeout(120)]
OPTIONS = PilotOptions(quiet=True)


def worker_count():
    """Worker ranks of the running pilot (world size - 1, or fewer under sub-masters); on rank 0."""
    from pilotq_mpi.runtime import session

    return len(session.current().inventory.ranks)


def whoami(comm, tag):
    """Size of the task's communicator, the world ranks of the task, and an allreduce over them."""
    task = current_task()
    return tag, comm.Get_size(), task.world_ranks, comm.allreduce(task.world_rank)


def interval(comm, seconds):
    comm.Barrier()
    start = time.time()
    time.sleep(seconds)
    comm.Barrier()
    return start, time.time()


def meet(comm, mine, other, patience=60.0):
    """Mark this task started (file ``mine``) and wait for the other task's mark ``other``.

    True on every rank of the task when the other task was running at the same time
    (no clock comparison: a loaded machine only makes the wait shorter or longer).
    """
    seen = False
    if comm.Get_rank() == 0:
        open(mine, "w").close()
        give_up = time.monotonic() + patience
        while not (seen := os.path.exists(other)) and time.monotonic() < give_up:
            time.sleep(0.01)
    return comm.bcast(seen, root=0)


def boom(comm, message):
    raise ValueError(message)


def test_widths_1_to_4_each_collective_touches_only_its_ranks():
    def driver():
        workers = worker_count()
        with Pilot() as pilot:
            futures = [pilot.submit(whoami, (width, i), ranks=width)
                       for i in range(3) for width in range(1, min(4, workers) + 1)]
            for future in futures:
                (width, _), size, ranks, total = future.result()
                assert size == width == len(ranks) == len(set(ranks))
                assert 0 not in ranks
                assert total == sum(ranks), "the allreduce saw exactly the task's ranks"
        return True

    assert run_pilot(driver, options=OPTIONS) in (True, None)


def test_tasks_of_different_widths_run_at_the_same_time():
    def driver():
        with tempfile.TemporaryDirectory() as tmp:
            a, b = os.path.join(tmp, "wide"), os.path.join(tmp, "narrow")
            with Pilot() as pilot:
                wide = pilot.submit(meet, a, b, ranks=2)
                narrow = pilot.submit(meet, b, a, ranks=1)
                assert wide.result() and narrow.result(), "a 2-rank and a 1-rank task did not run at the same time"

    run_pilot(driver, options=OPTIONS)


def test_gather_returns_every_ranks_value_in_rank_order():
    def driver():
        with Pilot() as pilot:
            values = pilot.submit(lambda comm: comm.Get_rank() * 10, ranks=3, gather=True).result()
            assert values == [0, 10, 20]

    run_pilot(driver, options=OPTIONS)


def test_dependencies_order_and_failure_cascade():
    def driver():
        with Pilot() as pilot:
            first = pilot.submit(interval, 0.3)
            second = pilot.submit(interval, 0.0, after=[first])
            assert second.result()[0] >= first.result()[1]
            bad = pilot.submit(boom, "no")
            child = pilot.submit(whoami, "child", after=[bad])
            grandchild = pilot.submit(whoami, "grandchild", after=[child])
            for future in (child, grandchild):
                with pytest.raises(DependencyError, match="did not run: its dependency"):
                    future.result()
            late = pilot.submit(whoami, "late", after=bad)
            with pytest.raises(DependencyError):
                late.result()
            with pytest.raises(TypeError, match="after= takes futures returned by Pilot.submit"):
                pilot.submit(whoami, "x", after=["not a future"])

    run_pilot(driver, options=OPTIONS)


def test_map_batches_items_into_chunks():
    def item_where(comm, x):
        return x * x, current_task().task_id

    def driver():
        with Pilot() as pilot:
            results = list(pilot.map(item_where, range(100), chunksize=16))
        assert [r[0] for r in results] == [x * x for x in range(100)]
        assert len({r[1] for r in results}) == 7, "100 items in chunks of 16 are 7 tasks"
        with pytest.raises(ValueError, match="chunksize must be an integer >= 1"):
            Pilot().map(item_where, range(3), chunksize=0)

    run_pilot(driver, options=OPTIONS)


def test_cancel_queued_tasks():
    def driver():
        workers = worker_count()
        with Pilot() as pilot:
            # more long tasks than workers (the rest wait), then short ones queued behind them
            busy = [pilot.submit(interval, 1.0) for _ in range(2 * workers)]
            queued = [pilot.submit(interval, 0.0) for _ in range(4)]
            dependent = pilot.submit(interval, 0.0, after=[queued[-1]])
            time.sleep(0.2)
            assert all(f.cancel() for f in queued[2:])
            assert not busy[0].cancel(), "a running task cannot be cancelled"
            wait(busy + queued[:2])
            assert all(f.done() and not f.cancelled() for f in busy + queued[:2])
            for f in queued[2:]:
                with pytest.raises(CancelledError):
                    f.result()
            with pytest.raises(DependencyError):
                dependent.result()

    run_pilot(driver, options=OPTIONS)


def test_task_exception_comes_back_with_remote_traceback_and_pilot_goes_on():
    def driver():
        with Pilot() as pilot:
            bad = pilot.submit(boom, "broken input 42", name="bad-task")
            error = bad.exception()
            assert isinstance(error, ValueError) and str(error) == "broken input 42"
            assert isinstance(error.__cause__, RemoteTraceback)
            text = error.__cause__.text
            assert "task 'bad-task'" in text and "world rank" in text and "host" in text
            assert "raise ValueError(message)" in text
            wide_bad = pilot.submit(boom, "everywhere", ranks=2)
            with pytest.raises(ValueError, match="everywhere"):
                wide_bad.result()
            assert pilot.submit(whoami, "after").result()[0] == "after"

    run_pilot(driver, options=OPTIONS)


def test_impossible_requests_fail_at_submit():
    def driver():
        workers = worker_count()
        with Pilot() as pilot:
            with pytest.raises(ResourceError, match=f"task needs {workers + 1} ranks; this pilot has {workers}"):
                pilot.submit(whoami, "x", ranks=workers + 1)
            with pytest.raises(ResourceError, match="GPU"):
                pilot.submit(whoami, "x", gpus_per_rank=1)
            with pytest.raises(ResourceError, match="QPU 'nope'"):
                pilot.submit(whoami, "x", qpu="nope")
            with pytest.raises(ResourceError, match="ranks must be an integer >= 1, got ranks=0"):
                pilot.submit(whoami, "x", ranks=0)
            assert pilot.submit(whoami, "fine").result()[0] == "fine"

    run_pilot(driver, options=OPTIONS)


def test_retries_rerun_a_failing_task():
    def flaky(comm, path):
        import os

        count = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as handle:
            handle.write(str(count + 1))
        if count < 2:
            raise RuntimeError(f"attempt {count} fails")
        return count

    def driver():
        import tempfile

        path = tempfile.mktemp()
        with Pilot() as pilot:
            assert pilot.submit(flaky, path, retries=2, retry_backoff=0.01).result() == 2
            with pytest.raises(RuntimeError, match="attempt 1 fails"):
                pilot.submit(flaky, path + "x", retries=1, retry_backoff=0.01).result()

    run_pilot(driver, options=OPTIONS)


@pytest.mark.single_master("the layout it checks has rank 1 as a worker; under sub-masters rank 1 leads a group")
def test_fake_layout_places_wide_tasks_on_one_node_with_one_gpu_per_worker():
    """--ranks-per-node 2 --gpus-per-node 2: rank 0 (the master, no GPU) and worker 1 share node0,
    so worker 1 owns both GPUs of node0; workers 2 and 3 get one each on node1."""
    def where(comm):
        task = current_task()
        return task.node, task.gpus, os.environ["CUDA_VISIBLE_DEVICES"]

    def driver():
        inventory = Pilot().resources
        nodes = {r.rank: r.node for r in inventory.ranks}
        assert nodes[1] == "node0" and nodes[2] == nodes[3] == "node1"
        assert [r.gpus for r in inventory.ranks[:3]] == [(0, 1), (0,), (1,)]
        with Pilot() as pilot:
            placed = pilot.submit(where, ranks=2, same_node=True, gpus_per_rank=1, gather=True).result()
            assert [p[0] for p in placed] == ["node1", "node1"]
            assert sorted(p[1] for p in placed) == [(0,), (1,)]
            assert all(p[2] == ",".join(map(str, p[1])) for p in placed), "pinned before the task ran"

    run_pilot(driver, options=PilotOptions(quiet=True, ranks_per_node=2, gpus_per_node=2))


def square(comm, x):
    return x * x


def test_map_chunks_run_isolated_in_child_processes():
    def driver():
        with Pilot() as pilot:
            assert list(pilot.map(square, range(7), chunksize=3, isolate=True)) == [x * x for x in range(7)]

    run_pilot(driver, options=OPTIONS)


def returns_a_lock(comm):
    import threading

    return threading.Lock()


def test_unpicklable_result_fails_only_its_task():
    from pilotq_mpi import RemoteError

    def driver():
        with Pilot() as pilot:
            with pytest.raises(RemoteError, match="could not be pickled.*lock"):
                pilot.submit(returns_a_lock).result()
            assert pilot.submit(whoami, "next").result()[0] == "next"

    run_pilot(driver, options=OPTIONS)
