"""Hierarchical masters, pure parts: how ranks split into groups and how the top master hands out tasks."""
import pytest

from pilotq_mpi import ResourceError
from pilotq_mpi.core.group_queue import GroupQueue
from pilotq_mpi.core.groups import split_groups, submaster_count
from pilotq_mpi.core.inventory import Inventory, RankInfo
from pilotq_mpi.core.specs import TaskSpec


def ranks(count, per_node, first=1):
    return [RankInfo(first + i, f"node{(first + i) // per_node}") for i in range(count)]


def test_auto_is_one_master_below_6144_workers_then_groups_of_about_2048_and_a_count_forces_sub_masters():
    assert submaster_count("auto", 6_143) == 0 and submaster_count(None, 8) == 0
    assert submaster_count("auto", 6_144) == 3 and submaster_count(None, 8_187) == 4  # groups of ~2,048 workers
    assert submaster_count("auto", 16_384, joinable=True) == 0  # joins need one master
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


def test_a_full_group_holds_a_few_known_long_tasks_so_their_expected_wait_stays_within_the_hold():
    predictions = {}
    q = queue([40, 40], prefetch=16)
    q.horizon, q._predict, q.hold = 0.05, predictions.get, 0.05
    for task in range(300):
        predictions[task] = 1.0                     # known: 1 s each
        q.submit(task, TaskSpec(1))
    handed = q.assign()
    # 40 running per group, and held beyond them while held x 1 s <= 40 slots x 0.05 s (hold): 2 per group
    assert len(handed) == 84 and q.outstanding(0) == q.outstanding(1) == 42
    assert q.assign() == []
    q.finished(handed[0][0])
    assert q.assign() == [(84, handed[0][1])]       # the group that freed a slot takes the next
    for task in range(500, 510):                    # shorter long tasks, first in order: more fit the horizon
        predictions[task] = 0.4
        q.submit(task, TaskSpec(1, priority=1))
    assert sorted(g for _, g in q.assign()) == [0, 0, 0, 1, 1, 1]  # held 5 x 0.4 s <= 2 s per group
    q.submit(600, TaskSpec(1, priority=2))          # unknown prediction: never held
    assert q.assign() == []
    assert q.queued == 215 + 4 + 1                  # the rest waits for a free slot
    tail = queue([40, 40], prefetch=16)             # less than a round (80) left after the running slots:
    tail.horizon, tail._predict, tail.hold = 0.05, predictions.get, 0.05
    for task in range(100):                         # nothing held, the last tasks go to the first free rank
        tail.submit(task, TaskSpec(1))
    assert len(tail.assign()) == 80


@pytest.mark.parametrize("prefetch, horizon, hold", [(0, 0.05, 1.0), (16, 0.05, 0.0), (16, None, 0.0)])
def test_no_long_task_is_held_without_prefetch_or_hold_and_without_a_horizon_every_task_prefetches(prefetch, horizon,
                                                                                                   hold):
    q = queue([40], prefetch=prefetch)
    q.horizon, q._predict, q.hold = horizon, {task: 1.0 for task in range(700)}.get, hold
    for task in range(700):
        q.submit(task, TaskSpec(1))
    assert len(q.assign()) == (40 * 17 if horizon is None else 40)  # no horizon: prefetch behind anything


def test_the_simulator_can_run_the_runtime_group_queue_and_holding_feeds_groups_between_reports():
    import functools

    from pilotq_mpi.core.simulation import MasterModel, simulate_hierarchical

    inventory = Inventory.from_layout(80, ranks_per_node=4)
    tasks = [(TaskSpec(), 1.0, 0.0)] * 400
    top = MasterModel(place=1e-4, result=1e-4)     # a top whose round trip leaves ranks idle between tasks
    makespan, late = {}, {}
    for name, options in {"no hold": dict(prefetch=0), "hold": dict(
            prefetch=16, horizon=0.05, predict=lambda task: 1.0,
            router_factory=functools.partial(GroupQueue.over, horizon=0.05, predict=lambda task: 1.0, hold=0.2))}.items():
        result = simulate_hierarchical(inventory, tasks, 2, top=top, sub=MasterModel(place=1e-5, result=1e-5),
                                       group_latency=0.005, dispatch_latency=0.001, timer=lambda: 0.0, **options)
        assert sorted(r.task_id for r in result.records) == list(range(400))
        assert all(r.end - r.start == pytest.approx(1.0) for r in result.records)  # not prefetched onto workers
        makespan[name] = result.makespan
        late[name] = sum(r.start - int(r.start) for r in result.records)  # after its rank freed (rounds of 1 s)
    assert late["hold"] < late["no hold"]           # held tasks start without a round trip to the top
    assert makespan["hold"] <= makespan["no hold"]  # and none waits in one group while the other idles at the end
