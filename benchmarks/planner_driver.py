"""MPI driver of the planner benchmark: plan each circuit, then run every feasible strategy for real.

Started by ``benchmarks/planner.py`` as
``mpiexec -n W+1 python -m pilotq_mpi benchmarks/planner_driver.py --batch IN.json --out OUT.json``
(rank 0 runs this driver and the master; W worker ranks). ``IN.json``::

    {"items": [{...grid spec...}, ...], "repeats": 3, "short_repeats": 9, "short_s": 0.5,
     "shots": 500, "seed": 1, "long_s": 10.0,
     "max_volume": 2e5, "max_cuts": 3, "profile": PATH, "calibrate": false, "quick_calibrate": false}

For each circuit the driver calls ``plan(circuit, observable, pilot, shots=shots, profile=...)``
on this pilot (its free resources now) and records every strategy (prediction, terms,
feasibility) and the pick. Then it runs each feasible strategy with the planner's own
``run(circuit, observable, pilot, strategy=label, ...)`` -- the code path a user gets, built on
``statevector_task``, Aer on one rank, and the cutting workflow's plans, batches and
reconstruction -- and records ``RunResult.measured_time`` (execution, planning excluded; the
plan's cut search is cached after the first plan of a circuit) and the wall time around the
call. Cutting strategies with more than ``max_volume`` subexperiment-shots (a model-free
count, not a prediction) are not run; the reason is recorded. A run whose work moved to
another strategy (failover) is recorded as an error for that strategy.

Repeats of a circuit's strategies are interleaved (round-robin); a strategy whose first run
took more than ``long_s`` gets no second repeat, more than ``long_s / 3`` no third. A strategy
whose median after ``repeats`` runs is under ``short_s`` seconds runs up to ``short_repeats``
times in all: its times are short enough for the machine's noise to decide within 10%, and
more repeats cost little.
With ``"calibrate": true`` the driver first measures the planner's cost profile on this pilot
(``calibrate(pilot)``, same ranks and environment as the measurements) and saves it to
``profile``. Writes ``OUT.json`` after every circuit (partial results survive a timeout).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from planner_circuits import build, spec_id  # noqa: E402


def warm_up(comm, seconds: float) -> int:
    """Pilot task: import and exercise the state vector, Aer's estimator and sampler once."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    from pilotq_mpi.statevector import statevector_task
    from pilotq_mpi.workflows.planner.execute import aer_estimate_task, aer_sample_batch

    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    statevector_task(comm, qc, [SparsePauliOp("ZZ")])
    aer_estimate_task(comm, qc, ["ZZ"])
    qc.measure_all()
    aer_sample_batch(comm, [qc], 10, 0, "CPU")
    time.sleep(seconds)
    return os.getpid()


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def strategy_record(s) -> dict:
    """JSON-able view of a planner Strategy (infinite predictions as None)."""
    d = s.to_dict()
    d["predicted_time"] = _finite(d["predicted_time"])
    d["std_error"] = _finite(d["std_error"])
    return d


def measure_item(pilot, spec: dict, cfg: dict, profile) -> dict:
    """Plan one circuit, then run its feasible strategies (repeats interleaved)."""
    from pilotq_mpi.workflows.planner import plan, run
    from pilotq_mpi.workflows.planner.resources import runnable_now

    circuit, observable = build(spec)
    shots, seed, max_cuts = int(cfg["shots"]), int(cfg["seed"]), int(cfg["max_cuts"])
    kwargs = {"shots": shots, "profile": profile, "seed": seed, "max_cuts": max_cuts}
    item = {"id": spec_id(spec), "spec": spec, "qubits": circuit.num_qubits}
    t0 = time.perf_counter()
    try:
        p = plan(circuit, observable, pilot, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded; the benchmark goes on with the next circuit
        item["plan_error"] = f"{type(exc).__name__}: {exc}"[:2000]
        return item
    item["plan_s"] = time.perf_counter() - t0
    item["external_load"] = p.resources.external_load  # what the plan assumed (see Resources.from_pilot)
    item["plan_timings"] = dict(p.timings)
    item["plan_notes"] = list(p.notes)
    item["resources"] = p.resources.describe()
    item["gates"], item["two_qubit_gates"], item["depth"] = p.problem.gates, p.problem.two_qubit_gates, p.problem.depth
    item["terms"] = len(p.problem.terms)
    item["strategies"] = [strategy_record(s) for s in p.strategies]
    item["pick"] = p.best.label if p.best else None
    runs, not_run = [], {}
    for s in p.strategies:
        if not s.feasible:
            continue
        volume = s.params.get("subexperiments", 0) * s.params.get("shots", 0)
        if s.kind == "cutting" and volume > float(cfg["max_volume"]):
            not_run[s.label] = (f"{s.params['subexperiments']} subexperiments x {s.params['shots']} shots ="
                                f" {volume:.3g} > max_volume {float(cfg['max_volume']):.3g}")
            continue
        runs.append(s)
    measured = {s.label: {"kind": s.kind, "params": s.params, "times": [], "walls": [], "runs": [], "loadavg": [],
                          "runnable": []} for s in runs}
    repeats, long_s = int(cfg["repeats"]), float(cfg["long_s"])
    short_repeats, short_s = int(cfg.get("short_repeats", repeats)), float(cfg.get("short_s", 0.0))
    for rep in range(max(repeats, short_repeats)):
        for s in runs:
            rec = measured[s.label]
            if rec.get("error"):
                continue
            if rec["times"] and rec["times"][0] > (long_s if rep == 1 else long_s / 3):
                continue  # long runs: fewer repeats (see the module docstring)
            if rep >= repeats and not (rec["times"] and statistics.median(rec["times"]) < short_s):
                continue  # only short runs get the extra repeats
            load = os.getloadavg()[0]
            runnable = runnable_now()  # other processes runnable now (this pilot's ranks are idle between runs)
            w0 = time.perf_counter()
            try:
                r = run(circuit, observable, pilot, strategy=s.label, **kwargs)
            except Exception as exc:  # noqa: BLE001 - recorded; the others still run
                rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
                rec["traceback"] = traceback.format_exc()[-3000:]
                continue
            wall = time.perf_counter() - w0
            if r.moved or r.ran != [s.label]:
                rec["error"] = f"work moved (failover): ran {r.ran}, moved {r.moved}"[:2000]
                continue
            rec["times"].append(r.measured_time)
            rec["walls"].append(wall)
            rec["loadavg"].append(load)
            rec["runnable"].append(runnable)
            rec["runs"].append({"values": r.values, "std_errors": r.std_errors, "plan_time": r.plan_time,
                                "details": _jsonable(r.details)})
            print(f"[planner-bench] {item['id']} {s.label} rep {rep}: {r.measured_time:.3f}s"
                  f" (predicted {s.predicted_time:.3f}s)", flush=True)
    for rec in measured.values():
        rec["median_s"] = statistics.median(rec["times"]) if rec["times"] else None
    item["measured"] = measured
    item["not_run"] = not_run
    return item


def _jsonable(obj):
    try:
        return json.loads(json.dumps(obj, default=float))
    except (TypeError, ValueError):
        return str(obj)[:500]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.batch.read_text())
    from pilotq_mpi import Pilot
    from pilotq_mpi.workflows.planner import CostProfile

    started = time.perf_counter()
    result = {"items": [], "loadavg_start": list(os.getloadavg())}
    with Pilot() as pilot:
        workers = len(pilot.resources.compute_ranks)
        result["workers"] = workers
        t0 = time.perf_counter()
        # one warm-up task per worker (each holds its rank a moment so that every worker gets one)
        pids = {f.result() for f in [pilot.submit(warm_up, 0.5) for _ in range(workers)]}
        result["warm_up_s"] = time.perf_counter() - t0
        result["warmed_workers"] = len(pids)
        # the warm-up imported qiskit and Aer on every worker: no strategy of these plans pays first imports
        from pilotq_mpi.workflows.planner.resources import mark_warm

        mark_warm(pilot, ("qiskit", "aer"), len(pids))
        if cfg.get("calibrate"):
            from pilotq_mpi.workflows.planner import calibrate

            t0 = time.perf_counter()
            calibrate(pilot, save=cfg["profile"], quick=bool(cfg.get("quick_calibrate")))
            result["calibrate_s"] = time.perf_counter() - t0
            print(f"[planner-bench] calibrated in {result['calibrate_s']:.1f}s -> {cfg['profile']}", flush=True)
        profile = CostProfile.load(cfg["profile"]) if cfg.get("profile") else None
        result["profile"] = profile.to_dict() if profile is not None else None
        for spec in cfg["items"]:
            result["items"].append(measure_item(pilot, spec, cfg, profile))
            args.out.write_text(json.dumps(result))
    result["loadavg_end"] = list(os.getloadavg())
    result["driver_s"] = time.perf_counter() - started
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
