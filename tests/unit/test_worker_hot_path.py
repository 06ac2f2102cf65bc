"""The worker's per-task path (a real Worker on MPI.COMM_SELF; no master needed): the task
context it builds cheaply equals the documented one, is visible to the task only while it
runs, and results that pickle only by value, or not at all, are packed as before."""
import threading

import pytest

from pilotq_mpi import context
from pilotq_mpi.errors import RemoteError
from pilotq_mpi.runtime.messages import TaskMessage, unpack_result
from pilotq_mpi.runtime.serialization import dumps

MPI = pytest.importorskip("mpi4py.MPI")


def seen_context(comm):
    return context.current_task()


def give_lock(comm):
    return threading.Lock()


def give_local_class(comm):
    class Local:  # defined in a function: pickle refuses it, the by-value pickler sends it
        answer = 42
    return Local


def task(fn, task_id=7):
    return TaskMessage(task_id, 0, "probe", task_id, dumps(fn), dumps(((), {})), (0,))


@pytest.fixture
def worker():
    from pilotq_mpi.runtime.worker import Worker

    return Worker(MPI.COMM_SELF, node="node-a", gpus=(0, 1))


def test_task_sees_its_context_and_only_while_it_runs(worker):
    result = worker._run(task(seen_context))
    expected = context.TaskContext(7, "probe", (0,), 0, "node-a", (0, 1))
    assert result.ok and result.value == expected and type(result.value) is context.TaskContext
    assert hash(result.value) == hash(expected)
    with pytest.raises(AttributeError):  # still frozen
        result.value.task_id = 8
    assert context.current_task() is None


def test_results_pickle_by_value_or_fail_cleanly(worker):
    for fn in (give_local_class, give_lock):
        worker._report(worker._run(task(fn, task_id=id(fn) % 1000)), hold=True)
    by_value, unpicklable = (unpack_result(packed) for packed in worker._held)
    assert by_value.ok and by_value.value.answer == 42
    assert not unpicklable.ok and isinstance(unpicklable.error, RemoteError)
    assert "could not be pickled" in str(unpicklable.error)
