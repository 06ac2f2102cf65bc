"""Elastic pilots on one machine: launches that join a running pilot, leave it, die, or are refused.

Each test starts a pilot of 3 ranks (1 master + 2 workers) with ``--run-dir`` and joining
launches of 3 ranks (``--join``), all under hard timeouts, and kills every process it
started when it ends. Assertions are on behaviour: which ranks ran what, values, exit
codes and messages; never on time.
"""
import json
import os
import signal
import time

import pytest

from elastic_launch import joiner, pilot, signal_ranks, stop_all, wait_until
from jobs import Run

pytestmark = pytest.mark.timeout(240)

MAIN = {1, 2}
"""Worker ranks of the pilot's own allocation (3 ranks: rank 0 is the master)."""


@pytest.fixture
def run_dir(tmp_path):
    yield tmp_path / "run"
    stop_all(tmp_path)


@pytest.fixture
def marks(tmp_path):
    path = tmp_path / "marks"
    path.mkdir()
    return path


def checks(launch) -> dict:
    return Run.checks(launch)


def joined_ranks_started(marks, ranks) -> bool:
    return any(int(name.rsplit("rank", 1)[1]) in ranks for name in os.listdir(marks))


def assert_all_ran_right(main, count, wide=0):
    found = checks(main)
    assert found["values_right"] is True, main.tail()
    assert sorted(map(int, found["ranks"])) == list(range(count)) + [1000 + i for i in range(wide)]
    return {int(i): ranks for i, ranks in found["ranks"].items()}


def test_a_joined_allocation_runs_tasks_and_multi_rank_tasks_stay_within_one_allocation(run_dir, marks):
    main = pilot(run_dir, marks, "2", "60", "0.05", "8")
    extra = joiner(run_dir)
    assert main.wait() == 0, main.tail()
    assert extra.wait() == 0, extra.tail()
    ranks = assert_all_ran_right(main, 60, wide=8)
    found = checks(main)
    assert found["allocations"] == ["main", "join-1"]
    assert "needs 4 ranks of one allocation" in found["too_wide"] and "(main: 2, join-1: 3)" in found["too_wide"]
    assert "pool 'no-such-pool', which this pilot does not have" in found["unknown_pool"]
    used = {rank for r in ranks.values() for rank in r}
    assert used & {3, 4, 5} and used & MAIN, "both allocations ran tasks"
    for i in range(1000, 1008):
        assert set(ranks[i]) <= MAIN or set(ranks[i]) <= {3, 4, 5}, f"task {i} spans allocations: {ranks[i]}"
    assert "allocation join-1 joined: 3 ranks (pilot ranks 3-5)" in main.stderr


def test_two_launches_join_at_once(run_dir, marks):
    main = pilot(run_dir, marks, "3", "80", "0.05", "0")
    first, second = joiner(run_dir), joiner(run_dir)
    assert main.wait() == 0, main.tail()
    assert first.wait() == 0 and second.wait() == 0, first.tail() + second.tail()
    ranks = assert_all_ran_right(main, 80)
    assert checks(main)["allocations"] == ["main", "join-1", "join-2"]
    used = {rank for r in ranks.values() for rank in r}
    assert used & {3, 4, 5} and used & {6, 7, 8}


def test_a_killed_joiner_loses_nothing(run_dir, marks):
    main = pilot(run_dir, marks, "2", "30", "0.5", "2", PILOTQ_LOST_AFTER="3")
    extra = joiner(run_dir)
    wait_until(lambda: joined_ranks_started(marks, {3, 4, 5}), what="a task on the joined ranks")
    os.killpg(extra.proc.pid, signal.SIGKILL)  # the joining job dies: its launcher ...
    signal_ranks(run_dir, signal.SIGKILL, joined_only="--join")  # ... and its ranks
    assert main.wait() == 0, main.tail()
    assert_all_ran_right(main, 30, wide=2)
    assert "allocation join-1 is lost: no heartbeat" in main.stderr
    assert "re-queued" in main.stderr
    assert checks(main)["final_allocations"] == ["main"]


def test_a_drained_joiner_hands_its_running_tasks_back_and_exits_cleanly(run_dir, marks):
    # tasks of 3 s, grace 0.5 s: the joined ranks' running tasks are re-queued, not failed
    main = pilot(run_dir, marks, "2", "12", "3", "0")
    extra = joiner(run_dir, PILOTQ_DRAIN_GRACE="0.5")
    wait_until(lambda: joined_ranks_started(marks, {3, 4, 5}), what="a task on the joined ranks")
    assert signal_ranks(run_dir, signal.SIGUSR1, joined_only="--join") == 3
    assert extra.wait() == 0, extra.tail()
    assert main.wait() == 0, main.tail()
    ranks = assert_all_ran_right(main, 12)
    assert "allocation join-1 is leaving (got SIGUSR1)" in main.stderr
    assert "of allocation join-1 re-queued" in main.stderr
    moved = [i for i in range(12) if len(list(marks.glob(f"start-{i}-rank*"))) > 1]
    assert moved, "some task started on the joined ranks and again elsewhere"
    assert all(set(ranks[i]) <= MAIN for i in moved)


def test_pools_and_release(run_dir, marks):
    # pool=gpu tasks are submitted before that pool joins (declared with pools=); release then ends it
    main = pilot(run_dir, marks, "2", "20", "0.1", "0", "--pool", "gpu", "--expect", "gpu", "--submit-first",
                 "--release", "gpu")
    extra = joiner(run_dir, pool="gpu")
    assert extra.wait() == 0, extra.tail()
    assert main.wait() == 0, main.tail()
    found = checks(main)
    assert found["values_right"] is True, main.tail()
    ranks = {int(i): set(r) for i, r in found["ranks"].items()}
    assert found["released"] == ["join-1"]
    assert all(ranks[i] <= {3, 4, 5} for i in range(20)), "pool=gpu tasks ran only on the gpu pool"
    assert all(ranks[2000 + i] <= MAIN for i in range(10)), "after the release nothing runs on its ranks"
    assert found["final_allocations"] == ["main"]
    assert "allocation join-1 is leaving (released by the driver)" in main.stderr


def test_join_refused_while_the_pilot_drains(run_dir, marks, tmp_path):
    pidfile = tmp_path / "rank0.pid"
    main = pilot(run_dir, marks, "1", "4", "5", "0", PILOTQ_RANK0_PIDFILE=str(pidfile), PILOTQ_DRAIN_GRACE="20")
    wait_until(lambda: len(os.listdir(marks)) > 0, what="the pilot's first task")
    os.kill(int(pidfile.read_text()), signal.SIGUSR1)
    wait_until((run_dir / "draining").exists, what="the pilot to say it drains")
    late = joiner(run_dir)
    assert late.wait() == 4, late.tail()
    assert "cannot join the pilot" in late.stderr and "draining" in late.stderr
    assert main.wait() == 75, main.tail()


def test_the_main_allocation_draining_sends_joined_launches_home_and_a_rerun_resumes(run_dir, marks, tmp_path):
    pidfile, journal = tmp_path / "rank0.pid", tmp_path / "work.sqlite"
    main = pilot(run_dir, marks, "2", "30", "1", "0", "--journal", str(journal),
                 PILOTQ_RANK0_PIDFILE=str(pidfile), PILOTQ_DRAIN_GRACE="5")
    extra = joiner(run_dir)
    wait_until(lambda: joined_ranks_started(marks, {3, 4, 5}) and joined_ranks_started(marks, MAIN),
               what="tasks on both allocations")
    os.kill(int(pidfile.read_text()), signal.SIGUSR1)
    assert main.wait() == 75, main.tail()
    assert extra.wait() == 0, extra.tail()
    assert "WalltimeError" in main.stderr
    # the rerun (no joiner this time) restores what finished and runs the rest
    again = pilot(run_dir, marks, "1", "30", "1", "0", "--journal", str(journal))
    assert again.wait() == 0, again.tail()
    found = checks(again)
    assert found["values_right"] is True and 0 < found["restored"] < 30, again.tail()


def test_join_without_a_live_pilot_fails_fast(tmp_path):
    empty = tmp_path / "nothing-here"
    lonely = joiner(empty, wait=False)
    assert lonely.wait(timeout=60) == 4, lonely.tail()
    assert f"no pilot is running in {empty}" in lonely.stderr
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "pilot.json").write_text(json.dumps({"port": "tag#0$", "pid": 1, "host": "gone"}))
    (stale / "heartbeat").touch()
    old = time.time() - 3600
    os.utime(stale / "heartbeat", (old, old))
    late = joiner(stale, wait=False)
    assert late.wait(timeout=60) == 4, late.tail()
    assert "is not running: its heartbeat was last touched" in late.stderr
    stop_all(tmp_path)


def test_cpu_and_gpu_pools_example(run_dir, tmp_path):
    """The example driver: cutting on the gpu pool (joined), QPU calls and the reference on the cpu pool."""
    from elastic_launch import Launch

    import pilotq_mpi.workflows.pools_demo as demo
    from pilotq_mpi.trace import read_trace

    trace = tmp_path / "trace.jsonl"
    main = Launch(3, ["--run-dir", str(run_dir), "--pool", "cpu", "--trace", str(trace), demo.__file__,
                      "--qubits", "8", "--shots", "500"])
    extra = joiner(run_dir, pool="gpu")
    assert main.wait() == 0, main.tail()
    assert extra.wait() == 0, extra.tail()
    records = read_trace(trace)
    joined = {r["rank"] for rec in records if rec.get("type") == "resources" and rec["event"] == "join"
              for r in rec["ranks"]}
    tasks = [rec for rec in records if rec.get("type") == "task"]
    cutting = [t for t in tasks if "subexperiment" in t["kind"]]
    assert cutting and all(set(t["ranks"]) <= joined for t in cutting), "subexperiments ran on the gpu pool"
    others = [t for t in tasks if t["name"] in ("qpu", "reference")]
    assert len(others) == 3 and all(not set(t["ranks"]) & joined for t in others)
    estimate, error = (float(x) for x in main.stdout.split("cutting on pool gpu: ")[1].split(" (")[0].split(" ± "))
    exact = float(main.stdout.split("exact on pool cpu: ")[1].split()[0])
    assert abs(estimate - exact) <= 5 * error + 1e-9, main.stdout
