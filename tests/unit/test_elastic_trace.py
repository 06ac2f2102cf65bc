"""Traces of elastic pilots: joined ranks appear in the Gantt chart and count only while present."""
from pilotq_mpi.report import present_ranks_series, summarize
from pilotq_mpi.trace import TraceWriter, read_trace, worker_ranks


def task(task_id, rank, start, end):
    return {"id": task_id, "name": "t", "kind": "t", "state": "done", "submit": 0.0, "start": start, "end": end,
            "ranks": [rank], "nodes": ["n"], "gpus": [[]], "qpu": None, "error": None}


def test_joined_ranks_count_only_while_they_are_part_of_the_pilot(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, flush_interval=0) as writer:
        writer.write_header([{"rank": 1, "node": "a"}], start=0.0)
        writer.write_resources("join", "join-1", [{"rank": 3, "node": "b", "allocation": "join-1"}], time_=5.0)
        writer.write_task(task(1, 1, 0.0, 10.0))
        writer.write_task(task(2, 3, 5.0, 7.5))
        writer.write_resources("leave", "join-1", [{"rank": 3, "node": "b"}], time_=7.5)
        writer.write_end(10.0)
    records = read_trace(path)
    assert worker_ranks(records) == {1: "a", 3: "b"}
    summary = summarize(records)
    # rank 1 busy 10 of 10 s, rank 3 busy 2.5 of the 2.5 s it was there: 100%, not 12.5/20
    assert summary.utilization == 1.0
    assert present_ranks_series(records) == ([0.0, 5.0, 7.5], [1, 2, 1])
