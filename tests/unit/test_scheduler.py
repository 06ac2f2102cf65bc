"""Scheduler: examples of each rule, then property tests over random workloads (hypothesis)."""
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotq_mpi.core.inventory import Inventory, QpuSpec, RankInfo
from pilotq_mpi.core.scheduler import Scheduler
from pilotq_mpi.core.specs import TaskSpec


def layout(workers=8, per_node=4, gpus=0, prefetch=0):
    return Scheduler(Inventory.from_layout(workers, ranks_per_node=per_node, gpus_per_rank=gpus), prefetch=prefetch)


def placed(scheduler):
    return {p.task_id: p.ranks for p in scheduler.schedule()}


def test_priority_then_submission_order():
    s = layout(workers=2)
    for task, priority in [(1, 0), (2, 5), (3, 0), (4, 5)]:
        s.submit(task, TaskSpec(priority=priority))
    assert placed(s) == {2: (1,), 4: (2,)}
    s.release(2, 1)
    assert placed(s) == {1: (1,)}


def test_best_fit_node_packing():
    s = layout(workers=8, per_node=4)
    s.submit(1, TaskSpec(ranks=3))       # node0 (first of two equal nodes)
    assert placed(s) == {1: (1, 2, 3)}
    s.submit(2, TaskSpec(ranks=1))
    s.submit(3, TaskSpec(ranks=2))
    got = placed(s)
    assert got[2] == (4,)                # idle, least loaded, lowest rank
    assert got[3] == (5, 6)              # one node, not split across nodes
    s.submit(4, TaskSpec(ranks=2))
    assert placed(s) == {4: (7, 8)}


def test_best_fit_prefers_the_fullest_node_that_fits():
    s = layout(workers=8, per_node=4)
    s.submit(1, TaskSpec(ranks=2))
    assert placed(s) == {1: (1, 2)}
    s.submit(2, TaskSpec(ranks=2))       # node0 has exactly 2 idle left: best fit
    assert placed(s) == {2: (3, 4)}


def test_spans_fewest_nodes_when_no_node_fits():
    s = layout(workers=12, per_node=4)
    s.submit(1, TaskSpec(ranks=1))
    assert placed(s) == {1: (1,)}
    s.submit(2, TaskSpec(ranks=6))       # node1 and node2 are fully idle: 2 nodes, not 3
    ranks = placed(s)[2]
    assert len({(r - 1) // 4 for r in ranks}) == 2 and 1 not in ranks


def test_wide_task_gets_reservation_and_narrow_tasks_backfill_elsewhere():
    s = layout(workers=6, per_node=6)
    for task in range(1, 7):
        s.submit(task, TaskSpec())
    assert len(placed(s)) == 6
    s.submit(100, TaskSpec(ranks=4))
    for task in range(7, 20):
        s.submit(task, TaskSpec())
    assert placed(s) == {}
    reserved = set(s.reservation[1])
    assert s.reservation[0] == 100 and len(reserved) == 4
    free_rank = next(r for r in range(1, 7) if r not in reserved)
    s.release(1 + [r for r in range(1, 7)].index(free_rank), free_rank)
    got = placed(s)
    assert got == {7: (free_rank,)}, "a narrow task backfills a rank outside the reservation"
    for rank in sorted(reserved):
        s.release(rank, rank)          # task id == its rank here
        got = placed(s)
        if rank != max(reserved):
            assert got == {}, "reserved ranks stay free for the wide task"
    assert got == {100: tuple(sorted(reserved))}


def test_prefetch_queues_single_rank_tasks_but_never_under_wide_tasks():
    s = layout(workers=2, per_node=2, prefetch=1)
    s.submit(1, TaskSpec(ranks=2))
    for task in range(2, 7):
        s.submit(task, TaskSpec())
    assert placed(s) == {1: (1, 2)}
    s.release(1, 1)
    assert placed(s) == {2: (1,), 3: (1,)}   # rank 1: one running + one prefetched
    assert s.load(1) == 2 and s.load(2) == 1


def test_timeout_tasks_start_on_idle_ranks_only():
    s = layout(workers=1, per_node=1, prefetch=3)
    s.submit(1, TaskSpec())
    s.submit(2, TaskSpec(timeout=5))
    s.submit(3, TaskSpec())
    assert placed(s) == {1: (1,)}, "the timed task may not wait behind task 1; task 3 keeps its turn"


def test_gpu_tasks_on_gpu_ranks_and_cpu_tasks_prefer_cpu_ranks():
    inv = Inventory((RankInfo(1, "n", (0,)), RankInfo(2, "n"), RankInfo(3, "n", (1,)), RankInfo(4, "n")))
    s = Scheduler(inv, prefetch=0)
    s.submit(1, TaskSpec())
    s.submit(2, TaskSpec())
    s.submit(3, TaskSpec(gpus_per_rank=1))
    assert placed(s) == {1: (2,), 2: (4,), 3: (1,)}


def test_qpu_tasks_only_on_pinned_ranks_with_concurrency():
    inv = Inventory.from_layout(3).with_qpu(QpuSpec("fez", "m:f", ranks=1, concurrency=3))
    s = Scheduler(inv, prefetch=0)
    for task in range(1, 6):
        s.submit(task, TaskSpec(qpu="fez"))
    s.submit(9, TaskSpec(ranks=2))
    got = placed(s)
    assert got == {1: (3,), 2: (3,), 3: (3,), 9: (1, 2)}


def test_cancel_queued():
    s = layout(workers=1, per_node=1)
    s.submit(1, TaskSpec())
    s.submit(2, TaskSpec())
    assert s.cancel(2) and not s.cancel(2) and not s.cancel(77)
    assert placed(s) == {1: (1,)}
    s.release(1, 1)
    assert placed(s) == {} and s.queued == 0


# --- properties -------------------------------------------------------------------------------

specs = st.builds(
    TaskSpec,
    ranks=st.integers(1, 6),
    gpus_per_rank=st.sampled_from([0, 0, 1]),
    priority=st.integers(0, 2),
    same_node=st.booleans(),
)


@st.composite
def workloads(draw):
    workers = draw(st.integers(2, 12))
    per_node = draw(st.integers(1, 6))
    gpus = draw(st.sampled_from([0, 1]))
    prefetch = draw(st.integers(0, 2))
    inventory = Inventory.from_layout(workers, ranks_per_node=per_node, gpus_per_rank=gpus)
    qpu = draw(st.booleans()) and workers > 2
    if qpu:
        inventory = inventory.with_qpu(QpuSpec("q", "m:f", ranks=1, concurrency=2))
    tasks = draw(st.lists(st.one_of(specs, st.just(TaskSpec(qpu="q")) if qpu else specs), min_size=1, max_size=40))
    order = draw(st.randoms(use_true_random=False))
    return inventory, prefetch, tasks, order


def feasible(inventory, spec):
    try:
        inventory.check(spec)
        return True
    except ValueError:
        return False


def check_invariants(inventory, scheduler, running, specs_by_id):
    per_rank = defaultdict(list)
    for task, ranks in running.items():
        assert len(set(ranks)) == len(ranks) == specs_by_id[task].ranks
        spec = specs_by_id[task]
        nodes = {inventory.rank(r).node for r in ranks}
        if spec.same_node:
            assert len(nodes) == 1
        for rank in ranks:
            info = inventory.rank(rank)
            per_rank[rank].append(task)
            assert len(info.gpus) >= spec.gpus_per_rank
            assert info.qpu == spec.qpu, "QPU tasks only on their QPU's ranks; others never there"
    for rank, tasks in per_rank.items():
        widths = [specs_by_id[t].ranks for t in tasks]
        if any(w > 1 for w in widths):
            assert len(tasks) == 1, f"rank {rank} shares a multi-rank task with {tasks}"
        info = inventory.rank(rank)
        capacity = (inventory.qpus[info.qpu].concurrency if info.qpu else 1) + scheduler.prefetch
        assert len(tasks) <= capacity
        assert scheduler.load(rank) == len(tasks)


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_never_double_books_and_places_every_feasible_task(workload):
    inventory, prefetch, tasks, rng = workload
    scheduler = Scheduler(inventory, prefetch=prefetch)
    specs_by_id, running, done = {}, {}, set()
    for task, spec in enumerate(tasks):
        if feasible(inventory, spec):
            specs_by_id[task] = spec
            scheduler.submit(task, spec)
    for _ in range(10 * len(tasks) + 10):
        for p in scheduler.schedule():
            for rank in p.ranks:
                assert p.task_id not in running
                if specs_by_id[p.task_id].ranks > 1:
                    assert all(r not in ranks for ranks in running.values() for r in p.ranks), \
                        "a wide task got a busy rank"
            running[p.task_id] = p.ranks
        check_invariants(inventory, scheduler, running, specs_by_id)
        if not running:
            break
        finished = rng.choice(sorted(running))
        for rank in running.pop(finished):
            scheduler.release(finished, rank)
        done.add(finished)
    assert done == set(specs_by_id), "every feasible task ran"
    assert scheduler.queued == 0 and scheduler.busy_ranks == 0


@settings(max_examples=60, deadline=None)
@given(workers=st.integers(4, 12), per_node=st.integers(2, 12), width_fraction=st.floats(0.3, 1.0),
       prefetch=st.integers(0, 2), seed=st.integers(0, 10**6))
def test_wide_task_is_not_starved_by_a_stream_of_narrow_tasks(workers, per_node, width_fraction, prefetch, seed):
    import random

    rng = random.Random(seed)
    scheduler = Scheduler(Inventory.from_layout(workers, ranks_per_node=per_node), prefetch=prefetch)
    width = max(2, int(workers * width_fraction))
    next_id = 0
    running = {}

    def narrow():
        nonlocal next_id
        next_id += 1
        scheduler.submit(next_id, TaskSpec())

    for _ in range(2 * workers):
        narrow()
    running.update({p.task_id: p.ranks for p in scheduler.schedule()})
    scheduler.submit(0, TaskSpec(ranks=width))
    for _ in range(3):
        narrow()
    started = False
    for _ in range(50 * workers):
        reservation = scheduler.reservation
        for p in scheduler.schedule():
            running[p.task_id] = p.ranks
            started |= p.task_id == 0
            if reservation and p.task_id != 0:
                assert not set(p.ranks) & set(reservation[1]), "a narrow task took a reserved rank"
        if started:
            break
        finished = rng.choice([t for t in running if t != 0])
        for rank in running.pop(finished):
            scheduler.release(finished, rank)
        narrow()                       # the stream never stops
    assert started, "the wide task never started"


# --- prefetch gating: queue behind a busy rank only when its work is predicted short --------------

def gated(workers=2, prefetch=1, horizon=0.05, predictions=None, qpu=None):
    predictions = {} if predictions is None else predictions
    inventory = Inventory.from_layout(workers)
    if qpu:
        inventory = inventory.with_qpu(qpu)
    return Scheduler(inventory, prefetch=prefetch, horizon=horizon, predict=predictions.get), predictions


def test_short_task_never_queued_behind_a_long_running_one():
    # the reproducer on 2 ranks: a long task, then short ones; none may wait behind the long one
    s, predict = gated(workers=2)
    predict[1] = None                       # the long task's function was never seen: unknown = long
    s.submit(1, TaskSpec())
    assert {p.task_id: p.ranks for p in s.schedule(now=0.0)} == {1: (1,)}
    for task in range(2, 6):
        predict[task] = 0.001
        s.submit(task, TaskSpec())
    got = {p.task_id: p.ranks for p in s.schedule(now=0.2)}
    assert got == {2: (2,), 3: (2,)}, "short tasks go to rank 2 (one runs, one prefetched behind a short one)"
    assert s.tasks_on(1) == (1,) and s.tasks_on(2) == (2, 3)
    assert s.waiting(3, 2) and not s.waiting(2, 2)
    s.release(2, 2, now=0.201)
    assert {p.task_id: p.ranks for p in s.schedule(now=0.201)} == {4: (2,)}
    assert s.tasks_on(1) == (1,), "nothing ever queued behind task 1"


def test_old_rule_without_horizon_queues_behind_the_long_task():
    # horizon=None is the previous behaviour: the lowest busy rank takes the next task, long or not
    s, predict = gated(workers=2, horizon=None)
    s.submit(1, TaskSpec())
    s.submit(2, TaskSpec())
    s.schedule()
    s.submit(3, TaskSpec())
    assert {p.task_id: p.ranks for p in s.schedule()} == {3: (1,)}


def test_no_prefetch_behind_work_longer_than_the_horizon():
    s, predict = gated(workers=1, prefetch=2, horizon=0.05)
    predict.update({1: 0.03, 2: 0.03, 3: 0.03})
    for task in (1, 2, 3):
        s.submit(task, TaskSpec())
    # task 2 may wait behind task 1 (0.03 s ahead); task 3 may not (0.06 s ahead)
    assert {p.task_id for p in s.schedule(now=0.0)} == {1, 2}
    s.release(1, 1, now=0.03)
    assert {p.task_id for p in s.schedule(now=0.03)} == {3}


def test_no_prefetch_behind_a_task_past_its_prediction():
    s, predict = gated(workers=1, horizon=0.05)
    predict.update({1: 0.01, 2: 0.01})
    s.submit(1, TaskSpec())
    assert [p.task_id for p in s.schedule(now=0.0)] == [1]
    s.submit(2, TaskSpec())
    assert s.schedule(now=0.5) == [], "task 1 was predicted to take 0.01 s and still runs at 0.5 s"
    s.release(1, 1, now=0.6)
    assert [p.task_id for p in s.schedule(now=0.6)] == [2]


def test_a_task_that_heads_the_rank_gets_its_clock_when_its_predecessor_ends():
    s, predict = gated(workers=1, horizon=0.05)
    predict.update({1: 0.01, 2: 0.01, 3: 0.01})
    for task in (1, 2):
        s.submit(task, TaskSpec())
    assert [p.task_id for p in s.schedule(now=0.0)] == [1, 2]
    s.release(1, 1, now=1.0)                # task 2 starts at 1.0: due 1.01
    s.submit(3, TaskSpec())
    assert [p.task_id for p in s.schedule(now=1.005)] == [3]


def test_revoked_waiting_task_leaves_the_order_of_its_rank():
    s, predict = gated(workers=1, horizon=None)
    for task in (1, 2):
        s.submit(task, TaskSpec())
    s.schedule()
    s.release(2, 1)                         # dropped unstarted by the worker: not the head
    assert s.tasks_on(1) == (1,) and s.load(1) == 1


def test_qpu_rank_runs_its_concurrency_then_gates_the_waiting_slot():
    s, predict = gated(workers=2, horizon=0.05, qpu=QpuSpec("q", "m:f", ranks=1, concurrency=2))
    for task in (1, 2, 3):
        predict[task] = None
        s.submit(task, TaskSpec(qpu="q"))
    assert [p.task_id for p in s.schedule(now=0.0)] == [1, 2], "two run at once; the third waits here"
    s.release(1, 2, now=1.0)
    assert [p.task_id for p in s.schedule(now=1.0)] == [3]


def test_horizon_must_be_non_negative_and_needs_a_clock():
    import pytest

    with pytest.raises(ValueError, match="horizon"):
        Scheduler(Inventory.from_layout(1), horizon=-1)
    s, _ = gated(workers=1)
    s.submit(1, TaskSpec())
    with pytest.raises(ValueError, match="now="):
        s.schedule()


@settings(max_examples=100, deadline=None)
@given(workers=st.integers(1, 6), prefetch=st.integers(1, 3), horizon=st.sampled_from([0.0, 0.05, 0.5]),
       seed=st.integers(0, 10**6))
def test_gated_prefetch_never_queues_behind_unknown_long_or_overdue_work(workers, prefetch, horizon, seed):
    """Replay random completions; every task that ends up waiting on a rank had, when placed,
    only work ahead of it whose predicted durations summed to <= horizon and none overdue."""
    import random

    rng = random.Random(seed)
    predictions = {}
    s = Scheduler(Inventory.from_layout(workers), prefetch=prefetch, horizon=horizon, predict=predictions.get)
    started = {}                            # task -> (rank, start time) for tasks heading their rank
    now = 0.0
    for task in range(40):
        predictions[task] = rng.choice([None, 0.0, 0.01, 0.04, 1.0])
        s.submit(task, TaskSpec())
    for _ in range(200):
        for p in s.schedule(now=now):
            rank = p.ranks[0]
            on_rank = s.tasks_on(rank)
            ahead = on_rank[:on_rank.index(p.task_id)]
            if ahead:  # the rule under test, on the fake predictions above (no clock is read)
                predicted_ahead = [predictions[t] for t in ahead]
                assert None not in predicted_ahead and sum(predicted_ahead) <= horizon + 1e-12
                _, since = started[ahead[0]]
                assert now <= since + predictions[ahead[0]] + 1e-12, "queued behind an overdue task"
            else:
                started[p.task_id] = (rank, now)
        busy = [r for r in range(1, workers + 1) if s.tasks_on(r)]
        if not busy:
            break
        now += rng.choice([0.0, 0.005, 0.02, 0.3])
        rank = rng.choice(busy)
        head = s.tasks_on(rank)[0]
        s.release(head, rank, now=now)
        if s.tasks_on(rank):
            started[s.tasks_on(rank)[0]] = (rank, now)
    assert s.queued == 0 and s.busy_ranks == 0


def test_slack_keeps_tiny_tasks_prefetchable_when_the_clock_runs_late():
    s = Scheduler(Inventory.from_layout(1), prefetch=1, horizon=0.05, predict=lambda t: 1e-5, slack=0.005)
    for task in (1, 2, 3):
        s.submit(task, TaskSpec())
    assert [p.task_id for p in s.schedule(now=0.0)] == [1, 2]
    s.release(1, 1, now=0.001)
    # task 2 (predicted 10 us) heads the rank since 0.001; 0.003 is within the slack: not overdue
    assert [p.task_id for p in s.schedule(now=0.003)] == [3]


def test_release_says_which_waiting_task_starts():
    s, _ = gated(workers=1, horizon=None)
    for task in (1, 2, 3):
        s.submit(task, TaskSpec())
    s.schedule()
    assert s.tasks_on(1) == (1, 2)
    assert s.release(2, 1) is None, "a waiting task dropped unstarted: the head runs on"
    assert [p.task_id for p in s.schedule()] == [3]
    assert s.release(1, 1) == 3
    assert s.release(3, 1) is None


# --- classes that cannot place are skipped until an event wakes them: the same as trying all ----------

class TriesEveryClass(Scheduler):
    """The reference for the wake-ups: every queued class is looked at in every schedule()."""

    def schedule(self, now=None):
        self._awake.update(self._queues)
        return super().schedule(now)


@settings(max_examples=60, deadline=None)
@given(workload=workloads(), horizon=st.sampled_from([None, None, 0.05, 1.0]), seed=st.integers(0, 10**6))
def test_skipping_blocked_classes_places_exactly_as_trying_every_class(workload, horizon, seed):
    import random

    inventory, prefetch, tasks, _ = workload
    tasks = [spec for spec in tasks if feasible(inventory, spec)]
    runs = []
    for cls in (Scheduler, TriesEveryClass):
        rng = random.Random(seed)
        predictions = {}
        s = cls(inventory, prefetch=prefetch, horizon=horizon, predict=predictions.get)
        log, running, now, queued = [], {}, 0.0, []
        pending = list(enumerate(tasks))
        for _ in range(12 * len(tasks) + 10):
            for _ in range(rng.choice([0, 1, 3])):
                if pending:
                    task, spec = pending.pop(0)
                    if rng.random() < 0.2:
                        spec = TaskSpec(ranks=spec.ranks, gpus_per_rank=spec.gpus_per_rank, qpu=spec.qpu,
                                        priority=spec.priority, same_node=spec.same_node, timeout=1.0)
                    predictions[task] = rng.choice([None, 0.01, 0.5])
                    s.submit(task, spec, front=rng.random() < 0.1)
                    queued.append(task)
            if queued and rng.random() < 0.05:
                victim = queued.pop(rng.randrange(len(queued)))
                s.cancel(victim)
            placed = s.schedule(now)
            log.append((now, placed, s.reservation))
            for p in placed:
                running[p.task_id] = p.ranks
                queued.remove(p.task_id)
            if not running and not pending and not queued:
                break
            now += rng.choice([0.0, 0.01, 0.2])
            if running:
                task = rng.choice(sorted(running))
                for rank in running.pop(task):
                    log.append(("release", task, rank, s.release(task, rank, now)))
        runs.append(log)
    assert runs[0] == runs[1]
