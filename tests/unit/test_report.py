"""Report figures against a synthetic trace with hand-computed values, plots, CLI."""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest

from pilotq_mpi.core.inventory import Inventory, QpuSpec
from pilotq_mpi.core.inventory import RankInfo as InventoryRank
from pilotq_mpi.core.scheduler import Scheduler
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.report import (
    add_parser,
    busy_ranks_series,
    default_plot_paths,
    format_summary,
    gantt_bars,
    gantt_png,
    summarize,
    utilization_png,
)
from pilotq_mpi.trace import RankInfo, TaskRecord, TraceWriter, read_trace, to_chrome_trace

# Origin 1000 s; 4 worker ranks. Per task: kind, state, wait (start - submit), busy rank-seconds.
#   1 statevector done       ranks 1,2  run 1.0-5.0   wait 1.0  busy 4.0 x 2 = 8.0
#   2 cutting     done       rank 3     run 0.5-2.5   wait 0.5  busy 2.0
#   3 cutting     failed     rank 3     run 2.5-3.0   wait 2.5  busy 0.5
#   4 cutting     done       rank 4     run 1.0-4.0   wait 0.0  busy 3.0
#   5 qpu         timed_out  rank 3     run 3.0-8.0   wait 1.0  busy 5.0
#   6 cutting     cancelled  (queued, never started; ends at 6.0)
# makespan 8.0 (end record at 10.0 does not count); capacity 8.0 x 4 = 32 rank-seconds.
# No two tasks overlap on a rank (rank 3: 0.5-2.5, 2.5-3.0, 3.0-8.0), so merging changes nothing.
# Throughput: 5 tasks ran (task 6 was cancelled before it started) in 8.0 s.
RANKS = [RankInfo(1, "n1", (0,)), RankInfo(2, "n1", (1,)), RankInfo(3, "n2", (0,), "fake"),
         RankInfo(4, "n2", (1,))]
TASKS = [
    TaskRecord(1, "sv", "statevector", "done", 1000.0, 1005.0, 1001.0, [1, 2], ["n1", "n1"], [[0], [1]]),
    TaskRecord(2, "cut-0", "cutting", "done", 1000.0, 1002.5, 1000.5, [3], ["n2"], [[0]]),
    TaskRecord(3, "cut-1", "cutting", "failed", 1000.0, 1003.0, 1002.5, [3], ["n2"], [[0]],
               error="ValueError: bad"),
    TaskRecord(4, "cut-2", "cutting", "done", 1001.0, 1004.0, 1001.0, [4], ["n2"], [[1]]),
    TaskRecord(5, "qpu-0", "qpu", "timed_out", 1002.0, 1008.0, 1003.0, [3], ["n2"], [[0]], qpu="fake"),
    TaskRecord(6, "cut-3", "cutting", "cancelled", 1003.0, 1006.0, None),
]
ZERO = {"done": 0, "failed": 0, "cancelled": 0, "timed_out": 0}


@pytest.fixture
def trace_path(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    with TraceWriter(path) as w:
        w.write_header(RANKS, start=1000.0, hostname="login1")
        for t in TASKS:
            w.write_task(t)
        w.write_end(1010.0)
    return path


def test_summary_figures(trace_path: Path) -> None:
    s = summarize(read_trace(trace_path))
    assert s.tasks == 6
    assert s.by_state == {"done": 3, "failed": 1, "cancelled": 1, "timed_out": 1}
    assert s.by_kind == {
        "cutting": ZERO | {"done": 2, "failed": 1, "cancelled": 1},
        "qpu": ZERO | {"timed_out": 1},
        "statevector": ZERO | {"done": 1},
    }
    assert s.makespan == 8.0
    assert s.worker_ranks == 4
    assert s.utilization == 18.5 / 32  # 0.578125
    assert s.utilization_by_kind == {"cutting": 5.5 / 32, "qpu": 5.0 / 32, "statevector": 8.0 / 32}
    # waits sorted [0, 0.5, 1, 1, 2.5]; inclusive method: position p/100 * (n - 1)
    assert s.wait_p50 == 1.0  # position 2
    assert s.wait_p95 == 2.2  # position 3.8: 1.0 + 0.8 * (2.5 - 1.0)
    assert s.throughput == 5 / 8.0
    assert s.ran == 5


def test_truncated_trace_reports(trace_path: Path) -> None:
    text = trace_path.read_text()
    trace_path.write_text(text[: text.index('"id":5') + 12])  # killed while writing task 5
    s = summarize(read_trace(trace_path))
    # tasks 1-4 remain: last end 5.0, busy 8 + 2 + 0.5 + 3 = 13.5 of 5.0 x 4 = 20
    assert s.tasks == 4
    assert s.by_state == {"done": 3, "failed": 1, "cancelled": 0, "timed_out": 0}
    assert s.makespan == 5.0
    assert s.utilization == 13.5 / 20
    # waits [0, 0.5, 1, 2.5]: p50 at position 1.5 -> 0.75, p95 at 2.85 -> 1 + 0.85 * 1.5
    assert s.wait_p50 == 0.75
    assert s.wait_p95 == 2.275
    assert s.throughput == 4 / 5.0
    assert "makespan     5.000 s on 4 worker ranks" in format_summary(s)


def test_summary_without_header_uses_first_submit() -> None:
    records = [t.to_dict() for t in TASKS[1:3]]  # tasks 2 and 3: both on rank 3
    s = summarize(records)
    assert s.worker_ranks == 1
    assert s.makespan == 3.0  # first submit 1000.0 -> last end 1003.0
    assert s.utilization == 2.5 / 3.0
    # waits [0.5, 2.5]: p50 at position 0.5 -> 1.5, p95 at 0.95 -> 0.5 + 0.95 * 2.0
    assert s.wait_p50 == 1.5 and s.wait_p95 == 2.4


def test_summary_edge_cases() -> None:
    empty = summarize([{"type": "pilot", "version": 1, "start": 5.0, "ranks": [{"rank": 1, "node": "a"}]}])
    assert (empty.tasks, empty.makespan, empty.utilization, empty.throughput) == (0, 0.0, 0.0, 0.0)
    assert empty.wait_p50 is None and empty.wait_p95 is None
    assert "p50 -   p95 -" in format_summary(empty)
    one = summarize([TASKS[0].to_dict()])
    assert one.wait_p50 == one.wait_p95 == 1.0


def test_format_summary(trace_path: Path) -> None:
    text = format_summary(summarize(read_trace(trace_path)))
    lines = text.splitlines()
    assert lines[0] == "tasks        6   done 3  failed 1  cancelled 1  timed_out 1"
    assert lines[1] == "makespan     8.000 s on 4 worker ranks"
    assert lines[2] == "throughput   0.6 tasks/s (5 tasks ran)"
    assert lines[3] == "utilization  57.8% of rank-time"
    assert lines[4] == "queue wait   p50 1.000 s   p95 2.200 s"
    rows = {line.split()[0]: line.split()[1:] for line in lines[8:]}
    assert rows == {
        "cutting": ["2", "1", "1", "0", "4", "17.2%"],
        "qpu": ["0", "0", "0", "1", "1", "15.6%"],
        "statevector": ["1", "0", "0", "0", "1", "25.0%"],
    }


def test_busy_ranks_series(trace_path: Path) -> None:
    times, busy = busy_ranks_series(read_trace(trace_path))
    assert times == [0.0, 0.5, 1.0, 4.0, 5.0, 8.0]
    assert busy == [0, 1, 4, 3, 1, 0]
    # the step function's area is the busy rank-seconds of the summary
    area = sum((t1 - t0) * b for t0, t1, b in zip(times, times[1:], busy))
    assert area == 18.5


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots(trace_path: Path, tmp_path: Path) -> None:
    records = read_trace(trace_path)
    gantt, util = tmp_path / "g.png", tmp_path / "u.png"
    gantt_png(records, gantt)
    utilization_png(records, util)
    # figsize x 100 dpi: Gantt 10 x max(2.5, 0.3 * 4 + 1.5) in, utilization 10 x 3.5 in
    assert png_size(gantt) == (1000, 270)
    assert png_size(util) == (1000, 350)
    assert gantt.stat().st_size > 10_000 and util.stat().st_size > 10_000


def test_gantt_colours_by_kind(trace_path: Path, tmp_path: Path) -> None:
    # Coloured bars: more distinct colours in the Gantt of the trace than in an empty one.
    from matplotlib import image

    records = read_trace(trace_path)
    full, empty = tmp_path / "full.png", tmp_path / "empty.png"
    gantt_png(records, full)
    gantt_png(records[:1], empty)
    tab10 = {(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17)}  # first three kinds

    def colours(path: Path) -> set[tuple[float, float, float]]:
        pixels = image.imread(path)[..., :3].reshape(-1, 3)
        return {tuple(round(float(c), 2) for c in p) for p in pixels[::7]}

    assert tab10 <= colours(full)
    assert not tab10 & colours(empty)


def test_report_command(trace_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="pilotq-mpi")
    add_parser(parser.add_subparsers(dest="command"))
    chrome = trace_path.with_name("perfetto.json")
    args = parser.parse_args(["report", str(trace_path), "--chrome", str(chrome)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "utilization  57.8% of rank-time" in out
    gantt, util = default_plot_paths(trace_path)
    assert gantt == trace_path.with_name("run.gantt.png")
    assert util == trace_path.with_name("run.utilization.png")
    assert png_size(gantt)[0] == 1000 and png_size(util)[0] == 1000
    assert len(json.loads(chrome.read_text())["traceEvents"]) == 12


def test_report_command_bad_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="pilotq-mpi")
    add_parser(parser.add_subparsers(dest="command"))
    bad = tmp_path / "notes.txt"
    bad.write_text("not a trace\n")
    args = parser.parse_args(["report", str(bad), "--gantt", str(tmp_path / "g.png")])
    assert args.func(args) == 1
    assert f"{bad} is not a pilotq trace" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_gantt_height_capped_for_many_ranks(tmp_path: Path) -> None:
    header = {"type": "pilot", "version": 1, "start": 0.0,
              "ranks": [{"rank": r, "node": "n"} for r in range(1, 201)]}
    path = tmp_path / "wide.png"
    gantt_png([header], path)
    assert png_size(path) == (1000, 1600)  # 0.3 x 200 + 1.5 = 61.5 in, capped at 16 in


# --- honest accounting: overlapping QPU calls, ranks of one task ending at different times ---
# Origin 0; 3 worker ranks: 1 and 2 compute, 3 pinned to a QPU with concurrency 2.
#   10 sv    done       ranks 1,2  task 1.0-6.0; rank 1 ran 1.0-4.0, rank 2 ran 1.0-6.0
#   11 cut   done       rank 1     4.5-8.0   (starts after rank 1 left task 10, before task 10's end)
#   12 cut   done       rank 2     6.0-8.0
#   13 qpu   done       rank 3     2.0-6.0
#   14 qpu   done       rank 3     3.0-7.0   (overlaps task 13 on the same rank)
#   15 qpu   failed     rank 3     7.0-8.0   (touches task 14's end)
#   16 cut   cancelled  never started, ends 5.0
# Busy time merged per rank: rank 1 [1,4] + [4.5,8] = 3 + 3.5 = 6.5; rank 2 [1,6] + [6,8] = 7;
# rank 3 [2,8] = 6. Total 19.5 of 8.0 x 3 = 24 -> 81.25%. (Summing task durations x ranks,
# as before, gives 10 + 3.5 + 2 + 4 + 4 + 1 = 24.5 of 24: 102%.)
# Per kind, overlapping time split evenly: sv 3 + 5 = 8; cut 3.5 + 2 = 5.5;
# qpu [2,3) 1 + [3,6) 3 (1.5 each) + [6,7) 1 + [7,8) 1 = 6; 8 + 5.5 + 6 = 19.5.
# Busy ranks: +2 at 1 (ranks 1, 2), +1 at 2 (rank 3), -1 at 4 (rank 1), +1 at 4.5, -3 at 8.
# Throughput: 6 tasks ran (16 was cancelled) in 8.0 s.
OVERLAP_RANKS = [RankInfo(1, "n1"), RankInfo(2, "n1"), RankInfo(3, "n1", qpu="fake")]
OVERLAP_TASKS = [
    TaskRecord(10, "sv", "sv", "done", 0.0, 6.0, 1.0, [1, 2], ["n1", "n1"], [[], []],
               spans=[(1.0, 4.0), (1.0, 6.0)]),
    TaskRecord(11, "cut-a", "cut", "done", 0.0, 8.0, 4.5, [1], ["n1"], [[]]),
    TaskRecord(12, "cut-b", "cut", "done", 0.0, 8.0, 6.0, [2], ["n1"], [[]]),
    TaskRecord(13, "qpu-a", "qpu", "done", 0.0, 6.0, 2.0, [3], ["n1"], [[]], qpu="fake"),
    TaskRecord(14, "qpu-b", "qpu", "done", 0.0, 7.0, 3.0, [3], ["n1"], [[]], qpu="fake"),
    TaskRecord(15, "qpu-c", "qpu", "failed", 0.0, 8.0, 7.0, [3], ["n1"], [[]], qpu="fake", error="E: x"),
    TaskRecord(16, "cut-c", "cut", "cancelled", 0.0, 5.0, None),
]


def write_trace(path: Path, ranks, tasks) -> Path:
    with TraceWriter(path) as w:
        w.write_header(ranks, start=0.0, hostname="h")
        for t in tasks:
            w.write_task(t)
    return path


@pytest.fixture
def overlap_records(tmp_path: Path) -> list[dict]:
    return read_trace(write_trace(tmp_path / "overlap.jsonl", OVERLAP_RANKS, OVERLAP_TASKS))


def test_utilization_merges_overlaps_and_uses_each_ranks_own_span(overlap_records) -> None:
    s = summarize(overlap_records)
    assert s.makespan == 8.0 and s.worker_ranks == 3
    assert s.utilization == 19.5 / 24
    assert s.utilization_by_kind == {"cut": 5.5 / 24, "qpu": 6.0 / 24, "sv": 8.0 / 24}
    assert s.ran == 6
    assert s.throughput == 6 / 8.0
    assert "utilization  81.2% of rank-time" in format_summary(s)


def test_busy_ranks_never_exceed_worker_ranks(overlap_records) -> None:
    times, busy = busy_ranks_series(overlap_records)
    assert times == [0.0, 1.0, 2.0, 4.0, 4.5, 8.0]
    assert busy == [0, 2, 3, 2, 3, 0]
    area = sum((t1 - t0) * b for t0, t1, b in zip(times, times[1:], busy))
    assert area == 19.5  # the merged busy rank-seconds of the summary


def test_traces_without_spans_still_report(overlap_records) -> None:
    # An older trace: no "spans", so every rank of task 10 counts as busy until 6.0.
    # rank 1 [1,6] + [4.5,8] = [1,8] = 7; rank 2 7; rank 3 6: 20 of 24.
    old = [{k: v for k, v in r.items() if k != "spans"} for r in overlap_records]
    assert all("spans" not in r for r in old)
    s = summarize(old)
    assert s.utilization == 20 / 24
    assert busy_ranks_series(old) == ([0.0, 1.0, 2.0, 8.0], [0, 2, 3, 0])
    # a rank that never reported (null span) falls back to the task's start and end
    partial = [r | {"spans": [[1.0, 4.0], None]} if r.get("id") == 10 else r for r in overlap_records]
    assert summarize(partial).utilization == 19.5 / 24


def test_gantt_draws_concurrent_calls_in_separate_lanes(overlap_records, tmp_path: Path) -> None:
    bars = gantt_bars(overlap_records)
    # (rank, lane, lanes, start, duration, kind, done), in record order
    assert bars == [
        (1, 0, 1, 1.0, 3.0, "sv", True),   # each rank's bar ends at that rank's own end
        (2, 0, 1, 1.0, 5.0, "sv", True),
        (1, 0, 1, 4.5, 3.5, "cut", True),
        (2, 0, 1, 6.0, 2.0, "cut", True),
        (3, 0, 2, 2.0, 4.0, "qpu", True),
        (3, 1, 2, 3.0, 4.0, "qpu", True),  # overlaps task 13: second lane of rank 3's row
        (3, 0, 2, 7.0, 1.0, "qpu", False),  # task 13 has ended by 7.0: back in lane 0
    ]
    gantt_png(overlap_records, tmp_path / "g.png")
    assert png_size(tmp_path / "g.png") == (1000, 250)


def test_chrome_trace_uses_rank_spans_and_lanes(overlap_records) -> None:
    events = to_chrome_trace(overlap_records)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {1: "rank 1", 2: "rank 2", 3: "rank 3", 1_000_003: "rank 3 lane 2"}
    spans = [(e["args"]["id"], e["tid"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"]
    assert spans == [
        (10, 1, 1e6, 3e6), (10, 2, 1e6, 5e6), (11, 1, 4.5e6, 3.5e6), (12, 2, 6e6, 2e6),
        (13, 3, 2e6, 4e6), (14, 1_000_003, 3e6, 4e6), (15, 3, 7e6, 1e6),
    ]


def test_live_busy_count_never_exceeds_worker_ranks() -> None:
    # What the progress display shows (Master.snapshot -> Scheduler.busy_ranks): with a
    # 2-rank task, prefetched single-rank tasks and 2 concurrent calls (+1 prefetched) on the
    # QPU rank, all 3 worker ranks are busy: 3, not the 2 + 2 + 3 tasks placed.
    qpu = QpuSpec("fake", "m:f", concurrency=2)
    inventory = Inventory((InventoryRank(1, "n"), InventoryRank(2, "n"), InventoryRank(3, "n", qpu="fake")),
                          {"fake": qpu})
    scheduler = Scheduler(inventory, prefetch=1)
    scheduler.submit(0, TaskSpec(ranks=2))
    for task in range(1, 3):
        scheduler.submit(task, TaskSpec())
    for task in range(3, 8):
        scheduler.submit(task, TaskSpec(qpu="fake"))
    placed = scheduler.schedule()
    assert sorted(len(p.ranks) for p in placed) == [1, 1, 1, 2]  # 1 wide task + 3 QPU calls
    assert scheduler.busy_ranks == 3
