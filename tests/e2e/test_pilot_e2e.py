"""Whole pilot jobs as subprocesses (``mpiexec -n N python -m pilotq_mpi app.py``), dask-mpi style:
return codes, output, and expected failures. Every run has a hard timeout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PILOTQ_PROGRESS="off")


def pilot(ranks, program, *args, timeout=240, **env):
    argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "pilotq_mpi",
            str(PROGRAMS / program), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**ENV, **env})


@pytest.mark.timeout(300)
def test_ten_thousand_tasks_finish_and_all_ranks_exit_zero():
    out = pilot(6, "many_tasks.py", 10000)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"OK {sum(i * i for i in range(10000))}" in out.stdout


@pytest.mark.timeout(120)
def test_driver_that_raises_ends_every_rank_nonzero():
    out = pilot(4, "driver_raises.py", timeout=60)
    assert out.returncode != 0
    assert "RuntimeError: driver bug" in out.stderr
    assert "pilotq-mpi: the driver ended with exit code 1;" in out.stderr


@pytest.mark.timeout(120)
def test_impossible_request_raises_resource_error_at_submit():
    out = pilot(4, "impossible.py", timeout=60)
    assert "ResourceError: task needs 64 ranks; this pilot has 3 worker ranks" in out.stdout
    assert "after 42" in out.stdout, "the pilot goes on after a refused submit"
    assert out.returncode != 0 and "ResourceError" in out.stderr and "GPU" in out.stderr


@pytest.mark.timeout(120)
def test_idle_workers_do_not_spin():
    """8 ranks on this 2-core machine: while one worker computes, the idle ones stay nearly idle."""
    out = pilot(8, "idle_cpu.py", timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    busy = max(report["cpu"])
    idle = sorted(report["cpu"])[:-1]
    # the spinning task burns 1 s of its own CPU time (not wall time: a loaded machine gives it less)
    assert busy >= 0.9, f"the spinning task's rank used {busy:.2f}s of CPU (is CPU time measured?)"
    assert max(idle) < 0.35 * report["wall"], f"idle workers used {idle} s of CPU in {report['wall']:.1f} s"


@pytest.mark.timeout(60)
def test_pilot_outside_a_pilot_job_says_how_to_start_one(tmp_path):
    app = tmp_path / "plain.py"
    app.write_text("from pilotq_mpi import Pilot\nPilot()\n")
    out = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "no pilot is running in this process" in out.stderr and "python -m pilotq_mpi app.py" in out.stderr


@pytest.mark.timeout(120)
def test_cli_run_passes_arguments_and_exit_code(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import sys\nfrom pilotq_mpi import Pilot\n"
                   "with Pilot() as p:\n    print('sum', p.submit(lambda c, a: a * 2, int(sys.argv[1])).result())\n"
                   "sys.exit(int(sys.argv[2]))\n")
    out = subprocess.run([sys.executable, "-m", "pilotq_mpi.cli", "run", str(app), "-n", "3", "--", "21", "4"],
                         capture_output=True, text=True, timeout=90, env=ENV)
    assert "sum 42" in out.stdout
    assert out.returncode == 4, out.stderr[-2000:]
    missing = subprocess.run([sys.executable, "-m", "pilotq_mpi.cli", "run", str(tmp_path / "nope.py")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "not found" in missing.stderr
