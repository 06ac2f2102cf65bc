"""Live progress of a pilot run, shown by the driver (rank 0).

:class:`ProgressDisplay` polls a snapshot callable from its own thread and shows it:
a rich live table when its stream is a terminal, otherwise one plain line per interval
(fit for Slurm logs) and a final line at exit. Snapshot format::

    {"kinds": {kind: {"queued": int, "running": int, "done": int,
                      "failed": int, "cancelled": int, "timed_out": int}},
     "ranks_busy": int, "ranks_total": int, "elapsed": float}

Missing counts read as 0.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Mapping, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

Snapshot = Mapping[str, Any]
COUNTS = ("queued", "running", "done", "failed", "cancelled", "timed_out")
LABELS = {"timed_out": "timed out"}
"""How a count is named on screen when not by its key."""
LIVE_INTERVAL = 0.5
"""Default seconds between refreshes of the live table (terminal)."""
LINE_INTERVAL = 30.0
"""Default seconds between plain progress lines (batch output)."""


def totals(snapshot: Snapshot) -> dict[str, int]:
    """Counts of ``snapshot`` summed over all kinds, one entry per name in COUNTS."""
    sums = dict.fromkeys(COUNTS, 0)
    for counts in snapshot.get("kinds", {}).values():
        for name in COUNTS:
            sums[name] += int(counts.get(name, 0))
    return sums


def format_line(snapshot: Snapshot, *, final: bool = False) -> str:
    """One plain progress line, e.g.
    ``[pilotq 12.0s] done 120 running 4 queued 800 failed 0 | ranks busy 4/7``.

    ``cancelled N`` and ``timed out N`` are added when N > 0 (so done, failed, cancelled and
    timed out add up to the tasks that ended); ``final: `` follows the prefix of the last line.
    """
    t = totals(snapshot)
    parts = f"done {t['done']} running {t['running']} queued {t['queued']} failed {t['failed']}"
    for name in ("cancelled", "timed_out"):
        if t[name]:
            parts += f" {LABELS.get(name, name)} {t[name]}"
    prefix = f"[pilotq {float(snapshot.get('elapsed', 0.0)):.1f}s] " + ("final: " if final else "")
    ranks = f"ranks busy {snapshot.get('ranks_busy', 0)}/{snapshot.get('ranks_total', 0)}"
    return f"{prefix}{parts} | {ranks}"


def render_table(snapshot: Snapshot) -> Table:
    """The rich table of ``snapshot``: one row per kind (plus a total), ranks in the caption.

    The ``timed out`` column is shown only when a task timed out.
    """
    table = Table(
        title="pilotq",
        caption=f"ranks busy {snapshot.get('ranks_busy', 0)}/{snapshot.get('ranks_total', 0)}"
        f"  ·  {float(snapshot.get('elapsed', 0.0)):.1f} s",
    )
    t = totals(snapshot)
    shown = [name for name in COUNTS if name != "timed_out" or t[name]]
    table.add_column("kind")
    for name in shown:
        table.add_column(LABELS.get(name, name), justify="right")
    kinds = snapshot.get("kinds", {})
    for kind, counts in sorted(kinds.items()):
        table.add_row(kind, *(str(int(counts.get(name, 0))) for name in shown))
    if len(kinds) > 1:
        table.add_section()
        table.add_row("total", *(str(t[name]) for name in shown), style="bold")
    return table


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed file
        return False


class ProgressDisplay:
    """Show pilot progress while the ``with`` block runs.

    ``snapshot`` is called from the display's own thread, every ``interval`` seconds
    (default 0.5 s on a terminal, 30 s otherwise) and once more at exit; it must be
    safe to call from another thread and must not make MPI calls (neither does this
    class). ``stream`` defaults to ``sys.stderr``. With ``enabled=False`` nothing is
    shown and no thread is started. If ``snapshot`` raises, the display says so once
    and stops updating; the run goes on.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        enabled: bool = True,
        interval: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.live = _is_terminal(self.stream)
        if interval is None:
            interval = LIVE_INTERVAL if self.live else LINE_INTERVAL
        if not interval > 0:
            raise ValueError(f"progress interval must be > 0 seconds, got {interval!r}")
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._failed = False

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled:
            return self
        if self.live:
            self._live = Live(
                Table(title="pilotq"),
                console=Console(file=self.stream),
                auto_refresh=False,
                # No redirection: the driver's stdout must stay its own.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._thread = threading.Thread(target=self._run, name="pilotq-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._show(final=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _run(self) -> None:
        while not self._failed and not self._stop.wait(self.interval):
            self._show(final=False)

    def _show(self, *, final: bool) -> None:
        if self._failed:
            return
        try:
            snap = self.snapshot()
            if self._live is not None:
                self._live.update(render_table(snap), refresh=True)
            else:
                self.stream.write(format_line(snap, final=final) + "\n")
                self.stream.flush()
        except Exception as exc:  # a broken display must never break the run
            self._failed = True
            self.stream.write(f"[pilotq] progress display stopped: {exc!r}\n")
