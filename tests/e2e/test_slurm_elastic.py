"""Elastic pilots on a real Slurm (the one-node cluster of the fixture): two jobs, one pilot.

Job A runs the pilot with a run directory; job B joins it (rendered by the package, as
``pilotq-mpi submit --join`` does) and gets the walltime warning mid-run
(``scancel --signal=USR1 --batch``): A finishes the whole workload with exact results and B
ends cleanly. And the adapt policy: from no joined job, queued work makes the pilot submit
one with sbatch, and idleness releases it. Exit codes are read from ``scontrol show job``.

Skipped (loudly) when the Slurm binaries are missing: install with .ci/install-slurm.sh.
"""
import os

import pytest
from slurm_jobs import PROGRAMS, PY, ROOT, exit_code, pilot_script, read, submit, tail, wait_for

from pilotq_mpi.platform.sbatch import SbatchRequest, render
from pilotq_mpi.platform.submit_cli import default_launcher

pytestmark = [pytest.mark.slurm]


def join_script(run_dir, out, **env) -> str:
    request = SbatchRequest(join=str(run_dir), ranks_per_node=3, time="00:05:00", signal_lead=30,
                            output=str(out), job_name="pilotq-join-e2e", launcher=default_launcher(), python=PY)
    exports = {"PYTHONPATH": str(ROOT), "PILOTQ_PROGRESS": "off", **env}
    return render(request).replace("set -u\n", "set -u\n" + "".join(f"export {k}={v}\n" for k, v in exports.items()), 1)


def checks(text: str) -> dict:
    import json

    return {line.split(" ", 2)[1]: json.loads(line.split(" ", 2)[2])
            for line in text.splitlines() if line.startswith("CHECK ")}


def joined_started(marks) -> bool:
    return any(int(name.rsplit("rank", 1)[1]) >= 4 for name in os.listdir(marks))


@pytest.mark.timeout(300)
def test_a_joined_job_drains_on_its_walltime_warning_and_the_pilot_finishes(slurm_cluster, tmp_path):
    run_dir, marks = tmp_path / "run", tmp_path / "marks"
    marks.mkdir()
    out_a, out_b = tmp_path / "a.out", tmp_path / "b.out"
    # the pilot: 4 ranks (3 workers); waits for the joined allocation, then 24 tasks of 1.5 s
    job_a = submit(slurm_cluster, pilot_script([PROGRAMS / "elastic_app.py", marks, "2", "24", "1.5", "0"], out_a,
                                               ranks_per_node=4, PILOTQ_RUN_DIR=run_dir), tmp_path / "a")
    wait_for((run_dir / "pilot.json").exists, timeout=120, what="the pilot published", cluster=slurm_cluster,
             job=job_a, out=out_a)
    job_b = submit(slurm_cluster, join_script(run_dir, out_b, PILOTQ_DRAIN_GRACE="0.5"), tmp_path / "b")
    wait_for(lambda: joined_started(marks), timeout=120, what="a task on the joined ranks", cluster=slurm_cluster,
             job=job_b, out=out_b)
    slurm_cluster.scancel_signal(job_b, "USR1", batch=True)
    assert slurm_cluster.wait(job_b, timeout=120) == "COMPLETED", tail(read(out_b))
    assert slurm_cluster.wait(job_a, timeout=180) == "COMPLETED", tail(read(out_a))
    text_a, text_b = read(out_a), read(out_b)
    assert exit_code(slurm_cluster, job_b) == "0:0", tail(text_b)
    assert exit_code(slurm_cluster, job_a) == "0:0", tail(text_a)
    found = checks(text_a)
    assert found["values_right"] is True and sorted(map(int, found["ranks"])) == list(range(24)), tail(text_a)
    assert "allocation join-1 is leaving (got SIGUSR1)" in text_a, tail(text_a)
    assert found["final_allocations"] == ["main"]
    assert "passing SIGUSR1 to rank 0" in text_b, tail(text_b)


@pytest.mark.timeout(300)
def test_adapt_submits_a_join_job_for_queued_work_and_releases_it_when_idle(slurm_cluster, tmp_path):
    run_dir, marks = tmp_path / "run", tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "pilot.out"
    job = submit(slurm_cluster, pilot_script([PROGRAMS / "adapt_app.py", marks, "36", "1.0"], out,
                                             ranks_per_node=4, PILOTQ_RUN_DIR=run_dir), tmp_path / "a")
    assert slurm_cluster.wait(job, timeout=240) == "COMPLETED", tail(read(out))
    text = read(out)
    assert exit_code(slurm_cluster, job) == "0:0", tail(text)
    found = checks(text)
    assert found["values_right"] is True, tail(text)
    assert found["allocations_seen"] == ["join-1", "main"], tail(text)
    assert any(rank >= 4 for rank in found["ranks"]), "the joined job ran tasks"
    assert found["allocations_at_end"] == ["main"], tail(text)
    assert "pilotq-mpi: adapt: submit:" in text and "pilotq-mpi: adapt: release:" in text, tail(text)
    assert text.count("pilotq-mpi: adapt: submitted job") == 1, "never more than max_jobs=1"
    joined = [p for p in run_dir.glob("join-*.out")]
    assert joined, "the join job's output is in the run directory"
    assert "joined the pilot" in read(joined[0]), tail(read(joined[0]))
