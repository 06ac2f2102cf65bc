"""What a running task can learn about where it runs (set by the worker loop).

Task code calls :func:`current_task` to see its task id, world ranks, node and the
GPU devices its rank owns, e.g. to pick ``AerSimulator(device="GPU")`` only when the
rank has a GPU. Outside a task it returns ``None``.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True)
class TaskContext:
    """Facts about the task that is running on this rank."""

    task_id: int
    name: str
    world_ranks: tuple[int, ...]
    world_rank: int
    node: str
    gpus: tuple[int, ...]
    """Node-level GPU ids this rank is pinned to (the worker sets CUDA_VISIBLE_DEVICES to
    them, so inside the process they appear as devices 0..len-1); empty on CPU."""
    qpu: str | None = None
    backend: Any = None
    """For QPU tasks: the backend/device object built by the QPU's factory."""

    @property
    def has_gpu(self) -> bool:
        """True when this rank owns at least one GPU."""
        return bool(self.gpus)


_local = threading.local()


def current_task() -> TaskContext | None:
    """Return the context of the task running in this thread, or None outside a task."""
    return getattr(_local, "context", None)


@contextlib.contextmanager
def running(context: TaskContext) -> Iterator[TaskContext]:
    """Make ``context`` the current task for the duration of the ``with`` block."""
    previous = getattr(_local, "context", None)
    _local.context = context
    try:
        yield context
    finally:
        _local.context = previous
