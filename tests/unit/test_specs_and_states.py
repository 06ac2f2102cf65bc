"""TaskSpec validation and the task state machine."""
import pytest

from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.core.states import TRANSITIONS, InvalidTransition, TaskEvent, TaskState, next_state


@pytest.mark.parametrize("kwargs, fragment", [
    ({"ranks": 0}, "ranks must be an integer >= 1, got ranks=0"),
    ({"ranks": 2.0}, "got ranks=2.0"),
    ({"ranks": True}, "got ranks=True"),
    ({"gpus_per_rank": -1}, "gpus_per_rank=-1"),
    ({"qpu": ""}, "qpu must be the name"),
    ({"qpu": "fez", "ranks": 2}, "got ranks=2 with qpu='fez'"),
    ({"timeout": 0}, "timeout=0"),
    ({"retries": -1}, "retries=-1"),
    ({"isolate": True, "ranks": 2}, "works for ranks=1 only; got ranks=2"),
    ({"memory_per_rank": 0}, "memory_per_rank must be a positive number"),
    ({"priority": "high"}, "priority='high'"),
])
def test_bad_specs_say_what_is_wrong(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        TaskSpec(**kwargs)
    assert fragment in str(info.value)


def test_impossible_widths_are_resource_errors():
    from pilotq_mpi.errors import ResourceError

    for kwargs in ({"ranks": 0}, {"gpus_per_rank": -1}, {"qpu": "fez", "ranks": 2}):
        with pytest.raises(ResourceError):
            TaskSpec(**kwargs)


def test_spec_defaults_and_resource_class():
    spec = TaskSpec()
    assert (spec.ranks, spec.gpus_per_rank, spec.qpu, spec.priority) == (1, 0, None, 0)
    assert TaskSpec(ranks=4, priority=3).resource_class == TaskSpec(ranks=4, priority=9).resource_class
    assert TaskSpec(ranks=4).resource_class != TaskSpec(ranks=4, gpus_per_rank=1).resource_class


def test_terminal_states():
    assert {s for s in TaskState if s.terminal} == {
        TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
    for (state, _event) in TRANSITIONS:
        assert not state.terminal, "no transition may leave a terminal state"


def test_happy_path_and_retry():
    state = TaskState.PENDING
    for event, expected in [(TaskEvent.DEPS_MET, TaskState.QUEUED), (TaskEvent.PLACED, TaskState.RUNNING),
                            (TaskEvent.RETRY, TaskState.QUEUED), (TaskEvent.PLACED, TaskState.RUNNING),
                            (TaskEvent.SUCCEEDED, TaskState.DONE)]:
        state = next_state(state, event)
        assert state is expected


def test_invalid_transition_names_state_and_event():
    with pytest.raises(InvalidTransition, match="state 'done' cannot take event 'placed'.*terminal"):
        next_state(TaskState.DONE, TaskEvent.PLACED)
    with pytest.raises(InvalidTransition, match="state 'pending' cannot take event 'succeeded'.*allowed: cancel"):
        next_state(TaskState.PENDING, TaskEvent.SUCCEEDED)
