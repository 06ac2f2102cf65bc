"""Hierarchical masters, pure parts: how ranks split into groups and how the top master hands out tasks."""
import pytest

from pilotq_mpi import ResourceError
from pilotq_mpi.core.group_queue import GroupQueue
from pilotq_mpi.core.groups import split_groups, submaster_count
from pilotq_mpi.core.inventory import Inventory, RankInfo
from pilotq_mpi.core.specs import TaskSpec


def ranks(count, per_node, first=1):
    return [RankInfo(first + i, f"node{(first + i) // per_node}") for i in range(count)]


def test_auto_is_one_master_and_a_count_forces_sub_masters():
    assert submaster_count("auto", 16_384) == 0 and submaster_count(None, 8) == 0
    assert submaster_count("2", 9) == 2
    assert submaster_count(0, 4096) == 0


def test_too_many_submasters_is_refused_with_what_would_work():
    with pytest.raises(ValueError, match="PILOTQ_SUBMASTERS=5: 9 worker ranks cannot make 5 groups.*at most 4"):
        submaster_count(5, 9)


def test_groups_follow_node_boundaries_and_the_lowest_rank_leads():
    groups = split_groups(ranks(15, per_node=4), 2)  # ranks 1..15 on node0 (1-3), node1 (4-7), ...
    assert [g.leader for g in groups] == [1, 8]
    assert [[w.rank for w in g.workers] for g in groups] == [[2, 3, 4, 5, 6, 7], [9, 10, 11, 12, 13, 14, 15]]
    group_of_node = {}
    for g in groups:
        for rank in [g.leader] + [w.rank for w in g.workers]:
            assert group_of_node.setdefault(rank // 4, g.index) == g.index  # a node is never split
    every = sorted([g.leader for g in groups] + [w.rank for g in groups for w in g.workers])
    assert every == list(range(1, 16))


def test_one_node_is_split_by_ranks():
    groups = split_groups(ranks(9, per_node=100), 2)  # `mpiexec -n 10` on one machine
    assert [(g.leader, [w.rank for w in g.workers]) for g in groups] == [(1, [2, 3, 4, 5]), (6, [7, 8, 9])]


def queue(sizes, prefetch=1):
    groups, first = [], 1
    from pilotq_mpi.core.groups import Group

    for index, size in enumerate(sizes):
        workers = tuple(RankInfo(first + 1 + i, f"node{index}") for i in range(size))
        groups.append(Group(index, first, workers))
        first += size + 1
    inventory = Inventory(tuple(w for g in groups for w in g.workers))
    return GroupQueue(inventory, groups, prefetch=prefetch)


def test_groups_are_fed_up_to_capacity_and_balanced():
    q = queue([2, 2], prefetch=1)  # capacity 4 slots each
    for task in range(10):
        q.submit(task, TaskSpec(1))
    handed = q.assign()
    assert [task for task, _ in handed] == list(range(8))  # submission order, 8 slots in all
    assert sorted(group for _, group in handed) == [0] * 4 + [1] * 4
    assert q.queued == 2 and q.assign() == []
    q.finished(0)
    assert q.assign() == [(8, handed[0][1])]  # the group that got room


def test_priority_first_and_a_blocked_wide_task_is_not_overtaken_by_its_class():
    q = queue([3, 3], prefetch=0)
    for task in range(5):
        q.submit(task, TaskSpec(1))
    assert len(q.assign()) == 5  # 6 slots, 5 used
    q.submit(10, TaskSpec(3))      # needs 3 free slots of one group: not yet
    q.submit(11, TaskSpec(3))
    q.submit(12, TaskSpec(1, priority=5))
    assert [t for t, _ in q.assign()] == [12]  # the high-priority single-rank task takes the last slot
    for task in (0, 2, 4):
        q.finished(task)
    handed = q.assign()
    assert [t for t, _ in handed] == [10]
    assert q.outstanding(handed[0][1]) == 3


def test_a_task_wider_than_every_group_fails_at_submit_time_with_the_sizes():
    q = queue([4, 3])
    q.check(TaskSpec(4))
    with pytest.raises(ResourceError, match="5 ranks of one sub-master group.*groups of 4, 3 worker ranks.*"
                                            "ranks<=4.*PILOTQ_SUBMASTERS=0"):
        q.check(TaskSpec(5))
    with pytest.raises(ResourceError, match="has 7 worker ranks"):
        q.check(TaskSpec(8))  # wider than the whole pilot: the usual message


def test_cancelled_tasks_are_not_handed_out():
    q = queue([2])
    q.submit(1, TaskSpec(1))
    q.submit(2, TaskSpec(1))
    assert q.cancel(1) and not q.cancel(1)
    assert q.assign() == [(2, 0)]
    assert q.group_of(2) == 0 and q.group_of(1) is None


def test_beyond_its_ranks_a_group_takes_only_short_work_and_only_with_a_rank_not_held_by_long_work():
    predictions = {}
    q = queue([2, 2], prefetch=1)
    q.horizon, q._predict = 0.05, predictions.get  # (as TopMaster builds it: horizon and per-task predictions)
    for task in (1, 2, 3):                          # long (unknown) tasks fill 3 of the 4 ranks
        q.submit(task, TaskSpec(1))
    assert len(q.assign()) == 3
    full = max((0, 1), key=q.outstanding)
    assert q.outstanding(full) == 2 and q.outstanding(1 - full) == 1
    for task in range(10, 16):                      # short tasks
        predictions[task] = 0.001
        q.submit(task, TaskSpec(1))
    handed = q.assign()
    assert {group for _, group in handed} == {1 - full}, "nothing queues in the group whose ranks all run long work"
    assert len(handed) == 3                         # its free rank, and prefetch behind the short work (1 per rank)
    q.submit(20, TaskSpec(1))                       # a long one: no free rank anywhere
    assert q.assign() == []
