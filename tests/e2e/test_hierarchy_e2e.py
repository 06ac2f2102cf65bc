"""Hierarchical masters as a user launches them (``PILOTQ_SUBMASTERS=... mpiexec -n 7 python -m pilotq_mpi``):
impossible settings are refused at start with exit code 2 and one message. (The driver's failures,
a drain and the journal under sub-masters are in test_driver_failure.py, run in both layouts.)"""
from pathlib import Path

import pytest
from jobs import run_job

from pilotq_mpi.errors import EXIT_USAGE

PROGRAM = "ending_app.py"
RANKS = 7


def started(directory: Path) -> int:
    return len(list(directory.glob("started-*")))


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
