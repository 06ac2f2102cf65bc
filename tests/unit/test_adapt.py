"""The adapt policy (pilotq_mpi.core.adapt) over scripted views, a property over random runs
of a simulated runtime, and its Slurm side effects (pilotq_mpi.platform.adapt_jobs) with
fake sbatch/scancel executables on PATH."""
import os
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings, strategies as st

from pilotq_mpi.core.adapt import (
    Adapt, AdaptView, Allocation, Cancel, JoinTemplate, PendingJob, Release, Submit,
    queued_work_seconds)
from pilotq_mpi.platform.adapt_jobs import CancelError, SlurmJobs, sbatch_environment
from pilotq_mpi.platform.sbatch import SubmitError

GPU = JoinTemplate(pool="gpu", nodes=1, ranks_per_node=4)  # 4 ranks per job


def policy(**kwargs):
    args = dict(template=GPU, max_jobs=2, busy_after=60.0, idle_release=300.0, cooldown=30.0,
                join_timeout=600.0, failure_backoff=100.0, max_backoff=400.0)
    args.update(kwargs)
    return Adapt(**args)


def kinds(decisions):
    return [type(d).__name__ for d in decisions]


def alloc(name, *, job=None, pool="gpu", ranks=4, idle_since=None, joined_at=0.0):
    return Allocation(name, job, pool, ranks, idle_since, joined_at)


# --- submits ---------------------------------------------------------------------------------

def test_submits_when_queued_work_would_keep_the_ranks_busy_longer_than_busy_after():
    adapt = policy(max_jobs=1)
    # 4 ranks, 241 rank-s queued: 60.25 s each > 60 s
    decisions = adapt.decide(AdaptView(queued_work_seconds=241, queued_tasks=10, ranks=4), now=0)
    assert kinds(decisions) == ["Submit"] and decisions[0].template == GPU
    assert "would keep 4 ranks busy 60.2 s > busy_after 60 s" in decisions[0].reason
    assert decisions[0].record()["decision"] == "submit" and decisions[0].record()["pool"] == "gpu"
    # exactly T per rank, or nothing queued: nothing
    assert adapt.decide(AdaptView(240, 10, 4), now=0) == []
    assert adapt.decide(AdaptView(0, 0, 4), now=0) == []
    # no rank at all: any queued task is a reason
    assert kinds(adapt.decide(AdaptView(0, 1, 0), now=0)) == ["Submit"]


def test_submits_as_many_jobs_as_bring_the_load_down_but_no_more_than_tasks_or_max():
    adapt = policy(max_jobs=5)
    # 2 ranks, 1200 rank-s: 1200/60 = 20 ranks wanted, 18 more = 5 jobs of 4; max 5
    assert kinds(adapt.decide(AdaptView(1200, 100, 2), now=0)) == ["Submit"] * 5
    # 600 rank-s: 10 ranks wanted, 8 more = 2 jobs
    assert kinds(adapt.decide(AdaptView(600, 100, 2), now=0)) == ["Submit"] * 2
    # three long tasks: three ranks more at most (one job), however long they are
    assert kinds(adapt.decide(AdaptView(30000, 3, 2), now=0)) == ["Submit"]
    # max_jobs 2 with one joined and one pending: no room
    full = AdaptView(1200, 100, 6, allocations=[alloc("a1", job="7")], pending_jobs=[("8", 0.0)])
    assert policy(max_jobs=2).decide(full, now=10) == []


def test_pending_jobs_count_as_coming_ranks():
    adapt = policy(max_jobs=3)
    # 4 ranks + 4 coming: 480 rank-s is 60 s each: enough
    view = AdaptView(480, 20, 4, pending_jobs=[PendingJob("11", 0.0)], last_submit_at=0.0)
    assert adapt.decide(view, now=100) == []
    view = AdaptView(481, 20, 4, pending_jobs=[PendingJob("11", 0.0)], last_submit_at=0.0)
    decisions = adapt.decide(view, now=100)
    assert kinds(decisions) == ["Submit"] and "4 ranks + 4 coming" in decisions[0].reason


def test_cooldown_between_submits_for_work():
    adapt = policy(max_jobs=3, cooldown=30.0)
    busy = dict(queued_work_seconds=10000, queued_tasks=2, ranks=4)
    assert adapt.decide(AdaptView(**busy, last_submit_at=100.0), now=129.0) == []
    assert kinds(adapt.decide(AdaptView(**busy, last_submit_at=100.0), now=130.0)) == ["Submit"]


def test_no_submit_for_work_while_a_joined_allocation_is_idle():
    adapt = policy(max_jobs=3)
    view = AdaptView(10000, 50, 8, allocations=[alloc("a1", job="5", idle_since=10.0)])
    assert adapt.decide(view, now=20.0) == []  # the queued work does not run there: nor elsewhere
    view = AdaptView(10000, 50, 8, allocations=[alloc("a1", job="5")])
    assert kinds(adapt.decide(view, now=20.0)) == ["Submit", "Submit"]  # the room left under max


def test_min_jobs_are_kept_submitted_without_work():
    adapt = policy(min_jobs=2, max_jobs=3)
    decisions = adapt.decide(AdaptView(0, 0, 4), now=0)
    assert kinds(decisions) == ["Submit", "Submit"]
    assert "0 joined + 0 pending jobs < min_jobs 2" in decisions[0].reason
    view = AdaptView(0, 0, 8, allocations=[alloc("a1", job="3")], pending_jobs=[("4", 0.0)])
    assert adapt.decide(view, now=1) == []


# --- failures --------------------------------------------------------------------------------

def test_backs_off_after_failed_submits_doubling_up_to_max_backoff():
    adapt = policy(max_jobs=1, failure_backoff=100.0, max_backoff=400.0)
    busy = dict(queued_work_seconds=10000, queued_tasks=5, ranks=4)
    assert [adapt.backoff(n) for n in range(6)] == [0.0, 100.0, 200.0, 400.0, 400.0, 400.0]
    assert adapt.decide(AdaptView(**busy, failed_submits=1, last_failure_at=0.0), now=99) == []
    assert kinds(adapt.decide(AdaptView(**busy, failed_submits=1, last_failure_at=0.0), now=100)) == ["Submit"]
    assert adapt.decide(AdaptView(**busy, failed_submits=3, last_failure_at=0.0), now=399) == []
    assert kinds(adapt.decide(AdaptView(**busy, failed_submits=9, last_failure_at=0.0), now=400)) == ["Submit"]
    # min_jobs waits for the back-off too
    floor = policy(min_jobs=1, max_jobs=1)
    assert floor.decide(AdaptView(0, 0, 4, failed_submits=1, last_failure_at=50.0), now=60) == []


def test_cancels_a_job_that_never_joins_and_counts_it_as_a_failure():
    adapt = policy(max_jobs=2, join_timeout=600.0)
    view = AdaptView(10000, 50, 4, pending_jobs=[("21", 0.0), ("22", 500.0)], last_submit_at=500.0)
    assert adapt.decide(view, now=600.0) == []  # 600 s is not more than join_timeout
    decisions = adapt.decide(view, now=601.0)
    # job 21 is cancelled as failed; the round's failure holds back the submit its room allows
    assert decisions == [Cancel("21", decisions[0].reason, failed=True)]
    assert "has not joined 601 s after its submission (join_timeout 600 s)" in decisions[0].reason
    assert decisions[0].record() == {"decision": "cancel", "job_id": "21", "failed": True,
                                     "reason": decisions[0].reason}
    # never cancelled when join_timeout is None
    assert policy(join_timeout=None).decide(view, now=1e9) == []


def test_a_pending_job_that_joined_counts_once():
    adapt = policy(max_jobs=2)
    view = AdaptView(10000, 50, 8, allocations=[alloc("a1", job="30")],
                     pending_jobs=[("30", 0.0)], last_submit_at=0.0)
    assert kinds(adapt.decide(view, now=1000.0)) == ["Submit"]  # 1 of 2 in use, not 2; not timed out


# --- releases --------------------------------------------------------------------------------

def test_releases_allocations_idle_longer_than_idle_release():
    adapt = policy(max_jobs=3, idle_release=300.0)
    view = AdaptView(0, 0, 12, allocations=[
        alloc("a1", job="1", idle_since=0.0), alloc("a2", job="2", idle_since=100.0), alloc("a3", job="3")])
    assert adapt.decide(view, now=300.0) == []
    decisions = adapt.decide(view, now=301.0)
    assert decisions == [Release("a1", decisions[0].reason)]
    assert "allocation a1 (4 ranks, pool gpu) idle for 301 s > idle_release 300 s" in decisions[0].reason
    assert kinds(adapt.decide(view, now=401.0)) == ["Release", "Release"]


def test_never_releases_below_min_jobs():
    adapt = policy(min_jobs=1, max_jobs=3)
    view = AdaptView(0, 0, 8, allocations=[alloc("a1", job="1", idle_since=0.0),
                                           alloc("a2", job="2", idle_since=50.0)])
    decisions = adapt.decide(view, now=10000.0)
    assert [d.allocation_id for d in decisions] == ["a1"]  # the longest idle goes, a2 stays
    assert "1 joined left (min_jobs 1)" in decisions[0].reason
    assert adapt.decide(AdaptView(0, 0, 4, allocations=[alloc("a2", job="2", idle_since=50.0)]),
                        now=10000.0) == []


def test_leaving_allocations_count_against_max_but_are_not_released_again():
    adapt = policy(min_jobs=1, max_jobs=2)
    going = Allocation("a1", "1", "gpu", 4, 0.0, 0.0, leaving=True)
    view = AdaptView(10000, 50, 8, allocations=[going, alloc("a2", job="2")])
    assert adapt.decide(view, now=5000.0) == []  # no room; a1 not released twice
    # a leaving allocation does not count for min_jobs: its replacement is submitted
    view = AdaptView(0, 0, 4, allocations=[going])
    decisions = adapt.decide(view, now=5000.0)
    assert kinds(decisions) == ["Submit"] and "0 joined + 0 pending jobs < min_jobs 1" in decisions[0].reason


def test_only_allocations_of_the_templates_pool_are_the_policys():
    adapt = policy(max_jobs=1)
    others = [alloc("c1", job="9", pool="cpu", idle_since=0.0), alloc("d1", pool=None, idle_since=0.0)]
    view = AdaptView(10000, 10, 8, allocations=others)
    assert kinds(adapt.decide(view, now=5000.0)) == ["Submit"]  # not released, not counted


def test_over_max_cancels_the_newest_pending_then_releases_idle():
    """More jobs than max_jobs (a manual join, or sbatch that timed out but queued the job)."""
    adapt = policy(max_jobs=2)
    view = AdaptView(0, 0, 12, allocations=[alloc("a1", job="1"), alloc("a2", job="2", idle_since=90.0),
                                            alloc("a3", idle_since=95.0)],
                     pending_jobs=[("4", 10.0), ("5", 20.0)])
    decisions = adapt.decide(view, now=100.0)
    assert [(type(d).__name__, getattr(d, "job_id", None) or d.allocation_id) for d in decisions] == [
        ("Cancel", "5"), ("Cancel", "4"), ("Release", "a2")]
    assert not any(d.failed for d in decisions if isinstance(d, Cancel))
    assert "3 joined + 2 pending jobs > max_jobs 2" in decisions[0].reason


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(template="gpu"), r"template='gpu': pass a JoinTemplate"),
    (dict(min_jobs=-1), r"min_jobs=-1: must be an integer >= 0"),
    (dict(max_jobs=0), r"max_jobs=0: must be an integer >= 1 .*leave adapt out"),
    (dict(min_jobs=3, max_jobs=2), r"min_jobs=3 > max_jobs=2: raise max_jobs or lower min_jobs"),
    (dict(busy_after=0), r"busy_after=0: must be a number of seconds > 0"),
    (dict(idle_release=-5), r"idle_release=-5"),
    (dict(cooldown=-1), r"cooldown=-1: must be a number of seconds >= 0"),
    (dict(join_timeout=0), r"join_timeout=0: .* or None"),
    (dict(failure_backoff=float("nan")), r"failure_backoff=nan"),
    (dict(failure_backoff=100.0, max_backoff=50.0), r"max_backoff=50.0 < failure_backoff=100.0"),
    (dict(interval="1"), r"interval='1'"),
])
def test_bad_adapt_says_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(walltime="30"), r"JoinTemplate: time='30': use HH:MM:SS"),
    (dict(nodes=0), r"JoinTemplate: nodes=0: must be an integer >= 1"),
    (dict(pool="a b"), r"JoinTemplate: pool='a b': use letters"),
    (dict(target="perlmutter-gpu", gpus_per_node=8), r"JoinTemplate: gpus_per_node=8"),
    (dict(extra_directives="--partition=x"), r"extra_directives='--partition=x': pass a sequence"),
    (dict(extra_directives=("partition=x",)), r"write it as an sbatch option"),
])
def test_bad_template_says_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JoinTemplate(**kwargs)


def test_template_ranks_and_view_from_tuples():
    assert JoinTemplate().ranks == 4 and JoinTemplate(nodes=3, ranks_per_node=2).ranks == 6
    assert JoinTemplate(target="perlmutter-gpu", nodes=2).ranks == 8  # a GPU each, no master
    assert "2 nodes x 4 ranks = 8 ranks, pool (default)" in JoinTemplate(target="perlmutter-gpu", nodes=2).describe()
    view = AdaptView(1.0, 1, 1, allocations=[("a", "1", "gpu", 4, None, 0.0)], pending_jobs=[("2", 3.0)])
    assert view.allocations == (alloc("a", job="1"),) and view.pending_jobs == (PendingJob("2", 3.0),)
    with pytest.raises(ValueError, match="failed_submits=2 without last_failure_at"):
        AdaptView(0, 0, 0, failed_submits=2)
    with pytest.raises(ValueError, match="queued_tasks=-1"):
        AdaptView(0, -1, 0)


def test_queued_work_counts_unknown_durations_as_given():
    tasks = [(3.0, 1), (None, 1), (10.0, 4)]  # (predicted seconds or None, ranks)
    assert queued_work_seconds(tasks, unknown_seconds=60.0) == 3.0 + 60.0 + 40.0
    assert queued_work_seconds([], unknown_seconds=60.0) == 0.0


# --- property: a simulated runtime carrying out the decisions --------------------------------

@dataclass
class Runtime:
    """What a runtime does with the decisions: submits become pending (or failures), pending
    jobs join, a released allocation is leaving for a step or more, cancels remove, failures
    in a row reset when a job joins."""

    adapt: Adapt
    now: float = 0.0
    joined: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    outsiders: list = field(default_factory=list)  # manual joins of the same pool
    failures: int = 0
    last_failure: float | None = None
    last_submit: float | None = None
    next_id: int = 100

    def view(self, work, tasks, ranks):
        return AdaptView(work, tasks, ranks, allocations=self.joined + self.outsiders,
                         pending_jobs=self.pending, failed_submits=self.failures,
                         last_failure_at=self.last_failure if self.failures else None,
                         last_submit_at=self.last_submit)

    def apply(self, decisions, sbatch_ok):
        for d in decisions:
            if isinstance(d, Cancel):
                self.pending = [p for p in self.pending if p.job_id != d.job_id]
                if d.failed:
                    self.failures, self.last_failure = self.failures + 1, self.now
            elif isinstance(d, Release):
                self.joined = [replace(a, leaving=True) if a.id == d.allocation_id else a
                               for a in self.joined]
                self.outsiders = [a for a in self.outsiders if a.id != d.allocation_id]
        for d in decisions:
            if isinstance(d, Submit):
                if not sbatch_ok:  # a failed sbatch ends the round's submits
                    self.failures, self.last_failure = self.failures + 1, self.now
                    break
                self.next_id += 1
                self.pending.append(PendingJob(str(self.next_id), self.now))
                self.last_submit = self.now


step = st.fixed_dictionaries(dict(
    dt=st.floats(0, 900), work=st.floats(0, 1e5), tasks=st.integers(0, 40), base=st.integers(0, 8),
    sbatch_ok=st.booleans(), leave=st.booleans(), join=st.lists(st.booleans(), max_size=4),
    idle=st.lists(st.booleans(), max_size=4), outsider=st.sampled_from([False] * 9 + [True])))
policies = st.builds(
    lambda lo, extra, t, u, c, timeout: policy(min_jobs=lo, max_jobs=max(1, lo + extra), busy_after=t,
                                               idle_release=u, cooldown=c, join_timeout=timeout),
    st.integers(0, 2), st.integers(0, 3), st.floats(1, 600), st.floats(1, 900), st.floats(0, 300),
    st.one_of(st.none(), st.floats(1, 2000)))


@settings(max_examples=60, deadline=None)
@given(adapt=policies, steps=st.lists(step, max_size=20))
def test_joined_plus_pending_never_exceeds_max_jobs(adapt, steps):
    rt = Runtime(adapt)
    for s in steps:
        rt.now += s["dt"]
        if s["leave"]:  # released allocations have left (else they are still leaving)
            rt.joined = [a for a in rt.joined if not a.leaving]
        for i, joins in enumerate(s["join"][:len(rt.pending)]):
            if joins:
                job = rt.pending[i]
                rt.joined.append(alloc(f"a{job.job_id}", job=job.job_id, joined_at=rt.now,
                                       idle_since=rt.now))
                rt.failures, rt.last_failure = 0, None
        rt.pending = [p for p in rt.pending if p.job_id not in {a.slurm_job_id for a in rt.joined}]
        rt.joined = [replace(a, idle_since=(a.idle_since or rt.now) if idle else None)
                     for a, idle in zip(rt.joined, s["idle"] + [True] * len(rt.joined))]
        if s["outsider"]:
            rt.outsiders.append(alloc(f"m{len(rt.outsiders)}", joined_at=rt.now, idle_since=rt.now))
        staying = [a for a in rt.joined if not a.leaving]
        before = len(staying) + len(rt.outsiders)
        view = rt.view(s["work"], s["tasks"], s["base"] + 4 * before)
        decisions = adapt.decide(view, rt.now)
        submits = [d for d in decisions if isinstance(d, Submit)]
        releases = [d for d in decisions if isinstance(d, Release)]
        if submits and rt.failures:  # never within the back-off after a failure
            assert rt.now - rt.last_failure >= adapt.backoff(rt.failures)
        # a release never takes the policy's joined jobs below min_jobs, nor repeats one
        assert before - len(releases) >= min(adapt.min_jobs, before)
        assert not {d.allocation_id for d in releases} & {a.id for a in rt.joined if a.leaving}
        # every decision names something that is there
        assert {d.job_id for d in decisions if isinstance(d, Cancel)} <= {p.job_id for p in rt.pending}
        assert {d.allocation_id for d in releases} <= {a.id for a in rt.joined + rt.outsiders}
        rt.apply(decisions, s["sbatch_ok"])
        total = len(rt.joined) + len(rt.outsiders) + len(rt.pending)
        if submits:
            assert total <= adapt.max_jobs, (view, decisions)
        if not rt.outsiders:
            assert total <= adapt.max_jobs, (view, decisions)


# --- SlurmJobs: sbatch and scancel (fake executables on PATH) -------------------------------

def _fake(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A bin/ with sbatch and scancel that record their argv, stdin and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    _fake(bin_dir, "sbatch", f'echo "sbatch $*" >> {log}\ncat > {tmp_path}/script\n'
                             f'env > {tmp_path}/env\necho "Submitted batch job 123"\n')
    _fake(bin_dir, "scancel", f'echo "scancel $*" >> {log}\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


@pytest.mark.timeout(30)
def test_slurm_jobs_submit_renders_the_join_script_and_returns_the_job_id(fake_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the pilot's own job: not the join job's business
    monkeypatch.setenv("PILOTQ_POOL", "cpu")
    monkeypatch.setenv("PILOTQ_PYTHON", "/site/python")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    jobs = SlurmJobs(fake_slurm / "run", python="/venv/bin/python", launcher="/venv/bin/pilotq-srun")
    assert jobs.submit(GPU) == "123"
    assert (fake_slurm / "log").read_text() == "sbatch --parsable\n"
    script = (fake_slurm / "script").read_text()
    assert script == jobs.script(GPU)
    assert f'-m pilotq_mpi --join {fake_slurm / "run"} --pool gpu &' in script
    assert "#SBATCH --job-name=pilotq-join-gpu" in script
    assert f"#SBATCH --output={fake_slurm / 'run' / 'join-%j.out'}" in script
    assert 'PILOTQ_PYTHON="${PILOTQ_PYTHON:-/venv/bin/python}"' in script
    env = dict(line.split("=", 1) for line in (fake_slurm / "env").read_text().splitlines() if "=" in line)
    assert "SLURM_JOB_ID" not in env and "PILOTQ_POOL" not in env
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf" and env["PILOTQ_PYTHON"] == "/site/python"


@pytest.mark.timeout(30)
def test_slurm_jobs_submit_failure_carries_sbatchs_message(fake_slurm):
    _fake(fake_slurm / "bin", "sbatch",
          'echo "sbatch: error: Batch job submission failed: Invalid qos specification" >&2\nexit 1\n')
    with pytest.raises(SubmitError, match="Invalid qos specification"):
        SlurmJobs(fake_slurm / "run").submit(GPU)
    with pytest.raises(SubmitError, match="not found"):
        SlurmJobs(fake_slurm / "run", sbatch=str(fake_slurm / "no-sbatch")).submit(GPU)


@pytest.mark.timeout(30)
def test_slurm_jobs_cancel(fake_slurm):
    jobs = SlurmJobs(fake_slurm / "run")
    assert jobs.cancel("123") is True
    assert (fake_slurm / "log").read_text() == "scancel 123\n"
    _fake(fake_slurm / "bin", "scancel", 'echo "scancel: error: Kill job error on job id 5: '
                                         'Job/step already completing or completed" >&2\nexit 1\n')
    assert jobs.cancel("5") is False
    _fake(fake_slurm / "bin", "scancel", 'echo "scancel: error: Unable to contact slurm controller" >&2\nexit 1\n')
    with pytest.raises(CancelError, match="Unable to contact slurm controller"):
        jobs.cancel("5")
    with pytest.raises(ValueError, match="job_id='x'"):
        jobs.cancel("x")


def test_sbatch_environment_keeps_user_settings_only():
    env = sbatch_environment({"PATH": "/bin", "SLURM_JOB_ID": "1", "SLURM_NTASKS": "4",
                              "SLURM_CONF": "c", "SBATCH_ACCOUNT": "m1", "SRUN_CPUS_PER_TASK": "2",
                              "PMI_RANK": "0", "PILOTQ_RUN_DIR": "/r", "PILOTQ_GPUS_PER_NODE": "0",
                              "PILOTQ_SRUN": "s", "PILOTQ_SRUN_MPI": "cray_shasta"})
    assert env == {"PATH": "/bin", "SLURM_CONF": "c", "SBATCH_ACCOUNT": "m1", "PILOTQ_SRUN": "s",
                   "PILOTQ_SRUN_MPI": "cray_shasta"}
