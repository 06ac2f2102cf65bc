"""The master's runner of the adapt policy: one helper thread per round, one failure per failed round."""
import threading

from pilotq_mpi.core.adapt import Adapt, JoinTemplate
from pilotq_mpi.runtime.adapting import AdaptRunner


class FakeJobs:
    """Records submits and cancels; the first ``fail`` submits raise like a failing sbatch."""

    def __init__(self, fail=0):
        self.fail, self.calls, self.gate = fail, [], threading.Event()
        self.gate.set()

    def submit(self, template):
        self.gate.wait(10)
        self.calls.append("submit")
        if self.fail:
            self.fail -= 1
            raise RuntimeError("sbatch: error: invalid partition")
        return str(100 + len(self.calls))

    def cancel(self, job_id):
        self.calls.append(f"cancel {job_id}")
        return True


def runner(jobs, **policy):
    notes = []
    policy = Adapt(template=JoinTemplate(ranks_per_node=2), **{"max_jobs": 3, "busy_after": 1.0, "cooldown": 0.0,
                                                               "interval": 0.5, **policy})
    adapt = AdaptRunner(policy, jobs, notes.append)
    adapt.log = lambda line: None
    return adapt, notes


def settle(adapt):
    adapt._working.join(10)
    adapt._collect()


def test_a_failed_submit_ends_the_round_and_counts_once():
    jobs = FakeJobs(fail=1)
    adapt, notes = runner(jobs)
    assert adapt.due(0.0)
    adapt.decide(0.0, queued=[(10.0, 1)] * 30, ranks=2, allocations=[])
    settle(adapt)
    assert jobs.calls == ["submit"], "the round stops at the first failed sbatch"
    assert adapt.failed == 1 and adapt.pending == {}
    assert [n.get("decision") for n in notes if "decision" in n].count("submit") >= 2  # it had asked for more
    assert any(n.get("outcome") == "failed" and "invalid partition" in n["message"] for n in notes)


def test_no_decision_while_a_round_is_still_submitting_and_joined_jobs_leave_pending():
    jobs = FakeJobs()
    jobs.gate.clear()  # sbatch hangs for now
    adapt, _ = runner(jobs, max_jobs=1)
    assert adapt.due(0.0)
    adapt.decide(0.0, queued=[(10.0, 1)] * 30, ranks=2, allocations=[])
    assert not adapt.due(5.0), "no second decision while sbatch runs: never over max_jobs"
    jobs.gate.set()
    settle(adapt)
    assert list(adapt.pending) == ["101"] and adapt.due(5.0)
    from pilotq_mpi.core.adapt import Allocation

    adapt.decide(5.0, queued=[], ranks=4, allocations=[Allocation("join-1", "101", None, 2, None, 4.0)])
    assert adapt.pending == {} and adapt.failed == 0
