"""Utilization while work is queued, and the tail, on synthetic traces worked out by hand."""
import pytest

from pilotq_mpi.workflows.utilization import queue_utilization


def header(*ranks, qpu_ranks=()):
    return {"type": "pilot", "version": 1, "start": 0.0,
            "ranks": [{"rank": r, "node": "n", "gpus": [], "qpu": "q" if r in qpu_ranks else None}
                      for r in (*ranks, *qpu_ranks)]}


def task(i, ranks, submit, start, end, qpu=None, state="done"):
    return {"type": "task", "id": i, "name": "t", "kind": "t", "state": state, "submit": submit, "start": start,
            "end": end, "ranks": list(ranks), "nodes": ["n"] * len(ranks), "gpus": [[]] * len(ranks),
            "qpu": qpu, "error": None}


def test_head_of_line_blocking_shows_as_idle_time_while_queued():
    # rank 1 runs a 4 s task; task 2 waits behind it (prefetched) from 0 to 4 while rank 2 idles after 1
    records = [header(1, 2),
               task(1, [1], 0.0, 0.0, 4.0), task(2, [2], 0.0, 0.0, 1.0), task(3, [1], 0.0, 4.0, 5.0)]
    f = queue_utilization(records)
    # queued window: task 3 waits 0..4; busy in it: rank 1 4 s + rank 2 1 s = 5 of 8
    assert f["queued_s"] == 4.0 and f["utilization_while_queued"] == pytest.approx(5 / 8)
    # overall 0..5: busy 5 + 1 = 6 of 10; tail from the last start (4) to the end (5): 1 of 2
    assert f["utilization"] == pytest.approx(0.6)
    assert (f["tail_s"], f["tail_utilization"]) == (1.0, 0.5)


def test_qpu_ranks_and_tasks_and_unstarted_tasks_are_left_out():
    records = [header(1, qpu_ranks=(9,)),
               task(1, [1], 0.0, 0.0, 2.0), task(2, [9], 0.0, 1.0, 3.0, qpu="q"),
               task(3, [1], 0.0, None, 2.5, state="cancelled")]
    f = queue_utilization(records)
    assert f["compute_ranks"] == 1 and f["queued_s"] == 0.0
    assert f["utilization"] == 1.0 and f["span_s"] == 2.0


def test_multi_rank_task_counts_each_of_its_ranks():
    records = [header(1, 2, 3), task(1, [1, 2], 0.0, 1.0, 3.0), task(2, [3], 0.0, 0.0, 3.0)]
    f = queue_utilization(records)
    # queued 0..1 (task 1 waits): only rank 3 busy -> 1/3
    assert f["utilization_while_queued"] == pytest.approx(1 / 3)
    assert f["utilization"] == pytest.approx((2 + 2 + 3) / 9)


def test_empty_trace():
    assert queue_utilization([header(1)])["utilization"] == 0.0


def test_a_rank_that_ran_qpu_tasks_is_not_a_compute_rank_even_if_the_header_says_so():
    records = [header(1, 2), task(1, [1], 0.0, 0.0, 2.0), task(2, [2], 0.0, 0.0, 1.0, qpu="q")]
    assert queue_utilization(records)["compute_ranks"] == 1
