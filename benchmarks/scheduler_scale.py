"""Scale study of the pure scheduler, driven by the discrete-event simulator (no MPI).

    python benchmarks/scheduler_scale.py             # 64 / 512 / 4096 ranks x 1e4 / 1e5 / 1e6 tasks (within budget)
    python benchmarks/scheduler_scale.py --quick     # 64 and 512 ranks, 2,000 tasks: seconds
    python benchmarks/scheduler_scale.py --profile   # also cProfile the scheduler at the largest rank count
    git worktree add /tmp/sched-old <commit>          # then, to measure that commit's scheduler side by side:
    python benchmarks/scheduler_scale.py --baseline /tmp/sched-old --before old-result.json
    python benchmarks/scheduler_scale.py --queued 1000000 --rounds 3 --baseline /tmp/sched-old  # 10^6 queued first
    python benchmarks/scheduler_scale.py --queued 1000000 --bytecodes 5000 ...  # also: where the time goes

Inventory: 4 worker ranks per node, one GPU each. Workload: ``mixed_workload`` (a bag of
tasks submitted at t=0; 5% multi-rank with widths 2/4/8/16; half need a GPU; lognormal
durations, median 1 s, sigma 1), prefetch 1, no dispatch latency. For each configuration
it reports the scheduler's own cost per placed task: CPU time (``time.process_time``, robust
to other processes on the machine) and wall time (``time.perf_counter``) inside
``Scheduler.schedule()`` and ``release()``, and the quality of the simulated schedule:
makespan / lower bound, utilization, queue wait p95. Every task is queued before the first
placement (a bag of tasks submitted at t=0). The load average before and after each run and
the time of a fixed pure-Python reference loop (how fast this machine ran Python just then)
are recorded, so that runs on a busy machine can be read.

``--baseline DIR`` also runs the scheduler of another checkout (``DIR/pilotq_mpi/core/
scheduler.py`` and its ``rank_index.py``; everything else, the simulator included, is this
checkout's) on each configuration up to ``--baseline-max-tasks``, just before the current one
(interleaved), and reports the ratio. ``--before FILE`` copies the rows of an earlier result
file (e.g. the committed one, measured with the old scheduler) into the output for reference.

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
import os
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


def timed(factory):
    """``factory`` with wall time (perf_counter) summed around schedule() and release().

    The simulator itself measures CPU time around the same calls (its ``timer`` is
    ``time.process_time`` here), so both clocks cover the same code, this wrapper included."""
    wall = {"schedule": 0.0, "release": 0.0}
    clock = time.perf_counter

    class Timed(factory):
        def schedule(self, now=None):
            start = clock()
            result = super().schedule(now)
            wall["schedule"] += clock() - start
            return result

        def release(self, task_id, rank, now=None):
            start = clock()
            result = super().release(task_id, rank, now)
            wall["release"] += clock() - start
            return result

    return Timed, wall


def reference_loop_us(repeat: int = 200) -> float:
    """Best time of a fixed pure-Python loop (sum of 10,000 ints), in microseconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        total = 0
        for i in range(10_000):
            total += i
        best = min(best, time.process_time() - start)
    return best * 1e6


def timer_overhead_us(repeat: int = 20_000) -> float:
    """Median CPU time of an empty ``process_time()`` interval (what each measured call carries extra), in us."""
    samples = []
    clock = time.process_time
    for _ in range(repeat):
        start = clock()
        samples.append(clock() - start)
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def run_one(ranks: int, tasks: int, args, factory) -> dict:
    inventory = Inventory.from_layout(ranks, ranks_per_node=RANKS_PER_NODE, gpus_per_rank=1)
    workload = mixed_workload(tasks, wide_fraction=args.wide_fraction, gpu_fraction=args.gpu_fraction,
                              seed=args.seed, sigma=args.sigma)
    scheduler, wall = timed(factory)
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(inventory, workload, prefetch=args.prefetch, dispatch_latency=args.latency,
                      scheduler_factory=scheduler, timer=time.process_time)
    row = result.summary()
    row["simulation_wall_s"] = time.perf_counter() - start
    row["simulation_cpu_s"] = time.process_time() - cpu_start
    row["load_before"], row["load_after"] = load_before, os.getloadavg()[0]
    row["nodes"] = ranks // RANKS_PER_NODE
    placements = max(row["placements"], 1)
    # the simulator's "scheduler_seconds" are CPU seconds here (timer=process_time)
    row["cpu_us_per_placement"] = row["scheduler_seconds"] / placements * 1e6
    row["schedule_cpu_us_per_placement"] = row["schedule_seconds"] / placements * 1e6
    row["release_cpu_us_per_placement"] = row["release_seconds"] / placements * 1e6
    row["wall_us_per_placement"] = (wall["schedule"] + wall["release"]) / placements * 1e6
    row["timer"] = "process_time (CPU); wall_us_per_placement: perf_counter"
    overhead = timer_overhead_us()
    row["timer_overhead_us"] = overhead
    intervals = row["schedule_calls"] + row["release_calls"]
    row["cpu_us_per_placement_net"] = row["cpu_us_per_placement"] - overhead * intervals / placements
    return row


def queued_run(ranks: int, tasks: int, placements: int, args, factory, warmup: int = 2_000, tracer=None) -> dict:
    """The cost per placement with ``tasks`` queued before the first placement, measured over
    ``placements`` placements (after ``warmup``) instead of running the whole bag to its end.

    A minimal event loop (not the simulator): every task of ``mixed_workload`` is submitted,
    then each completion (earliest simulated end first) is released and ``schedule()`` is
    called; a prefetched task starts when ``release()`` says so. CPU time (process_time) is
    summed around ``release()`` and ``schedule()`` only. ``tracer`` (for :func:`bytecodes_run`)
    is installed with ``sys.settrace`` around the measured calls (the CPU figures are then void).
    """
    import heapq

    inventory = Inventory.from_layout(ranks, ranks_per_node=RANKS_PER_NODE, gpus_per_rank=1)
    workload = mixed_workload(tasks, wide_fraction=args.wide_fraction, gpu_fraction=args.gpu_fraction,
                              seed=args.seed, sigma=args.sigma)
    scheduler = factory(inventory, prefetch=args.prefetch)
    for task, item in enumerate(workload):
        scheduler.submit(task, item.spec)
    events: list[tuple[float, int, int]] = []
    clock = time.process_time

    def started(task: int, ranks_: tuple[int, ...], now: float) -> None:
        end = now + workload[task].duration
        for rank in ranks_:
            heapq.heappush(events, (end, task, rank))

    load_before = os.getloadavg()[0]
    start = clock()
    first = scheduler.schedule()
    first_s = clock() - start
    for p in first:
        if not p.waits:
            started(p.task_id, p.ranks, 0.0)
    done = cpu = 0.0
    measured = calls = releases = 0
    while events and measured < placements:
        now, task, rank = heapq.heappop(events)
        if tracer is not None and done > warmup:
            sys.settrace(tracer)
        start = clock()
        nxt = scheduler.release(task, rank)
        placed = scheduler.schedule()
        spent = clock() - start
        sys.settrace(None)
        releases += 1
        if nxt is not None:
            started(nxt, (rank,), now)
        for p in placed:
            if not p.waits:
                started(p.task_id, p.ranks, now)
        done += len(placed)
        if done > warmup:
            cpu += spent
            measured += len(placed)
            calls += 1
    return {"ranks": ranks, "queued_at_start": tasks, "first_schedule_placements": len(first),
            "first_schedule_cpu_s": first_s, "measured_placements": measured, "measured_calls": calls,
            "queued_at_end": scheduler.queued, "cpu_us_per_placement": cpu / max(measured, 1) * 1e6,
            "timer_overhead_us": timer_overhead_us(), "load_before": load_before, "load_after": os.getloadavg()[0]}


def bytecodes_run(ranks: int, tasks: int, placements: int, args, factory) -> dict:
    """Where a placement's time goes, counted instead of timed: the CPython bytecodes executed per
    placement in each function of the scheduler's two modules (``scheduler.py``, ``rank_index.py``
    of the checkout ``factory`` comes from), over the same placements as :func:`queued_run`.
    Deterministic (no clock, no load); heapq and other C calls count as one bytecode each."""
    import collections
    import inspect

    core = Path(inspect.getfile(factory)).resolve().parent
    files = {str(core / "scheduler.py"), str(core / "rank_index.py")}
    counts: collections.Counter = collections.Counter()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in files:
            return None
        frame.f_trace_opcodes, frame.f_trace_lines = True, False
        name = frame.f_code.co_name

        def local(frame, event, arg):
            if event == "opcode":
                counts[name] += 1
            return local
        return local

    run = queued_run(ranks, tasks, placements, args, factory, tracer=tracer)
    measured = max(run["measured_placements"], 1)
    return {"ranks": ranks, "queued_at_start": tasks, "measured_placements": run["measured_placements"],
            "bytecodes_per_placement": sum(counts.values()) / measured,
            "by_function": {name: count / measured for name, count in counts.most_common()}}


def load_baseline(directory: Path):
    """The Scheduler class of another checkout (its scheduler.py with its own rank_index.py)."""
    core = directory / "pilotq_mpi" / "core"
    if not (core / "scheduler.py").is_file():
        raise SystemExit(f"--baseline {directory}: no pilotq_mpi/core/scheduler.py there;"
                         " make one with `git worktree add DIR <commit>`")
    package = "pilotq_mpi.core"
    saved = sys.modules.get(f"{package}.rank_index")
    modules = {}
    try:
        for name in ("rank_index", "scheduler"):
            spec = importlib.util.spec_from_file_location(f"{package}.baseline_{name}", core / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            module.__package__ = package
            sys.modules[spec.name] = module
            if name == "scheduler":  # its `from .rank_index import ...` gets the baseline's index
                sys.modules[f"{package}.rank_index"] = modules["rank_index"]
            spec.loader.exec_module(module)
            modules[name] = module
    finally:
        if saved is not None:
            sys.modules[f"{package}.rank_index"] = saved
    return modules["scheduler"].Scheduler


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
    head = ("| ranks | tasks | CPU us / placement (net) | wall us / placement | baseline CPU us (net) | speed-up"
            " | makespan / bound | utilization | wait p95 (s) | load | sim. wall (s) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['ranks']} | {r['tasks']:,} | skipped: {r['skipped']} |" + " |" * 8)
            continue
        base = r.get("baseline")
        lines.append(
            f"| {r['ranks']} | {r['tasks']:,} | {r['cpu_us_per_placement']:.1f} ({r['cpu_us_per_placement_net']:.1f})"
            f" | {r['wall_us_per_placement']:.1f} | {base['cpu_us_per_placement']:.1f}"
            f" ({base['cpu_us_per_placement_net']:.1f}) | {base['cpu_us_per_placement'] / r['cpu_us_per_placement']:.1f}x"
            if base else
            f"| {r['ranks']} | {r['tasks']:,} | {r['cpu_us_per_placement']:.1f} ({r['cpu_us_per_placement_net']:.1f})"
            f" | {r['wall_us_per_placement']:.1f} | | "
        )
        lines[-1] += (f" | {r['makespan_over_bound']:.3f} | {r['utilization']:.3f} | {r['wait_p95']:.1f}"
                      f" | {r['load_before']:.1f} | {r['simulation_wall_s']:.1f} |")
    return "\n".join(lines)


def queued_main(args, ranks_list, factory, baseline, reference_before) -> int:
    """``--queued``: per rank count, ``--rounds`` rounds of (baseline, current) runs, interleaved; each
    side's row is its median run (by CPU per placement), with every round's figure and load kept."""
    rows = []
    for ranks in ranks_list:
        runs: dict[str, list[dict]] = {}
        for round_ in range(args.rounds):
            for name, cls in (("baseline", baseline), ("current", factory)):
                if cls is None:
                    continue
                run = queued_run(ranks, args.queued, args.queued_placements, args, cls)
                runs.setdefault(name, []).append(run)
                print(f"ranks={ranks} queued={args.queued:,} {name} (round {round_ + 1}/{args.rounds}):"
                      f" {run['cpu_us_per_placement']:.1f} us CPU/placement over {run['measured_placements']:,}"
                      f" placements (load {run['load_before']:.1f})", flush=True)
        row = {}
        for name, samples in runs.items():
            ordered = sorted(samples, key=lambda r: r["cpu_us_per_placement"])
            row[name] = dict(ordered[(len(ordered) - 1) // 2])  # the median run (the lower one of two)
            row[name]["rounds_cpu_us_per_placement"] = [r["cpu_us_per_placement"] for r in samples]
            row[name]["rounds_load_before"] = [r["load_before"] for r in samples]
        if args.bytecodes:
            for name, cls in (("baseline", baseline), ("current", factory)):
                if cls is not None:
                    row[name]["bytecodes"] = counted = bytecodes_run(ranks, args.queued, args.bytecodes, args, cls)
                    print(f"ranks={ranks} {name}: {counted['bytecodes_per_placement']:.0f} bytecodes per placement"
                          f" ({', '.join(f'{k} {v:.0f}' for k, v in list(counted['by_function'].items())[:6])})",
                          flush=True)
        rows.append({"ranks": ranks, **row})
    out = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "scheduler_scale"}
    command = "python benchmarks/scheduler_scale.py " + " ".join(sys.argv[1:])
    out["queued"] = {"command": command.strip(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "what": queued_run.__doc__.split("\n\n")[0].replace("\n    ", " "),
        "reference_loop_us": {"before": reference_before, "after": reference_loop_us()}, "rows": rows}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote the 'queued' entry of {args.out}")
    return 0


def combine(paths: list[Path], out_path: Path) -> int:
    """One result file from several runs (the first one's settings; rows by ranks then tasks; every
    command kept; the first profile; the ``queued`` entry of the last file that has one)."""
    parts = [json.loads(p.read_text()) for p in paths]
    sims = [p for p in parts if "results" in p]
    out = dict(sims[0] if sims else parts[0])
    out["command"] = " ; ".join(p["command"] for p in sims) + f" (separate runs, merged with --combine into {out_path.name})"
    out["runs"] = [{"command": p["command"], "date": p["date"], "reference_loop_us": p["reference_loop_us"]}
                   for p in sims]
    out["results"] = sorted((r for p in sims for r in p["results"]), key=lambda r: (r["ranks"], r["tasks"]))
    out["profile"] = next((p["profile"] for p in sims if p.get("profile")), None)
    for part in parts:
        if "queued" in part:
            out["queued"] = part["queued"]
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out["results"]))
    print(f"\nwrote {out_path}")
    return 0


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
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. a git worktree of an older commit) whose scheduler runs too")
    parser.add_argument("--baseline-max-tasks", type=int, default=100_000,
                        help="run the baseline only up to this many tasks (it may be slow)")
    parser.add_argument("--before", type=Path, default=None, help="an earlier result file to copy in for reference")
    parser.add_argument("--queued", type=int, default=None, metavar="TASKS",
                        help="instead of whole simulations: the cost per placement with TASKS queued first")
    parser.add_argument("--queued-placements", type=int, default=100_000,
                        help="placements measured in a --queued run")
    parser.add_argument("--bytecodes", type=int, default=0, metavar="PLACEMENTS",
                        help="--queued: also count the bytecodes per placement (by function) over PLACEMENTS")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--queued: interleaved (baseline, current) rounds per rank count; the median is reported")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="merge result files of runs made in parallel (e.g. one per rank count) into --out")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scheduler_scale.json")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.out)
    ranks_list = args.ranks or ([64, 512] if args.quick else [64, 512, 4096])
    tasks_list = args.tasks or ([2_000] if args.quick else [10_000, 100_000, 1_000_000])
    factory = load_scheduler(args.scheduler)
    baseline = load_baseline(args.baseline) if args.baseline else None
    reference_before = reference_loop_us()
    if args.queued:
        return queued_main(args, ranks_list, factory, baseline, reference_before)

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
            base = None
            if baseline is not None and tasks <= args.baseline_max_tasks:
                base = run_one(ranks, tasks, args, baseline)
                print(f"ranks={ranks} tasks={tasks} baseline: {base['cpu_us_per_placement']:.1f} us CPU/placement",
                      flush=True)
            row = run_one(ranks, tasks, args, factory)
            if base is not None:
                if base["makespan"] != row["makespan"]:
                    print(f"  note: the baseline's simulated makespan differs ({base['makespan']} vs {row['makespan']})")
                row["baseline"] = {k: base[k] for k in (
                    "cpu_us_per_placement", "cpu_us_per_placement_net", "wall_us_per_placement", "schedule_cpu_us_per_placement",
                    "release_cpu_us_per_placement", "makespan", "simulation_wall_s", "load_before", "load_after")}
                row["baseline"]["same_makespan"] = base["makespan"] == row["makespan"]
            rows.append(row)
            previous = row
            print(f"ranks={ranks} tasks={tasks}: {row['cpu_us_per_placement']:.1f} us CPU/placement"
                  f" ({row['wall_us_per_placement']:.1f} wall), makespan/bound {row['makespan_over_bound']:.3f},"
                  f" utilization {row['utilization']:.3f}, sim {row['simulation_wall_s']:.1f} s,"
                  f" load {row['load_before']:.1f}", flush=True)

    profile = profile_one(max(ranks_list), args.profile_tasks, args, factory) if args.profile else None
    command = "python benchmarks/scheduler_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = {
        "benchmark": "scheduler_scale",
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "scheduler": args.scheduler or "pilotq_mpi.core.scheduler:Scheduler",
        "baseline": str(args.baseline) if args.baseline else None,
        "inventory": f"{RANKS_PER_NODE} ranks per node, 1 GPU per rank",
        "workload": {"generator": "mixed_workload", "wide_fraction": args.wide_fraction,
                     "widths": [2, 4, 8, 16], "gpu_fraction": args.gpu_fraction, "median_duration": 1.0,
                     "sigma": args.sigma, "seed": args.seed, "submit": "all at t=0, queued before the first placement"},
        "prefetch": args.prefetch,
        "dispatch_latency": args.latency,
        "cost": ("per placed task: CPU (process_time) and wall (perf_counter) inside schedule() + release();"
                 " _net: less the measured cost of the process_time() calls themselves (timer_overhead_us per"
                 " schedule() or release() call)"),
        "reference_loop_us": {"before": reference_before, "after": reference_loop_us(),
                              "what": "best CPU time of a pure-Python loop summing 10,000 ints"},
        "results": rows,
        "profile": profile,
    }
    if args.before:
        before = json.loads(args.before.read_text())
        out["before"] = {"date": before.get("date"), "command": before.get("command"), "file": str(args.before),
                         "rows": [{k: r.get(k) for k in ("ranks", "tasks", "seconds_per_decision", "makespan",
                                                          "utilization", "simulation_wall_s")}
                                  for r in before.get("results", []) if "skipped" not in r]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n`{out['command']}`\n")
    print(table(rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
