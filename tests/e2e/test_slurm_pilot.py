"""The pilot under a real one-node Slurm cluster (fixture ``slurm_cluster``: 8 CPUs, 4 fake GPUs),
started by the rendered generic template:

- GPU layout: 5 ranks (rank 0 = driver + master, 4 workers) and ``--gpus-per-node=4``:
  what every worker's GPU tasks see against what Slurm gave the job step.
- Walltime: ``scancel --signal=USR1 --batch`` drains a journaled workload (exit 75),
  a resubmission finishes it with nothing lost and nothing run twice (marker logs).

Skipped (loudly) when the Slurm binaries are missing: install with .ci/install-slurm.sh.
"""
import json
import sys
import time
from pathlib import Path

import pytest
from slurm_jobs import journal_rows

from pilotq_mpi.platform.sbatch import SbatchRequest, render
from pilotq_mpi.platform.submit_cli import default_launcher

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
PY = sys.executable
pytestmark = [pytest.mark.slurm]


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no output file)"


def _script(app_argv, out: Path, *, ranks_per_node: int, gpus_per_node: int = 0, job_name: str,
            **env: str) -> str:
    request = SbatchRequest(app_argv=tuple(map(str, app_argv)), target="generic", nodes=1,
                            ranks_per_node=ranks_per_node, gpus_per_node=gpus_per_node, time="00:05:00",
                            signal_lead=60, output=str(out), job_name=job_name,
                            launcher=default_launcher(), python=PY)
    exports = {"PYTHONPATH": str(ROOT), "PILOTQ_PROGRESS": "off", **env}
    lines = "".join(f"export {k}={v}\n" for k, v in exports.items())
    script = render(request)
    assert "set -u\n" in script
    return script.replace("set -u\n", "set -u\n" + lines, 1)


def _submit(cluster, script: str, workdir: Path) -> str:
    # --chdir: the job's pid and exit-code files ($PWD/.pilotq-JOBID.*) land in workdir
    workdir.mkdir(parents=True, exist_ok=True)
    return cluster.sbatch(script, f"--chdir={workdir}")


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


# --- GPU layout -------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_four_workers_get_one_distinct_slurm_gpu_each(slurm_cluster):
    work = slurm_cluster.jobs_dir / "gpu-layout"
    out = work / "job.out"
    script = _script([PROGRAMS / "gpu_report_app.py", 40], out, ranks_per_node=5, gpus_per_node=4,
                     job_name="pilotq-gpus")
    job = _submit(slurm_cluster, script, work)
    state = slurm_cluster.wait(job, timeout=180)
    text = _read(out)
    assert state == "COMPLETED", f"job {job} ended {state}\n{_tail(text)}"
    assert slurm_cluster.job_info(job)["ExitCode"] == "0:0", _tail(text)
    lines = [line for line in text.splitlines() if line.startswith("GPU_REPORT ")]
    assert len(lines) == 1, _tail(text)
    report = json.loads(lines[0].split(" ", 1)[1])
    master, inventory, tasks = report["master"], report["inventory"], report["tasks"]

    # what Slurm gave: the step's GPUs if it says (SLURM_STEP_GPUS / CUDA_VISIBLE_DEVICES on rank 0,
    # which the pilot never re-pins), else the job's (SLURM_JOB_GPUS; Slurm 22.05 sets only this
    # for a step launched without --gpus* options, as the template's srun line is)
    given = master["SLURM_STEP_GPUS"] or master["cvd"] or master["SLURM_JOB_GPUS"]
    assert given, f"Slurm told rank 0 of no GPUs at all: {master}"
    slurm_gpus = [int(g) for g in given.split(",")]
    assert sorted(slurm_gpus) == [0, 1, 2, 3], master
    assert {t["SLURM_JOB_GPUS"] for t in tasks} == {master["SLURM_JOB_GPUS"]}, "ranks disagree on the job GPUs"
    assert master["SLURM_LOCALID"] == "0", master

    # the pilot's inventory: 4 workers (world ranks 1-4), one GPU each, rank 0 has none
    assert [r["rank"] for r in inventory] == [1, 2, 3, 4], inventory
    owned = {r["rank"]: r["gpus"] for r in inventory}
    assert all(len(g) == 1 for g in owned.values()), f"each worker should own one GPU: {owned}"

    # what the tasks saw, per worker
    assert sorted(t["task"] for t in tasks) == list(range(40))
    by_rank: dict[int, list[dict]] = {}
    for t in tasks:
        by_rank.setdefault(t["world_rank"], []).append(t)
    assert set(by_rank) == {1, 2, 3, 4}, f"not every worker ran a GPU task: {sorted(by_rank)}"
    seen = {}
    for rank, ran in sorted(by_rank.items()):
        views = {(tuple(t["gpus"]), t["cvd"], t["SLURM_LOCALID"], t["SLURM_PROCID"], t["pid"]) for t in ran}
        assert len(views) == 1, f"rank {rank}'s tasks disagree about their GPU: {views}"
        gpus, cvd, localid, procid, _ = views.pop()
        assert list(gpus) == owned[rank], f"rank {rank}: tasks see {gpus}, the inventory says {owned[rank]}"
        assert len(gpus) == 1 and gpus[0] in slurm_gpus, f"rank {rank}: GPU {gpus} not one Slurm gave"
        assert cvd == str(gpus[0]), f"rank {rank}: CUDA_VISIBLE_DEVICES={cvd!r}, context gpus {gpus}"
        assert procid == str(rank) and localid == str(rank), (rank, procid, localid)  # one node
        seen[rank] = gpus[0]
    assert len(set(seen.values())) == 4, f"two workers share a GPU: {seen}"
    assert sorted(seen.values()) == sorted(slurm_gpus), f"a Slurm GPU is left idle: {seen}"
    layout = ", ".join(f"rank {r} (SLURM_LOCALID {r}) -> GPU {g}" for r, g in sorted(seen.items()))
    print(f"layout: master rank 0 no GPU; {layout}; Slurm GPUs {slurm_gpus}; rank 0 env {master}")


# --- walltime drain and resubmission -------------------------------------------------------------
N_SINGLE, N_WIDE, DELAY = 60, 4, 0.5


def _expected():
    values = {f"single-{i}": i * i + 7 for i in range(N_SINGLE)}
    values.update({f"wide-{i}": 2 * (1000 + i) + 1 for i in range(N_WIDE)})
    return values


def _ran(log: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            word, key, _, rank = line.split()
            assert word == "ran", line
            if rank == "0":
                counts[key] = counts.get(key, 0) + 1
    return counts


def _report(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith('{"restored"')]
    assert len(lines) == 1, _tail(text)
    return json.loads(lines[0])


@pytest.mark.timeout(400)
def test_usr1_drains_journaled_workload_and_resubmission_finishes_it(slurm_cluster):
    work = slurm_cluster.jobs_dir / "drain-resume"
    journal, log1, log2 = work / "journal.sqlite", work / "ran1.log", work / "ran2.log"
    total = N_SINGLE + N_WIDE

    def script(log, out):
        return _script([PROGRAMS / "resume_app.py", journal, log, N_SINGLE, N_WIDE, DELAY], out,
                       ranks_per_node=5, job_name="pilotq-resume", PILOTQ_DRAIN_GRACE="3")

    out1 = work / "run1.out"
    job1 = _submit(slurm_cluster, script(log1, out1), work)
    slurm_cluster.wait_running(job1, timeout=60)
    # no deadline of its own: the job leaving RUNNING ends the wait, the test's timeout a hang
    while not 8 <= len(journal_rows(journal)) < total:
        assert len(journal_rows(journal)) < total, "the workload finished before the test could signal it"
        assert slurm_cluster.job_state(job1) == "RUNNING", _tail(_read(out1))
        time.sleep(0.05)
    slurm_cluster.scancel_signal(job1, "USR1", batch=True)
    state = slurm_cluster.wait(job1, timeout=120)
    text1 = _read(out1)
    info = slurm_cluster.job_info(job1)
    assert info["ExitCode"] == "75:0", f"job {job1} {state} ExitCode {info['ExitCode']}\n{_tail(text1)}"
    assert state == "FAILED", state  # Slurm's name for a non-zero exit
    assert "got SIGUSR1: draining" in text1, _tail(text1)
    assert "pilotq: exit code 75 (launcher exited with status " in text1, _tail(text1)
    report1 = _report(text1)
    assert report1["failed"] and all(e.startswith("WalltimeError") for e in report1["failed"].values()), \
        report1["failed"]

    before = journal_rows(journal)
    done_before = {k for k, s in before if s == "done"}
    assert done_before == set(report1["results"]), "the journal holds exactly the finished tasks"
    assert 0 < len(done_before) < total, len(done_before)
    assert done_before <= set(_ran(log1)), done_before - set(_ran(log1))

    out2 = work / "run2.out"
    job2 = _submit(slurm_cluster, script(log2, out2), work)
    state2 = slurm_cluster.wait(job2, timeout=200)
    text2 = _read(out2)
    assert state2 == "COMPLETED", f"resubmitted job {job2} {state2}\n{_tail(text2)}"
    assert slurm_cluster.job_info(job2)["ExitCode"] == "0:0", _tail(text2)
    report2 = _report(text2)
    assert report2["failed"] == {}, report2["failed"]
    assert report2["results"] == _expected(), "results after the resubmission differ from a clean run's"
    assert report2["restored"] == len(done_before), (report2["restored"], len(done_before))
    after = journal_rows(journal)
    assert sorted(k for k, _ in after) == sorted(_expected()) and {s for _, s in after} == {"done"}, after
    ran2 = _ran(log2)
    assert not done_before & set(ran2), f"ran again after being recorded: {sorted(done_before & set(ran2))}"
    assert set(ran2) == set(_expected()) - done_before, set(_expected()) - done_before ^ set(ran2)
    assert all(c == 1 for c in ran2.values()), ran2
    print(f"drained after {len(done_before)} done of {total}; resubmission restored {report2['restored']},"
          f" ran {len(ran2)}")
