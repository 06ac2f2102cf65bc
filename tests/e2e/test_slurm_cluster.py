"""A real one-node Slurm cluster (tests/e2e/slurm_cluster.py): srun GPU binding, the
rendered generic template running the pilot, and the walltime warning once the pilot is up
(exit 75; earlier warnings: test_slurm_exit_codes.py).

Skipped (loudly) when the Slurm binaries are missing: install with .ci/install-slurm.sh.
"""
import sys
import time
from pathlib import Path

import pytest

from pilotq_mpi.platform.sbatch import SbatchRequest, render
from pilotq_mpi.platform.submit_cli import default_launcher

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
PY = sys.executable
pytestmark = [pytest.mark.slurm]


def _script(body: str, out: Path, *directives: str) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --output={out}", *[f"#SBATCH {d}" for d in directives],
             f"export PYTHONPATH={ROOT}", body]
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else "(no output file)"


@pytest.mark.timeout(120)
def test_srun_four_ranks_one_fake_gpu_each(slurm_cluster):
    out = slurm_cluster.jobs_dir / "gpu.out"
    script = _script(
        f"timeout 60 srun --mpi=pmi2 -n 4 --gpus-per-task=1 {PY} {PROGRAMS / 'srun_gpu_check.py'}",
        out, "-N 1", "-n 4", "--gpus-per-node=4", "--time=00:02:00")
    job = slurm_cluster.sbatch(script)
    assert slurm_cluster.wait(job, timeout=90) == "COMPLETED", _read(out)
    text = _read(out)
    assert "SIZE 4" in text
    for rank in range(4):
        assert f"RANK {rank} LOCALID {rank} CVD {rank} OK" in text, text


def _pilot_request(app_args, out, **kw):
    # the launcher: the pilotq-srun command installed beside this Python (pyproject's scripts)
    return SbatchRequest(app_argv=(str(PROGRAMS / "pilot_app.py"), *app_args), target="generic",
                         nodes=1, ranks_per_node=4, time="00:05:00", signal_lead=60,
                         output=str(out), job_name="pilotq-e2e",
                         launcher=default_launcher(), python=PY, **kw)


@pytest.mark.timeout(180)
def test_rendered_generic_template_runs_the_pilot(slurm_cluster):
    out = slurm_cluster.jobs_dir / "pilot.out"
    script = render(_pilot_request(["20", "0.01"], out))
    env_line = f"export PYTHONPATH={ROOT}\n"
    script = script.replace("set -u\n", "set -u\n" + env_line, 1)
    job = slurm_cluster.sbatch(script, f"--chdir={slurm_cluster.jobs_dir}")  # not from the checkout
    state = slurm_cluster.wait(job, timeout=150)
    text = _read(out)
    assert state == "COMPLETED", text
    assert "APP RESULT 2470 from 20 of 20" in text, text
    assert "pilotq: exit code 0 (launcher exited with status 0)" in text
    assert slurm_cluster.job_info(job)["ExitCode"] == "0:0"


@pytest.mark.timeout(180)
def test_usr1_to_batch_shell_drains_pilot_and_exits_75(slurm_cluster):
    out = slurm_cluster.jobs_dir / "drain.out"
    script = render(_pilot_request(["12", "3"], out))
    script = script.replace("set -u\n", f"set -u\nexport PYTHONPATH={ROOT}\n", 1)
    job = slurm_cluster.sbatch(script, f"--chdir={slurm_cluster.jobs_dir}")
    slurm_cluster.wait_running(job, timeout=60)
    deadline = time.monotonic() + 60
    while "APP STARTED" not in _read(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "APP STARTED" in _read(out), _read(out)
    slurm_cluster.scancel_signal(job, "USR1", batch=True)
    state = slurm_cluster.wait(job, timeout=120)
    text = _read(out)
    info = slurm_cluster.job_info(job)
    assert info["ExitCode"] == "75:0", (state, text)
    assert "got SIGUSR1: draining" in text, text
    assert "pilotq: exit code 75 (launcher exited with status " in text, text


@pytest.mark.timeout(150)
def test_step_mode_nested_srun_inside_a_job_step(slurm_cluster):
    """Two ranks of an srun step form one task; rank 0 starts `srun --exact --overlap -n 2`.

    The nested step's COMM_WORLD has 2 ranks and sees the task's GPUs (0,1), not every
    GPU of the job that srun would otherwise put in CUDA_VISIBLE_DEVICES.
    """
    out = slurm_cluster.jobs_dir / "step.out"
    script = _script(
        f"timeout 90 srun --mpi=pmi2 -n 2 {PY} {PROGRAMS / 'step_driver.py'} 2 ok 1",
        out, "-N 1", "-n 4", "--gpus-per-node=4", "--time=00:03:00")
    job = slurm_cluster.sbatch(script)
    assert slurm_cluster.wait(job, timeout=120) == "COMPLETED", _read(out)
    assert "RESULT {'size': 2, 'rank_sum': 1, 'cuda_visible_devices': ['0,1', '0,1']}" \
        in _read(out), _read(out)
