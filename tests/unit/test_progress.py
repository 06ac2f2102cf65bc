"""Progress display: plain lines for batch output, rich table on a terminal, off switch."""
from __future__ import annotations

import io
import threading
import time

import pytest

from pilotq_mpi.progress import ProgressDisplay, format_line, totals

SNAPSHOT = {
    "kinds": {
        "cutting": {"queued": 800, "running": 3, "done": 100, "failed": 0, "cancelled": 0},
        "statevector": {"queued": 0, "running": 1, "done": 20},  # missing counts read as 0
    },
    "ranks_busy": 4,
    "ranks_total": 7,
    "elapsed": 12.04,
}
LINE = "[pilotq 12.0s] done 120 running 4 queued 800 failed 0 | ranks busy 4/7"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_totals_and_line() -> None:
    assert totals(SNAPSHOT) == {"queued": 800, "running": 4, "done": 120, "failed": 0, "cancelled": 0,
                                "timed_out": 0}
    assert format_line(SNAPSHOT) == LINE
    assert format_line(SNAPSHOT, final=True) == LINE.replace("12.0s] ", "12.0s] final: ")
    cancelled = SNAPSHOT | {"kinds": {"k": {"cancelled": 2, "failed": 1}}}
    assert format_line(cancelled) == (
        "[pilotq 12.0s] done 0 running 0 queued 0 failed 1 cancelled 2 | ranks busy 4/7"
    )


def test_plain_lines_every_interval_and_final_line() -> None:
    stream = io.StringIO()
    calls = []

    def snapshot() -> dict:
        calls.append(threading.current_thread().name)
        return SNAPSHOT

    with ProgressDisplay(snapshot, interval=0.05, stream=stream) as display:
        assert not display.live
        time.sleep(0.32)
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 8  # ~6 ticks in 0.32 s at 0.05 s, generous for a loaded machine
    assert lines[:-1] == [LINE] * (len(lines) - 1)
    assert lines[-1] == LINE.replace("12.0s] ", "12.0s] final: ")
    assert set(calls) == {"pilotq-progress", threading.current_thread().name}


def test_default_intervals() -> None:
    assert ProgressDisplay(dict, stream=io.StringIO()).interval == 30.0
    assert ProgressDisplay(dict, stream=Terminal()).interval == 0.5
    with pytest.raises(ValueError, match="got 0"):
        ProgressDisplay(dict, interval=0, stream=io.StringIO())


def test_disabled_starts_no_thread_and_writes_nothing() -> None:
    stream = io.StringIO()
    called = []
    before = threading.active_count()
    with ProgressDisplay(lambda: called.append(1) or SNAPSHOT, enabled=False, interval=0.01,
                         stream=stream):
        assert threading.active_count() == before
        time.sleep(0.05)
    assert stream.getvalue() == "" and called == []


def test_terminal_shows_live_table() -> None:
    stream = Terminal()
    with ProgressDisplay(lambda: SNAPSHOT, interval=0.05, stream=stream) as display:
        assert display.live
        time.sleep(0.15)
    out = stream.getvalue()
    assert "\x1b[" in out  # rich drew with terminal control codes
    for text in ("cutting", "statevector", "total", "800", "120", "ranks busy 4/7", "12.0 s"):
        assert text in out
    assert "[pilotq" not in out  # no plain lines on a terminal


def test_failing_snapshot_reported_once() -> None:
    stream = io.StringIO()

    def snapshot() -> dict:
        raise RuntimeError("master state unavailable")

    with ProgressDisplay(snapshot, interval=0.02, stream=stream):
        time.sleep(0.1)
    assert stream.getvalue() == (
        "[pilotq] progress display stopped: RuntimeError('master state unavailable')\n"
    )
