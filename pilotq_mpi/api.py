"""The driver's API: :class:`Pilot`, a ``concurrent.futures.Executor`` with per-task resources."""
from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable, Iterable, Iterator, Sequence

from .core.inventory import Inventory, QpuSpec
from .core.specs import TaskSpec
from .journal import Journal, task_key
from .platform.factories import load_factory
from .runtime import serialization, session
from .runtime.records import Submission

QPU = QpuSpec
"""Declare a QPU: ``QPU("fake_fez", factory="pilotq_mpi.workflows.qpu:fake_backend", ranks=1, concurrency=4)``."""

_task_ids = itertools.count(1)
_NO_DEPS: frozenset[int] = frozenset()
_plain_dumps = pickle.dumps
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_MAIN = b"__main__"
_function_ids = itertools.count(1)


class TaskFuture(Future):
    """A ``concurrent.futures.Future`` that tells the pilot when it is cancelled while queued."""

    def __init__(self, master, task_id: int, name: str):
        super().__init__()
        self._master = master
        self.task_id = task_id
        self.name = name

    def cancel(self) -> bool:
        """Cancel the task if it has not started; True on success (as in the standard library)."""
        cancelled = super().cancel()
        if cancelled:
            self._master.post("cancel", self.task_id)
        return cancelled

    def __repr__(self) -> str:
        return f"<TaskFuture task {self.task_id} {self.name!r} {self._state.lower()}>"


class Pilot(Executor):
    """The running pilot job, seen from the driver script (rank 0).

    ``with Pilot() as pilot:`` attaches to the pilot started by ``python -m pilotq_mpi``;
    leaving the block waits for the tasks submitted through it. ``qpus`` declares QPUs
    (each pins worker ranks; see :class:`QPU`). ``journal`` (a path or a
    :class:`~pilotq_mpi.journal.Journal`) records every finished task; on a rerun with
    the same journal, tasks whose key already has a result are not run again: their
    futures come back resolved (``restored`` counts them). A task's key is ``key=`` or
    a stable hash of its function's qualified name and arguments (see
    :func:`pilotq_mpi.journal.task_key`).

    ``pools`` names pools expected to join later (``python -m pilotq_mpi --join DIR --pool
    NAME``): tasks submitted with ``pool=NAME`` wait for them instead of failing at submit.
    ``adapt`` (:class:`~pilotq_mpi.core.adapt.Adapt`) submits Slurm jobs that join this pilot
    when queued work would keep its ranks busy too long, and releases them when idle (the
    pilot needs ``--run-dir``); its template's pool counts as expected.
    """

    def __init__(self, *, qpus: Sequence[QpuSpec] = (), journal: "str | os.PathLike | Journal | None" = None,
                 pools: Iterable[str] = (), adapt: Any = None):
        self._master = session.current()
        self._owns_journal = journal is not None and not isinstance(journal, Journal)
        self.journal: Journal | None = Journal(journal) if self._owns_journal else journal
        self.restored = 0
        """Tasks whose results came from the journal instead of running."""
        self._lock = threading.Lock()
        self._shutdown = False
        self._futures: list[TaskFuture] = []
        self._compact_at = 1024
        self._feasible: set[tuple] = set()
        """Resource classes already checked against ``_feasible_for`` (checking costs ~2 us)."""
        self._feasible_for: Inventory | None = None
        self._specs: dict[tuple, TaskSpec] = {}
        self._functions: dict[int, tuple[Callable, int, bytes, str]] = {}
        self._checked: dict[int, TaskSpec] = {}
        """Specs already found feasible (by identity: most submits reuse a cached spec)."""
        for qpu in qpus:
            self._declare(qpu)
        pools = [pools] if isinstance(pools, str) else list(pools)
        if pools:
            bad = [p for p in pools if not isinstance(p, str) or not p]
            if bad:
                raise ValueError(f"pools must be non-empty names, got {bad!r}")
            self._ask("expect", frozenset(pools))
        if adapt is not None:
            from .core.adapt import Adapt

            if not isinstance(adapt, Adapt):
                raise TypeError(f"adapt= takes an Adapt(template=JoinTemplate(...), ...), got {adapt!r}")
            self._ask("adapt", adapt)

    # --- resources ------------------------------------------------------------------------
    @property
    def resources(self) -> Inventory:
        """Worker ranks, the node and GPUs of each, and QPU pins (read-only)."""
        return self._master.inventory

    def _declare(self, qpu: QpuSpec) -> None:
        existing = self._master.inventory.qpus.get(qpu.name)
        if existing is not None:
            if existing != qpu:
                raise ValueError(f"QPU {qpu.name!r} is already declared differently in this pilot: {existing}")
            return
        if qpu.factory.startswith("__main__:"):
            raise ValueError(f"QPU {qpu.name!r}: factory {qpu.factory!r} lives in the driver script, which the"
                             " pinned worker cannot import; put it in a module (e.g. next to the script)")
        load_factory(qpu.factory)  # a bad factory path fails here, not on the pinned worker
        self._ask("qpu", qpu)

    def _ask(self, kind: str, what: Any) -> Any:
        """Hand ``what`` to the master loop and wait for its answer (raises what it raises)."""
        reply: Future = Future()
        self._master.post(kind, (what, reply))
        return reply.result()

    def pool(self, name: str) -> "PoolView":
        """An executor for pool ``name``: its ``submit``/``map`` add ``pool=name`` (e.g. for
        :func:`~pilotq_mpi.workflows.cutting.run_cutting`, whose batches then size to that pool)."""
        return PoolView(self, name)

    def release(self, name: str) -> list[str]:
        """End joined allocations early on purpose: ``name`` is an allocation (``join-1``) or a pool.

        No new tasks go there; running ones get the drain grace (``PILOTQ_DRAIN_GRACE``) and
        then run elsewhere; the joined launches exit (a Slurm job ends, so its hours stop
        counting). Returns the allocations released. ``ValueError`` if none has that name.
        """
        return self._ask("release", name)

    # --- submission -----------------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, ranks: int = 1, gpus_per_rank: int = 0, qpu: str | None = None,
               after: Iterable[Future] = (), priority: int = 0, name: str | None = None,
               timeout: float | None = None, retries: int = 0, retry_backoff: float = 1.0,
               isolate: bool = False, gather: bool = False, same_node: bool = False,
               memory_per_rank: int | None = None, key: str | None = None, pool: str | None = None,
               **kwargs: Any) -> TaskFuture:
        """Run ``fn(comm, *args, **kwargs)`` on ``ranks`` worker ranks; return its future.

        ``comm`` is the task's own sub-communicator (``MPI.COMM_SELF`` for one rank); for a
        QPU task it is the QPU's backend object instead. The result is what the task's
        rank 0 returns (every rank's value, in rank order, with ``gather=True``). ``key``
        names the task in the journal (default: a hash of the function and arguments).
        ``pool`` runs the task only on ranks of that pool (see ``--pool``).
        Raises :class:`~pilotq_mpi.ResourceError` at once when this pilot can never run
        the request, ``ValueError``/``TypeError`` for malformed arguments.
        """
        if not callable(fn):
            raise TypeError(f"submit() needs a callable first, got {type(fn).__name__}: {fn!r}")
        spec_key = (ranks, gpus_per_rank, qpu, priority, name, same_node, memory_per_rank, timeout, retries,
                    retry_backoff, isolate, gather, pool)
        try:
            spec = self._specs.get(spec_key)
        except TypeError:  # an unhashable argument: let TaskSpec explain what is wrong
            spec = None
        if spec is None:  # building (validating) a spec costs ~6 us; most submits repeat one
            spec = TaskSpec(ranks, gpus_per_rank, qpu=qpu, priority=priority, name=name, same_node=same_node,
                            memory_per_rank=memory_per_rank, timeout=timeout, retries=retries,
                            retry_backoff=retry_backoff, isolate=isolate, gather=gather, pool=pool)
            if len(self._specs) > 4096:
                self._specs.clear()
            self._specs[spec_key] = spec  # only reached with hashable (valid) values
        return self._submit(fn, args, kwargs, spec, after, chunk=False, key=key)

    def _submit(self, fn: Callable, args: tuple, kwargs: dict, spec: TaskSpec, after: Iterable[Future],
                *, chunk: bool, key: str | None = None) -> TaskFuture:
        # the hot path of one-by-one submits (~10 us here): what repeats is cached per spec and
        # per function, and nothing is done twice
        if self._shutdown:
            raise RuntimeError("cannot submit after shutdown() (or after leaving the `with Pilot()` block)")
        master = self._master
        if self._feasible_for is not master.inventory:  # a QPU pinned ranks since the last check
            self._feasible, self._feasible_for, self._checked = set(), master.inventory, {}
        if self._checked.get(id(spec)) is not spec:
            resource_class = spec.resource_class
            if resource_class not in self._feasible:
                master.scheduler.check(spec)
                self._feasible.add(resource_class)
            self._checked[id(spec)] = spec
        deps = frozenset(self._dependency_ids(after)) if after else _NO_DEPS
        entry = self._functions.get(id(fn))
        if entry is None or entry[0] is not fn:
            entry = self._pickle_function(fn)
        _, fn_id, fn_bytes, kind = entry
        task_id = next(_task_ids)
        future = TaskFuture(master, task_id, spec.name or kind)
        if self.journal is not None:
            key = task_key(fn, args, kwargs, key)
            self.journal.claim(key)
            found = self.journal.lookup(key)
            if found is not None:
                future.set_running_or_notify_cancel()
                future.set_result(serialization.loads(found.result))
                self.restored += 1
                return future
        try:  # serialization.dumps, inlined; anything unusual takes the full path
            payload = _plain_dumps((args, kwargs), _PROTOCOL)
            if _MAIN in payload:
                payload = _pickle_arguments(fn, args, kwargs)
        except Exception:
            payload = _pickle_arguments(fn, args, kwargs)
        with self._lock:
            futures = self._futures
            futures.append(future)
            if len(futures) >= self._compact_at:  # forget finished ones now and then
                self._futures = futures = list(itertools.filterfalse(Future.done, futures))
                self._compact_at = max(1024, 2 * len(futures))
        master.post("submit", Submission(task_id, fn_id, fn_bytes, payload, spec, future, deps, kind,
                                         time.time(), chunk, key, self.journal))
        return future

    def _pickle_function(self, fn: Callable) -> tuple[Callable, int, bytes, str]:
        """Pickle ``fn`` and cache ``(fn, id, bytes, kind)`` for it (kind: its qualified name)."""
        try:
            data = serialization.dumps(fn)
        except Exception as exc:
            raise TypeError(f"cannot send task function {fn!r} to the workers: {type(exc).__name__}: {exc}")\
                from None
        kind = getattr(fn, "__qualname__", None) or type(fn).__name__
        entry = self._functions[id(fn)] = (fn, next(_function_ids), data, kind)
        return entry

    @staticmethod
    def _dependency_ids(after: Iterable[Future]) -> Iterator[int]:
        if isinstance(after, Future):
            after = (after,)
        for dep in after:
            if not isinstance(dep, TaskFuture):
                raise TypeError(f"after= takes futures returned by Pilot.submit, got {dep!r}")
            if dep.done() and not dep.cancelled() and dep.exception() is None:
                continue  # already satisfied (e.g. restored from the journal)
            yield dep.task_id

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None, chunksize: int = 1,
            ranks: int = 1, **options: Any) -> Iterator:
        """Like ``Executor.map``: ``fn(comm, *items)`` for each tuple of items, results in order.

        ``chunksize`` items travel and run as one task (one message each way), which is
        what makes fine-grained tasks cheap. ``timeout`` bounds the wait of the returned
        iterator, as in the standard library. Other keywords are those of :meth:`submit`.
        """
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an integer >= 1, got {chunksize!r}")
        spec = TaskSpec(ranks=ranks, **options)
        items = zip(*iterables)
        futures = []
        while chunk := tuple(itertools.islice(items, chunksize)):
            futures.append(self._submit(fn, chunk, {}, spec, (), chunk=True))
        return _chain_results(futures, timeout)

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        """Leaving ``with``: wait for every task, unless the block raised.

        If it raised (any exception, ``KeyboardInterrupt`` and a non-zero ``SystemExit``
        included), queued tasks are cancelled and nothing is waited for: the exception goes
        on at once, and the pilot ends the job (see ``python -m pilotq_mpi``).
        """
        failed = exc_type is not None and not (issubclass(exc_type, SystemExit) and exc_value.code in (None, 0))
        self.shutdown(wait=not failed, cancel_futures=failed)
        return False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions through this object; optionally cancel queued tasks and wait for the rest."""
        with self._lock:
            self._shutdown = True
            futures = list(self._futures)
        if cancel_futures:
            for future in futures:
                future.cancel()
        if wait:
            for future in futures:
                try:
                    future.exception()
                except BaseException:  # cancelled futures raise CancelledError here
                    pass
            if self._owns_journal and self.journal is not None:
                self.journal.close()

    def note(self, record: dict) -> bool:
        """Write ``record`` (a JSON-able dict with a ``"type"``, e.g. the planner's ``"plan"``) into the
        pilot's trace; False when the pilot writes no trace (nothing is recorded then)."""
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise ValueError(f"a trace record is a dict with a 'type' string, got {str(record)[:80]}")
        note = getattr(getattr(self._master, "observer", None), "note", None)
        return False if note is None else bool(note(record))


class PoolView(Executor):
    """The tasks of one pool of a :class:`Pilot` (see :meth:`Pilot.pool`)."""

    def __init__(self, pilot: Pilot, name: str):
        self.pilot = pilot
        self.name = name

    @property
    def resources(self) -> Inventory:
        """The pilot's ranks in this pool (now)."""
        inventory = self.pilot.resources
        return Inventory(tuple(r for r in inventory.ranks if r.pool == self.name), inventory.qpus)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> TaskFuture:
        """``Pilot.submit(fn, *args, pool=<this pool>, **kwargs)``."""
        return self.pilot.submit(fn, *args, pool=self.name, **kwargs)

    def map(self, fn: Callable, *iterables: Iterable, **kwargs: Any) -> Iterator:
        """``Pilot.map(fn, *iterables, pool=<this pool>, **kwargs)``."""
        return self.pilot.map(fn, *iterables, pool=self.name, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to do: the pilot's own shutdown ends its tasks."""


def _pickle_arguments(fn: Callable, args: tuple, kwargs: dict) -> bytes:
    """Pickle a task's arguments now, so that what cannot travel fails at submit, in the driver."""
    try:
        return serialization.dumps((args, kwargs))
    except serialization.OpenFileError as exc:  # any mode: a read-mode file would travel as a stale snapshot
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"cannot send the arguments of task {name!r} to a worker: {exc}") from None
    except Exception as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"cannot send the arguments of task {name!r} to a worker: {type(exc).__name__}: {exc};"
                        " pass picklable values (plain data, arrays, circuits), not open files, locks or"
                        " generators") from None


def _chain_results(futures: list[Future], timeout: float | None) -> Iterator:
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield from future.result(remaining)
    finally:
        for future in futures:
            future.cancel()
