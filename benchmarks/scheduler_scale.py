"""Scale study of the pure scheduler, driven by the discrete-event simulator (no MPI).

    python benchmarks/scheduler_scale.py             # 64 / 512 / 4096 ranks x 1e4 / 1e5 / 1e6 tasks (within budget)
    python benchmarks/scheduler_scale.py --quick     # 64 and 512 ranks, 2,000 tasks: seconds
    python benchmarks/scheduler_scale.py --profile   # also cProfile the scheduler at the largest rank count

Inventory: 4 worker ranks per node, one GPU each. Workload: ``mixed_workload`` (a bag of
tasks submitted at t=0; 5% multi-rank with widths 2/4/8/16; half need a GPU; lognormal
durations, median 1 s, sigma 1), prefetch 1, no dispatch latency. For each configuration
it reports the scheduler's own cost (wall time inside ``Scheduler.schedule()`` and
``release()`` per placed task, and its inverse, decisions per second), and the quality of
the simulated schedule: makespan / lower bound, utilization, queue wait p95.

A configuration is skipped (and listed as skipped) when its run time, extrapolated
linearly in tasks from the previous size at the same rank count, exceeds ``--budget``.
``--scheduler module:Class`` runs a stand-in scheduler (same interface) for comparison.
Results: ``benchmarks/results/scheduler_scale.json`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import importlib
import importlib.util
import io
import json
import platform
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pilotq_mpi.core.inventory import Inventory  # noqa: E402
from pilotq_mpi.core.scheduler import Scheduler  # noqa: E402
from pilotq_mpi.core.simulation import mixed_workload, simulate  # noqa: E402

RANKS_PER_NODE = 4


def load_scheduler(path: str | None):
    if not path:
        return Scheduler
    module, _, name = path.partition(":")
    if module.endswith(".py"):
        spec = importlib.util.spec_from_file_location("stand_in_scheduler", module)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    return getattr(mod, name or "Scheduler")


def run_one(ranks: int, tasks: int, args, factory) -> dict:
    inventory = Inventory.from_layout(ranks, ranks_per_node=RANKS_PER_NODE, gpus_per_rank=1)
    workload = mixed_workload(tasks, wide_fraction=args.wide_fraction, gpu_fraction=args.gpu_fraction,
                              seed=args.seed, sigma=args.sigma)
    start = time.perf_counter()
    result = simulate(inventory, workload, prefetch=args.prefetch, dispatch_latency=args.latency,
                      scheduler_factory=factory)
    wall = time.perf_counter() - start
    row = result.summary()
    row["simulation_wall_s"] = wall
    row["nodes"] = ranks // RANKS_PER_NODE
    return row


def profile_one(ranks: int, tasks: int, args, factory, top: int = 15) -> dict:
    """cProfile one run; return the top functions by own time (inside the scheduler module and all)."""
    inventory = Inventory.from_layout(ranks, ranks_per_node=RANKS_PER_NODE, gpus_per_rank=1)
    workload = mixed_workload(tasks, wide_fraction=args.wide_fraction, gpu_fraction=args.gpu_fraction,
                              seed=args.seed, sigma=args.sigma)
    profiler = cProfile.Profile()
    profiler.enable()
    simulate(inventory, workload, prefetch=args.prefetch, dispatch_latency=args.latency, scheduler_factory=factory)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (cc, nc, tt, ct, _) in stats.stats.items():
        rows.append({"function": f"{Path(filename).name}:{line}({function})", "calls": nc,
                     "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    print(text.getvalue())
    return {"ranks": ranks, "tasks": tasks, "top_by_tottime": rows[:top]}


def table(rows: list[dict]) -> str:
    head = ("| ranks | tasks | sched. time (s) | us / decision | decisions/s | makespan / bound | utilization"
            " | wait p95 (s) | sim. wall (s) |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['ranks']} | {r['tasks']:,} | skipped: {r['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {r['ranks']} | {r['tasks']:,} | {r['scheduler_seconds']:.2f} | {r['seconds_per_decision'] * 1e6:.1f}"
            f" | {r['decisions_per_second']:,.0f} | {r['makespan_over_bound']:.3f} | {r['utilization']:.3f}"
            f" | {r['wait_p95']:.1f} | {r['simulation_wall_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 and 512 ranks, 2,000 tasks")
    parser.add_argument("--ranks", type=int, nargs="+", default=None)
    parser.add_argument("--tasks", type=int, nargs="+", default=None)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="dispatch latency per task start (s)")
    parser.add_argument("--wide-fraction", type=float, default=0.05)
    parser.add_argument("--gpu-fraction", type=float, default=0.5)
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal shape of durations (median 1 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=300.0, help="skip a run estimated to take longer (s)")
    parser.add_argument("--profile", action="store_true", help="cProfile a run at the largest rank count")
    parser.add_argument("--profile-tasks", type=int, default=10_000)
    parser.add_argument("--scheduler", default=None, help="module:Class or path.py:Class of a stand-in scheduler")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scheduler_scale.json")
    args = parser.parse_args(argv)
    ranks_list = args.ranks or ([64, 512] if args.quick else [64, 512, 4096])
    tasks_list = args.tasks or ([2_000] if args.quick else [10_000, 100_000, 1_000_000])
    factory = load_scheduler(args.scheduler)

    rows = []
    for ranks in ranks_list:
        previous = None
        for tasks in sorted(tasks_list):
            if previous is not None:
                estimate = previous["simulation_wall_s"] * tasks / previous["tasks"]
                if estimate > args.budget:
                    rows.append({"ranks": ranks, "tasks": tasks,
                                 "skipped": f"est. {estimate:,.0f} s > budget {args.budget:.0f} s"})
                    print(f"ranks={ranks} tasks={tasks}: skipped (estimated {estimate:.0f} s)", flush=True)
                    continue
            row = run_one(ranks, tasks, args, factory)
            rows.append(row)
            previous = row
            print(f"ranks={ranks} tasks={tasks}: {row['seconds_per_decision'] * 1e6:.1f} us/decision,"
                  f" makespan/bound {row['makespan_over_bound']:.3f}, utilization {row['utilization']:.3f},"
                  f" sim {row['simulation_wall_s']:.1f} s", flush=True)

    profile = profile_one(max(ranks_list), args.profile_tasks, args, factory) if args.profile else None
    command = "python benchmarks/scheduler_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = {
        "benchmark": "scheduler_scale",
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
        "scheduler": args.scheduler or "pilotq_mpi.core.scheduler:Scheduler",
        "inventory": f"{RANKS_PER_NODE} ranks per node, 1 GPU per rank",
        "workload": {"generator": "mixed_workload", "wide_fraction": args.wide_fraction,
                     "widths": [2, 4, 8, 16], "gpu_fraction": args.gpu_fraction, "median_duration": 1.0,
                     "sigma": args.sigma, "seed": args.seed, "submit": "all at t=0"},
        "prefetch": args.prefetch,
        "dispatch_latency": args.latency,
        "results": rows,
        "profile": profile,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n`{out['command']}`\n")
    print(table(rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
