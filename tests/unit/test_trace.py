"""Trace format: writer, reader (including killed runs), per-rank spans, lanes, Chrome export.

The writer's cost is measured in ``benchmarks/trace_writer.py`` (timings are not tests).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotq_mpi.trace import (
    RankInfo,
    TaskRecord,
    TraceError,
    TraceWriter,
    assign_lanes,
    format_task_line,
    rank_spans,
    read_trace,
    to_chrome_trace,
    write_chrome_trace,
)

START = 1000.0
RANKS = [
    RankInfo(1, "n1", (0,)),
    RankInfo(2, "n1", (1,)),
    RankInfo(3, "n2", (0,), qpu="fake"),
    RankInfo(4, "n2", (1,)),
]
TASKS = [
    TaskRecord(1, "sv", "statevector", "done", submit=1000.0, start=1001.0, end=1005.0,
               ranks=[1, 2], nodes=["n1", "n1"], gpus=[[0], [1]]),
    TaskRecord(2, "cut-0", "cutting", "done", submit=1000.0, start=1000.5, end=1002.5,
               ranks=[3], nodes=["n2"], gpus=[[0]]),
    TaskRecord(3, "cut-1", "cutting", "failed", submit=1000.0, start=1002.5, end=1003.0,
               ranks=[3], nodes=["n2"], gpus=[[0]], error="ValueError: bad \"angle\"\n"),
    TaskRecord(4, "cut-2", "cutting", "done", submit=1001.0, start=1001.0, end=1004.0,
               ranks=[4], nodes=["n2"], gpus=[[1]]),
    TaskRecord(5, "qpu-0", "qpu", "timed_out", submit=1002.0, start=1003.0, end=1008.0,
               ranks=[3], nodes=["n2"], gpus=[[0]], qpu="fake"),
    TaskRecord(6, "cut-3", "cutting", "cancelled", submit=1003.0, start=None, end=1006.0),
]


def write_synthetic(path: Path, *, end: bool = True, flush_interval: float = 0.2) -> None:
    with TraceWriter(path, flush_interval=flush_interval) as w:
        w.write_header(RANKS, start=START, hostname="login1")
        for t in TASKS:
            w.write_task(t)
        if end:
            w.write_end(1010.0)


@pytest.mark.parametrize("flush_interval", [0.2, 0])
def test_round_trip(tmp_path: Path, flush_interval: float) -> None:
    path = tmp_path / "run.jsonl"
    write_synthetic(path, flush_interval=flush_interval)
    records = read_trace(path)
    assert records[0] == {
        "type": "pilot", "version": 1, "start": 1000.0, "hostname": "login1",
        "ranks": [
            {"rank": 1, "node": "n1", "gpus": [0], "qpu": None},
            {"rank": 2, "node": "n1", "gpus": [1], "qpu": None},
            {"rank": 3, "node": "n2", "gpus": [0], "qpu": "fake"},
            {"rank": 4, "node": "n2", "gpus": [1], "qpu": None},
        ],
    }
    assert records[1:-1] == [t.to_dict() for t in TASKS]
    assert records[-1] == {"type": "end", "time": 1010.0}
    # every line is plain JSON, one record per line
    assert len(path.read_text().splitlines()) == 8


def test_dict_records_and_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    record = TASKS[0].to_dict() | {"attempts": 2}
    with TraceWriter(path) as w:
        w.write_header([{"rank": 1, "node": "n1"}], start=5.0)
        w.write_task(record)
        w.write_task(TaskRecord(7, "x", "k", "done", 1.0, 2.0, 1.5, extra={"note": "é"}))
    tasks = read_trace(path)[1:]
    assert tasks[0] == record
    assert tasks[1]["note"] == "é" and tasks[1]["start"] == 1.5


@given(
    name=st.text(),
    error=st.none() | st.text(),
    nodes=st.lists(st.text(), max_size=3),
    t=st.floats(min_value=0, max_value=2e9, allow_nan=False),
    with_spans=st.booleans(),
)
def test_format_task_line_matches_json(name: str, error: str | None, nodes: list[str], t: float,
                                       with_spans: bool) -> None:
    spans = [None if i == 1 else (t + i, t + 1) for i in range(len(nodes))] if with_spans else None
    record = TaskRecord(9, name, "kind", "failed", submit=t, end=t + 1, start=None,
                        ranks=list(range(len(nodes))), nodes=nodes,
                        gpus=[[i, i + 1] for i in range(len(nodes))], error=error, spans=spans)
    line = format_task_line(record)
    assert line.endswith("}\n") and "\n" not in line[:-1]
    assert json.loads(line) == record.to_dict()


def test_writer_rejects_bad_records(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "t.jsonl") as w:
        with pytest.raises(TraceError, match=r"write_header\(\) must come before"):
            w.write_task(TASKS[0])
        with pytest.raises(TraceError, match="'rank' and 'node'"):
            w.write_header([{"rank": 1}])
        w.write_header([{"rank": 1, "node": "n1"}])
        with pytest.raises(TraceError, match="header already written"):
            w.write_header([{"rank": 1, "node": "n1"}])
        with pytest.raises(TraceError, match="'running'"):
            w.write_task(TaskRecord(1, "a", "k", "running", 0.0, 1.0))
        with pytest.raises(TraceError, match="lacks field 'start'"):
            w.write_task({"id": 1, "name": "a", "kind": "k", "state": "done"})
        with pytest.raises(TraceError, match="must be a string, not int"):
            w.write_task(TaskRecord(1, 42, "k", "done", 0.0, 1.0))  # type: ignore[arg-type]
        with pytest.raises(TraceError, match="1 spans for 2 ranks"):
            w.write_task(TaskRecord(1, "a", "k", "done", 0.0, 1.0, 0.5, ranks=[1, 2], spans=[(0.5, 1.0)]))
        with pytest.raises(TraceError, match=r"extra fields \['spans'\] clash"):
            w.write_task(TaskRecord(1, "a", "k", "done", 0.0, 1.0, extra={"spans": []}))
    with pytest.raises(TraceError, match="closed"):
        w.write_task(TASKS[0])
    with pytest.raises(ValueError, match="-1"):
        TraceWriter(tmp_path / "u.jsonl", flush_interval=-1)


def test_truncated_trace_reads(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    write_synthetic(path, end=False)
    text = path.read_text()
    cut = text.index('"id":5') + 10  # mid-way through task 5's line
    path.write_text(text[:cut])
    records = read_trace(path)
    assert [r["id"] for r in records[1:]] == [1, 2, 3, 4]
    assert records[0]["type"] == "pilot"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("hello world\n", "not a pilotq trace: line 1 is not JSON"),
        ('{"type": "task", "id": 1}\n', "not a pilotq trace: line 1 has type 'task'"),
        ('{"type": "pilot", "version": 2, "start": 0, "ranks": []}\n', "version 2"),
        ('{"type": "pilot", "version": 1, "start": 0, "ranks": []}\n{oops\n{"type": "end"}\n',
         r":2: not valid JSON"),
        ('{"type": "pilot", "version": 1, "start": 0, "ranks": []}\n{"type": "task", "id": 3}\n',
         r":2: task record lacks \['name'"),
        ('{"type": "pilot", "version": 1, "start": 0, "ranks": []}\n' + json.dumps(
            TASKS[0].to_dict() | {"spans": [[1001.0, 1004.0]]}) + "\n",
         r":2: task spans .* one \[start, end\] or null per rank"),
        ('{"type": "pilot", "version": 1, "start": 0, "ranks": []}\n' + json.dumps(
            TASKS[0].to_dict() | {"spans": [[1001.0, "x"], None]}) + "\n",
         r":2: task spans"),
    ],
)
def test_read_trace_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        read_trace(path)


def test_sigkilled_writer_leaves_readable_trace(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    script = textwrap.dedent(f"""
        import time
        from pilotq_mpi.trace import TraceWriter, TaskRecord
        w = TraceWriter({str(path)!r})
        w.write_header([{{"rank": 1, "node": "n1"}}], start=0.0)
        for i in range(3):
            w.write_task(TaskRecord(i, "t", "k", "done", 0.0, 1.0, 0.5, ranks=[1], nodes=["n1"]))
        print("written", flush=True)
        time.sleep(60)
    """)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"written\n"
        # The flusher thread (every 0.2 s), not the exit, must hand the records to the OS:
        # wait until they are in the file (up to 30 s, however loaded the machine), then kill.
        deadline = time.monotonic() + 30
        while path.read_text().count("\n") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    records = read_trace(path)
    assert [r["id"] for r in records[1:]] == [0, 1, 2]


def test_chrome_trace(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_synthetic(path)
    chrome = to_chrome_trace(read_trace(path))
    events = chrome["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    assert [(e["name"], e["pid"], e["tid"], e["args"]["name"]) for e in meta] == [
        ("process_name", 1, 0, "n1"),
        ("process_name", 2, 0, "n2"),
        ("thread_name", 1, 1, "rank 1"),
        ("thread_name", 1, 2, "rank 2"),
        ("thread_name", 2, 3, "rank 3"),
        ("thread_name", 2, 4, "rank 4"),
    ]
    complete = [e for e in events if e["ph"] == "X"]
    # task 1 on two ranks, tasks 2-5 on one each, task 6 never started
    assert [(e["args"]["id"], e["tid"], e["pid"], e["ts"], e["dur"]) for e in complete] == [
        (1, 1, 1, 1_000_000.0, 4_000_000.0),
        (1, 2, 1, 1_000_000.0, 4_000_000.0),
        (2, 3, 2, 500_000.0, 2_000_000.0),
        (3, 3, 2, 2_500_000.0, 500_000.0),
        (4, 4, 2, 1_000_000.0, 3_000_000.0),
        (5, 3, 2, 3_000_000.0, 5_000_000.0),
    ]
    assert complete[3]["args"] == {"id": 3, "state": "failed", "kind": "cutting",
                                   "error": "ValueError: bad \"angle\"\n"}
    assert complete[5]["name"] == "qpu-0" and complete[5]["cat"] == "qpu"
    out = tmp_path / "chrome.json"
    write_chrome_trace(read_trace(path), out)
    assert json.loads(out.read_text()) == chrome


def test_multi_rank_spans_round_trip(tmp_path: Path) -> None:
    # A 3-rank task: rank 5 ended first, rank 7 never reported (null).
    task = TaskRecord(8, "sv", "sv", "failed", submit=10.0, start=11.0, end=15.0, ranks=[5, 6, 7],
                      nodes=["a", "a", "b"], gpus=[[], [], []], spans=[(11.0, 12.5), (11.25, 15.0), None])
    path = tmp_path / "spans.jsonl"
    with TraceWriter(path) as w:
        w.write_header([{"rank": r, "node": "a"} for r in (5, 6, 7)], start=10.0)
        w.write_task(task)
        w.write_task(TASKS[1])  # single-rank: no spans written
    line = path.read_text().splitlines()[1]
    assert line.endswith(',"error":null,"spans":[[11.0,12.5],[11.25,15.0],null]}')
    got, single = read_trace(path)[1:]
    assert got == task.to_dict() and got["spans"] == [[11.0, 12.5], [11.25, 15.0], None]
    assert "spans" not in single
    # each rank's own span; the rank that never reported gets the task's start and end
    assert rank_spans(got) == [(5, 11.0, 12.5), (6, 11.25, 15.0), (7, 11.0, 15.0)]
    assert rank_spans(single) == [(3, 1000.5, 1002.5)]
    assert rank_spans(TASKS[5].to_dict()) == []  # never started


def test_assign_lanes() -> None:
    # one task at a time (touching ends included): one lane
    assert assign_lanes([(0.0, 1.0), (1.0, 2.0), (3.0, 4.0)]) == [0, 0, 0]
    # two concurrent QPU calls, then a third once the first has ended; given out of order
    assert assign_lanes([(3.0, 7.0), (2.0, 6.0), (6.0, 8.0)]) == [1, 0, 0]
    # three at once need three lanes; a lane frees up for the fourth
    assert assign_lanes([(0.0, 5.0), (1.0, 2.0), (1.5, 3.0), (2.0, 4.0)]) == [0, 1, 2, 1]
    assert assign_lanes([]) == []


def test_trace_observer_writes_each_ranks_own_span(tmp_path: Path) -> None:
    """The master's per-rank times (Master._on_result keeps them) reach the trace line."""
    from concurrent.futures import Future

    from pilotq_mpi.core.inventory import Inventory
    from pilotq_mpi.core.inventory import RankInfo as InventoryRank
    from pilotq_mpi.core.specs import TaskSpec
    from pilotq_mpi.core.states import TaskState
    from pilotq_mpi.runtime.observers import TraceObserver
    from pilotq_mpi.runtime.records import Submission
    from pilotq_mpi.runtime.records import TaskRecord as LiveRecord

    inventory = Inventory((InventoryRank(1, "n1"), InventoryRank(2, "n1", (0,)), InventoryRank(3, "n2")))
    path = tmp_path / "obs.jsonl"
    observer = TraceObserver(str(path), inventory, started=100.0)

    def live(task_id: int, ranks: tuple[int, ...], spans: dict) -> LiveRecord:
        sub = Submission(task_id, 0, b"", b"", TaskSpec(ranks=len(ranks)), Future(), frozenset(), "k", 100.0)
        record = LiveRecord(sub, state=TaskState.DONE, ranks=ranks)
        record.rank_spans = spans
        record.started = min(s for s, _ in spans.values())
        record.ended = max(e for _, e in spans.values())
        return record

    observer.task_ended(live(1, (1, 2), {1: (101.0, 102.0), 2: (101.5, 104.0)}))
    observer.task_ended(live(2, (3,), {3: (101.0, 103.0)}))
    observer.close()
    wide, single = read_trace(path)[1:3]
    assert (wide["start"], wide["end"], wide["spans"]) == (101.0, 104.0, [[101.0, 102.0], [101.5, 104.0]])
    assert wide["gpus"] == [[], [0]]
    assert (single["start"], single["end"]) == (101.0, 103.0) and "spans" not in single


def test_note_reports_whether_a_trace_kept_the_record(tmp_path):
    """``Pilot.note`` returns what the observers say: True only when a trace wrote the record."""
    from pilotq_mpi.core.inventory import Inventory
    from pilotq_mpi.core.inventory import RankInfo as InventoryRank
    from pilotq_mpi.runtime.observers import JournalObserver, Observers, TraceObserver

    assert Observers(JournalObserver()).note({"type": "plan"}) is False
    path = tmp_path / "notes.jsonl"
    traced = Observers(JournalObserver(), TraceObserver(str(path), Inventory((InventoryRank(1, "n1"),)), 0.0))
    assert traced.note({"type": "plan", "best": "statevector/2"}) is True
    traced.close()
    assert [r for r in read_trace(path) if r.get("type") == "plan"] == [{"type": "plan", "best": "statevector/2"}]
