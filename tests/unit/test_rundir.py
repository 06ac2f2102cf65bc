"""The run directory's file protocol (no MPI): publishing, finding, requests and replies, heartbeats."""
import os
import time

import pytest

from pilotq_mpi.runtime.rundir import STALE_AFTER_S, JoinError, RunDir


def test_a_published_pilot_is_found_and_answers_a_request(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.publish("port-name", host="h1")
    assert run_dir.find_pilot()["port"] == "port-name"
    request = run_dir.request({"ranks": [{"node": "n", "gpus": []}], "pool": "gpu"})
    [(found_id, facts)] = run_dir.requests()
    assert found_id == request and facts["pool"] == "gpu"
    run_dir.reply(request, {"accept": True, "allocation": "join-1", "first": 4})
    assert run_dir.requests() == []
    assert run_dir.wait_reply(request, timeout=5) == {"accept": True, "allocation": "join-1", "first": 4}


def test_no_pilot_and_a_stale_pilot_are_refused_with_what_to_do(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(JoinError, match=r"no pilot is running in .*pilot.json does not exist \(start the pilot"
                                        r" with --run-dir"):
        run_dir.find_pilot()
    run_dir.publish("port-name", host="h1")
    old = time.time() - STALE_AFTER_S - 5
    os.utime(run_dir.heartbeat_file, (old, old))
    with pytest.raises(JoinError, match=r"is not running: its heartbeat was last touched \d+ s ago"):
        run_dir.find_pilot()
    run_dir.withdraw()
    with pytest.raises(JoinError, match="no pilot is running"):
        run_dir.find_pilot()


def test_an_unanswered_request_times_out_and_is_withdrawn(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.publish("port-name")
    request = run_dir.request({"ranks": []})
    with pytest.raises(JoinError, match="did not answer the join request within 0.1 s"):
        run_dir.wait_reply(request, timeout=0.1)
    assert run_dir.requests() == []


def test_leave_notice_exit_order_and_allocation_heartbeats(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.publish("port-name")
    assert run_dir.leave_notice("join-1") is None
    run_dir.ask_to_leave("join-1", 2.5, "got SIGUSR1")
    run_dir.ask_to_leave("join-1", 9.0, "got SIGTERM")  # the first notice stands
    assert run_dir.leave_notice("join-1")["grace"] == 2.5
    assert run_dir.exit_by("join-1") is None
    run_dir.order_exit("join-1", 123.0)
    assert run_dir.exit_by("join-1") == 123.0
    now = time.time()
    assert run_dir.allocation_age("join-1", 2, now) is None  # no rank has beaten yet
    for rank in (0, 1):
        (run_dir.allocation_dir("join-1") / f"alive-{rank}").touch()
    os.utime(run_dir.allocation_dir("join-1") / "alive-1", (now - 30, now - 30))
    assert run_dir.allocation_age("join-1", 2, now) == pytest.approx(30, abs=1)


def test_a_new_pilot_starts_clean_and_a_live_one_keeps_its_directory(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    assert run_dir.in_use() is None
    run_dir.publish("old-port", host="h1")
    run_dir.ask_to_leave("join-1", 1.0, "got SIGUSR1")
    run_dir.order_exit("join-1", 1.0)
    assert "is in use by a running pilot" in run_dir.in_use() and "choose another --run-dir" in run_dir.in_use()
    old = time.time() - STALE_AFTER_S - 5
    os.utime(run_dir.heartbeat_file, (old, old))
    assert run_dir.in_use() is None  # that pilot died: its directory may be reused
    run_dir.publish("new-port", host="h2")
    assert run_dir.leave_notice("join-1") is None and run_dir.exit_by("join-1") is None
