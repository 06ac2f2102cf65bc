"""Figures and plots from a pilot trace, and the ``pilotq-mpi report`` subcommand.

All functions take the record list of :func:`pilotq_mpi.trace.read_trace` (header
optional). Definitions used throughout:

- *origin*: the header's ``start``, or the first submit when there is no header;
- *makespan*: from the origin to the last task end (0 when there are no tasks);
- *worker ranks*: the header's ranks, or the distinct ranks in the task records;
- *a rank's busy time*: the union of the spans of the started tasks on that rank, each
  span from that rank's own start to its own end (:func:`pilotq_mpi.trace.rank_spans`:
  the ranks of one multi-rank task may end at different times). Tasks that overlap on
  one rank (a QPU worker running several calls at once) count once, not once per task;
- *rank utilization*: the busy time summed over ranks, divided by ``makespan * worker
  ranks``; never above 100%. Per kind: where ``c`` tasks overlap on a rank, each gets
  ``1/c`` of that time, so the per-kind figures add up to the overall one;
- *busy ranks* (the utilization plot): ranks with at least one task at that time; never
  more than the ranks that ran tasks;
- *queue wait*: ``start - submit`` of every started task; its p50/p95 are
  ``statistics.quantiles(waits, n=100, method="inclusive")`` cut points 50 and 95,
  i.e. linear interpolation between closest ranks (numpy's default percentile);
  with a single started task both equal its wait;
- *throughput*: tasks that ran (started, and did not end cancelled) per second of makespan.
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
    rank_lanes,
    rank_presence,
    rank_spans,
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
    """Tasks that ran (started, not cancelled) per second of makespan (0 when the makespan is 0)."""
    ran: int = 0
    """Tasks that ran: started, and ended done, failed or timed out (not cancelled)."""


def _tasks(records: Records) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("type") == "task"]


def _percentile(sorted_values: Sequence[float], p: int) -> float:
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[p - 1]


def _busy_by_rank(records: Records) -> dict[int, list[tuple[float, float, str]]]:
    """Per rank, ``(start, end, kind)`` of every started task's own span on that rank (unix times)."""
    per_rank: dict[int, list[tuple[float, float, str]]] = {}
    for t in _tasks(records):
        for rank, start, end in rank_spans(t):
            per_rank.setdefault(rank, []).append((start, max(start, end), t["kind"]))
    return per_rank


def _sweep(spans: Sequence[tuple[float, float, str]]) -> tuple[float, dict[str, float], list[tuple[float, float]]]:
    """One rank's busy time, its share per kind and its merged busy intervals.

    Where ``c`` spans overlap, each one's kind gets ``1/c`` of that time.
    """
    events = sorted([(s, 1, k) for s, _, k in spans] + [(e, -1, k) for _, e, k in spans],
                    key=lambda ev: (ev[0], -ev[1]))  # at one instant starts first: touching spans merge
    active: dict[str, int] = {}
    count = 0
    busy = 0.0
    by_kind: dict[str, float] = {}
    merged: list[tuple[float, float]] = []
    last = None
    for time_, step, kind in events:
        if count and last is not None and time_ > last:
            dt = time_ - last
            busy += dt
            for k, n in active.items():
                if n:
                    by_kind[k] = by_kind.get(k, 0.0) + dt * n / count
        if step > 0 and count == 0:
            merged.append((time_, time_))
        count += step
        active[kind] = active.get(kind, 0) + step
        if step < 0 and count == 0:
            merged[-1] = (merged[-1][0], time_)
        last = time_
    return busy, by_kind, merged


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
    ran = 0
    for t in tasks:
        state, kind = t["state"], t["kind"]
        by_state[state] = by_state.get(state, 0) + 1
        kind_states = by_kind.setdefault(kind, dict.fromkeys(TERMINAL_STATES, 0))
        kind_states[state] = kind_states.get(state, 0) + 1
        busy_by_kind.setdefault(kind, 0.0)
        if t["start"] is not None:
            waits.append(t["start"] - t["submit"])
            ran += state != "cancelled"
    busy = 0.0
    for spans in _busy_by_rank(records).values():
        rank_busy, rank_by_kind, _ = _sweep(spans)
        busy += rank_busy
        for kind, share in rank_by_kind.items():
            busy_by_kind[kind] += share

    # each rank counts while it was part of the pilot (ranks of an elastic pilot come and go)
    end = origin + makespan
    capacity = sum(max(0.0, min(end, until if until is not None else end) - max(origin, since))
                   for since, until in rank_presence(records).values())
    waits.sort()
    return Summary(
        tasks=len(tasks),
        by_state=by_state,
        by_kind=dict(sorted(by_kind.items())),
        makespan=makespan,
        worker_ranks=n_ranks,
        utilization=busy / capacity if capacity > 0 else 0.0,
        utilization_by_kind={
            k: (share / capacity if capacity > 0 else 0.0) for k, share in sorted(busy_by_kind.items())
        },
        wait_p50=_percentile(waits, 50) if waits else None,
        wait_p95=_percentile(waits, 95) if waits else None,
        throughput=ran / makespan if makespan > 0 else 0.0,
        ran=ran,
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
        f"throughput   {s.throughput:.1f} tasks/s ({s.ran} tasks ran)",
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


def planner_runs(records: Records) -> list[Mapping[str, Any]]:
    """The planner's ``plan`` records (one per ``run()``), in order."""
    return [r for r in records if r.get("type") == "plan"]


def format_planner(runs: Sequence[Mapping[str, Any]]) -> str:
    """Prediction vs actual of each planner run: strategy, predicted and measured seconds, ratio, moves."""
    if not runs:
        return ""
    width = max(len("strategy"), *(len(str(r.get("strategy"))) for r in runs))
    lines = [f"{'planner run':<11}  {'strategy':<{width}}  {'predicted':>10}  {'measured':>10}  {'ratio':>6}  moved"]
    for i, r in enumerate(runs, 1):
        predicted, measured = float(r.get("predicted") or 0.0), float(r.get("measured") or 0.0)
        ratio = f"{measured / predicted:.2f}" if predicted > 0 else "-"
        moved = r.get("moved") or []
        lines.append(f"{i:<11}  {str(r.get('strategy')):<{width}}  {predicted:>8.3g} s  {measured:>8.3g} s  {ratio:>6}"
                     f"  {len(moved) or '-'}")
    return "\n".join(lines)


def busy_ranks_series(records: Records) -> tuple[list[float], list[int]]:
    """Busy worker ranks over time as a step function.

    Returns ``(times, busy)``: from ``times[i]`` (seconds from the origin) until the next
    time, ``busy[i]`` ranks run at least one task (each rank counted once however many
    tasks it runs at once, each from its own start to its own end); only changes of the
    count are listed. Starts at (0, 0) and ends at (last task end, 0).
    """
    origin = trace_origin(records)
    delta: dict[float, int] = {}
    for spans in _busy_by_rank(records).values():
        for start, end in _sweep(spans)[2]:
            delta[start - origin] = delta.get(start - origin, 0) + 1
            delta[end - origin] = delta.get(end - origin, 0) - 1
    times, busy, level = [0.0], [0], 0
    for time_ in sorted(delta):
        level += delta[time_]
        if level != busy[-1]:  # drop instants where one rank ends a task as another starts one
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


def gantt_bars(records: Records) -> list[tuple[int, int, int, float, float, str, bool]]:
    """The bars of the Gantt chart: one per started task and rank.

    Returns ``(rank, lane, lanes, start, duration, kind, done)`` tuples, times in seconds
    from the origin, each bar from that rank's own start to its own end. A rank that runs
    several tasks at once (a QPU worker with ``concurrency`` > 1) has ``lanes`` > 1: its row
    is split into that many thin lanes and overlapping tasks go to different lanes
    (:func:`pilotq_mpi.trace.assign_lanes`); every other rank has one lane.
    """
    origin = trace_origin(records)
    spans = rank_lanes(records)
    lanes: dict[int, int] = {}
    for rank, lane, *_ in spans:
        lanes[rank] = max(lanes.get(rank, 1), lane + 1)
    return [(rank, lane, lanes[rank], start - origin, end - start, t["kind"], t["state"] == "done")
            for rank, lane, start, end, t in spans]


def gantt_png(records: Records, path: str | Path) -> None:
    """Write a Gantt chart PNG: one row per worker rank, one bar per task and rank.

    Bars are coloured by task kind (legend) and hatched when the task did not end
    ``done``; gaps between bars are idle time. A rank that ran tasks at the same time has
    its row split into lanes, one per concurrent task (:func:`gantt_bars`). The x axis is
    seconds from the origin. Tasks that never started have no bar.
    """
    ranks = sorted(worker_ranks(records))
    bar_list = gantt_bars(records)
    ranks = sorted(set(ranks).union(b[0] for b in bar_list))
    kinds = sorted({b[5] for b in bar_list})
    colours = _kind_colours(kinds)
    # One broken_barh call per (rank, lane, kind, ended well): fast even for many tasks.
    bars: dict[tuple[int, int, int, str, bool], list[tuple[float, float]]] = {}
    for rank, lane, lanes, start, duration, kind, ok in bar_list:
        bars.setdefault((rank, lane, lanes, kind, ok), []).append((start, duration))
    started = sum(1 for t in _tasks(records) if t["start"] is not None)

    fig = _figure((10, min(GANTT_MAX_HEIGHT, max(2.5, 0.3 * len(ranks) + 1.5))))
    ax = fig.add_subplot()
    # Thin white edges separate back-to-back tasks; with many tasks they would wash out the colours.
    edge = 0.5 if started <= 2000 else 0.0
    for (rank, lane, lanes, kind, ok), spans in bars.items():
        height = 0.8 / lanes
        ax.broken_barh(spans, (rank - 0.4 + lane * height, height), facecolors=colours[kind],
                       edgecolor="white", linewidth=max(edge, 0.5 if lanes > 1 else 0.0),
                       hatch=None if ok else "///")
    for kind in kinds:
        ax.bar(0, 0, color=colours[kind], label=kind)  # legend proxies
    if any(not key[-1] for key in bars):
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


def present_ranks_series(records: Records) -> tuple[list[float], list[int]]:
    """Step series of how many worker ranks the pilot had (elastic pilots gain and lose ranks)."""
    origin = trace_origin(records)
    changes: dict[float, int] = {}
    for since, until in rank_presence(records).values():
        changes[since - origin] = changes.get(since - origin, 0) + 1
        if until is not None:
            changes[until - origin] = changes.get(until - origin, 0) - 1
    times, counts, count = [], [], 0
    for when in sorted(changes):
        count += changes[when]
        times.append(max(0.0, when))
        counts.append(count)
    return times, counts


def utilization_png(records: Records, path: str | Path) -> None:
    """Write a PNG of busy worker ranks over time (step plot) against the total."""
    from matplotlib.ticker import MaxNLocator

    times, busy = busy_ranks_series(records)
    total = len(worker_ranks(records))
    fig = _figure((10, 3.5))
    ax = fig.add_subplot()
    ax.step(times, busy, where="post", label="busy ranks")
    present_times, present = present_ranks_series(records)
    if len(set(present)) > 1:  # an elastic pilot: the ranks it had at each moment
        ax.step(present_times, present, where="post", color="grey", linestyle="--", label="worker ranks")
    else:
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
    planner = format_planner(planner_runs(records))
    if planner:
        print("\n" + planner)
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
