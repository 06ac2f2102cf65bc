"""Report figures against a synthetic trace with hand-computed values, plots, CLI."""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest

from pilotq_mpi.report import (
    add_parser,
    busy_ranks_series,
    default_plot_paths,
    format_summary,
    gantt_png,
    summarize,
    utilization_png,
)
from pilotq_mpi.trace import RankInfo, TaskRecord, TraceWriter, read_trace

# Origin 1000 s; 4 worker ranks. Per task: kind, state, wait (start - submit), busy rank-seconds.
#   1 statevector done       ranks 1,2  run 1.0-5.0   wait 1.0  busy 4.0 x 2 = 8.0
#   2 cutting     done       rank 3     run 0.5-2.5   wait 0.5  busy 2.0
#   3 cutting     failed     rank 3     run 2.5-3.0   wait 2.5  busy 0.5
#   4 cutting     done       rank 4     run 1.0-4.0   wait 0.0  busy 3.0
#   5 qpu         timed_out  rank 3     run 3.0-8.0   wait 1.0  busy 5.0
#   6 cutting     cancelled  (queued, never started; ends at 6.0)
# makespan 8.0 (end record at 10.0 does not count); capacity 8.0 x 4 = 32 rank-seconds.
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
    assert s.throughput == 6 / 8.0


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
    assert lines[2] == "throughput   0.8 tasks/s"
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
