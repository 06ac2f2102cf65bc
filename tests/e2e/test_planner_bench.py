"""Smoke test of the planner benchmark: the tiny grid runs end to end and its JSON has the scores.

Runs ``benchmarks/planner.py --size tiny --out TMP`` (one pilot of 5 ranks, two 10-qubit
circuits, every feasible strategy once, at most one cut, the saved or built-in cost profile)
under a hard timeout, then ``--rescore`` on the result. Asserts structure and values (every
whole-circuit strategy measured and agreeing on the value, a cutting run within 5 standard
errors of it, a feasible pick, scores and regrets present, the same scores after rescoring),
then ``--rescore --replan`` (the current model's plans and the cross-family hold-out, post hoc,
stored apart from the measured data and the original scores) and the rendering of the table
from the JSON alone; never how long anything took.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "planner.py"


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """Run the benchmark in its own process group; on a timeout kill the group (its MPI job too)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"benchmarks/planner.py {' '.join(args)} did not finish in {timeout} s:\n{out[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_tiny_planner_benchmark_scores_and_rescore(tmp_path):
    proc = _run("--size", "tiny", "--out", str(tmp_path), timeout=170)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "planner.json").read_text())
    assert (tmp_path / "planner.png").stat().st_size > 0
    assert [it["id"] for it in data["items"]] == ["hea-n10-d1-zprod", "brick-n10-d4-zsum"]
    for it in data["items"]:
        measured = {lab: m for lab, m in it["measured"].items() if m["median_s"] is not None}
        assert {"statevector/1", "statevector/2", "statevector/4", "single/aer"} <= set(measured), it["measured"]
        assert it["pick"] in {s["label"] for s in it["strategies"] if s["feasible"]}
        exact = [m["runs"][0]["values"][0] for lab, m in measured.items() if m["kind"] != "cutting"]
        assert max(exact) - min(exact) < 1e-9, exact  # every exact strategy computes the same value
        for lab, m in measured.items():  # a cut estimate agrees with the exact value within its error bar
            if m["kind"] == "cutting":
                value, se = m["runs"][0]["values"][0], m["runs"][0]["std_errors"][0]
                assert se > 0 and abs(value - exact[0]) <= 5 * se, (lab, value, se, exact[0])
        for lab, m in measured.items():  # the load each run met is recorded beside its time
            assert len(m["loadavg"]) == len(m["runnable"]) == len(m["times"]), lab
        assert it["external_load"] >= 0.0  # what the plan assumed
        for lab, reason in it["not_run"].items():
            assert "max_volume" in reason, (lab, reason)
    assert any(m["kind"] == "cutting" and m["median_s"] is not None
               for it in data["items"] for m in it["measured"].values()), "no cutting strategy was run"
    planner = data["scores"]["planner"]
    assert planner["all"]["circuits"] == 2
    assert 0.0 <= planner["all"]["fraction_within_tol"] <= 1.0
    for key in ("regret_p50", "regret_p95", "regret_max"):
        value = planner["all"][key]
        assert value is None or (math.isfinite(value) and value >= 0.0), (key, value)
    assert planner["all"]["unmeasured_picks"] + sum(1 for c in planner["all"]["per_circuit"]
                                                    if c["regret"] is not None) == 2
    assert {"statevector", "single"} <= set(planner["mape"])
    assert "qdreamer" in data["scores"] and "fit_train" in data["scores"]["qdreamer"]

    before = data["scores"]
    proc = _run("--rescore", "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "planner.json").read_text())
    assert again["scores"]["planner"]["all"] == before["planner"]["all"]  # same measurements, same scores
    assert "rescored" in again["meta"]

    # --replan: the current model's plans and scores go into a separate entry; nothing measured changes
    proc = _run("--rescore", "--replan", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    third = json.loads((tmp_path / "planner.json").read_text())
    assert third["items"] == again["items"] and third["scores"] == again["scores"]
    entry = third[max((k for k in third if k.startswith("rescored_model_v")), key=lambda k: int(k.rsplit("v", 1)[1]))]
    assert entry["model_version"] >= 3 and entry["post_hoc"] is True and "POST HOC" in entry["note"]
    recorded = {it["id"]: it["external_load"] for it in third["items"]}
    for cid, rec in entry["plans"].items():
        assert rec["external_load"] == recorded[cid]  # planned again at the load the run's plan saw
        assert rec["pick"] in {s["label"] for s in rec["strategies"] if s["feasible"]}
    assert entry["scores"]["planner"]["all"]["circuits"] == 2
    cross = entry["cross_family"]  # hold-out both ways: fit on one family's runs, score the other
    assert cross["both_directions"]["circuits"] == 2
    assert {"fit_hea+qaoa_score_brick+longrange", "fit_brick+longrange_score_hea+qaoa"} <= set(cross)

    # the table and the scores render from the JSON alone
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    shown = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "planner_scoring.py"), "--json",
                            str(tmp_path / "planner.json")], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "| pick within 10% of the measured best | " in shown.stdout and "POST HOC" in shown.stdout
