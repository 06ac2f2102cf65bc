"""Scheduler: what the lean placement path (issue 13.2) must keep. The placements themselves are
pinned by ``test_scheduler_golden.py``; these are the cases the golden scenarios do not reach:
queue keys packed into one int, rank numbers too sparse for list-indexed tables, classes that
share one single-rank index, and the load read from each rank's task list."""
import random

import pytest

from pilotq_mpi.core.inventory import Inventory, RankInfo
from pilotq_mpi.core.scheduler import Scheduler
from pilotq_mpi.core.specs import TaskSpec


@pytest.mark.parametrize("bad", ["7", 1.0, None, -1, 2**64])
def test_task_ids_must_be_integers_that_fit_the_queue_key(bad):
    s = Scheduler(Inventory.from_layout(1))
    with pytest.raises(ValueError, match=r"task ids must be integers in \[0, 2\*\*64\)"):
        s.submit(bad, TaskSpec())
    assert s.queued == 0
    s.submit(2**64 - 1, TaskSpec())  # the largest id still fits
    assert [p.task_id for p in s.schedule()] == [2**64 - 1]


def test_priority_sign_front_and_submission_order_as_the_tuple_rule():
    """(-priority, sequence) with front submissions ahead of their priority, latest front first:
    the rule the tuple entries had, for negative, zero and large priorities."""
    rng = random.Random(5)
    s = Scheduler(Inventory.from_layout(64), prefetch=0)
    expected, seq, front_seq = [], 0, 0
    for task in range(60):
        priority = rng.choice([-(2**70), -3, 0, 0, 2, 2**70])
        front = rng.random() < 0.3
        if front:
            front_seq += 1
            order = -front_seq
        else:
            order = seq
            seq += 1
        s.submit(task, TaskSpec(priority=priority), front=front)
        expected.append((-priority, order, task))
    assert [p.task_id for p in s.schedule()] == [task for *_, task in sorted(expected)]


def _drive(scheduler: Scheduler, rank_of: dict[int, int], seed: int) -> list:
    """Submit a mixed workload, release running tasks in a seeded order; the log in dense rank numbers."""
    rng = random.Random(seed)
    dense = {rank: index for index, rank in rank_of.items()}
    specs = [TaskSpec(ranks=rng.choice([1, 1, 1, 2, 4]), gpus_per_rank=rng.choice([0, 1]),
                      priority=rng.choice([0, 0, 1])) for _ in range(120)]
    log, running, pending = [], {}, list(enumerate(specs))
    for _ in range(2000):
        for _ in range(rng.choice([0, 2, 5])):
            if pending:
                scheduler.submit(*pending.pop(0))
        for p in scheduler.schedule():
            running[p.task_id] = p.ranks
            log.append((p.task_id, tuple(dense[r] for r in p.ranks), p.waits))
        log.append(("reservation", scheduler.reservation and (scheduler.reservation[0],
                                                              tuple(dense[r] for r in scheduler.reservation[1]))))
        if not running and not pending and not scheduler.queued:
            break
        if running:
            task = rng.choice(sorted(running))
            for rank in running.pop(task):
                log.append(("release", task, dense[rank], scheduler.release(task, rank)))
    return log


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_rank_numbers_place_as_dense_ones(seed):
    """Rank numbers too sparse for list-indexed tables (the dict fallback) give the same
    placements, rank for rank, as dense numbers in the same order."""
    layout = [(f"node{i // 4}", (0,) if i % 3 else ()) for i in range(12)]
    dense = {i: 1 + i for i in range(12)}
    sparse = {i: 10**6 + 7919 * i for i in range(12)}
    logs = []
    for rank_of in (dense, sparse):
        inventory = Inventory(tuple(RankInfo(rank_of[i], node, gpus) for i, (node, gpus) in enumerate(layout)))
        scheduler = Scheduler(inventory, prefetch=1)
        logs.append(_drive(scheduler, rank_of, seed))
    assert isinstance(Scheduler(Inventory(tuple(RankInfo(r, "n") for r in sparse.values())))._index.effective, dict)
    assert logs[0] == logs[1]
    assert any(entry[0] == "release" for entry in logs[0])


def test_classes_sharing_one_index_wake_each_other():
    """On nodes where every rank has a GPU, "1 GPU" and "no GPU" tasks compete for the same ranks
    (one shared index): a rank freed by a GPU task goes to the CPU task that waits first."""
    s = Scheduler(Inventory.from_layout(2, gpus_per_rank=1), prefetch=0)
    s.submit(1, TaskSpec(gpus_per_rank=1))
    s.submit(2, TaskSpec(gpus_per_rank=1))
    s.submit(3, TaskSpec(gpus_per_rank=0))
    s.submit(4, TaskSpec(gpus_per_rank=1))
    assert {p.task_id: p.ranks for p in s.schedule()} == {1: (1,), 2: (2,)}
    assert s.schedule() == []
    s.release(2, 2)
    assert {p.task_id: p.ranks for p in s.schedule()} == {3: (2,)}
    s.release(1, 1)
    assert {p.task_id: p.ranks for p in s.schedule()} == {4: (1,)}


def test_load_is_the_number_of_tasks_on_the_rank():
    """The load read from a rank's task list follows placements, prefetch, wide tasks,
    revocation of a waiting task and releases; busy ranks follow with it."""
    s = Scheduler(Inventory.from_layout(4, ranks_per_node=4), prefetch=2)
    for task in range(8):
        s.submit(task, TaskSpec())
    s.submit(8, TaskSpec(ranks=2, priority=5))
    placed = {p.task_id: p.ranks for p in s.schedule()}
    assert placed[8] == (1, 2)
    for rank in (1, 2, 3, 4):
        assert s.load(rank) == len(s.tasks_on(rank))
    assert s.load(1) == s.load(2) == 1 and s.load(3) == s.load(4) == 3
    assert s.busy_ranks == 4
    s.release(s.tasks_on(3)[-1], 3)  # a waiting task revoked before it ran
    assert s.load(3) == len(s.tasks_on(3)) == 2
    for rank in (1, 2):
        s.release(8, rank)
    assert s.load(1) == s.load(2) == 0 and s.busy_ranks == 2
