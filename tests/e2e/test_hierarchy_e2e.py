"""Hierarchical masters as a user launches them (``PILOTQ_SUBMASTERS=2 mpiexec -n 7 python -m pilotq_mpi``):
the driver's failures, a drain and the journal end the job exactly as with one master (exit codes,
nothing left running, no queued work started after the driver failed), and impossible settings
are refused at start with exit code 2."""
import os
import signal
from pathlib import Path

import pytest
from jobs import run_job

from pilotq_mpi.errors import EXIT_DRIVER_FAILED, EXIT_INCOMPLETE, EXIT_USAGE

PROGRAM = "ending_app.py"
RANKS = 7          # the top master, 2 sub-masters, 2 workers in each group
WORKERS = 4
MAY_START = 4 * WORKERS
HIERARCHY = {"PILOTQ_SUBMASTERS": "2"}


def started(directory: Path) -> int:
    return len(list(directory.glob("started-*")))


def run(scenario: str, tmp_path: Path, **kwargs):
    env = {**HIERARCHY, "PILOTQ_EXIT_CODE_FILE": str(tmp_path / "exit-code"), **kwargs.pop("env", {})}
    return run_job(PROGRAM, [scenario, str(tmp_path)], tmp_path, ranks=RANKS, **kwargs, **env)


@pytest.mark.timeout(240)
def test_driver_raising_under_sub_masters_cancels_the_queue_and_exits_1(tmp_path):
    result = run("raise", tmp_path)
    assert result.returncode == EXIT_DRIVER_FAILED, result.tail()
    assert int((tmp_path / "exit-code").read_text()) == EXIT_DRIVER_FAILED
    assert started(tmp_path) <= MAY_START, f"{started(tmp_path)} of 100 queued tasks ran after the driver raised"
    assert "2 sub-masters" in result.stderr and "RuntimeError: driver bug with work queued" in result.stderr
    assert not result.leftovers, result.leftovers


@pytest.mark.timeout(300)
def test_clean_exit_under_sub_masters_runs_every_task(tmp_path):
    result = run("exit0", tmp_path)
    assert result.returncode == 0, result.tail()
    assert started(tmp_path) == 100


@pytest.mark.timeout(300)
def test_journal_under_sub_masters_keeps_what_finished_before_the_driver_raised(tmp_path):
    first = run("journal", tmp_path)
    assert first.returncode == EXIT_DRIVER_FAILED, first.tail()
    assert first.checks()["quick"] == {"values": [0, 1, 2], "restored": 0}
    again = run("journal-resume", tmp_path)
    assert again.returncode == 0, again.tail()
    assert again.checks()["quick"] == {"values": [0, 1, 2], "restored": 3}


@pytest.mark.timeout(240)
def test_drain_under_sub_masters_ends_with_75(tmp_path):
    def signal_rank0():
        os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGUSR1)

    result = run("drain-result", tmp_path, interrupt_when=lambda: (tmp_path / "waiting").exists()
                 and (tmp_path / "rank0.pid").exists(), then=signal_rank0,
                 env={"PILOTQ_RANK0_PIDFILE": str(tmp_path / "rank0.pid"), "PILOTQ_DRAIN_GRACE": "1",
                      "PILOTQ_STUCK_GRACE": "1"})
    assert result.returncode == EXIT_INCOMPLETE, result.tail()
    assert int((tmp_path / "exit-code").read_text()) == EXIT_INCOMPLETE
    assert result.checks()["stuck"] == {"type": "WalltimeError"}
    assert not result.leftovers, result.leftovers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("env, says", [
    ({"PILOTQ_SUBMASTERS": "4"}, "PILOTQ_SUBMASTERS=4: 6 worker ranks cannot make 4 groups"),
    ({"PILOTQ_SUBMASTERS": "2", "PILOTQ_RUN_DIR": "RUNDIR"}, "--run-dir (a pilot others can join) needs a single"),
    ({"PILOTQ_SUBMASTERS": "two"}, "PILOTQ_SUBMASTERS='two': expected auto or an integer >= 0"),
])
def test_impossible_hierarchy_settings_are_refused_at_start(tmp_path, env, says):
    env = {name: value.replace("RUNDIR", str(tmp_path / "run")) for name, value in env.items()}
    result = run_job(PROGRAM, ["exit0", str(tmp_path)], tmp_path, ranks=RANKS, timeout=60, **env)
    assert result.returncode == EXIT_USAGE, result.tail()
    assert result.stderr.count(says) == 1, result.tail()
    assert started(tmp_path) == 0
