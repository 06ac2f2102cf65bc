"""The scheduler places exactly as it did before its placement path was restructured (issue 13).

``golden/scheduler_placements.json`` holds, per seeded scenario, a sha256 of the full placement
sequence (and of a fuller trace: placements, the reservation after each ``schedule()``, what
each ``release()`` returned) recorded with the scheduler as of commit d039cf7 (before the
restructuring; the fixture names the scheduler's last commit when it was written), plus the first
placements for a readable diff. Scenarios: the discrete-event simulator on mixed workloads
(widths 1-8 and 16, GPU/CPU ranks, priorities, ``same_node``, timeouts, QPU ranks, prefetch
0/1/2, dispatch latency, a prefetch horizon with oracle and with noisy/unknown predictions),
and a direct driver that also retires ranks, joins and removes allocations, cancels, and
requeues at the front. A change of policy must regenerate the fixture on purpose:

    python tests/unit/test_scheduler_golden.py          # rewrites the fixture from the current scheduler
    PYTHONPATH=/tmp/old python tests/unit/test_scheduler_golden.py   # ... from a worktree of an older commit
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from pilotq_mpi.core.inventory import Inventory, QpuSpec, RankInfo
from pilotq_mpi.core.scheduler import Scheduler
from pilotq_mpi.core.simulation import SimTask, mixed_workload, simulate
from pilotq_mpi.core.specs import TaskSpec

FIXTURE = Path(__file__).parent / "golden" / "scheduler_placements.json"
FIRST = 25


class Recorder:
    """Collects what a scheduler decided, in order; two digests of it."""

    def __init__(self):
        self.placements: list[str] = []
        self.trace: list[str] = []
        self.calls = 0

    def schedule(self, scheduler: Scheduler, now, result) -> None:
        self.calls += 1
        for p in result:
            line = f"{self.calls} {now!r} {p.task_id} {','.join(map(str, p.ranks))} {int(p.waits)}"
            self.placements.append(line)
            self.trace.append("P " + line)
        self.trace.append(f"R {scheduler.reservation!r} q={scheduler.queued}")

    def release(self, task, rank, now, started) -> None:
        self.trace.append(f"L {task} {rank} {now!r} -> {started!r}")

    def summary(self) -> dict:
        digest = hashlib.sha256("\n".join(self.placements).encode()).hexdigest()
        trace = hashlib.sha256("\n".join(self.trace).encode()).hexdigest()
        return {"placements": len(self.placements), "schedule_calls": self.calls, "sha256": digest,
                "trace_sha256": trace, "first": self.placements[:FIRST]}


def recording(recorder: Recorder):
    """A scheduler factory for ``simulate`` whose schedulers report to ``recorder``."""

    class Recording(Scheduler):
        def schedule(self, now=None):
            result = super().schedule(now)
            recorder.schedule(self, now, result)
            return result

        def release(self, task_id, rank, now=None):
            started = super().release(task_id, rank, now)
            recorder.release(task_id, rank, now, started)
            return started

    return Recording


# --- inventories and workloads ----------------------------------------------------------------

def mixed_inventory(nodes: int, per_node: int, qpu: QpuSpec | None = None) -> Inventory:
    """Nodes alternate GPU ranks (one GPU each) and CPU-only ranks; optionally a QPU pinned."""
    infos = []
    for node in range(nodes):
        for local in range(per_node):
            rank = 1 + node * per_node + local
            infos.append(RankInfo(rank, f"node{node}", (local,) if node % 2 == 0 else ()))
    inventory = Inventory(tuple(infos))
    return inventory.with_qpu(qpu) if qpu else inventory


def random_specs(rng: random.Random, n: int, inventory: Inventory, qpu: str | None = None) -> list[TaskSpec]:
    """Specs of every kind the scheduler distinguishes (only those the inventory can run)."""
    out = []
    while len(out) < n:
        roll = rng.random()
        if qpu and roll < 0.1:
            spec = TaskSpec(qpu=qpu, priority=rng.choice([0, 0, 1]))
        elif roll < 0.25:
            spec = TaskSpec(ranks=rng.choice([2, 3, 4, 8, 16]), gpus_per_rank=rng.choice([0, 0, 1]),
                            same_node=rng.random() < 0.3, priority=rng.choice([0, 0, 0, 1, 2]))
        else:
            spec = TaskSpec(gpus_per_rank=rng.choice([0, 1]), priority=rng.choice([0, 0, 0, 1, 2]),
                            timeout=10.0 if rng.random() < 0.1 else None)
        try:
            inventory.check(spec)
        except ValueError:
            continue
        out.append(spec)
    return out


def random_tasks(seed: int, n: int, inventory: Inventory, qpu: str | None = None,
                 rate: float | None = None) -> list[SimTask]:
    rng = random.Random(seed)
    now = 0.0
    tasks = []
    for spec in random_specs(rng, n, inventory, qpu):
        duration = rng.choice([0.0, 0.01, 0.02]) if rng.random() < 0.3 else rng.lognormvariate(0.0, 1.2)
        if rate is not None:
            now += rng.expovariate(rate)
        tasks.append(SimTask(spec, duration, now))
    return tasks


def simulated(inventory, tasks, **options) -> dict:
    recorder = Recorder()
    result = simulate(inventory, tasks, timer=lambda: 0.0, scheduler_factory=recording(recorder), **options)
    assert result.placements == len(tasks)
    return recorder.summary()


def scenario_mixed_gpu_prefetch1() -> dict:
    inventory = Inventory.from_layout(64, ranks_per_node=4, gpus_per_rank=1)
    return simulated(inventory, mixed_workload(3000, seed=11), prefetch=1)


def scenario_mixed_prefetch0_latency_arrivals() -> dict:
    inventory = mixed_inventory(12, 4)
    tasks = mixed_workload(2500, wide_fraction=0.08, gpu_fraction=0.3, seed=12, arrival_rate=40.0)
    tasks = [t for t in tasks if t.spec.gpus_per_rank == 0 or t.spec.ranks <= 16]
    return simulated(inventory, tasks, prefetch=0, dispatch_latency=0.05)


def scenario_kinds_prefetch2_qpu() -> dict:
    inventory = mixed_inventory(8, 6, QpuSpec("q", "m:f", ranks=2, concurrency=3))
    return simulated(inventory, random_tasks(13, 2500, inventory, "q", rate=30.0), prefetch=2, dispatch_latency=0.01)


def scenario_horizon_oracle() -> dict:
    inventory = mixed_inventory(8, 6)
    return simulated(inventory, random_tasks(14, 2500, inventory), prefetch=1, horizon=0.5, dispatch_latency=0.002)


def scenario_horizon_noisy_predictions_qpu() -> dict:
    inventory = mixed_inventory(6, 4, QpuSpec("q", "m:f", ranks=1, concurrency=2))
    tasks = random_tasks(15, 2000, inventory, "q", rate=25.0)
    rng = random.Random(150)
    guesses = [None if rng.random() < 0.2 else t.duration * rng.uniform(0.5, 2.0) for t in tasks]
    return simulated(inventory, tasks, prefetch=2, horizon=2.0, predict=guesses.__getitem__, dispatch_latency=0.01)


def scenario_round_robin_nodes() -> dict:
    """Ranks dealt to 5 nodes round-robin (a node's ranks are not contiguous; nodes of unequal size)."""
    infos = tuple(RankInfo(rank, f"node{rank % 5}", (0,) if rank % 3 else ()) for rank in range(1, 24))
    inventory = Inventory(infos)
    return simulated(inventory, random_tasks(16, 2000, inventory, rate=20.0), prefetch=1, dispatch_latency=0.01)


def elastic(seed: int, horizon: float | None, prefetch: int) -> dict:
    """Drive the scheduler directly: submissions, front requeues, cancels, releases (also of
    waiting tasks), joins of allocations with a pool, retirement and removal of those ranks."""
    rng = random.Random(seed)
    recorder = Recorder()
    inventory = mixed_inventory(4, 4, QpuSpec("q", "m:f", ranks=1, concurrency=2)).expecting(["gpu"])
    predictions: dict[int, float | None] = {}
    options = {"horizon": horizon, "predict": predictions.get} if horizon is not None else {}
    scheduler = Scheduler(inventory, prefetch=prefetch, **options)
    queued: set[int] = set()
    next_id = 0
    next_rank = 100
    joined: list[tuple[int, ...]] = []
    leaving: list[tuple[int, ...]] = []
    now = 0.0

    def submit(front: bool = False) -> None:
        nonlocal next_id
        spec = random_specs(rng, 1, scheduler.inventory, "q")[0]
        if joined and rng.random() < 0.2:
            spec = TaskSpec(ranks=rng.choice([1, 1, 2, 3]), pool="gpu", priority=rng.choice([0, 1]))
            try:
                scheduler.check(spec)
            except ValueError:
                return
        next_id += 1
        predictions[next_id] = rng.choice([None, 0.01, 0.1, 0.5, 3.0])
        scheduler.submit(next_id, spec, front=front)
        queued.add(next_id)

    for step in range(900):
        now += rng.choice([0.0, 0.001, 0.05, 0.3, 1.0])
        for _ in range(rng.choice([0, 1, 1, 2, 4])):
            submit(front=rng.random() < 0.1)
        if queued and rng.random() < 0.05:
            victim = rng.choice(sorted(queued))
            assert scheduler.cancel(victim)
            queued.discard(victim)
        if rng.random() < 0.02 and len(joined) + len(leaving) < 3:
            count = rng.choice([2, 3, 4])
            infos = tuple(RankInfo(next_rank + i, f"join{next_rank}", (0,) if i % 2 else (), None, None,
                                   f"join-{next_rank}", "gpu") for i in range(count))
            next_rank += count
            joined.append(tuple(info.rank for info in infos))
            scheduler.set_inventory(scheduler.inventory.with_ranks(infos))
        if joined and rng.random() < 0.015:
            ranks = joined.pop(rng.randrange(len(joined)))
            scheduler.retire(ranks)
            leaving.append(ranks)
        for ranks in list(leaving):
            if all(scheduler.load(r) == 0 for r in ranks):
                leaving.remove(ranks)
                scheduler.set_inventory(scheduler.inventory.without_ranks(set(ranks)))
        result = scheduler.schedule(now)
        recorder.schedule(scheduler, now, result)
        queued.difference_update(p.task_id for p in result)
        busy = [info.rank for info in scheduler.inventory.ranks if scheduler.tasks_on(info.rank)]
        for rank in rng.sample(busy, min(len(busy), rng.choice([0, 1, 1, 2, 3]))):
            on_rank = scheduler.tasks_on(rank)
            if not on_rank:
                continue                     # a wide task released on an earlier rank of this step
            task = on_rank[-1] if len(on_rank) > scheduler.slots(rank) and rng.random() < 0.15 else on_rank[0]
            holders = scheduler.held_ranks()[task]
            for r in holders:                # a multi-rank task ends on all its ranks
                started = scheduler.release(task, r, now)
                recorder.release(task, r, now, started)
    return recorder.summary()


SCENARIOS = {
    "mixed_gpu_prefetch1": scenario_mixed_gpu_prefetch1,
    "mixed_prefetch0_latency_arrivals": scenario_mixed_prefetch0_latency_arrivals,
    "kinds_prefetch2_qpu": scenario_kinds_prefetch2_qpu,
    "horizon_oracle": scenario_horizon_oracle,
    "horizon_noisy_predictions_qpu": scenario_horizon_noisy_predictions_qpu,
    "round_robin_nodes": scenario_round_robin_nodes,
    "elastic_prefetch1": lambda: elastic(21, None, 1),
    "elastic_prefetch0": lambda: elastic(22, None, 0),
    "elastic_horizon": lambda: elastic(23, 0.2, 2),
}


def golden() -> dict:
    return json.loads(FIXTURE.read_text())["scenarios"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_placements_match_the_recorded_scheduler(name):
    expected = golden()[name]
    got = SCENARIOS[name]()
    assert got["first"] == expected["first"], "the first placements differ (policy changed?)"
    assert (got["placements"], got["schedule_calls"]) == (expected["placements"], expected["schedule_calls"])
    assert got["sha256"] == expected["sha256"], "the placement sequence differs from the recorded one"
    assert got["trace_sha256"] == expected["trace_sha256"], \
        "same placements, but reservations or release() answers differ from the recorded ones"


def test_scenarios_exercise_what_they_claim():
    """The fixture is not trivially small: every scenario places many tasks over many calls."""
    for name, entry in golden().items():
        assert entry["placements"] >= 1000 and entry["schedule_calls"] >= 100, name


def regenerate() -> None:
    import subprocess

    import pilotq_mpi.core.scheduler as module  # the checkout it comes from (PYTHONPATH may point elsewhere)

    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "scheduler.py", "rank_index.py"],
                            capture_output=True, text=True, cwd=Path(module.__file__).parent).stdout.strip()
    data = {"about": "placements of pilotq_mpi.core.scheduler on seeded scenarios (tests/unit/test_scheduler_golden.py)",
            "scheduler_last_commit": commit, "python": sys.version.split()[0],
            "scenarios": {name: build() for name, build in sorted(SCENARIOS.items())}}
    FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
    for name, entry in data["scenarios"].items():
        print(f"{name}: {entry['placements']} placements in {entry['schedule_calls']} calls {entry['sha256'][:12]}")


if __name__ == "__main__":
    regenerate()
