"""Failure policies of whole pilot jobs (local ``mpiexec``; see programs/policies_app.py):
segfaults and timeouts of isolated tasks, in-process timeouts, retries, a multi-rank task
whose other rank is stuck in a collective (exit 3, not a hang), a driver that raises."""
from pathlib import Path

import pytest
from jobs import Run, run_job

from pilotq_mpi.errors import EXIT_DRIVER_FAILED, EXIT_STUCK_RANKS


def policies(scenario: str, tmp_path: Path, *, ranks: int = 3, timeout: int = 180, **env) -> Run:
    """Run one scenario of programs/policies_app.py; kill what it leaves behind."""
    return run_job("policies_app.py", [scenario, str(tmp_path)], tmp_path, ranks=ranks, timeout=timeout, **env)


def clean_run(scenario, tmp_path, **kwargs):
    """Run a scenario that must end with exit 0 and leave no process behind; (run, its checks)."""
    run = policies(scenario, tmp_path, **kwargs)
    assert run.returncode == 0, run.tail()
    assert not run.leftovers, run.leftovers
    return run, run.checks()


@pytest.mark.timeout(240)
def test_isolated_segfault_fails_its_future_and_the_pilot_goes_on(tmp_path):
    run, checks = clean_run("segv", tmp_path)
    crash = checks.get("crash")
    assert crash is not None, run.tail()
    assert crash["ok"] is False and crash["type"] == "TaskCrashedError", crash
    assert "SIGSEGV" in crash["message"], crash["message"]
    assert checks["later"]["values"] == [i * i for i in range(12)], run.tail()
    assert checks["later_isolated"]["values"] == [0, 1, 4, 9], run.tail()
    assert checks.get("end") == {"scenario": "segv"}, run.tail()


@pytest.mark.timeout(240)
def test_isolated_task_past_its_timeout_is_killed_and_the_pilot_exits_0(tmp_path):
    # the task sleeps 300 s and the run is killed after 150 s: finishing at all proves the kill
    run, checks = clean_run("isolated_timeout", tmp_path, timeout=150)
    slow = checks.get("slow")
    assert slow is not None, run.tail()
    assert slow["ok"] is False and slow["type"] == "TaskTimeoutError", slow
    assert "timeout of 1 s" in slow["message"], slow["message"]
    assert checks["after"]["value"] == 81
    assert checks["child"] == {"alive_when_future_failed": False}, "the timed-out task's process still ran"
    print(f"isolated timeout resolved after {slow['elapsed']}s; whole run {run.elapsed:.1f}s")


@pytest.mark.timeout(240)
def test_in_process_task_past_its_timeout_fails_and_the_pilot_exits_0(tmp_path):
    run, checks = clean_run("inproc_timeout", tmp_path)
    slow = checks.get("slow")
    assert slow is not None, run.tail()
    assert slow["ok"] is False and slow["type"] == "TaskTimeoutError", slow
    assert "timeout=1" in slow["message"], slow["message"]
    # the task itself sleeps 3 s: its future resolved at the deadline, before the task returned
    assert slow["task_had_returned"] is False, f"the future waited for the task to return ({slow})"
    assert (tmp_path / "slow.returned").exists(), "the in-process task runs on to its end (rank held)"
    assert checks["later"]["values"] == [i * i for i in range(8)], run.tail()
    assert checks.get("end") == {"scenario": "inproc_timeout"}, run.tail()


@pytest.mark.timeout(240)
def test_retries_give_the_result_of_the_attempt_that_succeeds(tmp_path):
    run, checks = clean_run("retries", tmp_path)
    assert checks["flaky"] == {**checks["flaky"], "ok": True, "value": "ok after 3 calls"}, run.tail()
    # one failure more than retries allow: the last attempt's exception, after exactly 3 calls
    too_often = checks["flaky_too_often"]
    assert too_often["ok"] is False and too_often["type"] == "RuntimeError", too_often
    assert too_often["message"] == "flaky failure on call 3", too_often
    assert checks["calls"] == {"first": 3, "second": 3}, checks["calls"]


@pytest.mark.timeout(240)
def test_rank_raising_while_other_rank_blocks_in_collective_ends_with_exit_3(tmp_path):
    run = policies("collective", tmp_path, timeout=150, PILOTQ_STUCK_GRACE="2")
    checks = run.checks()
    stuck = checks.get("collective")
    assert stuck is not None, run.tail()
    assert stuck["ok"] is False and stuck["type"] == "ValueError", stuck
    assert stuck["message"] == "rank 0 of the collective task failed", stuck
    # the blocked rank is held, the other worker keeps serving
    assert checks["after"]["values"] == [0, 1, 4, 9], run.tail()
    assert checks.get("end") == {"scenario": "collective"}, "the driver finished normally\n" + run.tail()
    assert run.returncode == EXIT_STUCK_RANKS, run.tail()
    assert not run.leftovers, f"the stuck rank outlived the job: {run.leftovers}"
    assert "ranks never returned from their tasks (task 1 on ranks [2])" in run.stderr, run.tail()
    print(f"collective failure resolved after {stuck['elapsed']}s; whole run {run.elapsed:.1f}s")


@pytest.mark.timeout(180)
def test_driver_that_raises_while_workers_are_busy_ends_every_rank(tmp_path):
    # the workers sleep 300 s in their tasks; the run is killed after 120 s
    run = policies("driver_raises", tmp_path, timeout=120)
    assert run.returncode == EXIT_DRIVER_FAILED, run.tail()
    assert checks_busy(run) == 2, run.tail()
    assert "RuntimeError: driver bug while tasks run" in run.stderr, run.tail()
    assert "are abandoned; aborting the job with exit code 1" in run.stderr, run.tail()
    pids = [int(p.read_text()) for p in [*tmp_path.glob("worker-*.pid"), tmp_path / "rank0.pid"]]
    assert len(pids) == 3, pids
    assert not run.leftovers, f"processes of the aborted job still alive 15 s after it: {run.leftovers}"


def checks_busy(run: Run) -> int:
    return run.checks().get("busy", {}).get("workers", -1)
