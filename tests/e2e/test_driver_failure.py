"""A driver that fails ends the whole job at once: queued tasks are cancelled, running ones
abandoned, the traceback shows the user's own frames, and the exit code is the documented one
(also in ``$PILOTQ_EXIT_CODE_FILE``, which the batch scripts pass on to Slurm).

The tests taking ``layout`` run twice: with one master (3 ranks) and under hierarchical masters
(``PILOTQ_SUBMASTERS=2``, 7 ranks: the top master, 2 sub-masters, 2 workers each)."""
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobs import run_job

from pilotq_mpi.errors import EXIT_DRIVER_FAILED, EXIT_INCOMPLETE

PROGRAM = "ending_app.py"
QUEUED = 100


@dataclass(frozen=True)
class Layout:
    ranks: int
    workers: int
    env: dict

    @property
    def may_start(self) -> int:
        """Tasks that may have started: one running and one prefetched per worker when the driver
        fails, and those that start within the short grace before running ranks are abandoned. Far
        below the 100 queued: waiting for the queue would start all of them."""
        return 4 * self.workers


ONE_MASTER = Layout(ranks=3, workers=2, env={})
SUB_MASTERS = Layout(ranks=7, workers=4, env={"PILOTQ_SUBMASTERS": "2"})


@pytest.fixture(params=[ONE_MASTER, SUB_MASTERS], ids=["one master", "sub-masters"])
def layout(request) -> Layout:
    return request.param


def started(directory: Path) -> int:
    return len(list(directory.glob("started-*")))


def run(scenario: str, tmp_path: Path, layout: Layout = ONE_MASTER, **kwargs):
    return run_job(PROGRAM, [scenario, str(tmp_path)], tmp_path, ranks=layout.ranks,
                   PILOTQ_EXIT_CODE_FILE=str(tmp_path / "exit-code"), **layout.env, **kwargs)


def exit_code_file(tmp_path: Path) -> int:
    return int((tmp_path / "exit-code").read_text())


@pytest.mark.timeout(240)
def test_driver_raising_with_queued_work_cancels_it_and_ends_every_rank(tmp_path, layout):
    result = run("raise", tmp_path, layout)
    assert started(tmp_path) <= layout.may_start, \
        f"{started(tmp_path)} of {QUEUED} queued tasks ran after the driver raised"
    assert result.returncode == EXIT_DRIVER_FAILED, result.tail()
    assert exit_code_file(tmp_path) == EXIT_DRIVER_FAILED
    assert not result.leftovers, result.leftovers
    assert "RuntimeError: driver bug with work queued" in result.stderr, result.tail()
    assert "unreachable" not in result.stdout
    if layout.env:
        assert "2 sub-masters" in result.stderr, result.tail()


@pytest.mark.timeout(240)
def test_driver_traceback_shows_the_users_frames_only(tmp_path):
    result = run("raise", tmp_path)
    traceback = result.stderr[result.stderr.index("Traceback"):]
    assert f'File "{Path(__file__).parent / "programs" / PROGRAM}", line' in traceback, traceback
    assert "raise RuntimeError(\"driver bug with work queued\")" in traceback, traceback
    for machinery in ("runpy", "bootstrap.py", "<frozen"):
        assert machinery not in traceback, traceback


@pytest.mark.timeout(240)
def test_nonzero_sys_exit_is_the_job_exit_code_and_does_not_wait(tmp_path):
    result = run("exit4", tmp_path)
    assert started(tmp_path) <= ONE_MASTER.may_start, started(tmp_path)
    assert result.returncode == 4, result.tail()
    assert exit_code_file(tmp_path) == 4
    assert not result.leftovers, result.leftovers


@pytest.mark.timeout(300)
def test_clean_exit_of_the_block_still_waits_for_every_task(tmp_path, layout):
    result = run("exit0", tmp_path, layout)
    assert result.returncode == 0, result.tail()
    assert exit_code_file(tmp_path) == 0
    assert started(tmp_path) == QUEUED


@pytest.mark.timeout(240)
def test_ctrl_c_at_mpiexec_ends_the_job_without_running_the_queue(tmp_path):
    result = run("interrupt", tmp_path, interrupt_when=lambda: (tmp_path / "waiting").exists()
                 and started(tmp_path) > 0)
    assert result.returncode != 0, result.tail()
    assert started(tmp_path) <= ONE_MASTER.may_start, started(tmp_path)
    assert "KeyboardInterrupt" in result.stderr, result.tail()
    assert not result.leftovers, result.leftovers


@pytest.mark.timeout(300)
def test_journal_keeps_what_finished_before_the_driver_raised(tmp_path, layout):
    first = run("journal", tmp_path, layout)
    assert first.returncode == EXIT_DRIVER_FAILED, first.tail()
    assert first.checks()["quick"] == {"values": [0, 1, 2], "restored": 0}
    again = run("journal-resume", tmp_path, layout)
    assert again.returncode == 0, again.tail()
    assert again.checks()["quick"] == {"values": [0, 1, 2], "restored": 3}


def signal_rank0(tmp_path: Path):
    """SIGUSR1 to rank 0 (through its pid file), as the batch scripts pass on a walltime warning."""
    def send():
        os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGUSR1)
    return send


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", ["drain-result", "drain-caught"])
def test_drain_with_a_task_still_running_ends_with_75_once(tmp_path, scenario, layout):
    result = run(scenario, tmp_path, layout, interrupt_when=lambda: (tmp_path / "waiting").exists()
                 and (tmp_path / "rank0.pid").exists(), then=signal_rank0(tmp_path),
                 PILOTQ_RANK0_PIDFILE=str(tmp_path / "rank0.pid"), PILOTQ_DRAIN_GRACE="1", PILOTQ_STUCK_GRACE="1")
    assert result.returncode == EXIT_INCOMPLETE, result.tail()
    assert exit_code_file(tmp_path) == EXIT_INCOMPLETE
    assert result.checks()["stuck"] == {"type": "WalltimeError"}
    # the abort is the end: nothing runs after it as if it had not happened
    assert "drained before finishing" not in result.stderr, result.tail()
    assert "TraceError" not in result.stderr and result.stderr.count("aborting the job") == 1, result.tail()
    assert not result.leftovers, result.leftovers


@pytest.mark.timeout(120)
def test_missing_driver_script_is_reported_once_with_exit_2(tmp_path):
    missing = tmp_path / "no_such_app.py"
    result = run_job("ending_app.py", [], tmp_path, ranks=3, timeout=60, program_path=missing,
                     PILOTQ_EXIT_CODE_FILE=str(tmp_path / "exit-code"))
    assert result.returncode == 2, result.tail()
    assert exit_code_file(tmp_path) == 2
    assert result.stderr.count(f"driver script '{missing}' not found") == 1, result.tail()
