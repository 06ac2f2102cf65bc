"""Tests of pilotq_mpi.journal: durability, reuse rules, task keys."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from pilotq_mpi.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalKeyConflict,
    JournalSchemaError,
    TaskKeyError,
    task_key,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def task(comm, *args, **kwargs):
    return None


def other_task(comm, *args, **kwargs):
    return None


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Spec:
    n: int
    opts: dict


Point = namedtuple("Point", "x y")


def _rec(j: Journal, key: str, state: str = "done", result: bytes | None = b"r", **kw) -> None:
    args = dict(name="task", state=state, result=result, error=None if state == "done" else "boom",
                started=1.0, ended=2.0, ranks=1)
    args.update(kw)
    j.record(key, **args)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


# -- records -------------------------------------------------------------------

def test_round_trip(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        assert j.lookup("a") is None
        j.record("a", name="f", state="done", result=b"\x00\x01", error=None,
                 started=10.0, ended=11.5, ranks=4)
        rec = j.lookup("a")
    assert rec.key == "a" and rec.name == "f" and rec.state == "done"
    assert rec.result == b"\x00\x01" and rec.error is None
    assert (rec.started, rec.ended, rec.ranks, rec.attempts) == (10.0, 11.5, 4, 1)


def test_reopen_returns_records_and_counts(tmp_path):
    path = tmp_path / "sub" / "j.db"  # parent directory is created
    with Journal(path) as j:
        _rec(j, "a")
        _rec(j, "b", state="failed", result=None)
        _rec(j, "c", state="cancelled", result=None)
    with Journal(path) as j:
        assert j.lookup("a").result == b"r"
        assert j.counts() == {"done": 1, "failed": 1, "cancelled": 1, "timed_out": 0}
        assert [r.key for r in j.results()] == ["a", "b", "c"]
        assert [r.key for r in j.results("failed")] == ["b"]
        assert len(j) == 3


def test_failures_rerun_unless_reuse_failures(tmp_path):
    path = tmp_path / "j.db"
    with Journal(path) as j:
        _rec(j, "f", state="failed", result=None)
        _rec(j, "t", state="timed_out", result=None)
        _rec(j, "c", state="cancelled", result=None)
        assert j.lookup("f") is None and j.lookup("t") is None and j.lookup("c") is None
        assert j.get("f").state == "failed"
    with Journal(path, reuse_failures=True) as j:
        assert j.lookup("f").error == "boom"
        assert j.lookup("t").state == "timed_out"
        assert j.lookup("c") is None


def test_rerun_replaces_record_and_counts_attempts(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        _rec(j, "k", state="failed", result=None)
        _rec(j, "k", state="done", result=b"ok")
        rec = j.lookup("k")
        assert rec.result == b"ok" and rec.error is None and rec.attempts == 2


def test_enum_state_is_accepted(tmp_path):
    class State(enum.Enum):
        DONE = "done"

    with Journal(tmp_path / "j.db") as j:
        _rec(j, "k", state=State.DONE)
        assert j.lookup("k").state == "done"


@pytest.mark.parametrize("bad, match", [
    (dict(state="running"), "state 'running' is not a terminal state"),
    (dict(result="text"), "result must be bytes"),
    (dict(ranks=0), "ranks must be a positive int, got 0"),
])
def test_record_rejects_bad_values(tmp_path, bad, match):
    with Journal(tmp_path / "j.db") as j, pytest.raises((ValueError, TypeError), match=match):
        _rec(j, "k", **bad)


def test_batch_commits_together_and_rolls_back(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        with j.batch():
            _rec(j, "a")
            with j.batch():  # nested: part of the outer one
                _rec(j, "b")
        with pytest.raises(RuntimeError), j.batch():
            _rec(j, "c")
            raise RuntimeError("master failed mid-batch")
        assert {r.key for r in j.results()} == {"a", "b"}



def test_record_many_checks_every_entry_first_and_commits_them_together(tmp_path):
    entry = dict(name="task", state="done", result=b"r", error=None, started=1.0, ended=2.0, ranks=1)
    with Journal(tmp_path / "j.db") as j:
        with pytest.raises(ValueError, match="ranks must be a positive int, got 0"):
            j.record_many([dict(entry, key="a"), dict(entry, key="b", ranks=0)])
        assert len(j) == 0, "nothing is written when one entry is bad"
        j.record_many([dict(entry, key="a"), dict(entry, key="b", state="failed", result=None, error="boom")])
        j.record_many([dict(entry, key="a")])
        j.record_many([])
        assert j.counts()["done"] == 1 and j.get("a").attempts == 2 and j.get("b").error == "boom"

def test_closed_journal_raises(tmp_path):
    j = Journal(tmp_path / "j.db")
    j.close()
    j.close()  # idempotent
    with pytest.raises(Exception, match="is closed"):
        j.lookup("a")


def test_usable_from_another_thread(tmp_path):
    """Created by the driver thread, written by the master thread."""
    j = Journal(tmp_path / "j.db")
    errors = []

    def master():
        try:
            for i in range(50):
                _rec(j, f"k{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=master)
    t.start()
    t.join(10)
    assert not errors and j.counts()["done"] == 50
    j.close()


def test_claim_detects_duplicate_keys(tmp_path):
    with Journal(tmp_path / "j.db") as j:
        j.claim("a")
        j.claim("b")
        with pytest.raises(JournalKeyConflict, match="'a' was already submitted.*key="):
            j.claim("a")


# -- durability ------------------------------------------------------------------

def test_record_survives_sigkill(tmp_path):
    path = tmp_path / "j.db"
    child = textwrap.dedent(f"""
        import time
        from pilotq_mpi.journal import Journal
        j = Journal({str(path)!r})
        j.record("k1", name="f", state="done", result=b"payload", error=None,
                 started=1.0, ended=2.0, ranks=1)
        print("recorded", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            env=_env(), text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "recorded"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:  # pragma: no cover - cleanup on failure
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
    with Journal(path) as j:
        rec = j.lookup("k1")
    assert rec is not None and rec.result == b"payload"



# -- group commit by the master's journal observer ----------------------------------

_GROUP_CHILD = """
import os, signal, sys
from concurrent.futures import Future
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.core.states import TaskState
from pilotq_mpi.journal import Journal
from pilotq_mpi.runtime.observers import JournalObserver
from pilotq_mpi.runtime.records import Submission, TaskRecord

journal = Journal(sys.argv[1])
observer = JournalObserver()

def end(key, value):
    # what the master does: the future runs since dispatch; at the end the observer sees the
    # record first, then the master resolves record.sub.future
    future = Future()
    future.add_done_callback(lambda f: print("done", key, flush=True))  # what the driver can see
    future.set_running_or_notify_cancel()
    sub = Submission(1, 1, b"", b"", TaskSpec(), future, frozenset(), "task", 0.0, key=key, journal=journal)
    record = TaskRecord(sub, state=TaskState.DONE, result=value, started=1.0, ended=2.0)
    observer.task_ended(record)
    record.sub.future.set_result(value)

for key in ("a1", "a2", "a3"):
    end(key, key.upper())
observer.pass_ended()
print("pass 1 ended", flush=True)
for key in ("b1", "b2"):
    end(key, key.upper())
print("crash", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _ended_record(journal, key, *, ok=True):
    from concurrent.futures import Future

    from pilotq_mpi.core.specs import TaskSpec
    from pilotq_mpi.core.states import TaskState
    from pilotq_mpi.runtime.records import Submission, TaskRecord

    future = Future()
    future.set_running_or_notify_cancel()
    sub = Submission(1, 1, b"", b"", TaskSpec(), future, frozenset(), "task", 0.0, key=key, journal=journal)
    state = TaskState.DONE if ok else TaskState.FAILED
    return TaskRecord(sub, state=state, result=7 if ok else None, error=None if ok else ValueError("boom"),
                      started=1.0, ended=2.0), future


def test_group_commit_holds_futures_until_the_pass_is_committed(tmp_path):
    from pilotq_mpi.runtime.observers import JournalObserver

    path = tmp_path / "j.db"
    observer = JournalObserver()
    with Journal(path) as journal:
        ended = [_ended_record(journal, "ok"), _ended_record(journal, "bad", ok=False)]
        for record, _ in ended:
            observer.task_ended(record)  # then the master resolves record.sub.future, as in Master._end
        ended[0][0].sub.future.set_result(7)
        ended[1][0].sub.future.set_exception(ValueError("boom"))
        assert not any(future.done() for _, future in ended), "no result is visible before its commit"
        outside = sqlite3.connect(path)
        assert outside.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
        observer.pass_ended()
        assert outside.execute("SELECT key, state FROM tasks ORDER BY key").fetchall() == [
            ("bad", "failed"), ("ok", "done")]
        outside.close()
        assert ended[0][1].result() == 7 and str(ended[1][1].exception()) == "boom"
        assert all(record.sub.future is future for record, future in ended), "the real futures are back"
        observer.pass_ended()  # a pass without records commits nothing and resolves nothing twice


def test_a_crash_loses_no_result_a_future_reported(tmp_path):
    path = tmp_path / "j.db"
    run = subprocess.run([sys.executable, "-c", _GROUP_CHILD, str(path)], capture_output=True, text=True,
                         env=_env(), timeout=30)
    assert run.returncode == -signal.SIGKILL, run.stderr
    lines = run.stdout.splitlines()
    assert lines == ["done a1", "done a2", "done a3", "pass 1 ended", "crash"], run.stdout
    seen = {line.split()[1] for line in lines if line.startswith("done")}
    with Journal(path) as journal:
        stored = {r.key for r in journal.results()}
        # every result the driver saw is on disk; the crashed pass's records, never seen, are not
        assert seen <= stored and stored == {"a1", "a2", "a3"}
        assert journal.lookup("a2").result is not None


# -- schema ----------------------------------------------------------------------

def test_schema_version_mismatch(tmp_path):
    path = tmp_path / "j.db"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JournalSchemaError, match=f"schema version {SCHEMA_VERSION + 1}.*"
                                                 f"reads version {SCHEMA_VERSION}"):
        Journal(path)


def test_foreign_sqlite_file_and_garbage_are_refused(tmp_path):
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(JournalSchemaError, match="not a pilotq-mpi journal"):
        Journal(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalSchemaError, match="not a pilotq-mpi journal"):
        Journal(garbage)


def test_bad_durability():
    with pytest.raises(ValueError, match="durability='disk'"):
        Journal(":memory:", durability="disk")


# -- task keys -------------------------------------------------------------------

_KEY_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    import numpy as np
    from pilotq_mpi.journal import task_key

    def task(comm, *a, **k):
        pass

    @dataclasses.dataclass
    class Spec:
        n: int
        tags: frozenset

    values = [
        ((), {}),
        ((1, 2.5, "abc", b"xy", None, True, 1 + 2j), {"shots": 1000}),
        (({"b": 1, "a": [1, 2], ("t", 1): {"x", "y", "z"}},), {}),
        (({"alpha", "beta", "gamma", "delta"}, frozenset({1, "1"})), {}),
        ((np.arange(12, dtype=np.float64).reshape(3, 4), np.int32(7)), {}),
        ((Spec(3, frozenset({"p", "q", "r"})),), {"z": 1, "a": 2}),
        ((task, range(5)), {}),
    ]
    print(json.dumps([task_key(task, a, k) for a, k in values]))
""")


def test_keys_stable_across_processes_and_hash_seeds():
    outs = []
    for seed in ("1", "12345"):
        env = _env()
        env["PYTHONHASHSEED"] = seed
        out = subprocess.run([sys.executable, "-c", _KEY_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        outs.append(json.loads(out))
    assert outs[0] == outs[1]
    assert len(set(outs[0])) == len(outs[0])  # different args, different keys
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in outs[0])


def test_key_ignores_dict_and_set_order():
    d1 = {"a": 1, "b": {"x": [1, 2]}, "c": {3, 2, 1}}
    d2 = {"c": {1, 2, 3}, "b": {"x": [1, 2]}, "a": 1}
    assert task_key(task, (d1,), {"p": 1, "q": 2}) == task_key(task, (d2,), {"q": 2, "p": 1})


def test_key_does_not_depend_on_object_identity():
    s1 = "".join(["ab", "c"])
    s2 = "abc"
    assert task_key(task, ((s1, s1),)) == task_key(task, ((s1, s2),))


@pytest.mark.parametrize("a, b", [
    ((1,), (2,)),
    ((1,), (1.0,)),  # typed: 1 and 1.0 differ
    ((1,), (True,)),
    (([1, 2],), ((1, 2),)),
    ((np.zeros(3),), (np.zeros(3, dtype=np.float32),)),
    ((np.zeros((2, 3)),), (np.zeros((3, 2)),)),
    ((Color.RED,), (1,)),
    ((Spec(1, {}),), (Spec(2, {}),)),
    ((Point(1, 2),), ((1, 2),)),
    ((functools.partial(task, 1),), (functools.partial(task, 2),)),
])
def test_keys_differ_for_different_args(a, b):
    assert task_key(task, a) != task_key(task, b)


def test_keys_differ_for_different_functions_and_kwargs():
    assert task_key(task, (1,)) != task_key(other_task, (1,))
    assert task_key(task, (), {"a": 1}) != task_key(task, (), {"a": 2})
    assert task_key(task, (1,)) == task_key(task, (1,), None)


def test_explicit_key():
    assert task_key(lambda comm: 0, (open,), explicit_key="run-7") == "run-7"
    with pytest.raises(ValueError, match="non-empty"):
        task_key(task, (), explicit_key="")
    with pytest.raises(TypeError, match="key= must be a str, got int 7"):
        task_key(task, (), explicit_key=7)


def test_unhashable_args_give_clear_error(tmp_path):
    with pytest.raises(TaskKeyError, match=r"fn is .*<lambda>.*pass key="):
        task_key(lambda comm: 0, ())

    def local(comm):
        return 0

    with pytest.raises(TaskKeyError, match=r"<locals>.*pass key="):
        task_key(task, (local,))
    with open(tmp_path / "f.txt", "w") as fh, \
            pytest.raises(TaskKeyError, match=r"args\[0\] is an open TextIOWrapper.*key="):
        task_key(task, (fh,))
    with pytest.raises(TaskKeyError, match=r"kwargs\['opts'\]\[1\] is a lock.*key="):
        task_key(task, (), {"opts": [1, threading.Lock()]})
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(TaskKeyError, match="reference cycle"):
        task_key(task, (cyclic,))
    with pytest.raises(TaskKeyError, match="generator"):
        task_key(task, ((i for i in range(3)),))


def test_key_cost_is_printed():
    args, kwargs = ((3, 0.5, "circuit-17"), {"shots": 1000})
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        task_key(task, args, kwargs)
    print(f"\ntask_key: {(time.perf_counter() - t0) / n * 1e6:.1f} us per key (small args)")


# -- cost (printed, not asserted) ------------------------------------------------

@pytest.mark.parametrize("durability", ["process", "power"])
def test_per_record_cost_is_printed(tmp_path, durability):
    n = 1000 if durability == "process" else 100
    payload = os.urandom(100)
    with Journal(tmp_path / "j.db", durability=durability) as j:
        t0 = time.perf_counter()
        for i in range(n):
            _rec(j, f"{i:064x}", result=payload)
        single = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for b in range(0, n, 16):
            with j.batch():
                for i in range(b, min(b + 16, n)):
                    _rec(j, f"b{i:063x}", result=payload)
        batched = (time.perf_counter() - t0) / n
        assert j.counts()["done"] == 2 * n
    print(f"\njournal durability={durability}: {single * 1e6:.1f} us/record alone, "
          f"{batched * 1e6:.1f} us/record in batches of 16 (100-byte results)")
