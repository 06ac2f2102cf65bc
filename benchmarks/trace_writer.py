"""Cost of writing the task trace: microseconds per task record, by flush policy.

    python benchmarks/trace_writer.py                # 5,000 records, best of 30; both flush policies
    python benchmarks/trace_writer.py --quick        # best of 5

Times ``TraceWriter.write_task`` for ``n`` single-rank records (the common case) and for
``n`` 4-rank records with per-rank spans, with the default flush policy (a background
flusher every 0.2 s) and with ``flush_interval=0`` (flush every line). Budget (from the
issues): 5% of the 200 us per task of a 5,000 tasks/s run, i.e. 10 us. The end-to-end
cost of the trace inside a pilot is the "trace cost" column of ``throughput.py``.
Results go to ``benchmarks/results/trace_writer.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from pilotq_mpi.trace import TaskRecord, TraceWriter

HERE = Path(__file__).resolve().parent


def records(n: int, ranks: int) -> list[TaskRecord]:
    """``n`` done records on ``ranks`` ranks (with per-rank spans when ``ranks`` > 1)."""
    out = []
    for i in range(n):
        t = 1.7e9 + i
        spans = [(t + 0.1, t + 0.4 - 0.01 * k) for k in range(ranks)] if ranks > 1 else None
        out.append(TaskRecord(i, "subexperiment", "cutting", "done", submit=t, start=t + 0.1, end=t + 0.4,
                              ranks=list(range(3, 3 + ranks)), nodes=["nid001234"] * ranks,
                              gpus=[[k % 4] for k in range(ranks)], spans=spans))
    return out


def best_cost(path: Path, batch: list[TaskRecord], repeats: int, flush_interval: float) -> float:
    """Best per-record cost in microseconds of writing ``batch`` (over ``repeats`` runs)."""
    best = float("inf")
    with TraceWriter(path, flush_interval=flush_interval) as w:
        w.write_header([{"rank": 3, "node": "nid001234"}], start=1.7e9)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for r in batch:
                w.write_task(r)
            best = min(best, time.perf_counter() - t0)
    return best / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="records per timed run")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="best of 5")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "trace_writer.json")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in (1, 4):
            batch = records(args.n, ranks)
            for flush_interval in (0.2, 0.0):
                us = best_cost(Path(tmp) / "trace.jsonl", batch, repeats, flush_interval)
                rows.append({"ranks": ranks, "flush_interval": flush_interval, "us_per_record": us})
                print(f"{ranks} rank(s) per task, flush_interval={flush_interval}: {us:.2f} us per record")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "trace_writer", "n": args.n, "repeats": repeats,
                                    "python": platform.python_version(), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
