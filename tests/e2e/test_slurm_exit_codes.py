"""Exit codes and walltime warnings on a real Slurm (the one-node cluster of the fixture).

What ``scontrol show job`` reports is what a job chain or a user sees, so every test reads
``ExitCode`` there. Under ``srun --mpi=pmi2`` an ``MPI_Abort(code)`` makes srun return 137
whatever the code; the batch script exits with the code rank 0 wrote to
``$PILOTQ_EXIT_CODE_FILE`` instead. Jobs are rendered from the package's templates and
submitted from a directory outside the checkout, with the installed ``pilotq-srun``.

Skipped (loudly) when the Slurm binaries are missing: install with .ci/install-slurm.sh.
"""
import json

import pytest
from slurm_jobs import PROGRAMS, exit_code, journal_rows, pilot_script, read, submit, tail, wait_for

from pilotq_mpi.trace import read_trace

pytestmark = [pytest.mark.slurm]
APP = PROGRAMS / "slurm_ending_app.py"


def _started(directory):
    return sum(1 for p in directory.iterdir() if p.name.startswith("started-"))


def _run(cluster, work, scenario, *, signal_after_start=False, timeout=150, **env):
    """Run ``slurm_ending_app.py SCENARIO`` as a job; optionally send the walltime warning
    (``scancel --signal=USR1 --batch``) once a task has started. Returns (job, text)."""
    data = work / "data"
    data.mkdir(parents=True)
    out = work / "job.out"
    job = submit(cluster, pilot_script([APP, scenario, data], out, ranks_per_node=4,
                                       job_name=f"pilotq-{scenario}", **env), work)
    if signal_after_start:
        wait_for(lambda: _started(data) > 0, timeout=90, what="a task started",
                 cluster=cluster, job=job, out=out)
        cluster.scancel_signal(job, "USR1", batch=True)
    state = cluster.wait(job, timeout=timeout)
    text = read(out)
    assert state in ("COMPLETED", "FAILED"), f"job {job} ended {state}\n{tail(text)}"
    return job, text


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario,code,says", [
    ("ok", 0, "APP RESULT 28"),
    ("raise", 1, "RuntimeError: driver bug with work queued"),
    ("exit4", 4, "pilotq: exit code 4"),
    ("stuck", 3, "APP COLLECTIVE ValueError"),
])
def test_exit_code_reaches_slurm(slurm_cluster, tmp_path, scenario, code, says):
    job, text = _run(slurm_cluster, tmp_path, scenario, PILOTQ_STUCK_GRACE="2")
    assert exit_code(slurm_cluster, job) == f"{code}:0", tail(text)
    assert says in text, tail(text)
    assert f"pilotq: exit code {code} (launcher exited with status " in text, tail(text)
    assert not list(tmp_path.glob(".pilotq-*")), "the job's pid and exit-code files are removed"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", ["drain", "drain-quick"])
def test_walltime_warning_drains_with_75(slurm_cluster, tmp_path, scenario):
    """drain: a task runs past the grace (the pilot has to cut it: srun says 137);
    drain-quick: the running tasks finish within the grace and the job ends in order."""
    job, text = _run(slurm_cluster, tmp_path, scenario, signal_after_start=True,
                     PILOTQ_DRAIN_GRACE="2", PILOTQ_STUCK_GRACE="2")
    assert exit_code(slurm_cluster, job) == "75:0", tail(text)
    assert "pilotq: passing SIGUSR1 to rank 0" in text, tail(text)
    assert "got SIGUSR1: draining" in text, tail(text)
    assert "pilotq: exit code 75 (launcher exited with status " in text, tail(text)
    assert "User defined signal 1" not in text, tail(text)


# --- a warning before the pilot is up -------------------------------------------------------------
SITECUSTOMIZE = '''\
import os, time
# a slow start-up of every rank (imports from a loaded shared file system): only in job steps
if os.environ.get("SLURM_PROCID") is not None and os.environ.get("SLOW_START_DIR"):
    open(os.path.join(os.environ["SLOW_START_DIR"], "starting-" + os.environ["SLURM_PROCID"]), "w").close()
    time.sleep(float(os.environ.get("SLOW_START_SECONDS", "5")))
'''


@pytest.mark.timeout(240)
def test_warning_during_slow_python_start_up_drains_with_75(slurm_cluster, tmp_path):
    """The warning arrives while every rank's Python is still starting (a sitecustomize that
    sleeps): nothing is killed, rank 0 drains as soon as it is up, the job ends with 75."""
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "job.out"
    job = submit(slurm_cluster, pilot_script(
        [PROGRAMS / "pilot_app.py", 12, 0.5], out, ranks_per_node=4, job_name="pilotq-slow",
        PYTHONPATH=f"{slow}:{PROGRAMS.parents[2]}", SLOW_START_DIR=str(slow),
        SLOW_START_SECONDS="6", PILOTQ_DRAIN_GRACE="2"), tmp_path)
    wait_for(lambda: (slow / "starting-0").exists(), timeout=90, what="rank 0 started its slow start-up",
             cluster=slurm_cluster, job=job, out=out)
    slurm_cluster.scancel_signal(job, "USR1", batch=True)
    state = slurm_cluster.wait(job, timeout=150)
    text = read(out)
    assert exit_code(slurm_cluster, job) == "75:0", f"{state}\n{tail(text)}"
    assert "User defined signal 1" not in text and "138" not in text.split("pilotq: exit code")[-1], tail(text)
    assert "pilotq: passing SIGUSR1 to rank 0" in text and "got SIGUSR1: draining" in text, tail(text)
    assert "APP RESULT" in text, "the driver ran to its end (its tasks cancelled by the drain)"


@pytest.mark.timeout(240)
def test_warning_while_the_script_loads_modules_drains_with_75(slurm_cluster, tmp_path):
    """The warning arrives before srun has even started (the script is still loading its
    environment): it is remembered and handed to rank 0 once the pilot is up."""
    out = tmp_path / "job.out"
    script = pilot_script([PROGRAMS / "pilot_app.py", 12, 0.5], out, ranks_per_node=4,
                          job_name="pilotq-modules", PILOTQ_DRAIN_GRACE="2")
    loading = tmp_path / "loading-modules"
    assert "# module load python\n" in script
    script = script.replace("# module load python\n", f"touch {loading}; sleep 5  # a slow module load\n")
    job = submit(slurm_cluster, script, tmp_path)
    wait_for(loading.exists, timeout=90, what="the script started loading modules",
             cluster=slurm_cluster, job=job, out=out)
    slurm_cluster.scancel_signal(job, "USR1", batch=True)
    state = slurm_cluster.wait(job, timeout=150)
    text = read(out)
    assert exit_code(slurm_cluster, job) == "75:0", f"{state}\n{tail(text)}"
    assert "pilotq: passing SIGUSR1 to rank 0" in text and "got SIGUSR1: draining" in text, tail(text)


# --- a drain starts nothing new ---------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_drain_with_long_tasks_starts_nothing_after_the_warning(slurm_cluster, tmp_path):
    """4 workers, 24 tasks of 6 s, with 2 more queued on every busy worker (prefetch behind
    tasks of any length: PILOTQ_PREFETCH_HORIZON=inf, the worst case for a drain). The warning
    comes while the first 4 run; they finish within the grace, and the trace shows no task
    that started after the warning reached rank 0: the queued ones never start."""
    data = tmp_path / "data"
    data.mkdir()
    out, trace = tmp_path / "job.out", tmp_path / "trace.jsonl"
    job = submit(slurm_cluster, pilot_script(
        [PROGRAMS / "slurm_long_tasks_app.py", data, 24, 6.0], out, ranks_per_node=5,
        job_name="pilotq-nostart", PILOTQ_DRAIN_GRACE="20", PILOTQ_TRACE=str(trace),
        PILOTQ_PREFETCH="2", PILOTQ_PREFETCH_HORIZON="inf"), tmp_path)
    wait_for(lambda: _started(data) >= 4, timeout=120, what="every worker started a task",
             cluster=slurm_cluster, job=job, out=out)
    slurm_cluster.scancel_signal(job, "USR1", batch=True)
    state = slurm_cluster.wait(job, timeout=180)
    text = read(out)
    assert exit_code(slurm_cluster, job) == "75:0", f"{state}\n{tail(text)}"
    handed = [float(line.split()[1]) for line in text.splitlines() if line.startswith("HANDED ")]
    assert len(handed) == 1, tail(text)
    records = [r for r in read_trace(trace) if r.get("type") == "task"]
    started = sorted(r["start"] for r in records if r["start"] is not None)
    late = [r for r in records if r["start"] is not None and r["start"] > handed[0]]
    assert not late, (f"{len(late)} task(s) started after the warning reached rank 0 at {handed[0]:.3f}: "
                      f"{[(r['name'], round(r['start'] - handed[0], 3), r['state']) for r in late]}")
    assert len(started) == 4, f"only the 4 tasks running at the warning ran: {started}"
    assert _started(data) == 4, "no task function ran after the warning"
    summary = json.loads(text.split("APP SUMMARY ", 1)[1].splitlines()[0])
    assert summary["done"] == 4 and summary["cancelled"] == 20, summary


# --- a job chain ------------------------------------------------------------------------------------
N_SINGLE, N_WIDE, DELAY = 60, 4, 0.5


def _expected():
    values = {f"single-{i}": i * i + 7 for i in range(N_SINGLE)}
    values.update({f"wide-{i}": 2 * (1000 + i) + 1 for i in range(N_WIDE)})
    return values


def _next_job(text):
    lines = [line for line in text.splitlines() if line.startswith("pilotq: resubmitted as job ")]
    assert len(lines) == 1, tail(text)
    return lines[0].split()[4]


@pytest.mark.timeout(600)
def test_job_chain_finishes_a_journaled_workload_across_three_jobs(slurm_cluster, tmp_path):
    """The rendered script with its chain block enabled: job 1 and job 2 get the walltime
    warning part-way, drain (75) and submit the script again; job 3 finishes (0) and submits
    nothing. Every task ran exactly once over the chain, the last job has every result."""
    journal, log = tmp_path / "journal.sqlite", tmp_path / "ran.log"
    total = N_SINGLE + N_WIDE
    script = pilot_script([PROGRAMS / "resume_app.py", journal, log, N_SINGLE, N_WIDE, DELAY],
                          tmp_path / "chain-%j.out", ranks_per_node=5, job_name="pilotq-chain",
                          chain=True, PILOTQ_DRAIN_GRACE="3")
    # set at submission, as a user would: the script counts it down from job to job
    job = submit(slurm_cluster, script, tmp_path, "--export=ALL,PILOTQ_CHAIN_LEFT=5")
    jobs, codes = [job], []
    for round_ in range(2):  # warn jobs 1 and 2 part-way
        out = tmp_path / f"chain-{job}.out"
        done_before = sum(1 for _, s in journal_rows(journal) if s == "done")
        wait_for(lambda: sum(1 for _, s in journal_rows(journal) if s == "done") >= done_before + 8,
                 timeout=150, what=f"job {job} recorded 8 more tasks", cluster=slurm_cluster, job=job, out=out)
        assert sum(1 for _, s in journal_rows(journal) if s == "done") < total, \
            "the workload finished before the warning: make it longer"
        slurm_cluster.scancel_signal(job, "USR1", batch=True)
        slurm_cluster.wait(job, timeout=150)
        text = read(out)
        codes.append(exit_code(slurm_cluster, job))
        assert codes[-1] == "75:0", tail(text)
        job = _next_job(text)  # submitted by the job itself
        assert f"({5 - round_ - 1} more at most)" in text, tail(text)
        jobs.append(job)
    state = slurm_cluster.wait(job, timeout=200)
    text = read(tmp_path / f"chain-{job}.out")
    codes.append(exit_code(slurm_cluster, job))
    assert state == "COMPLETED" and codes[-1] == "0:0", tail(text)
    assert "resubmitted" not in text, "a job that finished must not resubmit"
    info = slurm_cluster.job_info(job)
    assert info.get("Dependency") in (None, "(null)"), info  # the dependency was met
    report = json.loads([line for line in text.splitlines() if line.startswith('{"restored"')][-1])
    assert report["failed"] == {} and report["results"] == _expected(), report
    rows = journal_rows(journal)
    assert sorted(k for k, _ in rows) == sorted(_expected()) and {s for _, s in rows} == {"done"}, rows
    ran = {}
    for line in log.read_text().splitlines():
        _, key, _, rank = line.split()
        if rank == "0":
            ran[key] = ran.get(key, 0) + 1
    assert ran == {key: 1 for key in _expected()}, \
        f"not exactly once: {({k: c for k, c in ran.items() if c != 1}, set(_expected()) - set(ran))}"
    print(f"chain {jobs}: exit codes {codes}")
