"""benchmarks/peers.py and costs.py: the table and ratio logic, the mixed workload's bound, the /proc helpers.

No peer runs here (none needs to be installed): the peers' results are written as the drivers print them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux only")

from benchmarks import costs, peers, peers_procs  # noqa: E402


def test_ratios_best_is_one_and_missing_values_are_left_out():
    rates = peers.ratios({"a": 1000.0, "b": 2000.0, "c": None, "d": 0.0}, higher_is_better=True)
    assert rates == {"a": 2.0, "b": 1.0}
    times = peers.ratios({"a": 1.5, "b": 0.5}, higher_is_better=False)
    assert times == {"a": 3.0, "b": 1.0}
    assert peers.ratios({"a": None}, higher_is_better=True) == {}


def test_verdict_names_best_within_and_misses():
    assert peers.verdict(1.0) == "best"
    assert peers.verdict(1.08) == "within 10%"
    assert peers.verdict(1.5) == "1.50x the best"
    assert peers.verdict(None) == "no result"


def test_mixed_workload_keeps_widths_that_fit_and_its_bound():
    three = peers.mixed_tasks(3)
    assert len(three) == 120 and max(w for w, _ in three) == 2
    # on 3 workers no two 2-rank tasks overlap: 20 x 0.1 s in a row
    assert peers.mixed_lower_bound(three, 3) == pytest.approx(2.0)
    seven = peers.mixed_tasks(7)
    assert len(seven) == 130
    # work 10*4*0.1 + 20*2*0.1 + 100*0.01 = 9 rank-seconds on 7 workers, above the 1.0 s of 4-rank tasks in a row
    assert peers.mixed_lower_bound(seven, 7) == pytest.approx(9 / 7)


def _run(status, *results):
    return {"status": status, "results": list(results)}


def _data():
    """A peers.json as main() writes it, for two process counts' worth of one block."""
    blocks = [{"procs": 4, "peers": ["pilotq-mpi", "mpi4py.futures", "dask", "parsl"],
               "rows": ["startup", "one_by_one:1000", "one_by_one_cpu:1000", "mixed"], "mixed_lower_bound": 2.0}]
    runs = {
        "pilotq-mpi@4": [_run("ok", {"workload": "startup", "seconds": 0.5, "ok": True},
                              {"workload": "one_by_one", "n": 1000, "per_s": 6000.0, "cpu_us": 300.0, "ok": True},
                              {"workload": "mixed", "n": 120, "seconds": 2.3, "ok": True}),
                         _run("ok", {"workload": "startup", "seconds": 0.7, "ok": True},
                              {"workload": "one_by_one", "n": 1000, "per_s": 5000.0, "ok": True},
                              {"workload": "mixed", "n": 120, "seconds": 2.1, "ok": True}),
                         _run("ok", {"workload": "startup", "seconds": 0.6, "ok": True},
                              {"workload": "one_by_one", "n": 1000, "per_s": 7000.0, "ok": True},
                              {"workload": "mixed", "n": 120, "seconds": 2.2, "ok": True})],
        "mpi4py.futures@4": [_run("ok", {"workload": "startup", "seconds": 0.4, "ok": True},
                                  {"workload": "one_by_one", "n": 1000, "per_s": 4000.0, "cpu_us": 600.0, "ok": True},
                                  {"workload": "mixed", "unsupported": "no multi-rank tasks"})],
        "dask@4": [_run("timed out after 240 s", {"workload": "startup", "seconds": 2.0, "ok": True})],
        "parsl@4": [_run("ok", {"workload": "startup", "seconds": 9.0, "ok": True},
                         {"workload": "one_by_one", "n": 1000, "per_s": 300.0, "ok": False},
                         {"workload": "mixed", "n": 120, "seconds": 6.0, "ok": True})],
    }
    return {"peers": ["pilotq-mpi", "mpi4py.futures", "dask", "parsl"], "procs": [4], "blocks": blocks,
            "workloads": ["startup", "one_by_one", "mixed"], "tasks": [1000],
            "summaries": {k: peers.summarize(v) for k, v in runs.items()}}


def test_summarize_takes_the_median_and_keeps_the_reason_for_a_gap():
    data = _data()
    pilot = data["summaries"]["pilotq-mpi@4"]
    assert pilot["one_by_one:1000"]["value"] == 6000.0 and pilot["one_by_one:1000"]["n"] == 3
    assert (pilot["startup"]["min"], pilot["startup"]["max"]) == (0.5, 0.7)
    assert "_status" not in pilot
    assert data["summaries"]["mpi4py.futures@4"]["mixed"] == {"value": None, "n": 0, "note": "no multi-rank tasks"}
    assert data["summaries"]["dask@4"]["_status"] == "timed out after 240 s"
    assert data["summaries"]["parsl@4"]["one_by_one:1000"]["note"] == "wrong results"


def test_table_rows_ratios_against_the_best_peer_of_each_row():
    rows = {r["key"]: r for r in peers.table_rows(_data())}
    one = rows["one_by_one:1000"]
    assert one["best"] == "pilotq-mpi" and one["pilotq_verdict"] == "best"
    assert one["ratios"] == {"pilotq-mpi": 1.0, "mpi4py.futures": 1.5}
    assert one["pilotq_over_futures"] == pytest.approx(1.5)
    assert one["cells"]["dask"]["note"] == "timed out after 240 s"  # finished start-up, then hung
    assert one["cells"]["parsl"]["note"] == "wrong results"
    cpu = rows["one_by_one_cpu:1000"]  # only the runs that measured CPU time; lower is better
    assert cpu["ratios"] == {"pilotq-mpi": 1.0, "mpi4py.futures": 2.0} and cpu["pilotq_over_futures"] == 2.0
    start = rows["startup"]
    assert start["best"] == "mpi4py.futures" and start["ratios"]["pilotq-mpi"] == pytest.approx(1.5)
    assert start["pilotq_verdict"] == "1.50x the best"
    assert rows["startup"]["cells"]["dask"]["value"] == 2.0
    mixed = rows["mixed"]
    assert mixed["best"] == "pilotq-mpi" and mixed["lower_bound_s"] == 2.0
    assert mixed["ratios"]["parsl"] == pytest.approx(6.0 / 2.2)


def test_markdown_says_why_a_peer_has_no_value():
    text = peers.markdown(_data())
    assert "| no-op one by one, N=1,000 | 4 | 6,000/s (1.00) | 4,000/s (1.50) |" in text
    assert "no multi-rank tasks" in text and "timed out after 240 s" in text and "wrong results" in text
    assert "mixed widths (makespan) (bound 2.00 s)" in text


def test_proc_helpers_see_this_process_and_kill_a_session():
    assert os.getpid() in peers_procs.session_tree(os.getsid(0))
    assert peers_procs.pss_mib(os.getpid()) > 1
    # the same kernel counters as os.times() (utime + stime), read between two of its reads
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before = sum(os.times()[:2])
    counted = peers_procs.cpu_seconds(os.getpid())
    after = sum(os.times()[:2])
    assert before - tick <= counted <= after + tick
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time;"
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
                              "time.sleep(60)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(peers_procs.session_tree(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = peers_procs.session_tree(child.pid)
        assert child.pid in tree and len(tree) == 2
        assert peers_procs.run_root(os.getpid(), tree[-1]) == child.pid
        assert peers_procs.kill_tree(child.pid) == 2
        child.wait(timeout=10)
        assert all(peers_procs.start_time(pid) is None or peers_procs._stat(pid)[0] == "Z" for pid in tree)
    finally:
        if child.poll() is None:
            child.kill()


def test_costs_flags_heavy_worker_modules_and_names_roles():
    assert costs.heavy_modules(["os", "numpy.linalg", "qiskit", "rich.console", "mpi4py"]) == [
        "numpy", "qiskit", "rich"]
    assert costs.heavy_modules(["os", "mpi4py", "pilotq_mpi.runtime.worker"]) == []
    assert costs.role("python -m pilotq_mpi costs.py", 5, 5) == "master (rank 0)"
    assert costs.role("python -m pilotq_mpi costs.py", 5, 6) == "worker"
    assert costs.role("hydra_pmi_proxy --control-port x", 5, 7) == "hydra proxy"


def test_merge_rows_replaces_only_the_rows_measured_again():
    earlier = _data()
    earlier["runs"] = {"pilotq-mpi@4": [{"status": "ok"}]}
    again = {"pilotq-mpi@4": [_run("ok", {"workload": "startup", "seconds": 9.9, "ok": True},
                                   {"workload": "one_by_one", "n": 1000, "per_s": 9000.0, "cpu_us": 200.0, "ok": True})]}
    merged = peers.merge_rows(earlier, again, {k: peers.summarize(v) for k, v in again.items()},
                              {"command": "peers.py --workloads one_by_one", "rows": ["one_by_one"]})
    pilot = merged["summaries"]["pilotq-mpi@4"]
    assert pilot["one_by_one:1000"]["value"] == 9000.0 and pilot["one_by_one_cpu:1000"]["value"] == 200.0
    assert pilot["startup"]["value"] == 0.6 and pilot["mixed"]["value"] == 2.2  # kept (start-up not asked for)
    assert merged["summaries"]["mpi4py.futures@4"]["one_by_one:1000"]["value"] == 4000.0  # other peer kept
    assert [run.get("row_update", False) for run in merged["runs"]["pilotq-mpi@4"]] == [False, True]
    assert merged["row_updates"][-1]["keys"] == ["pilotq-mpi@4"]
    assert "then peers.py --workloads one_by_one (rows one_by_one of pilotq-mpi@4" in merged["command"]
    rows = {r["key"]: r for r in peers.table_rows(merged)}
    assert rows["one_by_one:1000"]["pilotq_over_futures"] == pytest.approx(9000.0 / 4000.0)
