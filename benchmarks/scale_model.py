"""Predicted utilization at scale: the discrete-event simulator with the master's measured costs.

    python benchmarks/scale_model.py           # single master at 1,024-16,384 ranks x 0.1/1/10 s tasks,
                                               # hierarchical masters for 1 s tasks (~10-20 min here)
    python benchmarks/scale_model.py --quick   # fewer rounds and configurations (a few minutes)

Costs. The master's CPU per task comes from ``benchmarks/results/master_cost.json`` (run
``benchmarks/master_cost.py`` first): the 4-rank one-by-one row, split into parts. The model
(``MasterModel`` in ``pilotq_mpi.core.simulation``) charges per task, on one server:

* ``submit``: the driver's ``submit()`` (the driver runs in rank 0's main thread and holds the
  GIL meanwhile, so its CPU is the master's too) + the master's submit bookkeeping + dependencies;
* ``place``: dispatch bookkeeping + half of the messages and pickling;
* ``result``: result and end bookkeeping, the state machine, futures, the loop, the observers
  (none, or journal + trace) + the other half of messages and pickling;
* the scheduler is *not* taken from the 4-rank measurement: the simulator runs the real
  ``Scheduler`` at each rank count and charges the CPU time measured inside its calls
  (``time.thread_time``), so its growth with ranks and queue length is in the model.

The hierarchical model (``simulate_hierarchical``): a top master feeds ``G`` sub-masters, each
running a ``Scheduler`` over its group (the runtime's rule: a group holds at most
``workers x (1 + prefetch)`` slots of tasks). Ranks: 1 top + G sub-masters + workers. Until the
hierarchical runtime is measured (``master_cost.py --submasters G``), ``c_top`` and ``c_sub`` are
*estimates* built from the single master's parts (formulas in the JSON, ``estimate: true``).

Workload and size. Single-rank tasks of a fixed duration, submitted one by one at the driver's
measured rate, ``rounds`` tasks per worker rank (scaled down from a real run's thousands of
tasks per rank so that 16,384 ranks simulate in about a minute; utilization is a rate, and the
steady-state figure does not depend on the task count once the ramp is left out). Reported:
``utilization`` over the whole run (ramp-up and tail included) and ``steady``: the busy fraction
of the worker ranks in the middle half of the run (25%-75% of the makespan). Dispatch latency
(master to worker) and group latency (top to sub-master) 0.5 ms each (estimates: the polling
back-off of an idle rank is up to 1 ms). Prefetch 1, as the runtime's default.

Results: ``benchmarks/results/scale_model.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pilotq_mpi.core.inventory import Inventory  # noqa: E402
from pilotq_mpi.core.simulation import MasterModel, simulate, simulate_hierarchical  # noqa: E402
from pilotq_mpi.core.specs import TaskSpec  # noqa: E402

RANKS = (1024, 4096, 16384)
DURATIONS = (0.1, 1.0, 10.0)
TARGET = 0.9
LATENCY = 5e-4
BATCH_ESTIMATE = 16
"""Tasks per top <-> sub-master message assumed by the estimates (the top sends a pass's tasks at once)."""


# --- costs -------------------------------------------------------------------------------

def measured_parts(path: Path, ranks: int = 4) -> dict:
    """The single master's parts (us per task) for one-by-one submits, and the observers' extra cost."""
    data = json.loads(path.read_text())
    mode = data["modes"]["single"]
    rows = {r["workload"]: r for r in mode["rows"] if r["ranks"] == ranks}
    base = rows["submit"]
    parts = dict(base["parts_us"])
    out = {"source": os.path.relpath(path, HERE.parent), "commit": mode.get("commit"), "date": mode.get("date"),
           "ranks_measured": ranks, "loop_cpu_per_task_us": base["loop_cpu_per_task_us"],
           "driver_submit_us": base["driver_submit_cpu_per_task_us"], "parts_us": parts,
           "load_before": mode.get("load_before")}
    for name in ("submit+journal", "submit+trace"):
        if name in rows:
            out[f"extra_{name.split('+')[1]}_us"] = max(0.0, rows[name]["loop_cpu_per_task_us"]
                                                        - base["loop_cpu_per_task_us"])
    return out


def _p(parts: dict, *names: str) -> float:
    return sum(max(0.0, parts.get(name, 0.0)) for name in names)


def single_model(costs: dict, observers: bool) -> tuple[MasterModel, dict]:
    """The single master: measured parts without the scheduler (which the simulator charges itself)."""
    p = costs["parts_us"]
    io = _p(p, "messages", "pickle")
    submit = costs["driver_submit_us"] + _p(p, "bookkeeping: submit", "bookkeeping: dependencies")
    place = _p(p, "bookkeeping: dispatch") + io / 2
    result = _p(p, "bookkeeping: result", "bookkeeping: end", "bookkeeping: state machine", "bookkeeping: futures",
                "loop", "observers: journal", "observers: trace") + io / 2
    if observers:
        result += costs.get("extra_journal_us", 0.0) + costs.get("extra_trace_us", 0.0)
    model = MasterModel(submit=submit * 1e-6, place=place * 1e-6, result=result * 1e-6, scheduler=True)
    return model, {"submit_us": submit, "place_us": place, "result_us": result, "fixed_us": submit + place + result,
                   "scheduler": "charged live (thread CPU time inside the simulated Scheduler's calls)"}


def hierarchical_estimates(costs: dict, observers: bool) -> tuple[MasterModel, MasterModel, dict]:
    """c_top and c_sub estimated from the single master's parts (until the runtime is measured)."""
    p = costs["parts_us"]
    b = BATCH_ESTIMATE
    msg, pk = _p(p, "messages"), _p(p, "pickle")
    top_submit = costs["driver_submit_us"] + _p(p, "bookkeeping: submit", "bookkeeping: dependencies")
    top_place = pk / 2 + msg / 2 / b
    top_result = _p(p, "bookkeeping: end", "bookkeeping: state machine", "bookkeeping: futures", "loop",
                    "observers: journal", "observers: trace") + pk / 2 + msg / 2 / b
    if observers:
        top_result += costs.get("extra_journal_us", 0.0) + costs.get("extra_trace_us", 0.0)
    sub_submit = _p(p, "bookkeeping: submit") + pk / 2 + msg / 2 / b
    sub_place = _p(p, "bookkeeping: dispatch") + (msg + pk) / 2
    sub_result = _p(p, "bookkeeping: result", "bookkeeping: end", "bookkeeping: state machine", "loop") \
        + (msg + pk) / 2 + pk / 2 + msg / 2 / b
    top = MasterModel(submit=top_submit * 1e-6, place=top_place * 1e-6, result=top_result * 1e-6)
    sub = MasterModel(submit=sub_submit * 1e-6, place=sub_place * 1e-6, result=sub_result * 1e-6, scheduler=True)
    info = {
        "estimate": True, "batch_tasks": b,
        "top_us": {"submit": top_submit, "place": top_place, "result": top_result,
                   "total": top_submit + top_place + top_result},
        "sub_us": {"submit": sub_submit, "place": sub_place, "result": sub_result,
                   "total_without_scheduler": sub_submit + sub_place + sub_result},
        "formulas": {
            "top.submit": "driver submit + bookkeeping: submit + dependencies",
            "top.place": "pickle/2 + messages/2/batch (a task pickled into a batch message to a sub-master)",
            "top.result": "end + state machine + futures + loop + observers + pickle/2 + messages/2/batch",
            "sub.submit": "bookkeeping: submit + pickle/2 + messages/2/batch (a task unpacked from a batch)",
            "sub.place": "dispatch + (messages + pickle)/2 (as the single master)",
            "sub.result": "result + end + state machine + loop + (messages + pickle)/2 (as the single master)"
                          " + pickle/2 + messages/2/batch (results forwarded in a batch); scheduler charged live",
        },
    }
    return top, sub, info


# --- runs --------------------------------------------------------------------------------

def workload(workers: int, duration: float, rounds: int, submit_gap: float) -> list:
    one = TaskSpec()
    return [(one, duration, i * submit_gap) for i in range(rounds * workers)]


def steady(result, workers: int) -> float:
    """Busy fraction of the worker ranks in the middle half of the run."""
    a, b = 0.25 * result.makespan, 0.75 * result.makespan
    busy = sum(max(0.0, min(r.end, b) - max(r.start, a)) for r in result.records)
    return busy / ((b - a) * workers) if b > a else 0.0


def summarize(result, workers: int, ranks: int, wall: float, cpu: float) -> dict:
    masters = list(result.masters)
    return {"ranks": ranks, "workers": workers, "tasks": len(result.records),
            "utilization": result.utilization, "steady": steady(result, workers),
            "makespan_s": result.makespan, "lower_bound_s": result.lower_bound, "results_seen_s": result.results_seen,
            "scheduler_us_per_task": result.scheduler_seconds / max(1, result.placements) * 1e6
            + result.submit_seconds / max(1, result.placements) * 1e6,
            "masters": [{"name": m["name"], "busy_fraction": m["utilization"]} for m in masters[:1]]
            + ([{"name": "sub-masters (max)", "busy_fraction": max(m["utilization"] for m in masters[1:])}]
               if len(masters) > 1 else []),
            "simulation_wall_s": wall, "simulation_cpu_s": cpu}


def run_single(ranks: int, duration: float, rounds: int, model: MasterModel, gap: float) -> dict:
    workers = ranks - 1
    inventory = Inventory.from_layout(workers, ranks_per_node=4)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(inventory, workload(workers, duration, rounds, gap), prefetch=1, dispatch_latency=LATENCY,
                      master=model, timer=time.thread_time)
    return summarize(result, workers, ranks, time.perf_counter() - wall, time.process_time() - cpu)


def run_hierarchical(ranks: int, groups: int, duration: float, rounds: int, top: MasterModel, sub: MasterModel,
                     gap: float) -> dict:
    workers = ranks - 1 - groups
    inventory = Inventory.from_layout(workers, ranks_per_node=4)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate_hierarchical(inventory, workload(workers, duration, rounds, gap), groups, top=top, sub=sub,
                                   prefetch=1, dispatch_latency=LATENCY, group_latency=LATENCY, timer=time.thread_time)
    row = summarize(result, workers, ranks, time.perf_counter() - wall, time.process_time() - cpu)
    row.update(groups=groups, group_size=workers // groups)
    return row


def _print(label: str, row: dict) -> None:
    masters = ", ".join(f"{m['name']} {m['busy_fraction']:.0%}" for m in row["masters"])
    print(f"{label:38s} ranks {row['ranks']:6d}: utilization {row['utilization']:6.1%}, steady {row['steady']:6.1%},"
          f" makespan {row['makespan_s']:7.2f} s (bound {row['lower_bound_s']:.2f}); {masters};"
          f" scheduler {row['scheduler_us_per_task']:.0f} us/task; sim {row['simulation_wall_s']:.0f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--costs", default=str(HERE / "results" / "master_cost.json"))
    parser.add_argument("--rounds", type=int, default=6, help="tasks per worker rank")
    parser.add_argument("--quick", action="store_true", help="rounds 3, fewer configurations")
    parser.add_argument("--out", default=str(HERE / "results" / "scale_model.json"))
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    costs = measured_parts(Path(args.costs))
    gap = costs["driver_submit_us"] * 1e-6
    load_before = os.getloadavg()
    single_rows, hier_rows, models = [], [], {}
    for observers in (False, True):
        model, info = single_model(costs, observers)
        label = "journal+trace" if observers else "none"
        models[f"single, observers {label}"] = info
        durations = DURATIONS if not (args.quick and observers) else (1.0,)
        for duration in durations:
            for ranks in RANKS + ((2048, 8192) if duration == 1.0 else ()):
                if args.quick and ranks == 16384 and duration != 1.0:
                    continue
                row = run_single(ranks, duration, rounds, model, gap)
                row.update(duration_s=duration, observers=label)
                _print(f"single, {duration:g} s, observers {label}", row)
                single_rows.append(row)
    top, sub, info = hierarchical_estimates(costs, observers=False)
    models["hierarchical, observers none"] = info
    sweep = (2, 4, 8, 16, 32) if not args.quick else (4, 32)
    for groups in sweep:
        row = run_hierarchical(8192, groups, 1.0, rounds, top, sub, gap)
        row.update(duration_s=1.0, observers="none")
        _print(f"hierarchical G={groups}, 1 s", row)
        hier_rows.append(row)
    for ranks in (4096, 16384):
        for groups in ((4, 16, 64) if not args.quick else (16,)):
            row = run_hierarchical(ranks, groups, 1.0, rounds, top, sub, gap)
            row.update(duration_s=1.0, observers="none")
            _print(f"hierarchical G={groups}, 1 s", row)
            hier_rows.append(row)
    findings = _findings(single_rows, hier_rows)
    out = {
        "benchmark": "scale_model", "command": "python benchmarks/scale_model.py" + (" --quick" if args.quick else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(), "load_before": load_before, "load_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": rounds, "dispatch_latency_s": LATENCY, "group_latency_s": LATENCY, "prefetch": 1,
        "submit_gap_s": gap, "target": TARGET, "costs": costs, "models": models,
        "single": single_rows, "hierarchical": hier_rows, "findings": findings,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(findings, indent=1))
    print(f"wrote {args.out}")
    return 0


def _findings(single_rows: list[dict], hier_rows: list[dict]) -> dict:
    out = {}
    for row in single_rows:
        if row["observers"] != "none":
            continue
        key = f"single_{row['duration_s']:g}s"
        ok = row["steady"] >= TARGET
        entry = out.setdefault(key, {"meets_target_up_to_ranks": None, "below_target_from_ranks": None})
        if ok and (entry["meets_target_up_to_ranks"] or 0) < row["ranks"]:
            entry["meets_target_up_to_ranks"] = row["ranks"]
        if not ok and (entry["below_target_from_ranks"] is None or row["ranks"] < entry["below_target_from_ranks"]):
            entry["below_target_from_ranks"] = row["ranks"]
    at = [r for r in hier_rows if r["ranks"] == 8192]
    good = sorted((r for r in at if r["steady"] >= TARGET), key=lambda r: r["groups"])
    out["hierarchical_8192_1s"] = {
        "fewest_groups_meeting_target": good[0]["groups"] if good else None,
        "largest_group_size_meeting_target": good[0]["group_size"] if good else None,
        "steady_by_groups": {r["groups"]: r["steady"] for r in at}}
    return out


def _git_commit() -> str | None:
    if os.environ.get("PILOTQ_BENCH_COMMIT"):
        return os.environ["PILOTQ_BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
