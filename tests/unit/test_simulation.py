"""Discrete-event simulator: hand-computed schedules, then invariants over random workloads."""
import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotq_mpi.core.inventory import Inventory, QpuSpec, RankInfo
from pilotq_mpi.core.simulation import (MasterModel, SimTask, lower_bound, mixed_workload, percentile, simulate,
                                        simulate_hierarchical)
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.errors import ResourceError

ONE = TaskSpec()
WIDE2 = TaskSpec(ranks=2)


def unit_tasks(n, duration=1.0):
    return [(ONE, duration, 0.0)] * n


def spans(result):
    return [(r.start, r.end, r.ranks) for r in result.records]


# --- exact small cases ---------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_two_ranks_four_unit_tasks(prefetch):
    result = simulate(Inventory.from_layout(2), unit_tasks(4), prefetch=prefetch)
    assert result.makespan == 2.0 and result.lower_bound == 2.0
    assert result.utilization == 1.0 and result.busy_rank_seconds == 4.0
    assert sorted(r.start for r in result.records) == [0.0, 0.0, 1.0, 1.0]
    assert sorted(r.ranks for r in result.records) == [(1,), (1,), (2,), (2,)]
    assert result.placements == 4 and result.wait_p50 == 0.5 and result.wait_max == 1.0


@pytest.mark.parametrize("prefetch", [0, 1])
def test_reservation_for_a_wide_task_delays_narrow_work(prefetch):
    inventory = Inventory.from_layout(2)
    narrow_only = [(ONE, 2.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0)]
    # (with prefetch the third task is queued behind the 2 s task: see the uneven-tasks test)
    assert simulate(inventory, narrow_only, prefetch=prefetch).makespan == (2.0 if prefetch == 0 else 3.0)
    # A (1 rank, 2 s) starts on rank 1; B (2 ranks) cannot start and reserves both ranks, so
    # C and D may not use idle rank 2 (the scheduler does not know they would finish in time).
    tasks = [(ONE, 2.0, 0.0), (WIDE2, 1.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0)]
    result = simulate(inventory, tasks, prefetch=prefetch)
    assert spans(result) == [(0.0, 2.0, (1,)), (2.0, 3.0, (1, 2)), (3.0, 4.0, (1,)), (3.0, 4.0, (2,))]
    assert result.makespan == 4.0 and result.lower_bound == 3.0
    assert result.utilization == pytest.approx(6.0 / 8.0)


def test_prefetch_does_not_change_makespan_of_equal_tasks_without_latency():
    for workers, n in [(1, 3), (2, 5), (3, 7), (4, 16)]:
        makespans = {simulate(Inventory.from_layout(workers), unit_tasks(n), prefetch=p).makespan for p in (0, 1, 2)}
        assert makespans == {float(math.ceil(n / workers))}


def test_prefetch_hides_the_dispatch_round_trip():
    inventory = Inventory.from_layout(2)
    # prefetch 0: every start waits for a round trip after the previous completion
    assert simulate(inventory, unit_tasks(4), prefetch=0, dispatch_latency=0.5).makespan == 3.0
    assert simulate(inventory, unit_tasks(6), prefetch=0, dispatch_latency=0.5).makespan == 4.5
    # prefetch 1: only the first assignment's round trip shows
    assert simulate(inventory, unit_tasks(4), prefetch=1, dispatch_latency=0.5).makespan == 2.5
    result = simulate(inventory, unit_tasks(6), prefetch=1, dispatch_latency=0.5)
    assert result.makespan == 3.5
    assert [(r.placed, r.start) for r in result.records if r.ranks == (1,)] == [(0.0, 0.5), (0.0, 1.5), (1.5, 2.5)]


def test_prefetch_can_lengthen_makespan_of_uneven_tasks():
    # prefetch binds task 2 to rank 1 behind the 4 s task, while rank 2 runs out of work
    tasks = [(ONE, 4.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0)]
    assert simulate(Inventory.from_layout(2), tasks, prefetch=0).makespan == 4.0
    assert simulate(Inventory.from_layout(2), tasks, prefetch=1).makespan == 5.0


def test_wide_task_starts_when_its_assignment_arrives():
    result = simulate(Inventory.from_layout(4), [(TaskSpec(ranks=4), 2.0, 1.0)], dispatch_latency=0.25)
    (record,) = result.records
    assert (record.placed, record.start, record.end, record.ranks) == (1.0, 1.25, 3.25, (1, 2, 3, 4))
    assert result.makespan == 2.25 and result.wait_p95 == 0.25


def test_later_submission_waits_for_the_rank():
    result = simulate(Inventory.from_layout(1), [(ONE, 3.0, 0.0), (ONE, 1.0, 1.0), (ONE, 1.0, 10.0)], prefetch=0)
    assert spans(result) == [(0.0, 3.0, (1,)), (3.0, 4.0, (1,)), (10.0, 11.0, (1,))]
    assert [r.wait for r in result.records] == [0.0, 2.0, 0.0]
    assert result.makespan == 11.0 and result.utilization == pytest.approx(5 / 11)


def test_priority_decides_among_tasks_submitted_together():
    tasks = [(ONE, 1.0, 0.0), (TaskSpec(priority=5), 1.0, 0.0)]
    result = simulate(Inventory.from_layout(1), tasks, prefetch=0)
    assert [r.start for r in result.records] == [1.0, 0.0]


def test_qpu_rank_runs_concurrency_calls_at_once():
    inventory = Inventory.from_layout(2).with_qpu(QpuSpec("q", "m:f", ranks=1, concurrency=2))
    for prefetch in (0, 1):
        result = simulate(inventory, [(TaskSpec(qpu="q"), 1.0, 0.0)] * 3, prefetch=prefetch)
        assert sorted(r.start for r in result.records) == [0.0, 0.0, 1.0]
        assert {r.ranks for r in result.records} == {(2,)}
        assert result.makespan == 2.0 and result.lower_bound == 1.0
        assert result.busy_rank_seconds == 2.0 and result.utilization == 0.5


def test_gpu_tasks_only_on_gpu_ranks():
    inventory = Inventory((RankInfo(1, "n"), RankInfo(2, "n", (0,))))
    result = simulate(inventory, [(TaskSpec(gpus_per_rank=1), 1.0, 0.0)] * 3 + unit_tasks(1), prefetch=0)
    assert [r.ranks for r in result.records] == [(2,), (2,), (2,), (1,)]
    assert result.makespan == 3.0


# Found by the property test below: a higher-priority task of the reservation holder's class
# used to head that class's queue while the holder kept the reservation, so neither ever ran.
def test_a_later_higher_priority_task_of_the_reserved_class_does_not_deadlock():
    inventory = Inventory.from_layout(3, ranks_per_node=1)
    tasks = [(ONE, 1.0, 0.0), (TaskSpec(ranks=3), 1.0, 0.0), (TaskSpec(ranks=3, priority=1), 1.0, 0.5)]
    result = simulate(inventory, tasks, prefetch=0)
    assert spans(result) == [(0.0, 1.0, (1,)), (2.0, 3.0, (1, 2, 3)), (1.0, 2.0, (1, 2, 3))]


def test_infeasible_task_is_refused_with_its_index():
    with pytest.raises(ResourceError, match=r"task 1: task needs 3 ranks; this pilot has 2"):
        simulate(Inventory.from_layout(2), [(ONE, 1.0, 0.0), (TaskSpec(ranks=3), 1.0, 0.0)])
    with pytest.raises(ValueError, match="duration"):
        simulate(Inventory.from_layout(2), [(ONE, -1.0, 0.0)])
    with pytest.raises(ValueError, match="dispatch_latency"):
        simulate(Inventory.from_layout(2), [], dispatch_latency=-1)


def test_empty_workload():
    result = simulate(Inventory.from_layout(2), [])
    assert result.makespan == 0.0 and result.utilization == 0.0 and result.placements == 0


def test_scheduler_time_is_read_around_scheduler_calls_only():
    ticks = iter(range(10**6))
    result = simulate(Inventory.from_layout(2), unit_tasks(5), timer=lambda: float(next(ticks)))
    # every timed call costs exactly one tick with this fake clock
    assert result.schedule_seconds == result.schedule_calls
    assert result.release_seconds == result.release_calls == 5
    assert result.submit_seconds == 5
    assert result.seconds_per_decision == (result.schedule_calls + 5) / 5
    assert next(ticks) == 2 * (result.schedule_calls + 5 + 5), "the clock is read nowhere else"


def test_percentile_and_lower_bound():
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    inventory = Inventory.from_layout(4)
    assert lower_bound(inventory, [(TaskSpec(ranks=4), 1.0, 0.0), (ONE, 2.0, 0.0)]) == 2.0
    assert lower_bound(inventory, [(ONE, 1.0, 0.0)] * 12) == 3.0
    assert lower_bound(inventory, [SimTask(ONE, 1.0, 5.0), SimTask(ONE, 1.0, 1.0)]) == 5.0


# --- workload generator ----------------------------------------------------------------------

def test_mixed_workload_is_reproducible_by_seed():
    a = mixed_workload(500, wide_fraction=0.2, gpu_fraction=0.5, seed=7)
    assert a == mixed_workload(500, wide_fraction=0.2, gpu_fraction=0.5, seed=7)
    assert a != mixed_workload(500, wide_fraction=0.2, gpu_fraction=0.5, seed=8)
    widths = [t.spec.ranks for t in a]
    assert set(widths) <= {1, 2, 4, 8, 16} and 50 < sum(w > 1 for w in widths) < 150
    assert 150 < sum(t.spec.gpus_per_rank for t in a) < 350
    # generated (seeded) lognormal draws, not measured times: all positive, all distinct
    draws = sorted(t.duration for t in a)
    assert draws[0] > 0 and len(set(draws)) == len(draws)
    assert {t.submit_time for t in a} == {0.0}
    stream = mixed_workload(200, wide_fraction=0.0, gpu_fraction=0.0, seed=1, arrival_rate=10.0)
    times = [t.submit_time for t in stream]
    assert times == sorted(times) and 10 < times[-1] < 40
    assert all(t.spec == ONE for t in stream)
    with pytest.raises(ValueError, match="wide_fraction"):
        mixed_workload(10, wide_fraction=1.5)


def test_mixed_workload_runs_on_a_gpu_cluster():
    inventory = Inventory.from_layout(64, ranks_per_node=4, gpus_per_rank=1)
    tasks = mixed_workload(2000, wide_fraction=0.05, gpu_fraction=0.5, seed=3)
    result = simulate(inventory, tasks, prefetch=1)
    check_schedule(inventory, tasks, result)
    assert result.placements == 2000 and 0.5 < result.utilization <= 1.0
    assert result.decisions_per_second > 0


# --- invariants over random workloads ---------------------------------------------------------

def check_schedule(inventory, tasks, result, eps=1e-9):
    tasks = [t if isinstance(t, SimTask) else SimTask(*t) for t in tasks]
    assert [r.task_id for r in result.records] == list(range(len(tasks))), "every task is recorded once"
    per_rank = defaultdict(list)
    for record, task in zip(result.records, tasks):
        spec = task.spec
        assert record.spec is spec and record.submit == task.submit_time
        assert record.submit <= record.placed
        assert record.start >= record.placed + result.dispatch_latency - eps
        assert record.end == pytest.approx(record.start + task.duration)
        assert len(set(record.ranks)) == len(record.ranks) == spec.ranks
        nodes = set()
        for rank in record.ranks:
            info = inventory.rank(rank)
            nodes.add(info.node)
            assert len(info.gpus) >= spec.gpus_per_rank
            assert info.qpu == spec.qpu
            per_rank[rank].append(record)
        if spec.same_node:
            assert len(nodes) == 1
    busy = 0.0
    for rank, records in per_rank.items():
        info = inventory.rank(rank)
        slots = inventory.qpus[info.qpu].concurrency if info.qpu else 1
        instants = [r for r in records if r.end == r.start]
        records = [r for r in records if r.end > r.start]
        for zero in instants:      # a zero-length task may not fall inside another task's wide run
            inside = [r for r in records if r.start < zero.start < r.end]
            assert not (inside and (zero.spec.ranks > 1 or any(r.spec.ranks > 1 for r in inside)))
        # sweep: ends before starts at equal times
        points = sorted([(r.end, 0, r) for r in records] + [(r.start, 1, r) for r in records], key=lambda p: p[:2])
        active = []
        since = None
        for time, is_start, record in points:
            if is_start:
                if record.spec.ranks > 1 or any(a.spec.ranks > 1 for a in active):
                    assert not active, f"rank {rank}: multi-rank task {record.task_id} shares the rank with {active}"
                if not active:
                    since = time
                active.append(record)
                assert len(active) <= slots, f"rank {rank} runs {len(active)} tasks at t={time}"
            else:
                active.remove(record)
                if not active:
                    busy += time - since
    assert result.busy_rank_seconds == pytest.approx(busy)
    assert result.utilization <= 1.0 + eps
    assert result.makespan >= result.lower_bound - eps
    first = min((t.submit_time for t in tasks), default=0.0)
    assert result.makespan == pytest.approx(max((r.end - first for r in result.records), default=0.0))


specs = st.builds(
    TaskSpec,
    ranks=st.integers(1, 5),
    gpus_per_rank=st.sampled_from([0, 0, 1]),
    priority=st.integers(0, 2),
    same_node=st.booleans(),
    timeout=st.sampled_from([None, None, None, 10.0]),
)


@st.composite
def workloads(draw):
    workers = draw(st.integers(2, 10))
    per_node = draw(st.integers(1, 5))
    gpus = draw(st.sampled_from([0, 1]))
    inventory = Inventory.from_layout(workers, ranks_per_node=per_node, gpus_per_rank=gpus)
    if draw(st.booleans()) and workers > 2:
        inventory = inventory.with_qpu(QpuSpec("q", "m:f", ranks=draw(st.integers(1, 2)),
                                               concurrency=draw(st.integers(1, 3))))
    task_specs = st.one_of(specs, st.just(TaskSpec(qpu="q"))) if inventory.qpus else specs
    raw = draw(st.lists(st.tuples(task_specs, st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.25]),
                                  st.sampled_from([0.0, 0.0, 0.5, 1.0, 4.0])), min_size=1, max_size=30))
    tasks = []
    for spec, duration, submit in raw:
        try:
            inventory.check(spec)
        except ValueError:
            continue
        tasks.append((spec, duration, submit))
    prefetch = draw(st.integers(0, 2))
    latency = draw(st.sampled_from([0.0, 0.0, 0.25, 1.0]))
    return inventory, tasks, prefetch, latency


@settings(max_examples=200, deadline=None)
@given(workloads())
def test_simulated_schedule_keeps_every_rule(workload):
    inventory, tasks, prefetch, latency = workload
    result = simulate(inventory, tasks, prefetch=prefetch, dispatch_latency=latency)
    check_schedule(inventory, tasks, result)
    assert result.placements == len(tasks)


@settings(max_examples=60, deadline=None)
@given(workers=st.integers(1, 8), n=st.integers(1, 40), prefetch=st.integers(1, 3),
       latency=st.sampled_from([0.1, 0.5, 1.0]))
def test_prefetch_never_hurts_equal_tasks_and_helps_with_latency(workers, n, prefetch, latency):
    # unit tasks, latency <= prefetch x duration: the next assignment always arrives in time
    inventory = Inventory.from_layout(workers)
    rounds = math.ceil(n / workers)
    without = simulate(inventory, unit_tasks(n), prefetch=0, dispatch_latency=latency).makespan
    with_prefetch = simulate(inventory, unit_tasks(n), prefetch=prefetch, dispatch_latency=latency).makespan
    assert without == pytest.approx(rounds * (1 + latency))
    assert with_prefetch == pytest.approx(rounds + latency)


def test_prefetch_horizon_removes_head_of_line_blocking_of_uneven_tasks():
    # the same workload as above: with gating (oracle predictions) nothing waits behind the 4 s task
    tasks = [(ONE, 4.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0), (ONE, 1.0, 0.0)]
    result = simulate(Inventory.from_layout(2), tasks, prefetch=1, horizon=0.05)
    assert result.makespan == 4.0
    assert all(r.ranks == (2,) for r in result.records[1:])


def test_prefetch_horizon_keeps_prefetch_for_short_tasks():
    # 10 ms tasks with a 1 ms round trip: gating must not give up the hidden round trip
    tasks = [(ONE, 0.01, 0.0)] * 100
    inventory = Inventory.from_layout(2)
    ungated = simulate(inventory, tasks, prefetch=1, dispatch_latency=0.001).makespan
    gated = simulate(inventory, tasks, prefetch=1, dispatch_latency=0.001, horizon=0.05).makespan
    without = simulate(inventory, tasks, prefetch=0, dispatch_latency=0.001).makespan
    assert gated == ungated < without


def test_prefetch_horizon_with_unknown_predictions_falls_back_to_no_prefetch():
    tasks = [(ONE, 0.01, 0.0)] * 20
    inventory = Inventory.from_layout(2)
    unknown = simulate(inventory, tasks, prefetch=1, dispatch_latency=0.001, horizon=0.05, predict=lambda t: None)
    assert unknown.makespan == simulate(inventory, tasks, prefetch=0, dispatch_latency=0.001).makespan


# --- the master as a single server (MasterModel), and hierarchical masters ----------------
# (seconds here are simulated costs given to the model, not measured times)

def test_a_free_master_model_changes_nothing():
    inventory = Inventory.from_layout(16, ranks_per_node=4, gpus_per_rank=1)
    tasks = mixed_workload(300, wide_fraction=0.1, gpu_fraction=0.5, seed=5)
    for prefetch, latency in ((0, 0.0), (1, 0.01)):
        plain = simulate(inventory, tasks, prefetch=prefetch, dispatch_latency=latency)
        free = simulate(inventory, tasks, prefetch=prefetch, dispatch_latency=latency, master=MasterModel())
        assert free.records == plain.records and free.makespan == plain.makespan


def test_an_expensive_master_bounds_the_makespan():
    n, cost = 200, MasterModel(place=0.01, result=0.02)
    result = simulate(Inventory.from_layout(4), unit_tasks(n, duration=0.001), master=cost)
    # placements leave one after another; every result is handled once, one at a time
    assert result.makespan >= n * cost.place
    assert result.results_seen >= n * cost.per_task - 1e-9
    (master,) = result.masters
    assert master["busy_seconds"] == pytest.approx(n * cost.per_task)
    assert result.utilization < 0.05 < simulate(Inventory.from_layout(4), unit_tasks(n, duration=0.001)).utilization


@pytest.mark.parametrize("prefetch, spans_expected", [
    (0, [(0.25, 1.25, (1,)), (2.0, 3.0, (1,))]),   # the second task waits for the result to be handled
    (1, [(0.25, 1.25, (1,)), (1.25, 2.25, (1,))]),  # prefetched: the worker starts it at once
])
def test_results_wait_for_the_master(prefetch, spans_expected):
    result = simulate(Inventory.from_layout(1), unit_tasks(2), prefetch=prefetch,
                      master=MasterModel(place=0.25, result=0.5))
    assert spans(result) == spans_expected
    assert result.results_seen == spans_expected[-1][1] + 0.5
    assert result.masters[0]["busy_seconds"] == pytest.approx(2 * 0.75)


def test_master_model_refuses_bad_costs():
    with pytest.raises(ValueError, match=r"MasterModel.place must be a finite number of seconds >= 0, got -1"):
        MasterModel(place=-1)


def test_hierarchical_masters_split_the_work_and_the_master_cost():
    inventory = Inventory.from_layout(8)
    n = 400
    top, sub = MasterModel(place=0.001, result=0.001), MasterModel(place=0.004, result=0.004)
    # 8 ranks want 400 tasks/s; one master of the sub-masters' cost places 125/s, two 250/s
    tasks = unit_tasks(n, duration=0.02)
    result = simulate_hierarchical(inventory, tasks, 2, top=top, sub=sub)
    check_schedule(inventory, tasks, result)
    head, *subs = result.masters
    assert head["busy_seconds"] == pytest.approx(n * top.per_task)
    assert sum(s["busy_seconds"] for s in subs) == pytest.approx(n * sub.per_task)
    assert {r.ranks[0] <= 4 for r in result.records} == {True, False}  # both groups ran tasks
    assert result.results_seen >= n * top.per_task
    single = simulate(inventory, tasks, master=sub)
    assert single.makespan >= n * sub.place and result.makespan < 0.6 * single.makespan


def test_a_top_that_takes_a_bounded_number_of_submissions_a_pass_hands_out_before_taking_them_all():
    inventory = Inventory.from_layout(4)
    tasks = unit_tasks(1000, duration=0.001)  # all submitted at 0: 1 s of the top's submit time
    sub = MasterModel()
    first = {}
    for limit in (None, 10):
        top = MasterModel(submit=0.001, submissions_per_pass=limit)
        result = simulate_hierarchical(inventory, tasks, 2, top=top, sub=sub, prefetch=0)
        check_schedule(inventory, tasks, result)
        first[limit] = min(r.placed for r in result.records)
    assert first[None] >= 1.0  # the first hand-out waited for every submission
    assert first[10] <= 0.011  # after the first ten
    with pytest.raises(ValueError, match="submissions_per_pass must be None or an integer >= 1, got 0"):
        MasterModel(submissions_per_pass=0)


def test_hierarchical_with_free_masters_keeps_ranks_busy():
    result = simulate_hierarchical(Inventory.from_layout(6), unit_tasks(60), [[1, 2, 3], [4, 5, 6]],
                                   top=MasterModel(), sub=MasterModel())
    assert result.makespan == 10.0 and result.utilization == pytest.approx(1.0)


def test_hierarchical_refuses_bad_groups_and_tasks_wider_than_a_group():
    inventory = Inventory.from_layout(4)
    free = MasterModel()
    with pytest.raises(ValueError, match="each rank in exactly one group"):
        simulate_hierarchical(inventory, unit_tasks(1), [[1, 2], [2, 3, 4]], top=free, sub=free)
    with pytest.raises(ResourceError, match=r"task 1: no group can run it"):
        simulate_hierarchical(inventory, [(ONE, 1.0, 0.0), (TaskSpec(ranks=3), 1.0, 0.0)], 2, top=free, sub=free)


@settings(max_examples=40, deadline=None)
@given(workloads(), st.sampled_from([0.0, 0.05, 0.3]), st.sampled_from([0.0, 0.1, 0.5]), st.integers(1, 2))
def test_master_models_keep_every_rule(workload, place, result_cost, groups):
    inventory, tasks, prefetch, latency = workload
    model = MasterModel(place=place, result=result_cost, submit=place / 2)
    result = simulate(inventory, tasks, prefetch=prefetch, dispatch_latency=latency, master=model)
    check_schedule(inventory, tasks, result)
    assert result.placements == len(tasks)
    narrow = [t for t in tasks if t[0].ranks == 1 and t[0].qpu is None]
    if len(inventory.ranks) >= 2 * groups and narrow:
        compute = Inventory(inventory.compute_ranks)
        narrow = [t for t in narrow if t[0].gpus_per_rank == 0 or all(r.gpus for r in compute.ranks)]
        if narrow:
            hier = simulate_hierarchical(compute, narrow, groups, top=model, sub=model, prefetch=prefetch,
                                         dispatch_latency=latency, group_latency=latency)
            check_schedule(compute, narrow, hier)
