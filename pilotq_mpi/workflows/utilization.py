"""How busy the compute ranks were while work waited, and how long the tail was (from a trace).

Used by the demo (issue 8.2): with prefetch behind long tasks, or with equal-size cutting
batches, ranks sit idle while other ranks still have work queued or while the last long
batches finish. Two figures show it:

* **utilization while queued**: over the time when at least one compute task had been
  submitted but had not started (waiting in the master *or* prefetched on a busy worker),
  the fraction of compute-rank time that was busy. 100% means no rank idled while work
  waited; a task stuck behind a long one on its worker while other ranks idle lowers it.
* **tail**: from the last start of a compute task to the last end; with its utilization
  (low: a few ranks finish long batches while the others idle).

Compute ranks are the worker ranks not pinned to a QPU (in the header, or running QPU
tasks); QPU tasks are left out (they wait for their QPU, not for compute ranks). Pure: reads trace records (see :mod:`pilotq_mpi.trace`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..trace import rank_spans

Interval = tuple[float, float]


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _overlap(a: Sequence[Interval], b: Sequence[Interval]) -> float:
    """Total length of the intersection of two merged interval lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if high > low:
            total += high - low
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def queue_utilization(records: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """Utilization of the compute ranks while work was queued, and the tail (see the module notes).

    Returns ``compute_ranks``, ``queued_s`` (time with waiting work), ``utilization_while_queued``,
    ``span_s`` (first submit to last end of compute tasks), ``utilization`` (over that span),
    ``tail_s`` and ``tail_utilization``. Fractions are 0..1 (0 when their window is empty).
    """
    header = next((r for r in records if r.get("type") == "pilot"), None)
    if header is not None:
        compute = {int(r["rank"]) for r in header["ranks"] if not r.get("qpu")}
    else:
        compute = {int(rank) for r in records if r.get("type") == "task" and not r.get("qpu") for rank in r["ranks"]}
    # QPUs declared after start-up (Pilot(qpus=...)) are not in the header: their tasks tell
    compute -= {int(rank) for r in records if r.get("type") == "task" and r.get("qpu") for rank in r["ranks"]}
    tasks = [r for r in records if r.get("type") == "task" and not r.get("qpu") and r.get("start") is not None]
    busy: dict[int, list[Interval]] = {rank: [] for rank in compute}
    for task in tasks:
        for rank, start, end in rank_spans(task):
            if rank in busy:
                busy[rank].append((start, end))
    merged_busy = {rank: _merge(spans) for rank, spans in busy.items()}
    n = len(compute)
    out: dict[str, float | int] = {"compute_ranks": n, "queued_s": 0.0, "utilization_while_queued": 0.0,
                                   "span_s": 0.0, "utilization": 0.0, "tail_s": 0.0, "tail_utilization": 0.0}
    if not tasks or not n:
        return out

    def utilization(window: Sequence[Interval]) -> tuple[float, float]:
        length = sum(e - s for s, e in window)
        used = sum(_overlap(spans, window) for spans in merged_busy.values())
        return length, (used / (length * n) if length > 0 else 0.0)

    queued = _merge((float(t["submit"]), float(t["start"])) for t in tasks)
    out["queued_s"], out["utilization_while_queued"] = utilization(queued)
    first = min(float(t["submit"]) for t in tasks)
    last_start = max(float(t["start"]) for t in tasks)
    last_end = max(float(t["end"]) for t in tasks)
    out["span_s"], out["utilization"] = utilization([(first, last_end)])
    out["tail_s"], out["tail_utilization"] = utilization([(last_start, last_end)])
    return out


def format_queue_utilization(figures: Mapping[str, float | int]) -> str:
    """One line for the demo's output."""
    return (f"compute ranks ({figures['compute_ranks']}) busy {figures['utilization_while_queued']:.1%} of the"
            f" {figures['queued_s']:.1f} s while work was queued, {figures['utilization']:.1%} overall; tail"
            f" (last start to last end) {figures['tail_s']:.1f} s at {figures['tail_utilization']:.1%}")


def queue_utilization_line(trace_path: str, settle: float = 0.5) -> str | None:
    """The demo's line from the trace being written by this pilot (None if it cannot be read).

    Called by the driver after its last result: task records reach the file at most 0.2 s
    after they end (the trace writer's flush interval), so it waits ``settle`` seconds first.
    """
    import time

    from ..trace import TraceError, read_trace

    time.sleep(settle)
    try:
        return format_queue_utilization(queue_utilization(read_trace(trace_path)))
    except (OSError, TraceError):
        return None
