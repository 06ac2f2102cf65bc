"""The test cluster itself (tests/e2e/slurm_cluster.py): nothing it started outlives it, even
when the test process dies without stopping it; leaked MPICH shared memory is removed; each
cluster numbers its jobs from its own random FirstJobId.

The Slurm parts skip (loudly) when the Slurm binaries are missing.
"""
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import SHM_DIR, LocalSlurm, _marked_pids, remove_leaked_shm, slurm_available

HERE = Path(__file__).resolve().parent

CHILD = """
import sys, time
sys.path.insert(0, {here!r})
from slurm_cluster import LocalSlurm
cluster = LocalSlurm({base!r}).start()
out = cluster.jobs_dir / "sleep.out"
# a step whose tasks ignore SIGTERM, as slurmstepd does
job = cluster.sbatch("#!/bin/bash\\n#SBATCH --output=%s\\n#SBATCH -n 2\\n"
                     "srun -n 2 bash -c 'trap \\"\\" TERM; sleep 300'\\n" % out)
cluster.wait_running(job, 60)
print("READY", job, flush=True)
time.sleep(600)
"""


def _need_slurm():
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"SLURM TESTS SKIPPED: {reason}")


def _gone(base, timeout):
    give_up = time.monotonic() + timeout
    while (left := _marked_pids(str(base))) and time.monotonic() < give_up:
        time.sleep(0.2)
    return left


@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_cluster_of_a_killed_test_process_is_cleaned_up_by_its_watchdog(tmp_path):
    """SIGKILL the process that started the cluster (as a hard timeout would): the watchdog
    cancels the job, shuts the daemons down and kills what ignores SIGTERM."""
    _need_slurm()
    base = tmp_path / "cluster"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(here=str(HERE), base=str(base))],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("READY"), line
        # RUNNING comes before srun has started the step's tasks: wait for them (a loaded machine is slow)
        give_up = time.monotonic() + 60
        while len(_marked_pids(str(base))) < 5 and time.monotonic() < give_up:
            time.sleep(0.2)
        assert len(_marked_pids(str(base))) >= 5, "daemons, slurmstepd, the job and its tasks run"
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        left = _gone(base, timeout=90)
        assert not left, f"still alive after the test process died: {left}"
        log = base / "watchdog.log"
        give_up = time.monotonic() + 30  # it writes when its cleanup has returned
        while "cleaning up" not in log.read_text() and time.monotonic() < give_up:
            time.sleep(0.2)
        assert "cleaning up" in log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
        for pid in _marked_pids(str(base)):  # never leave anything behind, even if this fails
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_stop_ends_steps_that_ignore_sigterm_and_numbers_jobs_from_first_job_id(tmp_path):
    _need_slurm()
    cluster = LocalSlurm(tmp_path / "cluster")
    try:
        cluster.start()
        out = cluster.jobs_dir / "x.out"
        job = cluster.sbatch(f"#!/bin/bash\n#SBATCH --output={out}\n#SBATCH -n 2\n"
                             "srun -n 2 bash -c 'trap \"\" TERM; sleep 300'\n")
        assert int(job) == cluster.first_job_id >= 1000
        cluster.wait_running(job, 60)
    finally:
        cluster.stop()
    assert cluster.leftovers() == []


def test_leaked_mpich_segments_are_removed_and_others_kept(tmp_path):
    if not SHM_DIR.is_dir():
        pytest.skip("no /dev/shm here")
    tag = f"pilotqtest{os.getpid()}"
    old, leaked, in_use = (SHM_DIR / f"mpich_shm_{tag}_{n}" for n in ("old", "leaked", "inuse"))
    unrelated = SHM_DIR / f"other_{tag}"
    for path in (old, leaked, in_use, unrelated):
        path.write_bytes(b"\0" * 4096)
    before = {old.name}
    # still mapped by a live process (this one): another job's segment, in use
    with open(in_use, "r+b") as handle, mmap.mmap(handle.fileno(), 4096) as mapped:
        try:
            removed = remove_leaked_shm(before | {p.name for p in SHM_DIR.iterdir()
                                                  if p.name not in (leaked.name, in_use.name)})
            assert removed == [leaked.name]
            assert not leaked.exists() and old.exists() and in_use.exists() and unrelated.exists()
            assert mapped[:1] == b"\0"
        finally:
            for path in (old, leaked, in_use, unrelated):
                path.unlink(missing_ok=True)
