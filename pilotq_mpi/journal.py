"""On-disk task journal: finished work survives the end of an allocation.

One SQLite file per workload. The master records every task that reaches a
terminal state; a rerun of the same driver with the same journal looks each
submitted task up by its *task key* and returns the recorded result instead of
running the task again.

Durability
    The journal runs in WAL mode. ``durability="process"`` (the default) uses
    ``PRAGMA synchronous=NORMAL``: every ``record()`` is its own committed
    transaction written to the WAL file (in the OS page cache) before
    ``record()`` returns, so it survives SIGKILL / OOM-kill / ``scancel`` of the
    process, but the last few commits may be lost if the *node* loses power or
    the kernel crashes (the WAL is fsync'ed only at checkpoints).
    ``durability="power"`` uses ``synchronous=FULL`` (the WAL is fsync'ed at
    every commit): it also survives power loss, at the cost of one fsync per
    record (typically 0.1-10 ms depending on the file system; on a parallel
    file system prefer node-local storage and copy the file out at the end).

    Cost measured on a 2-core VM (local disk; the loop of
    ``tests/unit/test_journal.py::test_per_record_cost_is_printed``): ``durability="process"``, 100-byte results: ~45-60 us
    per ``record()`` committed alone, ~15 us per record in ``batch()`` groups
    of 16; 4 KB results ~110 us alone, ~80 us batched. ``"power"``: ~1-2 ms
    alone, ~0.2 ms batched. The master therefore commits the completions of
    each loop pass together (``record_many``, called by its journal observer)
    and resolves their futures after the commit: with the observer's own work,
    ~60 us per task alone, ~30 us per task in groups of 16
    (``python benchmarks/master_cost.py --journal-groups``).

What is reused on a rerun
    ``lookup(key)`` returns the record only if it is *reusable*: state
    ``"done"`` always; ``"failed"`` and ``"timed_out"`` only when the journal
    was opened with ``reuse_failures=True`` (so a deterministic failure is
    reported again without rerunning it); ``"cancelled"`` never. Everything
    else runs again, and its new terminal record replaces the old one
    (``attempts`` counts how often a key was recorded). ``get(key)`` returns
    the stored record whatever its state.

Task keys (``task_key``)
    An explicit ``key=`` (a non-empty ``str``) is used as given. Otherwise the
    key is the sha256 hex digest of a canonical encoding of
    ``(fn module, fn qualified name, args, kwargs)``. The encoding is our own
    deterministic, type-tagged one rather than ``pickle``: pickle output
    depends on object identity (its memo makes ``(s, s)`` and ``(s, copy)``
    differ) and on dict/set iteration order, which varies with
    ``PYTHONHASHSEED``. Rules:

    * ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``
      encode by value with their type (so ``1``, ``1.0`` and ``True`` are
      different keys); ``list``/``tuple`` element-wise; ``dict`` items and
      ``set``/``frozenset`` elements are sorted by their encoding, so insertion
      order never matters.
    * numpy arrays and scalars encode dtype, shape and the C-order bytes.
    * enums, dataclasses, named tuples and other objects encode their class
      (module + qualified name) plus the state ``__reduce_ex__(5)`` exposes
      (e.g. ``__dict__``), recursively under the same rules.
    * functions and classes encode by module + qualified name. Lambdas and
      functions defined inside other functions (``<locals>``) are refused:
      two different closures share one name.
    * Anything whose state cannot be encoded this way (open files, locks,
      sockets, generators, cycles) raises ``TaskKeyError`` naming the argument
      and suggesting ``key=``.

    The function's *body* is not part of the key: after editing a task
    function, start a new journal or change the keys.

Duplicate keys
    Two submissions with equal keys in one run are ambiguous (which one is
    "the" recorded result?). The master calls ``claim(key)`` once per
    submission; a second claim of the same key in the same ``Journal`` object
    raises ``JournalKeyConflict`` with a message suggesting ``key=``.

Threads
    The connection is opened with ``check_same_thread=False`` and every method
    holds an internal lock, so the journal may be created by the driver thread
    and written by the master thread, and ``results()``/``counts()`` may be
    called from any thread. Only one process may write a journal at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import math
import os
import sqlite3
import struct
import threading
import types
from typing import Any, Callable, Iterable, Iterator, Mapping

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "Journal",
    "JournalError",
    "JournalKeyConflict",
    "JournalRecord",
    "JournalSchemaError",
    "TaskKeyError",
    "task_key",
]

#: Version of the on-disk schema, stored in ``PRAGMA user_version``.
SCHEMA_VERSION = 1
#: Marks a file as a pilotq-mpi journal (``PRAGMA application_id``; "PQMJ").
APPLICATION_ID = 0x50514D4A

#: The terminal task states a journal accepts.
TERMINAL_STATES = frozenset({"done", "failed", "cancelled", "timed_out"})
_FAILURE_STATES = frozenset({"failed", "timed_out"})

_DURABILITY = {"process": "NORMAL", "power": "FULL"}

_SCHEMA = """
CREATE TABLE tasks (
    key      TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    result   BLOB,
    error    TEXT,
    started  REAL,
    ended    REAL,
    ranks    INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tasks_state ON tasks(state);
"""


class JournalError(Exception):
    """Base class of journal errors."""


class JournalSchemaError(JournalError):
    """The file is not a journal of this schema version."""


class JournalKeyConflict(JournalError, ValueError):
    """Two submissions in one run have the same task key."""


class TaskKeyError(TypeError):
    """The task's arguments cannot be hashed into a stable key."""


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """One terminal task as stored in the journal.

    ``result`` is the serialized result (bytes as given to ``record``) for
    ``state == "done"``; ``error`` is the error text for the other states.
    ``started``/``ended`` are Unix timestamps; ``ranks`` the task's rank count.
    """

    key: str
    name: str
    state: str
    result: bytes | None
    error: str | None
    started: float | None
    ended: float | None
    ranks: int
    attempts: int = 1


_COLUMNS = "key, name, state, result, error, started, ended, ranks, attempts"


def _row_to_record(row: tuple) -> JournalRecord:
    key, name, state, result, error, started, ended, ranks, attempts = row
    return JournalRecord(key, name, state, None if result is None else bytes(result),
                         error, started, ended, ranks, attempts)


class Journal:
    """A SQLite journal of terminal tasks (see the module docstring).

    ``Journal(path)`` creates the file (and its parent directory) or opens an
    existing journal; it raises ``JournalSchemaError`` if the file is not a
    journal of schema ``SCHEMA_VERSION``. ``durability`` is ``"process"``
    (survives SIGKILL) or ``"power"`` (also survives power loss, one fsync per
    record). ``reuse_failures=True`` makes ``lookup`` also return failed and
    timed-out records. Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike, *, durability: str = "process",
                 reuse_failures: bool = False, timeout: float = 10.0) -> None:
        if durability not in _DURABILITY:
            raise ValueError(f"durability={durability!r}: expected one of {sorted(_DURABILITY)}")
        self.path = os.fspath(path)
        self.durability = durability
        self.reuse_failures = bool(reuse_failures)
        self._reuse_states = {"done"} | (_FAILURE_STATES if reuse_failures else set())
        self._lock = threading.RLock()
        self._claimed: set[str] = set()
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        # isolation_level=None: autocommit; we issue BEGIN/COMMIT ourselves.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    def _open(self) -> None:
        db = self._db
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            has_tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise JournalSchemaError(f"{self.path!r} is not a pilotq-mpi journal "
                                     f"(SQLite says: {exc})") from exc
        if not has_tables and app_id == 0 and version == 0:
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};"
                             f"PRAGMA application_id = {APPLICATION_ID};COMMIT;")
        elif app_id != APPLICATION_ID:
            raise JournalSchemaError(
                f"{self.path!r} is a SQLite file but not a pilotq-mpi journal "
                f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x}); "
                "pass a new path for the journal")
        elif version != SCHEMA_VERSION:
            raise JournalSchemaError(
                f"journal {self.path!r} has schema version {version}, this pilotq-mpi "
                f"reads version {SCHEMA_VERSION}; use the pilotq-mpi version that wrote it "
                "or start a new journal file")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(f"journal {self.path!r}: could not enable WAL mode (got {mode!r}); "
                               "is the file on a file system without shared-memory support?")
        db.execute(f"PRAGMA synchronous={_DURABILITY[self.durability]}")

    # -- helpers ---------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f"journal {self.path!r} is closed")
        return self._db

    # -- reading ----------------------------------------------------------------
    def get(self, key: str) -> JournalRecord | None:
        """Return the stored record of ``key`` whatever its state, or None."""
        with self._lock:
            row = self._conn().execute(f"SELECT {_COLUMNS} FROM tasks WHERE key = ?",
                                       (key,)).fetchone()
        return None if row is None else _row_to_record(row)

    def lookup(self, key: str) -> JournalRecord | None:
        """Return the record of ``key`` if it is reusable on this run, else None.

        Reusable: ``"done"``; also ``"failed"``/``"timed_out"`` when opened
        with ``reuse_failures=True``. ``"cancelled"`` never.
        """
        rec = self.get(key)
        if rec is None or rec.state not in self._reuse_states:
            return None
        return rec

    def results(self, state: str | None = None) -> list[JournalRecord]:
        """All records (or those in ``state``), ordered by end time."""
        if state is not None:
            state = _check_state(state)
        sql = f"SELECT {_COLUMNS} FROM tasks"
        params: tuple = ()
        if state is not None:
            sql += " WHERE state = ?"
            params = (state,)
        sql += " ORDER BY ended, key"
        with self._lock:
            rows = self._conn().execute(sql, params).fetchall()
        return [_row_to_record(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of records per terminal state (every state present, maybe 0)."""
        out = {s: 0 for s in sorted(TERMINAL_STATES)}
        with self._lock:
            rows = self._conn().execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        out.update(dict(rows))
        return out

    def __len__(self) -> int:
        with self._lock:
            return self._conn().execute("SELECT count(*) FROM tasks").fetchone()[0]

    # -- writing ----------------------------------------------------------------
    def claim(self, key: str) -> None:
        """Note that ``key`` was submitted in this run.

        Raises ``JournalKeyConflict`` if it was already claimed through this
        object, i.e. two submissions of this run share one key.
        """
        with self._lock:
            if key in self._claimed:
                raise JournalKeyConflict(
                    f"task key {key!r} was already submitted in this run; two tasks with "
                    "equal function and arguments get equal keys - pass a distinct key= "
                    "to submit() for each (e.g. key=f'sample-{i}')")
            self._claimed.add(key)

    def record(self, key: str, *, name: str, state: str, result: bytes | None,
               error: str | None, started: float | None, ended: float | None,
               ranks: int) -> None:
        """Durably store the terminal record of ``key`` (one committed transaction,
        or part of the enclosing ``batch()``).

        ``state`` is one of ``TERMINAL_STATES`` (a str, or an enum whose value
        is one). A new record for an existing key replaces it and increments
        ``attempts``. When ``record`` returns, the record survives SIGKILL of
        this process (and power loss with ``durability="power"``); inside
        ``batch()`` that holds once the batch exits.
        """
        row = _row(key, name=name, state=state, result=result, error=error, started=started, ended=ended,
                   ranks=ranks)
        with self._lock:
            self._conn().execute(_UPSERT, row)

    def record_many(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Store several terminal records as one transaction (group commit).

        Each entry has ``record()``'s arguments as keys (``key``, ``name``, ``state``,
        ``result``, ``error``, ``started``, ``ended``, ``ranks``); every entry is
        checked before anything is written. When it returns, all of them are
        durable (a crash inside it keeps none); a single entry is committed alone,
        which is cheaper than a transaction around it. Inside ``batch()`` they
        are part of that batch.
        """
        rows = [_row(**entry) for entry in entries]
        if not rows:
            return
        with self._lock:
            db = self._conn()
            if len(rows) == 1:
                db.execute(_UPSERT, rows[0])
                return
            if db.in_transaction:
                db.executemany(_UPSERT, rows)
                return
            db.execute("BEGIN")
            try:
                db.executemany(_UPSERT, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def batch(self) -> Iterator["Journal"]:
        """Group commit: the ``record()`` calls inside commit as one transaction.

        Use it for the completions the master receives in one loop iteration,
        and resolve their futures only after the ``with`` block: the records
        are durable when it exits (all or none survive a crash inside it).
        Other threads' calls wait until the block ends. Nesting is allowed.
        """
        with self._lock:
            db = self._conn()
            if db.in_transaction:  # nested: the outer batch commits
                yield self
                return
            db.execute("BEGIN")
            try:
                yield self
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Checkpoint and close the file. Idempotent."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL; it is checkpointed later
            self._db.close()
            self._db = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"Journal({self.path!r}, durability={self.durability!r}, {state})"


def _check_state(state: Any) -> str:
    value = getattr(state, "value", state)
    if not isinstance(value, str) or value.lower() not in TERMINAL_STATES:
        raise ValueError(f"state {state!r} is not a terminal state; expected one of "
                         f"{sorted(TERMINAL_STATES)}")
    return value.lower()


_UPSERT = ("INSERT INTO tasks (key, name, state, result, error, started, ended, ranks)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT(key) DO UPDATE SET name=excluded.name, state=excluded.state,"
           " result=excluded.result, error=excluded.error, started=excluded.started,"
           " ended=excluded.ended, ranks=excluded.ranks, attempts=attempts+1")


def _row(key: str, *, name: str, state: str, result: bytes | None, error: str | None, started: float | None,
         ended: float | None, ranks: int) -> tuple:
    """The checked row of one record (raises what ``Journal.record`` documents)."""
    state = _check_state(state)
    if not isinstance(key, str) or not key:
        raise TypeError(f"journal key must be a non-empty str, got {key!r}")
    if result is not None and not isinstance(result, (bytes, bytearray, memoryview)):
        raise TypeError(f"result must be bytes or None (the serialized result), "
                        f"got {type(result).__name__}")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"ranks must be a positive int, got {ranks!r}")
    return (key, str(name), state, None if result is None else bytes(result), error, started, ended, ranks)


# ---------------------------------------------------------------------------
# Task keys
# ---------------------------------------------------------------------------

def task_key(fn: Callable, args: tuple = (), kwargs: Mapping[str, Any] | None = None,
             explicit_key: str | None = None) -> str:
    """Return the journal key of a task (see "Task keys" in the module docstring).

    ``explicit_key`` is returned as is (it must be a non-empty ``str``);
    otherwise the sha256 hex digest of the canonical encoding of the
    function's identity and the arguments. Raises ``TaskKeyError`` (a
    ``TypeError``) naming the offending argument when no stable key exists.
    """
    if explicit_key is not None:
        if not isinstance(explicit_key, str):
            raise TypeError(f"key= must be a str, got {type(explicit_key).__name__} "
                            f"{explicit_key!r}")
        if not explicit_key:
            raise ValueError("key= must be a non-empty str, got ''")
        return explicit_key
    enc = _Encoder()
    parts = [b"pilotq-task-key-v1",
             enc.encode(fn, "fn"),
             enc.encode(tuple(args), "args"),
             enc.encode(dict(kwargs or {}), "kwargs")]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack(">Q", len(payload)) + payload


def _name_of(obj: Any, where: str) -> bytes:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TaskKeyError(f"cannot compute a stable task key: {where} ({obj!r}) has no "
                           "module/qualified name; pass key='...' to submit()")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TaskKeyError(
            f"cannot compute a stable task key: {where} is {module}.{qualname}, a lambda or "
            "a function defined inside another function (different closures share one "
            "name); define it at module level or pass key='...' to submit()")
    return f"{module}:{qualname}".encode()


class _Encoder:
    """Deterministic, type-tagged encoding of Python values (for task keys)."""

    def __init__(self) -> None:
        self._active: set[int] = set()  # ids on the current path: cycle detection

    def encode(self, obj: Any, where: str) -> bytes:
        t = type(obj)
        if obj is None:
            return b"N"
        if t is bool:
            return b"T" if obj else b"F"
        if t is int:
            return _frame(b"i", str(obj).encode())
        if t is float:
            return b"f" + _float_bytes(obj)
        if t is complex:
            return b"c" + _float_bytes(obj.real) + _float_bytes(obj.imag)
        if t is str:
            return _frame(b"s", obj.encode("utf-8", "surrogatepass"))
        if t in (bytes, bytearray):
            return _frame(b"b" if t is bytes else b"B", bytes(obj))
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
            return _frame(b"n", _name_of(obj, where))
        if isinstance(obj, types.MethodType):
            return _frame(b"m", self.encode(obj.__func__, where)
                          + self.encode(obj.__self__, f"{where}.__self__"))
        if isinstance(obj, types.ModuleType):
            return _frame(b"M", obj.__name__.encode())
        if id(obj) in self._active:
            raise TaskKeyError(f"cannot compute a stable task key: {where} contains itself "
                               "(a reference cycle); pass key='...' to submit()")
        self._active.add(id(obj))
        try:
            return self._encode_container(obj, t, where)
        finally:
            self._active.discard(id(obj))

    def _encode_container(self, obj: Any, t: type, where: str) -> bytes:
        if t is tuple or t is list:
            items = b"".join(self.encode(x, f"{where}[{i}]") for i, x in enumerate(obj))
            return _frame(b"t" if t is tuple else b"l", items)
        if t is dict:
            return _frame(b"d", self._encode_items(obj, where))
        if t in (set, frozenset):
            elems = sorted(self.encode(x, f"{where}{{...}}") for x in obj)
            return _frame(b"S" if t is set else b"Z", b"".join(elems))
        if t is range:
            return _frame(b"r", self.encode((obj.start, obj.stop, obj.step), where))
        if t.__module__ == "numpy" or t.__module__.startswith("numpy."):
            encoded = self._encode_numpy(obj, where)
            if encoded is not None:
                return encoded
        cls = self.encode(t, f"type of {where}")
        if isinstance(obj, enum.Enum):
            return _frame(b"e", cls + self.encode(obj.value, f"{where}.value"))
        if dataclasses.is_dataclass(obj):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            return _frame(b"D", cls + self._encode_items(fields, where))
        if isinstance(obj, tuple) and hasattr(t, "_fields"):  # named tuple
            return _frame(b"t", cls + self.encode(tuple(obj), where))
        if isinstance(obj, _io_types()):
            raise TaskKeyError(f"cannot compute a stable task key: {where} is an open "
                               f"{t.__name__} (a file or stream); pass its path or contents "
                               "instead, or pass key='...' to submit()")
        return _frame(b"o", cls + self._encode_reduce(obj, where))

    def _encode_items(self, mapping: Mapping, where: str) -> bytes:
        pairs = []
        for k, v in mapping.items():
            ek = self.encode(k, f"{where} key {k!r}")
            pairs.append(ek + self.encode(v, f"{where}[{k!r}]"))
        pairs.sort()
        return b"".join(pairs)

    def _encode_reduce(self, obj: Any, where: str) -> bytes:
        try:
            reduced = obj.__reduce_ex__(5)
        except Exception as exc:
            raise TaskKeyError(
                f"cannot compute a stable task key: {where} is a {type(obj).__qualname__} "
                f"that cannot be serialized ({exc}); pass key='...' to submit()") from None
        if isinstance(reduced, str) or not isinstance(reduced, tuple):
            # A global singleton referenced by name.
            return _frame(b"g", str(reduced).encode())
        parts = list(reduced) + [None] * (5 - len(reduced))
        func, fargs, state, listitems, dictitems = parts[:5]
        out = [self.encode(func, f"{where} (reduce function)"),
               self.encode(tuple(fargs or ()), f"{where} (reduce args)"),
               self.encode(state, f"{where}.__dict__")]
        if listitems is not None:
            out.append(self.encode(list(listitems), f"{where} (items)"))
        if dictitems is not None:
            out.append(self.encode(dict(dictitems), f"{where} (items)"))
        return b"".join(out)

    def _encode_numpy(self, obj: Any, where: str) -> bytes | None:
        import numpy as np  # only reached for numpy objects, so numpy is imported

        if isinstance(obj, np.ndarray):
            head = self.encode((obj.dtype.str, obj.shape), where)
            if obj.dtype.hasobject:
                return _frame(b"A", head + self.encode(obj.tolist(), where))
            return _frame(b"a", head + np.ascontiguousarray(obj).tobytes())
        if isinstance(obj, np.generic):
            return _frame(b"x", self.encode(obj.dtype.str, where) + obj.tobytes())
        return None


def _io_types() -> tuple:
    import io
    import socket
    return (io.IOBase, socket.socket)


def _float_bytes(x: float) -> bytes:
    if math.isnan(x):
        return b"nan!!!!!"  # one key for every NaN payload; 8 bytes like the others
    return struct.pack(">d", x)

