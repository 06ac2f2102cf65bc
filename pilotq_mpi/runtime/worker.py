"""The worker loop: receive tasks from the master, run them, report results.

Only the worker's main thread calls MPI. QPU tasks run in a small thread pool (they wait
on remote hardware) and hand their results back to the main thread through a queue.

Tasks run in the order they arrive; those waiting behind the running one (prefetched)
sit in ``_backlog``. Between two tasks the worker reads every message from the master
before it starts the next one, so a :attr:`Tag.REVOKE` sent before a task starts is
always seen first: the task is dropped and reported as not run (``revoked``). While a
task runs the worker reads nothing (it is single-threaded): a revoke takes effect when
the running task ends.

Results of very short tasks travel together: when the task just run took less than
``SHORT_S`` and the next one in the backlog is of a function whose last ``SHORT_STREAK``
runs here were all that short, the result waits for the next one's (one message, and one
pass of the master's loop, for several tasks; ``HOLD_MAX`` results at most). Anything else
(a task not known short next, an empty backlog, a revoke) sends what is held at once. The
one case where a result waits longer: a function that ran short ``SHORT_STREAK`` times in a
row and then runs long delays the result before it by that run (a task that waits for the
driver to see an earlier result is not supported with such functions).
"""
from __future__ import annotations

import collections
import functools
import pickle
import queue
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .. import context
from ..platform.factories import load_factory
from .messages import ResultMessage, Tag, TaskMessage, pack_result
from .polling import Backoff
from .serialization import _MAIN, dumps, loads

_TaskContext = context.TaskContext
_context_local = context._local
_new = object.__new__
_pickle_dumps = pickle.dumps
_PROTOCOL = pickle.HIGHEST_PROTOCOL

MASTER = 0
IDLE_POLL_S = 0.01
"""How often a worker idle for 0.1 s or more looks for a message (the first task after a long idle
waits at most this long)."""
AWAY_S = 0.002
"""After this long without probing (a task ran), probe once more before starting the next task."""
SHORT_S = 0.0002
"""A task this short may have its result held back to travel with the next short task's."""
SHORT_STREAK = 8
"""A function counts as short after this many short runs in a row on this worker."""
HOLD_MAX = 16
"""At most this many results travel in one message."""


class Worker:
    """Runs tasks for the master on one rank until told to stop.

    ``world`` is how the master is reached (rank ``MASTER`` of it): the pilot's world, or
    for a joined allocation the intercommunicator to the master. ``local_world`` (default
    ``world``) is the world of this rank's own launch, where multi-rank tasks get their
    sub-communicators; its rank r is pilot rank ``r + rank_offset``.
    """

    def __init__(self, world, *, node: str, gpus: tuple[int, ...], local_world=None, rank_offset: int = 0,
                 master: int = MASTER):
        from mpi4py import MPI

        self._mpi = MPI
        self.world = world
        self.master = master
        """The rank of ``world`` this worker serves: the master, or its group's sub-master."""
        self.local_world = world if local_world is None else local_world
        self.rank_offset = rank_offset
        self.rank = self.local_world.Get_rank() + rank_offset
        self.node = node
        self.gpus = gpus
        self.host = socket.gethostname()
        self._functions: dict[int, Callable] = {}
        self._backlog: collections.deque[TaskMessage] = collections.deque()
        self._fn_bytes: dict[int, bytes] = {}
        self._short_runs: dict[int, int] = {}
        """Function id -> its short runs in a row here (decides whether a result may wait)."""
        self._held: list[tuple] = []
        """Packed results not sent yet (see the module notes)."""
        """Functions of revoked tasks, never loaded: a later task of the same id comes without them."""
        self._qpu_queued: dict[tuple[int, int], Any] = {}
        """(task, attempt) -> pool future of QPU tasks handed to the pool (queued there or running)."""
        self._qpu_done: queue.SimpleQueue[ResultMessage] = queue.SimpleQueue()
        self._qpu_pool: ThreadPoolExecutor | None = None
        self._qpu_backends: dict[str, Any] = {}
        self._qpu_lock = threading.Lock()
        self._qpu_running = 0
        self._tag_ub = max(32767, int(self.local_world.Get_attr(MPI.TAG_UB) or 32767))
        self._context_fields = vars(context.TaskContext(0, "", (), self.rank, node, gpus))
        """What the context of a plain task on this rank holds but its id, name and ranks."""

    # --- loop ------------------------------------------------------------------------
    def serve(self) -> None:
        """Serve until SHUTDOWN arrives and every accepted task has been reported."""
        # idle for a while (no task for 0.1 s): poll every 10 ms, not every 1 ms (idle CPU ~0.6%, not ~3%)
        backoff = Backoff(idle_ceiling=IDLE_POLL_S)
        stopping = False
        status = self._mpi.Status()
        probed = time.monotonic()
        while True:
            # read everything the master sent before starting a task (a revoke must win). With
            # MPICH an improbe that finds nothing moves the next arrived message forward and the
            # next improbe matches it (measured: None, msg, None, msg, ...). So after a task of
            # more than AWAY_S, stop at the second miss in a row; after a shorter one, at the
            # first: the extra probe per task cost ~15% of no-op throughput here, and such a
            # revoke can only have arrived during the last AWAY_S.
            misses, away = 0, time.monotonic() - probed > AWAY_S
            while misses < 1 + away:
                message = self.world.improbe(self.master, self._mpi.ANY_TAG, status)
                if message is None:
                    misses += 1
                    continue
                misses = 0
                body = message.recv()
                tag = status.Get_tag()
                if tag == Tag.TASKS:
                    self._backlog.extend(map(TaskMessage._make, body))
                elif tag == Tag.REVOKE:
                    self._revoke(body)
                else:
                    stopping = True
            probed = time.monotonic()
            worked = self._flush_qpu_results() if self._qpu_running else False
            if self._backlog:
                task = self._backlog.popleft()
                if self._held and not self._short(task):  # (a revoke may have changed the backlog)
                    self._send_held()
                if task.qpu is not None:
                    self._start_qpu_task(task)
                else:
                    result = self._run(task)
                    short = result.ended - result.started < SHORT_S
                    streak = self._short_runs[task.fn_id] = self._short_runs.get(task.fn_id, 0) + 1 if short else 0
                    self._report(result, hold=streak > 0 and self._next_is_short())
                worked = True
            if worked:
                backoff.reset()
                continue
            if self._held:
                self._send_held()
                continue
            if stopping and self._qpu_running == 0:
                break
            backoff.sleep()
        if self._qpu_pool is not None:
            self._qpu_pool.shutdown(wait=True)

    def _revoke(self, revoked: list[tuple[int, int]]) -> None:
        """Drop the revoked tasks that have not started; report each dropped one as not run."""
        wanted = set(map(tuple, revoked))
        kept: collections.deque[TaskMessage] = collections.deque()
        dropped = []
        for task in self._backlog:
            (dropped if (task.task_id, task.attempt) in wanted else kept).append(task)
        self._backlog = kept
        for key in wanted:
            future = self._qpu_queued.get(key)
            if future is not None and future.cancel():  # still in the pool's queue: never started
                del self._qpu_queued[key]
                self._qpu_running -= 1
                dropped.append(key)
        for task in dropped:
            task_id, attempt = (task.task_id, task.attempt) if isinstance(task, TaskMessage) else task
            if isinstance(task, TaskMessage) and task.fn is not None and task.fn_id not in self._functions:
                self._fn_bytes[task.fn_id] = task.fn  # the master will not send this function again
            self._report(ResultMessage(task_id, attempt, self.rank, False, host=self.host, revoked=True))

    def _next_is_short(self) -> bool:
        """True when the next task in the backlog is known to be short (its function's last run here)."""
        return bool(self._backlog) and len(self._held) + 1 < HOLD_MAX and self._short(self._backlog[0])

    def _short(self, task: TaskMessage) -> bool:
        return (task.qpu is None and len(task.world_ranks) == 1
                and self._short_runs.get(task.fn_id, 0) >= SHORT_STREAK)

    def _send_held(self) -> None:
        held, self._held = self._held, []
        self.world.send(held, dest=self.master, tag=Tag.RESULT)

    def _report(self, result: ResultMessage, *, hold: bool = False) -> None:
        """Send ``result`` to the master (with the results held so far), or hold it (``hold``)."""
        try:  # pack_result, inlined (one result per task: the hot path); serialization.dumps for what
            # pickle refuses or what refers to __main__ (the driver may lack it: sent by value)
            error = result.error
            try:
                value = _pickle_dumps(result.value, _PROTOCOL)
                if _MAIN in value:
                    value = dumps(result.value)
            except Exception:
                value = dumps(result.value)
            packed = (*result[:4], value, None if error is None else dumps(error), *result[6:])
        except Exception as exc:  # the value (or exception) would not pickle
            packed = pack_result(self._failure(result, exc, "what the task returned (or raised) could not be pickled"))
        held = self._held
        if hold:
            held.append(packed)
            return
        if held:  # one message: a list of results (see Tag.RESULT)
            held.append(packed)
            self._held = []
            self.world.send(held, dest=self.master, tag=Tag.RESULT)
        else:
            self.world.send(packed, dest=self.master, tag=Tag.RESULT)

    def _failure(self, result: ResultMessage, exc: BaseException, what: str) -> ResultMessage:
        from ..errors import RemoteError

        error = RemoteError(f"{what}: {type(exc).__name__}: {exc}")
        return ResultMessage(result.task_id, result.attempt, self.rank, False, None, error,
                             traceback.format_exc(), False, self.host, result.started, result.ended)

    # --- running ---------------------------------------------------------------------
    def _function(self, task: TaskMessage) -> Callable:
        if task.fn is not None:
            self._functions[task.fn_id] = loads(task.fn)
        elif task.fn_id not in self._functions:
            self._functions[task.fn_id] = loads(self._fn_bytes.pop(task.fn_id))
        return self._functions[task.fn_id]

    def _context(self, task: TaskMessage, backend: Any = None) -> context.TaskContext:
        if backend is None and task.qpu is None:  # every plain task: ~1 us, not ~3 (the dataclass __init__)
            made = _new(_TaskContext)
            fields = made.__dict__
            fields.update(self._context_fields)
            fields["task_id"], fields["name"], fields["world_ranks"] = task.task_id, task.name, task.world_ranks
            return made
        return context.TaskContext(task.task_id, task.name, task.world_ranks, self.rank, self.node,
                                   self.gpus, task.qpu.name if task.qpu else None, backend)

    def _run(self, task: TaskMessage) -> ResultMessage:
        started = time.time()
        if task.isolate:
            try:
                fn = self._function(task)
            except BaseException as exc:  # e.g. its module is not importable on this rank
                return ResultMessage(task.task_id, task.attempt, self.rank, False, None, exc,
                                     self._traceback_text(task), False, self.host, started, time.time())
            return self._run_isolated(task, fn, started)
        comm = self._task_comm(task)  # collective over the task's ranks: before anything that may fail
        local = _context_local  # context.running(), inlined (a generator-based context manager: ~3 us a task)
        previous = getattr(local, "context", None)
        try:
            fn = self._function(task)  # a function that cannot be loaded here fails the task, not the worker
            local.context = self._context(task)
            value = _call(fn, comm, task)
            ok, error, tb = True, None, ""
        except BaseException as exc:  # the task's failure is reported, never fatal to the worker
            ok, value, error, tb = False, None, exc, self._traceback_text(task)
        finally:
            local.context = previous
            if comm is not self._mpi.COMM_SELF:
                comm.Free()
        ended = time.time()
        timed_out = ok and task.timeout is not None and ended - started > task.timeout
        keep = ok and not timed_out and (task.gather or task.world_ranks[0] == self.rank)
        return ResultMessage(task.task_id, task.attempt, self.rank, ok and not timed_out,
                             value if keep else None, error, tb, timed_out, self.host, started, ended)

    def _task_comm(self, task: TaskMessage):
        if len(task.world_ranks) == 1:
            return self._mpi.COMM_SELF
        group = self.local_world.Get_group().Incl([rank - self.rank_offset for rank in task.world_ranks])
        try:
            return self.local_world.Create_group(group, task.task_id % self._tag_ub)
        finally:
            group.Free()

    def _traceback_text(self, task: TaskMessage) -> str:
        header = (f"task {task.name!r} (id {task.task_id}, attempt {task.attempt}) failed on world rank"
                  f" {self.rank} (host {self.host}, node {self.node})\n")
        return header + traceback.format_exc()

    def _run_isolated(self, task: TaskMessage, fn: Callable, started: float) -> ResultMessage:
        from .isolation import run_isolated

        if task.chunk:  # the child runs the whole chunk: call_chunk(fn, comm, chunk)
            chunk, _ = loads(task.payload)
            fn_bytes, payload = dumps(functools.partial(call_chunk, fn)), dumps(((chunk,), {}))
        else:
            fn_bytes, payload = dumps(fn), task.payload
        outcome = run_isolated(fn_bytes, payload, timeout=task.timeout)
        ended = time.time()
        value, error, tb, timed_out = None, None, "", False
        try:
            value = outcome.value()
            ok = True
        except BaseException as exc:
            ok, error = False, exc
            tb = self._traceback_text(task) + getattr(outcome, "traceback", "")
            timed_out = outcome.timed_out
        return ResultMessage(task.task_id, task.attempt, self.rank, ok, value, error, tb, timed_out,
                             self.host, started, ended)

    # --- QPU tasks -----------------------------------------------------------------------
    def _start_qpu_task(self, task: TaskMessage) -> None:
        if self._qpu_pool is None:
            self._qpu_pool = ThreadPoolExecutor(max_workers=task.qpu.concurrency,
                                                thread_name_prefix=f"qpu-{task.qpu.name}")
        self._qpu_running += 1
        self._qpu_queued[(task.task_id, task.attempt)] = self._qpu_pool.submit(
            self._run_qpu_task, task, self._function(task))

    def _run_qpu_task(self, task: TaskMessage, fn: Callable) -> None:
        started = time.time()
        try:
            backend = self._backend(task.qpu)
            with context.running(self._context(task, backend)):
                value = _call(fn, backend, task)
            result = ResultMessage(task.task_id, task.attempt, self.rank, True, value, None, "", False,
                                   self.host, started, time.time())
        except BaseException as exc:
            result = ResultMessage(task.task_id, task.attempt, self.rank, False, None, exc,
                                   self._traceback_text(task), False, self.host, started, time.time())
        self._qpu_done.put(result)

    def _backend(self, qpu) -> Any:
        with self._qpu_lock:
            backend = self._qpu_backends.get(qpu.name)
            if backend is None:
                factory = load_factory(qpu.factory)
                backend = self._qpu_backends[qpu.name] = factory(**dict(qpu.options))
            return backend

    def _flush_qpu_results(self) -> bool:
        flushed = False
        while True:
            try:
                result = self._qpu_done.get_nowait()
            except queue.Empty:
                return flushed
            self._qpu_running -= 1
            self._qpu_queued.pop((result.task_id, result.attempt), None)
            self._report(result)
            flushed = True


def call_chunk(fn: Callable, first: Any, chunk: tuple) -> list:
    """Run one chunk of ``Pilot.map``: ``fn(first, *items)`` for each tuple of items."""
    return [fn(first, *items) for items in chunk]


def _call(fn: Callable, first: Any, task: TaskMessage) -> Any:
    """Call a task function with its communicator (or QPU backend) first."""
    args, kwargs = loads(task.payload)
    if task.chunk:
        return call_chunk(fn, first, args)
    return fn(first, *args, **kwargs)
