"""Pools and allocations in the pure core: eligibility, submit-time checks, placement, joins and leaves."""
from dataclasses import replace

import pytest

from pilotq_mpi.core.inventory import Inventory, RankInfo
from pilotq_mpi.core.scheduler import Scheduler
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.errors import ResourceError


def joined(first_rank: int, count: int, allocation: str, pool: str | None = None, node: str = "nodeB"):
    return tuple(RankInfo(first_rank + i, node, (), None, None, allocation, pool) for i in range(count))


def two_allocations() -> Inventory:
    main = Inventory.from_layout(3, ranks_per_node=3)  # ranks 1-3, allocation "main", no pool
    return main.with_ranks(joined(10, 3, "join-1", "gpu"))


def test_pool_restricts_eligible_ranks():
    inventory = two_allocations()
    assert [r.rank for r in inventory.eligible(TaskSpec(pool="gpu"))] == [10, 11, 12]
    assert [r.rank for r in inventory.eligible(TaskSpec())] == [1, 2, 3, 10, 11, 12]


def test_unknown_pool_fails_at_check_naming_the_pools():
    with pytest.raises(ResourceError, match=r"pool 'cpu', which this pilot does not have \(pools: gpu\)"):
        two_allocations().check(TaskSpec(pool="cpu"))


def test_expected_pool_passes_until_its_ranks_join_then_is_judged():
    inventory = Inventory.from_layout(3).expecting(["gpu"])
    inventory.check(TaskSpec(ranks=8, pool="gpu"))  # unknown size yet: waits, does not fail
    with pytest.raises(ResourceError, match=r"this pilot has 3 worker ranks in pool 'gpu'"):
        inventory.with_ranks(joined(10, 3, "join-1", "gpu")).check(TaskSpec(ranks=8, pool="gpu"))


def test_multi_rank_task_wider_than_any_allocation_fails_with_the_numbers():
    with pytest.raises(ResourceError, match=r"needs 4 ranks of one allocation.*widest allocation has 3"
                                            r" suitable worker ranks \(main: 3, join-1: 3\)"):
        two_allocations().check(TaskSpec(ranks=4))


def test_multi_rank_placement_never_spans_allocations():
    inventory = Inventory.from_layout(2).with_ranks(joined(10, 3, "join-1"))
    scheduler = Scheduler(inventory)
    scheduler.submit(1, TaskSpec(ranks=1))
    scheduler.submit(2, TaskSpec(ranks=3))
    placements = {p.task_id: p.ranks for p in scheduler.schedule()}
    assert placements[1] == (1,)
    assert placements[2] == (10, 11, 12)  # ranks 2 + two joined ones would be 3 idle ranks too


def test_ranks_join_and_leave_the_scheduler():
    scheduler = Scheduler(Inventory.from_layout(1))
    scheduler.submit(1, TaskSpec(ranks=2))
    assert scheduler.schedule() == []  # a 1-rank pilot cannot place it yet
    grown = scheduler.inventory.with_ranks(joined(10, 2, "join-1"))
    scheduler.set_inventory(grown)
    assert [p.ranks for p in scheduler.schedule()] == [(10, 11)]
    with pytest.raises(ValueError, match=r"rank 10 still holds tasks \[1\]; it cannot leave"):
        scheduler.set_inventory(grown.without_ranks({10, 11}))
    scheduler.release(1, 10)
    scheduler.release(1, 11)
    scheduler.set_inventory(grown.without_ranks({10, 11}))
    assert [r.rank for r in scheduler.inventory.ranks] == [1]
    scheduler.submit(2, TaskSpec())
    assert [p.ranks for p in scheduler.schedule()] == [(1,)]


def test_describe_names_allocations_and_pools():
    text = two_allocations().describe()
    assert "6 worker ranks on 2 nodes in 2 allocations: main (3 ranks), join-1 (3 ranks, pool gpu)" in text
    assert "6 worker ranks on 1 node" in replace(Inventory.from_layout(6)).describe()


def test_pool_name_is_validated():
    with pytest.raises(ValueError, match="pool must be the name of a pool"):
        TaskSpec(pool="")


def test_a_moved_task_goes_ahead_of_tasks_of_its_priority():
    scheduler = Scheduler(Inventory.from_layout(1), prefetch=0)
    for task_id in (1, 2, 3):
        scheduler.submit(task_id, TaskSpec())
    scheduler.submit(9, TaskSpec(), front=True)
    scheduler.submit(8, TaskSpec(priority=1))
    order = []
    for _ in range(5):
        (placement,) = scheduler.schedule()
        order.append(placement.task_id)
        scheduler.release(placement.task_id, 1)
    assert order == [8, 9, 1, 2, 3]


def test_qpus_pin_ranks_of_the_main_allocation_only():
    from pilotq_mpi.core.inventory import QpuSpec

    pinned = two_allocations().with_qpu(QpuSpec("q", "m:f"))
    assert [r.rank for r in pinned.qpu_ranks("q")] == [3]
