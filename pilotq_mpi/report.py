"""Figures and plots from a pilot trace, and the ``pilotq-mpi report`` subcommand.

All functions take the record list of :func:`pilotq_mpi.trace.read_trace` (header
optional). Definitions used throughout:

- *origin*: the header's ``start``, or the first submit when there is no header;
- *makespan*: from the origin to the last task end (0 when there are no tasks);
- *worker ranks*: the header's ranks, or the distinct ranks in the task records;
- *rank utilization*: sum over started tasks of ``(end - start) * len(ranks)``, divided
  by ``makespan * worker ranks``; per kind, the same numerator restricted to that kind
  over the same denominator (so the per-kind figures add up to the overall one);
- *queue wait*: ``start - submit`` of every started task; its p50/p95 are
  ``statistics.quantiles(waits, n=100, method="inclusive")`` cut points 50 and 95,
  i.e. linear interpolation between closest ranks (numpy's default percentile);
  with a single started task both equal its wait;
- *throughput*: terminal tasks (all states) per second of makespan.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .trace import (
    TERMINAL_STATES,
    TraceError,
    read_trace,
    trace_origin,
    worker_ranks,
    write_chrome_trace,
)

Records = Sequence[Mapping[str, Any]]
GANTT_MAX_HEIGHT = 16.0
"""Inches; beyond ~50 ranks the Gantt rows get thinner instead of the image taller."""


@dataclass
class Summary:
    """Headline figures of one pilot run (see the module docstring for definitions)."""

    tasks: int
    by_state: dict[str, int]
    """Count per terminal state; every state in TERMINAL_STATES is present."""
    by_kind: dict[str, dict[str, int]]
    """Per task kind: count per terminal state (all states present)."""
    makespan: float
    worker_ranks: int
    utilization: float
    utilization_by_kind: dict[str, float] = field(default_factory=dict)
    wait_p50: float | None = None
    """Median queue wait in seconds; None when no task started."""
    wait_p95: float | None = None
    throughput: float = 0.0
    """Terminal tasks per second of makespan (0 when the makespan is 0)."""


def _tasks(records: Records) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("type") == "task"]


def _percentile(sorted_values: Sequence[float], p: int) -> float:
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[p - 1]


def summarize(records: Records) -> Summary:
    """Compute the :class:`Summary` of a trace's records."""
    tasks = _tasks(records)
    origin = trace_origin(records)
    n_ranks = len(worker_ranks(records))
    makespan = max((t["end"] for t in tasks), default=origin) - origin

    by_state = dict.fromkeys(TERMINAL_STATES, 0)
    by_kind: dict[str, dict[str, int]] = {}
    busy_by_kind: dict[str, float] = {}
    waits: list[float] = []
    for t in tasks:
        state, kind = t["state"], t["kind"]
        by_state[state] = by_state.get(state, 0) + 1
        kind_states = by_kind.setdefault(kind, dict.fromkeys(TERMINAL_STATES, 0))
        kind_states[state] = kind_states.get(state, 0) + 1
        busy_by_kind.setdefault(kind, 0.0)
        if t["start"] is not None:
            busy_by_kind[kind] += (t["end"] - t["start"]) * len(t["ranks"])
            waits.append(t["start"] - t["submit"])

    capacity = makespan * n_ranks
    waits.sort()
    return Summary(
        tasks=len(tasks),
        by_state=by_state,
        by_kind=dict(sorted(by_kind.items())),
        makespan=makespan,
        worker_ranks=n_ranks,
        utilization=sum(busy_by_kind.values()) / capacity if capacity > 0 else 0.0,
        utilization_by_kind={
            k: (busy / capacity if capacity > 0 else 0.0) for k, busy in sorted(busy_by_kind.items())
        },
        wait_p50=_percentile(waits, 50) if waits else None,
        wait_p95=_percentile(waits, 95) if waits else None,
        throughput=len(tasks) / makespan if makespan > 0 else 0.0,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def format_summary(summary: Summary) -> str:
    """A readable plain-text table of ``summary`` (no colour codes, fit for batch logs)."""
    s = summary
    lines = [
        f"tasks        {s.tasks}   "
        + "  ".join(f"{state} {count}" for state, count in s.by_state.items()),
        f"makespan     {s.makespan:.3f} s on {s.worker_ranks} worker ranks",
        f"throughput   {s.throughput:.1f} tasks/s",
        f"utilization  {s.utilization:.1%} of rank-time",
        f"queue wait   p50 {_seconds(s.wait_p50)}   p95 {_seconds(s.wait_p95)}",
    ]
    if s.by_kind:
        width = max(len("kind"), *(len(k) for k in s.by_kind))
        header = f"{'kind':<{width}}" + "".join(f"{st:>11}" for st in TERMINAL_STATES)
        header += f"{'total':>8}{'util':>8}"
        lines += ["", header, "-" * len(header)]
        for kind, states in s.by_kind.items():
            row = f"{kind:<{width}}" + "".join(f"{states[st]:>11}" for st in TERMINAL_STATES)
            row += f"{sum(states.values()):>8}{s.utilization_by_kind[kind]:>8.1%}"
            lines.append(row)
    return "\n".join(lines)


def busy_ranks_series(records: Records) -> tuple[list[float], list[int]]:
    """Busy worker ranks over time as a step function.

    Returns ``(times, busy)``: from ``times[i]`` (seconds from the origin) until the next
    time, ``busy[i]`` ranks run a task; only changes of the count are listed. Starts at
    (0, 0) and ends at (last task end, 0).
    """
    origin = trace_origin(records)
    delta: dict[float, int] = {}
    for t in _tasks(records):
        if t["start"] is None:
            continue
        k = len(t["ranks"])
        start, end = t["start"] - origin, t["end"] - origin
        delta[start] = delta.get(start, 0) + k
        delta[end] = delta.get(end, 0) - k
    times, busy, level = [0.0], [0], 0
    for time_ in sorted(delta):
        level += delta[time_]
        if level != busy[-1]:  # drop instants where one task ends as another starts
            times.append(time_)
            busy.append(level)
    return times, busy


def _kind_colours(kinds: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(kinds) <= 10 else "tab20"]
    return {kind: cmap(i % cmap.N) for i, kind in enumerate(kinds)}


def _figure(size: tuple[float, float]) -> Any:
    # Imported here so that the CLI starts fast; an explicit Agg canvas needs no pyplot,
    # no global backend and no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def gantt_png(records: Records, path: str | Path) -> None:
    """Write a Gantt chart PNG: one row per worker rank, one bar per task and rank.

    Bars are coloured by task kind (legend) and hatched when the task did not end
    ``done``; gaps between bars are idle time. The x axis is seconds from the origin.
    Tasks that never started have no bar.
    """
    origin = trace_origin(records)
    ranks = sorted(worker_ranks(records))
    tasks = [t for t in _tasks(records) if t["start"] is not None]
    ranks = sorted(set(ranks).union(r for t in tasks for r in t["ranks"]))
    kinds = sorted({t["kind"] for t in tasks})
    colours = _kind_colours(kinds)
    # One broken_barh call per (rank, kind, ended well): fast even for many tasks.
    bars: dict[tuple[int, str, bool], list[tuple[float, float]]] = {}
    for t in tasks:
        span = (t["start"] - origin, t["end"] - t["start"])
        for rank in t["ranks"]:
            bars.setdefault((rank, t["kind"], t["state"] == "done"), []).append(span)

    fig = _figure((10, min(GANTT_MAX_HEIGHT, max(2.5, 0.3 * len(ranks) + 1.5))))
    ax = fig.add_subplot()
    # Thin white edges separate back-to-back tasks; with many tasks they would wash out the colours.
    edge = 0.5 if len(tasks) <= 2000 else 0.0
    for (rank, kind, ok), spans in bars.items():
        ax.broken_barh(spans, (rank - 0.4, 0.8), facecolors=colours[kind], edgecolor="white",
                       linewidth=edge, hatch=None if ok else "///")
    for kind in kinds:
        ax.bar(0, 0, color=colours[kind], label=kind)  # legend proxies
    if any(not ok for _, _, ok in bars):
        ax.bar(0, 0, color="white", edgecolor="black", hatch="///", label="not done")
    if len(ranks) <= 64:  # beyond that matplotlib's own tick choice reads better
        ax.set_yticks(ranks)
    ax.set_ylim(min(ranks, default=0) - 0.6, max(ranks, default=0) + 0.6)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("worker rank")
    ax.set_title("tasks per rank")
    if kinds:
        ax.legend(title="kind", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=100)


def utilization_png(records: Records, path: str | Path) -> None:
    """Write a PNG of busy worker ranks over time (step plot) against the total."""
    from matplotlib.ticker import MaxNLocator

    times, busy = busy_ranks_series(records)
    total = len(worker_ranks(records))
    fig = _figure((10, 3.5))
    ax = fig.add_subplot()
    ax.step(times, busy, where="post", label="busy ranks")
    ax.axhline(total, color="grey", linestyle="--", label=f"worker ranks ({total})")
    ax.set_xlim(left=0)
    ax.set_ylim(0, max(total, max(busy, default=0)) * 1.1 or 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("ranks")
    ax.set_title("rank utilization")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=100)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``subparsers``; it runs :func:`run_report`."""
    parser = subparsers.add_parser(
        "report",
        help="summarize a pilot trace and plot it",
        description="Print the summary of a pilot trace and write its Gantt and "
        "utilization plots (by default next to the trace).",
    )
    parser.add_argument("trace", type=Path, help="trace file (JSON lines) written by a pilot run")
    parser.add_argument("--gantt", type=Path, help="Gantt PNG (default: TRACE stem + .gantt.png)")
    parser.add_argument(
        "--utilization", type=Path, help="utilization PNG (default: TRACE stem + .utilization.png)"
    )
    parser.add_argument("--chrome", type=Path, help="also write a Chrome/Perfetto trace JSON here")
    parser.set_defaults(func=run_report)
    return parser


def default_plot_paths(trace: Path) -> tuple[Path, Path]:
    """Default Gantt and utilization PNG paths next to ``trace`` (``run.jsonl`` -> ``run.gantt.png``)."""
    stem = trace.with_suffix("")
    return stem.with_name(stem.name + ".gantt.png"), stem.with_name(stem.name + ".utilization.png")


def run_report(args: argparse.Namespace) -> int:
    """Body of ``pilotq-mpi report``: print the summary, write the plots; returns the exit code."""
    try:
        records = read_trace(args.trace)
    except (OSError, TraceError) as exc:
        print(f"pilotq-mpi report: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summarize(records)))
    gantt_default, util_default = default_plot_paths(args.trace)
    gantt = args.gantt or gantt_default
    util = args.utilization or util_default
    gantt_png(records, gantt)
    utilization_png(records, util)
    print(f"\ngantt        {gantt}\nutilization  {util}")
    if args.chrome:
        write_chrome_trace(records, args.chrome)
        print(f"chrome trace {args.chrome} (open in ui.perfetto.dev)")
    return 0
