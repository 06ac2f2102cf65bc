"""Task dependencies (``after=``): which tasks become ready or fail when one ends (pure)."""
from __future__ import annotations

from collections import defaultdict


class DependencyTracker:
    """Tracks, for every waiting task, the dependencies it still waits for."""

    def __init__(self) -> None:
        self._waiting_on: dict[int, set[int]] = {}
        self._dependents: dict[int, list[int]] = defaultdict(list)
        self._outcome: dict[int, bool] = {}

    def add(self, task_id: int, deps: set[int] | frozenset[int]) -> tuple[bool, int | None]:
        """Register a task; return ``(ready, failed_dep)``.

        ``ready`` is True when every dependency already succeeded; ``failed_dep`` names a
        dependency that already ended without success (the task must fail at once).
        """
        pending = set()
        for dep in deps:
            outcome = self._outcome.get(dep)
            if outcome is False:
                return False, dep
            if outcome is None:
                pending.add(dep)
        if not pending:
            return True, None
        self._waiting_on[task_id] = pending
        for dep in pending:
            self._dependents[dep].append(task_id)
        return False, None

    def finished(self, task_id: int, succeeded: bool) -> tuple[list[int], list[int]]:
        """Record that ``task_id`` ended; return (tasks now ready, tasks that must fail).

        The caller fails the second list (and reports each of them here in turn, so that
        failures cascade down the graph).
        """
        self._outcome[task_id] = succeeded
        ready, doomed = [], []
        for dependent in self._dependents.pop(task_id, ()):
            waits = self._waiting_on.get(dependent)
            if waits is None:
                continue
            if not succeeded:
                del self._waiting_on[dependent]
                doomed.append(dependent)
                continue
            waits.discard(task_id)
            if not waits:
                del self._waiting_on[dependent]
                ready.append(dependent)
        return ready, doomed

    def forget(self, task_id: int) -> None:
        """Stop tracking a waiting task (it was cancelled)."""
        self._waiting_on.pop(task_id, None)

    @property
    def waiting(self) -> int:
        """Number of tasks waiting for dependencies."""
        return len(self._waiting_on)
