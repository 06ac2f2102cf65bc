"""The top master of hierarchical mode applying its groups' reports: futures, counts, journal (no MPI traffic:
the communicator records what the top sends, and the reports are built as a sub-master's Uplink builds them)."""
from concurrent.futures import Future

import pytest

from pilotq_mpi.core.groups import split_groups
from pilotq_mpi.core.inventory import Inventory, RankInfo
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.errors import RemoteTraceback
from pilotq_mpi.journal import Journal
from pilotq_mpi.runtime.hierarchy import DOWN
from pilotq_mpi.runtime.observers import JournalObserver
from pilotq_mpi.runtime.records import Submission
from pilotq_mpi.runtime.serialization import dumps
from pilotq_mpi.runtime.top_master import SUBMISSIONS_PER_PASS, TopMaster


@pytest.fixture
def top(recording_world):
    ranks = [RankInfo(rank, "node0") for rank in range(1, 7)]  # 2 groups: a sub-master and 2 workers each
    groups = split_groups(ranks, 2)
    return TopMaster(recording_world, Inventory(tuple(w for g in groups for w in g.workers)), groups)


def submit(top, task_id, journal=None):
    """Submit a task and run the top's pass until it is handed to a group; the group's sub-master rank."""
    future = Future()
    top.post("submit", Submission(task_id, 1, b"fn", b"args", TaskSpec(), future, frozenset(), "noop", 1.0,
                                  key=None if journal is None else f"key-{task_id}", journal=journal))
    top._pass(None)
    (leader, tag, operations), = top.world.sent
    top.world.sent.clear()
    assert tag == DOWN and [op[:2] for op in operations] == [("task", task_id)]
    return future, leader


def done(task_id, value, rank=3):
    return (task_id, "done", dumps(value), None, "", False, (rank,), 1.0, 1.5, None, 0, 0)


def test_a_task_that_started_and_ended_in_one_group_pass_resolves_its_future(top):
    future, _ = submit(top, 1)
    assert not future.running() and top.counts["noop"]["running"] == 1
    top._on_up(([], [done(1, {"answer": 42})], False))  # its end report alone (Uplink drops its start)
    assert future.result(0) == {"answer": 42}
    assert top.counts["noop"]["done"] == 1 and top.counts["noop"]["running"] == 0
    assert top.tasks == {} and top.scheduler.outstanding(0) + top.scheduler.outstanding(1) == 0


def test_a_reported_start_makes_the_future_running_so_the_driver_can_no_longer_cancel_it(top):
    future, _ = submit(top, 1)
    top._on_up(([1], [], False))
    assert future.running() and not future.cancel()
    top._on_up(([], [done(1, 7)], False))
    assert future.result(0) == 7


def test_a_task_cancelled_before_its_start_stays_cancelled_when_its_group_ran_it_anyway(top):
    future, leader = submit(top, 1)
    assert future.cancel()
    top._on_cancel(1)  # what the driver's cancel() posts: the group is told
    top._flush()
    assert top.world.sent == [(leader, DOWN, [("cancel", 1)])]
    top._on_up(([1], [done(1, 7)], False))  # too late: it had started
    assert future.cancelled()
    assert top.counts["noop"]["done"] == 1 and top.tasks == {}


def test_a_failed_task_fails_its_future_with_the_workers_traceback(top):
    future, _ = submit(top, 1)
    report = (1, "failed", None, dumps(ValueError("bad input")), "Traceback (worker) ...", False, (3,), 1.0, 1.5,
              None, 0, 0)
    top._on_up(([], [report], False))
    error = future.exception(0)
    assert isinstance(error, ValueError) and str(error) == "bad input"
    assert isinstance(error.__cause__, RemoteTraceback) and "Traceback (worker)" in str(error.__cause__)
    assert top.counts["noop"]["failed"] == 1


def test_a_journaled_result_reaches_the_driver_only_after_its_pass_commits_it(top, tmp_path):
    top.observer = JournalObserver()
    with Journal(tmp_path / "journal.sqlite") as journal:
        future, _ = submit(top, 1, journal=journal)
        top._on_up(([], [done(1, "kept")], False))
        assert not future.done() and journal.lookup("key-1") is None
        top.observer.pass_ended()
        assert future.result(0) == "kept" and journal.lookup("key-1") is not None


def test_a_pass_takes_a_bounded_number_of_submissions_and_the_next_the_rest(top):
    count = SUBMISSIONS_PER_PASS + 5
    for task_id in range(count):
        top.post("submit", Submission(task_id, 1, b"fn", b"args", TaskSpec(), Future(), frozenset(), "noop", 1.0))
    assert top._drain_inbox() and len(top.tasks) == SUBMISSIONS_PER_PASS
    assert top._drain_inbox() and len(top.tasks) == count
    assert not top._drain_inbox() and top.counts["noop"]["queued"] == count
