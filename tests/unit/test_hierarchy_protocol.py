"""Hierarchical masters: what the top master sends a group and what a sub-master reports back (no MPI)."""
import threading
from concurrent.futures import Future

from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.core.states import TaskEvent, TaskState
from pilotq_mpi.errors import RemoteError
from pilotq_mpi.runtime.hierarchy import EndReport, GroupLink, report_of
from pilotq_mpi.runtime.records import Submission, TaskRecord
from pilotq_mpi.runtime.serialization import loads


def submission(task_id, spec, fn_id=7):
    return Submission(task_id, fn_id, b"function-bytes", b"payload", spec, Future(), frozenset(), "kind", 1.0)


def test_a_group_gets_each_function_and_spec_once_then_ids():
    link = GroupLink()
    spec, other = TaskSpec(1), TaskSpec(2)
    first = link.task_operation(submission(1, spec))
    again = link.task_operation(submission(2, spec))
    wide = link.task_operation(submission(3, other, fn_id=8))
    assert first[3] == b"function-bytes" and first[6] is spec
    assert again[3] is None and again[6] is None and again[5] == first[5]  # by id only
    assert wide[3] == b"function-bytes" and wide[6] is other and wide[5] != first[5]


def ended(record, event, **fields):
    record.fire(TaskEvent.DEPS_MET)
    record.fire(TaskEvent.PLACED)
    for name, value in fields.items():
        setattr(record, name, value)
    record.fire(event)
    report = report_of(record)
    assert type(report) is tuple  # travels as a plain tuple (a named tuple costs a constructor call to load)
    return EndReport._make(report)


def test_a_done_task_reports_its_pickled_value_and_one_rank_needs_no_span_dict():
    record = TaskRecord(submission(1, TaskSpec(1)))
    report = ended(record, TaskEvent.SUCCEEDED, result={"value": 42}, ranks=(3,), started=1.0, ended=2.0,
                   rank_spans={3: (1.0, 2.0)})
    assert report.state == TaskState.DONE.value and loads(report.value) == {"value": 42}
    assert report.error is None and report.rank_spans is None and report.ranks == (3,)


def test_a_failed_task_reports_its_error_and_traceback_and_a_multi_rank_one_its_spans():
    record = TaskRecord(submission(2, TaskSpec(2)))
    report = ended(record, TaskEvent.RAISED, error=ValueError("bad input"), traceback="Traceback ...",
                   ranks=(3, 4), rank_spans={3: (1.0, 2.0), 4: (1.0, 2.5)})
    error = loads(report.error)
    assert isinstance(error, ValueError) and str(error) == "bad input"
    assert report.traceback == "Traceback ..." and report.rank_spans == {3: (1.0, 2.0), 4: (1.0, 2.5)}


def test_a_value_that_will_not_pickle_fails_the_task_with_the_reason():
    record = TaskRecord(submission(3, TaskSpec(1)))
    report = ended(record, TaskEvent.SUCCEEDED, result=threading.Lock(), ranks=(3,))
    assert report.state == TaskState.FAILED.value
    error = loads(report.error)
    assert isinstance(error, RemoteError) and "could not send on" in str(error)


def test_a_start_in_a_later_pass_than_the_hand_out_still_goes_up(recording_world):
    from pilotq_mpi.runtime.hierarchy import Uplink, _RelayedFuture

    world = recording_world
    uplink = Uplink(world, start_delay=0.0)  # a start goes up in the next pass, whatever ends
    early = _RelayedFuture(1, uplink)
    late = _RelayedFuture(2, uplink)   # handed out in the same pass, prefetched behind task 1
    assert early.set_running_or_notify_cancel()
    uplink.pass_ended()
    assert late.set_running_or_notify_cancel()  # starts a pass later
    uplink.pass_ended()
    assert [message[0] for message in world.bodies] == [[1], [2]]
    uplink.close()
    assert world.bodies[-1] == ([], [], True)


def test_a_task_that_starts_and_ends_in_one_pass_goes_up_by_its_end_report_alone(recording_world):
    from pilotq_mpi.runtime.hierarchy import Uplink, _RelayedFuture

    world = recording_world
    uplink = Uplink(world)
    quick, slow = _RelayedFuture(1, uplink), _RelayedFuture(2, uplink)
    assert quick.set_running_or_notify_cancel() and slow.set_running_or_notify_cancel()
    record = TaskRecord(submission(1, TaskSpec(1)))
    uplink.task_ended(ended_record(record))
    uplink.pass_ended()
    started, ended, last = world.bodies[0]
    assert started == [2] and [report[0] for report in ended] == [1] and last is False


def ended_record(record):
    record.fire(TaskEvent.DEPS_MET)
    record.fire(TaskEvent.PLACED)
    record.result, record.ranks, record.started, record.ended = 5, (3,), 1.0, 2.0
    record.fire(TaskEvent.SUCCEEDED)
    return record


def test_a_start_alone_waits_for_the_next_end_and_then_goes_up_with_it(recording_world):
    from pilotq_mpi.runtime.hierarchy import Uplink, _RelayedFuture

    world = recording_world
    uplink = Uplink(world, start_delay=3600.0)
    running = _RelayedFuture(2, uplink)
    assert running.set_running_or_notify_cancel()
    uplink.pass_ended()
    assert world.bodies == []  # one message less for the top
    uplink.task_ended(ended_record(TaskRecord(submission(1, TaskSpec(1)))))
    uplink.pass_ended()
    assert [(message[0], [report[0] for report in message[1]]) for message in world.bodies] == [([2], [1])]
    late = _RelayedFuture(3, uplink)
    assert late.set_running_or_notify_cancel()
    uplink.close()  # the last message carries what is left
    assert world.bodies[-1] == ([3], [], True)
