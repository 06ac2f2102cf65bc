"""Step mode end to end: step_task launches a nested MPI job whose COMM_WORLD is the task.

(a) from a plain python process with COMM_SELF; (b) from every rank of an
``mpiexec -n 2`` job (nested mpiexec inside mpiexec); failures come back as StepError.
Also shows why the environment is cleaned: a singleton MPI program started from an
mpiexec rank with the inherited PMI_* variables fails in MPI_Init.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else "mpiexec"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
       "PYTHONPATH": str(ROOT)}


def run(argv, timeout=90):
    return subprocess.run(["timeout", "-k", "5", str(timeout), *argv], env=ENV, cwd=ROOT,
                          capture_output=True, text=True)


def results(stdout):
    return sorted(line for line in stdout.splitlines() if line.startswith(("RESULT", "ERROR",
                                                                         "UNEXPECTED")))


@pytest.mark.timeout(120)
def test_step_from_plain_process_comm_self():
    p = run([sys.executable, str(PROGRAMS / "step_driver.py"), "1", "ok"])
    assert p.returncode == 0, p.stderr
    assert results(p.stdout) == [
        "RESULT {'size': 1, 'rank_sum': 0, 'cuda_visible_devices': [None]}"]


@pytest.mark.timeout(120)
def test_nested_mpiexec_inside_mpiexec_with_gpus():
    # two ranks form one task of width 2; each "owns" 1 GPU -> the step sees both
    p = run([MPIEXEC, "-n", "2", sys.executable, str(PROGRAMS / "step_driver.py"), "2", "ok", "1"])
    assert p.returncode == 0, p.stderr
    assert results(p.stdout) == [
        "RESULT {'size': 2, 'rank_sum': 1, 'cuda_visible_devices': ['0,1', '0,1']}"]


@pytest.mark.timeout(120)
def test_two_concurrent_single_rank_steps_inside_mpiexec():
    p = run([MPIEXEC, "-n", "2", sys.executable, str(PROGRAMS / "step_driver.py"), "1", "ok"])
    assert p.returncode == 0, p.stderr
    assert results(p.stdout) == 2 * [
        "RESULT {'size': 1, 'rank_sum': 0, 'cuda_visible_devices': [None]}"]


@pytest.mark.timeout(120)
def test_failing_step_raises_with_status_and_stderr():
    p = run([MPIEXEC, "-n", "2", sys.executable, str(PROGRAMS / "step_driver.py"), "2", "fail"])
    assert p.returncode == 0, p.stderr
    assert results(p.stdout) == ["ERROR StepError 7 'engine: deliberate failure\\n'"]


@pytest.mark.timeout(120)
def test_step_that_reports_nothing_raises():
    p = run([sys.executable, str(PROGRAMS / "step_driver.py"), "1", "silent"])
    assert p.returncode == 0, p.stderr
    assert results(p.stdout) == ["ERROR StepError 0 ''"]


@pytest.mark.timeout(120)
def test_inherited_pmi_env_breaks_a_singleton_and_cleaning_fixes_it():
    p = run([MPIEXEC, "-n", "2", sys.executable, str(PROGRAMS / "singleton_from_rank.py")])
    assert p.returncode == 0, p.stderr
    lines = sorted(l for l in p.stdout.splitlines() if l.startswith(("dirty", "clean")))
    assert lines[0] == "clean rc=0 size=1"
    assert lines[1].startswith("dirty rc=") and lines[1] != "dirty rc=0 size=1"


def test_report_result_outside_a_step_is_a_clear_error(monkeypatch):
    from pilotq_mpi.workflows.step import report_result
    monkeypatch.delenv("PILOTQ_STEP_RESULT", raising=False)
    with pytest.raises(RuntimeError, match="PILOTQ_STEP_RESULT is not set"):
        report_result(1)


def test_step_task_rejects_string_program():
    from mpi4py import MPI
    from pilotq_mpi.workflows.step import step_task
    with pytest.raises(TypeError, match="list of words"):
        step_task(MPI.COMM_SELF, "python engine.py")
