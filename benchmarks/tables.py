"""Render the markdown tables of benchmarks/README.md from the JSON results.

    python benchmarks/tables.py            # print the tables
    python benchmarks/tables.py --update   # rewrite the part of README.md between the markers

Every figure in the README comes from a results/*.json file written by the benchmark
program named in its table's heading, so text and data cannot drift apart.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- tables:start -->", "<!-- tables:end -->"


def _load(name: str) -> dict | None:
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def throughput(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        p, t, f = r["pilot"], r["pilot+trace"], r["futures"]
        cpu = [k.get("submit_rank0_cpu_us_per_task") for k in (p, f)]
        loads = [v for k in (p, t, f) for pair in k.get("load", []) for v in pair]
        rows.append([r["ranks"], f"{r['tasks']:,}",
                     f"{p['submit_tasks_per_s']:,.0f}", f"{f['submit_tasks_per_s']:,.0f}",
                     f"{p['submit_tasks_per_s'] / f['submit_tasks_per_s']:.2f}",
                     " / ".join("-" if c is None else f"{c:.0f}" for c in cpu),
                     f"{p['map_tasks_per_s']:,.0f}", f"{f['map_tasks_per_s']:,.0f}",
                     f"{t['submit_tasks_per_s'] / p['submit_tasks_per_s'] - 1:+.0%}",
                     f"{p['startup_s']:.2f}", f"{f['startup_s']:.2f}",
                     f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"])
    commit = f" at commit {data['commit']}" if data.get("commit") else ""
    return (f"### Throughput: pilotq-mpi vs mpi4py.futures (no-op tasks, median of {data['repeats']}{commit})\n\n"
            f"`{data['command']}`\n\n" + _table(
                ["ranks", "tasks", "submit/s pilot", "submit/s futures", "pilot/futures",
                 "rank-0 CPU us/task pilot / futures",
                 f"map(chunksize={data['rows'][0]['chunksize']})/s pilot", "map/s futures",
                 "trace cost (submit/s)", "start-up s pilot", "start-up s futures", "load average"], rows))


def subcomm(data: dict) -> str:
    rows = [[r["ranks"], r["width"], "-" if r["create_group_us"] is None else f"{r['create_group_us']:.0f}",
             f"{r['task_round_trip_us']:.0f}"] for r in data["rows"]]
    return (f"### Sub-communicator latency (median)\n\n`{data['command']}`\n\n"
            + _table(["ranks", "task width", "Create_group + Free (us)", "one task round trip (us)"], rows))


def statevector(data: dict) -> str:
    rows = [[r["family"], r["qubits"], r["gates"], r["ranks"], f"{r['time_s']:.3f}", f"{r['per_gate_us']:.0f}",
             f"{r['aer_time_s']:.3f}", f"{r['ratio_to_aer']:.2f}", f"{r['parallel_efficiency']:.0%}", r["swaps"]]
            for r in data["rows"]]
    return (f"### Distributed state vector vs Aer (median of {data['meta']['repeats']})\n\n"
            f"`{data['meta']['command']}`\n\n" + _table(
                ["circuit", "qubits", "gates", "ranks", "time s", "us/gate", "Aer s (1 process)", "ours/Aer",
                 "parallel eff.", "swaps"], rows))


def cutting(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        seq = r["sequential"]
        rows.append([r["config"], r["qubits"], seq["num_subexperiments"], seq["shots"], "sequential", 1,
                     f"{seq['timings']['execute']:.1f}", "1.00", "-", "-"])
        for p in r["pilot"]:
            rows.append(["", "", "", "", "pilotq-mpi", p["workers"], f"{p['timings']['execute']:.1f}",
                         f"{p['speedup']:.2f}", f"{p['efficiency']:.0%}", f"{p['overhead_per_task_s'] * 1e3:.0f}"])
    return (f"### Circuit cutting: sequential vs pilot workers\n\n`{data['command']}`\n\n" + _table(
        ["config", "qubits", "subexperiments", "shots", "run", "workers", "execute s", "speedup", "efficiency",
         "overhead/task ms"], rows))


def scheduler_scale(data: dict) -> str:
    before = {(r["ranks"], r["tasks"]): r for r in data.get("before", {}).get("rows", [])}
    rows = []
    for r in data["results"]:
        if "skipped" in r:
            rows.append([r["ranks"], f"{r['tasks']:,}", f"skipped: {r['skipped']}", "", "", "", "", "", "", ""])
            continue
        base, old = r.get("baseline"), before.get((r["ranks"], r["tasks"]))
        cpu = r.get("cpu_us_per_placement", r["seconds_per_decision"] * 1e6)
        rows.append([r["ranks"], f"{r['tasks']:,}", f"{cpu:.0f}",
                     f"{base['cpu_us_per_placement']:.0f}" if base else "-",
                     f"{base['cpu_us_per_placement'] / cpu:.1f}x" if base else "-",
                     f"{old['seconds_per_decision'] * 1e6:.0f}" if old else "-",
                     f"{r['makespan_over_bound']:.3f}", f"{r['utilization']:.1%}", f"{r['wait_p95']:.1f}",
                     f"{r['load_before']:.0f}" if "load_before" in r else "-"])
    text = (f"### Scheduler at scale (discrete-event simulation, {data['scheduler']})\n\n`{data['command']}`\n\n"
            + _table(["ranks", "tasks", "CPU us per placement", "baseline CPU us (same run)", "speed-up",
                      "before: wall us (committed run)", "makespan / lower bound", "utilization",
                      "wait p95 (simulated s)", "load avg."], rows))
    queued = data.get("queued")
    if queued:
        qrows = []
        for r in queued["rows"]:
            cur, base = r["current"], r.get("baseline")
            qrows.append([r["ranks"], f"{cur['queued_at_start']:,}", f"{cur['measured_placements']:,}",
                          f"{cur['cpu_us_per_placement']:.1f}",
                          f"{base['cpu_us_per_placement']:.1f}" if base else "-",
                          f"{base['cpu_us_per_placement'] / cur['cpu_us_per_placement']:.1f}x" if base else "-",
                          f"{cur['load_before']:.0f}"])
        ref = queued["reference_loop_us"]
        text += (f"\n\nAll tasks queued before the first placement, then each simulated completion released and"
                 f" `schedule()` called, CPU time around those calls only, over the placements measured"
                 f" (not run to the end of the bag; `{queued['command']}`). Reference loop"
                 f" {ref['before']:.0f}-{ref['after']:.0f} us (a fixed pure-Python loop: how fast Python ran then)."
                 f"\n\n"
                 + _table(["ranks", "queued", "placements measured", "CPU us per placement", "baseline CPU us",
                           "speed-up", "load avg."], qrows))
    return text


def mixed(data: dict) -> str:
    rows = []
    runners = (("pilot", "pilotq-mpi"), ("pilot-old", "pilotq-mpi, old prefetch (horizon inf)"),
               ("futures", "mpi4py.futures"))
    for r in data["rows"]:
        for i, (key, label) in enumerate(runners):
            f = r[key]
            first = i == 0
            rows.append([r["workload"] if first else "", f"{r['tasks']:,}" if first else "",
                         (f"{r['wide_tasks']} / {r['stragglers']}") if first else "",
                         f"{r['lower_bound_s']:.2f}" if first else "", label, f"{f['makespan_s']:.2f}",
                         f"{f['over_bound']:+.0%}", f"{f['latency_p50_s'] * 1e3:.0f}",
                         f"{f['latency_max_s'] * 1e3:.0f}"])
    out = (f"### Heavy-tailed and mixed-width workloads: makespan vs lower bound ({data['workers']} workers,"
           f" median of {data['repeats']})\n\n`{data['command']}`\n\n" + _table(
               ["workload", "tasks", "wide / stragglers", "lower bound s", "runner", "makespan s", "over bound",
                "short-task latency p50 ms", "max ms"], rows))
    scan = data.get("horizon_scan")
    if scan:
        srows = [[f"{a['duration_s'] * 1e3:g}", f"{a['tasks_per_s']:,.0f}", f"{b['tasks_per_s']:,.0f}",
                  f"{a['tasks_per_s'] / b['tasks_per_s'] - 1:+.0%}"]
                 for a, b in zip(scan["prefetch"]["rows"], scan["no_prefetch"]["rows"])]
        out += ("\n\nWhat prefetch buys for fixed-duration tasks (sets the default"
                f" `PILOTQ_PREFETCH_HORIZON` = {data['default_prefetch_horizon_s']:g} s):\n\n"
                + _table(["task ms", "tasks/s with prefetch", "tasks/s without", "gain"], srows))
    return out


def planner(data: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    sc, meta = data["scores"], data["meta"]
    p, q = sc["planner"], sc["qdreamer"]
    test = "+".join(sc["test_families"])
    rows = []
    for name, circuits, picks, cut in (
            ("planner, all families", p["all"], p["all"], p["cutting_only"]),
            (f"planner, held-out families ({test})", p["held_out_families"], p["held_out_families"],
             p["cutting_only_held_out"]),
            (f"Q-Dreamer, fit on {'+'.join(sc['train_families'])}, scored on {test}", q["held_out_families"],
             q["held_out_families"], q["cutting_only_held_out"]),
            ("Q-Dreamer, fit and scored on all families (in sample)", q["in_sample_all"], q["in_sample_all"],
             q["cutting_only_in_sample"])):
        rows.append([name, circuits["circuits"], f"{pct(picks['fraction_within_tol'])} ({picks['within_tol']})",
                     picks["unmeasured_picks"], pct(picks["regret_p50"]), pct(picks["regret_p95"]),
                     pct(picks["regret_max"]),
                     f"{cut['within_tol']}/{cut['circuits']} ({cut['within_tol_with_choice']}/"
                     f"{cut['circuits_with_choice']} with >= 2 sizes run)"])
    def ratio(v):
        r = v.get("median_measured_over_predicted")
        return "-" if r is None else f"{r:.2f}"

    mrows = [[label, v["n"], pct(v["mape"]), pct(v["p90_ape"]), ratio(v)] for label, v in p["mape_by_label"].items()]
    qm = q["mape_held_out"].get("cutting")
    if qm:
        mrows.append([f"cutting, Q-Dreamer ({test})", qm["n"], pct(qm["mape"]), pct(qm["p90_ape"]), ratio(qm)])
    out = (f"### Planner: pick vs measured best ({len(data['items'])} circuits, {meta['workers']} workers,"
           f" {meta['shots']} shots per subexperiment, median of up to {max(meta['repeats'], meta.get('short_repeats', 0))}"
           + (f", up to {meta['repeats']} for strategies over {meta['short_s']:g} s" if meta.get('short_s') else "")
           + f")\n\n`{meta['command']}`\n\n"
           + _table(["scorer", "circuits", f"pick within {sc['tolerance']:.0%} of best", "pick not measured",
                     "regret p50", "p95", "max", "among cutting sizes only: pick within 10%"], rows)
           + "\n\nPrediction error of the planner's times (median and 90th percentile absolute % error;"
             " measured/predicted above 1: the model is optimistic):\n\n"
           + _table(["strategy", "runs", "MAPE", "p90", "median measured/predicted"], mrows))
    for key in sorted(k for k in data if k.startswith("rescored_model_v")):
        out += "\n\n" + planner_rescored(data, data[key])
    return out


def planner_rescored(data: dict, entry: dict) -> str:
    """The same measurements scored with a later planner model, beside the original (as-measured) scores."""
    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    def ratio(v):
        r = v.get("median_measured_over_predicted") if v else None
        return "-" if r is None else f"{r:.2f}"

    old, new, nol = data["scores"]["planner"], entry["scores"]["planner"], entry["scores_without_load"]["planner"]
    test = "+".join(entry["scores"]["test_families"])
    v = entry["model_version"]
    rows = []
    for scope, key in (("all families", "all"), (f"held-out families ({test})", "held_out_families")):
        for name, sc in (("v1, as measured (original)", old), (f"v{v}, rescored", new),
                         (f"v{v} without the load term (external load 0)", nol)):
            s = sc[key]
            rows.append([f"{scope}: {name}", s["circuits"], f"{pct(s['fraction_within_tol'])} ({s['within_tol']})",
                         pct(s["regret_p50"]), pct(s["regret_p95"]), pct(s["regret_max"])])
    mrows = []
    for label, o in old["mape_by_label"].items():
        n = new["mape_by_label"].get(label, {})
        mrows.append([label, o["n"], pct(o["mape"]), pct(n.get("mape")), ratio(o), ratio(n)])
    loads = ", ".join(f"{b['external_load']:.1f} ({'/'.join(sorted({c.split('-')[0] for c in b['circuits']}))})"
                      for b in entry["batch_loads"].values())
    return (f"#### Rescored with planner model v{v} (no new measurements; a model changed after them)\n\n"
            f"`{entry['command']}` ({entry['date']}). The same measured times, scored against plans made by model"
            f" v{v}, which was changed after these measurements were taken and after their misses were seen: the"
            " CPU share of k busy ranks is cores*k/(k+L) (fair-share scheduling), at most k and cores, with L the"
            " external load each batch recorded, and the convert term comes from gate counts. No constant was"
            " fitted to these times (same calibrated profile, same hold-out split), but a model revised on the"
            " same data is not an independent test; a new measured run is. External load L per batch:"
            f" {loads}.\n\n"
            + _table(["scorer", "circuits", f"pick within {entry['scores']['tolerance']:.0%} of best", "regret p50",
                      "p95", "max"], rows)
            + "\n\n" + _table(["strategy", "runs", "MAPE v1", f"MAPE v{v}", "measured/predicted v1",
                                 f"measured/predicted v{v}"], mrows))


def elastic(data: dict) -> str:
    j = data["join"]
    rows = [["join: launch to the first task on a joined rank", f"{j['launch_to_first_task_s']:.2f} s"],
            ["of which launch to joined (MPI start-up of the joiner, handshake, Accept)",
             f"{j['launch_to_joined_s']:.2f} s"],
            ["of which joined to its first task", f"{j['joined_to_first_task_s'] * 1e3:.0f} ms"],
            ["the master's loop inside Accept, per join", f"{j['master_in_accept_ms']:.0f} ms"],
            ["a drained allocation's running task: signal to its start elsewhere (grace 0)",
             f"{data['resume']['resume_s'] * 1e3:.0f} ms"]]
    rows += [[f"throughput, {mode} (20 ms tasks)", f"{v['tasks_per_s']:,.0f} tasks/s"]
             for mode, v in data["throughput"].items()]
    rows += [[f"no-op tasks, 3 workers, {mode}", f"{v['tasks_per_s']:,.0f} tasks/s"]
             for mode, v in data["polling"].items()]
    return (f"### Elastic pilots: joining, two allocations, leaving (median of {data['repeats']})\n\n"
            f"`{data['command']}`\n\n" + _table(["measure", "value"], rows))


def master_cost(data: dict) -> str:
    parts = ("messages", "pickle", "scheduler", "bookkeeping", "observers", "loop")
    out = []
    for label, mode in data.get("modes", {}).items():
        rows = []
        for r in mode["rows"]:
            grouped = r.get("grouped_us", {})
            driver = r.get("driver_submit_cpu_per_task_us")
            per = f"{r['loop_cpu_per_task_us']:.0f}" + (f" ({r['loop_cpu_per_item_us']:.1f}/item)"
                                                       if "loop_cpu_per_item_us" in r else "")
            busy = r.get("busy_cpu_per_task_us")
            if "submaster_busy_cpu_per_task_us" in r:
                busy = f"{busy:.0f} (sub-masters {r['submaster_busy_cpu_per_task_us']:.0f})"
            elif busy is not None:
                busy = f"{busy:.0f}"
            rows.append([r["ranks"], r["workload"], per, busy or "-", "-" if driver is None else f"{driver:.0f}",
                         *(f"{max(0.0, grouped.get(p, 0.0)):.0f}" if grouped else "-" for p in parts),
                         f"{r['wall_tasks_per_s']:,.0f}"])
        load = mode.get("load_before") or [0]
        out.append(f"#### {label} (commit {mode.get('commit')}, {mode['tasks']:,} tasks, median of"
                   f" {mode['rows'][0]['repeats']}, load average {load[0]:.1f} before)\n\n`{mode['command']}`\n\n"
                   + _table(["ranks", "workload", "master CPU us/task", "busy us/task", "driver submit us/task",
                             *(f"{p} us" for p in parts), "tasks/s (wall, shared cores)"], rows))
    groups = data.get("journal_group_commit")
    if groups:
        grouped = groups["grouped_us_per_task"]
        out.append(f"#### Journal group commit: the observer's CPU per task by records per commit\n\n"
                   f"`{groups['command']}` (best of {groups['repeats']})\n\n" + _table(
                       ["one transaction per task (before)", *(f"{k} per pass" for k in grouped)],
                       [[f"{groups['one_transaction_per_task_us']:.0f} us",
                         *(f"{v:.0f} us" for v in grouped.values())]]))
    return ("### The master's CPU per task (rank 0's master thread, no-op tasks; a map task is a chunk of"
            f" {data.get('chunksize', 64)})\n\nTotal: the master thread's CPU per task; busy: without idle passes"
            " (polling while the slow, shared-core workers run). Parts: each part's share of the metered runs"
            " (exclusive thread CPU time) scaled to the busy total.\n\n" + "\n\n".join(out))


def scale_model(data: dict) -> str:
    single = data["single"]
    ranks = sorted({r["ranks"] for r in single})
    rows = []
    for duration in sorted({r["duration_s"] for r in single}):
        for observers in ("none", "journal+trace"):
            cells = {r["ranks"]: r for r in single if r["duration_s"] == duration and r["observers"] == observers}
            if cells:
                rows.append([f"{duration:g}", observers] + [
                    f"{cells[n]['steady']:.0%} ({cells[n]['utilization']:.0%})" if n in cells else "-" for n in ranks])
    models = data["models"]
    fixed = models["single, observers none"]["fixed_us"]
    hier = models.get("hierarchical, observers none", {})
    def hand_out(r: dict) -> str:
        if r.get("rule") == "runtime":
            return (f"the runtime's: prefetch {r['prefetch']} behind work under {r['horizon_s']:g} s (none here),"
                    f" hold {r['group_hold_s']:g} s")
        prefetch = r.get("prefetch", data.get("prefetch", 1))
        return f"simple: prefetch {prefetch} behind anything" if prefetch else "simple: no prefetch"

    hrows = [[r["ranks"], r["groups"], r["group_size"], hand_out(r),
              f"{r['steady']:.0%}", f"{r['utilization']:.0%}",
              f"{r['masters'][0]['busy_fraction']:.0%}", f"{r['masters'][1]['busy_fraction']:.0%}"]
             for r in data["hierarchical"]]
    est = " (ESTIMATES, not yet measured)" if hier.get("estimate") else ""
    return (f"### Predicted utilization at scale (simulator with the measured master costs, {data['rounds']} tasks"
            f" per worker rank)\n\n`{data['command']}`\n\nSingle master: {fixed:.0f} us of fixed CPU per task"
            " (measured at 4 ranks, the driver's submit included) plus the real scheduler's CPU at each size."
            " Cells: worker-rank utilization in the steady part of the run (from the last worker's first task"
            " to the last placement), and over the whole run (ramp-up and tail included) in brackets."
            f" Target: >= {data['target']:.0%}.\n\n"
            + _table(["task s", "observers", *(f"{n:,} ranks" for n in ranks)], rows)
            + f"\n\nHierarchical masters, 1 s tasks: top master {hier.get('top_us', {}).get('total', 0):.0f} us/task,"
              f" sub-masters {hier.get('sub_us', {}).get('total_without_scheduler', 0):.0f} us/task + scheduler{est}."
              " Hand-out: *simple* keeps `workers x (1 + prefetch)` tasks in each group, queued on the workers"
              " (as if 1 s tasks were prefetched); *the runtime's* is `GroupQueue` at the runtime's defaults:"
              " 1 s tasks are longer than the prefetch horizon, so none waits on a worker, and a full group holds"
              " up to `slots x hold / 1 s` more in its sub-master's queue (`PILOTQ_GROUP_HOLD`)."
              "\n\n" + _table(["ranks", "sub-masters", "workers per group", "hand-out", "utilization (steady)",
                                   "whole run", "top master busy", "busiest sub-master"], hrows)
            + _top_sweep(data))


def _top_sweep(data: dict) -> str:
    rows = [[r["ranks"], r["groups"], r["group_size"], f"{r['top_us']:g}", f"{r['steady']:.0%}",
             f"{r['utilization']:.0%}", f"{r['masters'][0]['busy_fraction']:.0%}",
             f"{r['masters'][1]['busy_fraction']:.0%}"] for r in data.get("top_cost_sweep", [])]
    if not rows:
        return ""
    return ("\n\nWhat the top master may cost (1 s tasks; the sub-masters' cost as measured):\n\n"
            + _table(["ranks", "sub-masters", "workers per group", "top master us/task", "utilization (steady)",
                      "whole run", "top master busy", "busiest sub-master"], rows))


def peers(data: dict) -> str:
    from peers import markdown  # benchmarks/peers.py: its ratio logic is unit-tested there

    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v)
    loads = [r["load_before"] for runs in data["runs"].values() for r in runs if "load_before" in r]
    return (f"### Peers side by side: same workloads, one run ({data['date']}; pilotq-mpi and mpi4py.futures median of"
            f" {data['repeats']['mpi peers']}, others {data['repeats']['others']} run)\n\n`{data['command']}`\n\n"
            f"Each cell: value (times the best of its row; best = 1.00). Load average during the runs"
            f" {min(loads):.1f}-{max(loads):.1f} on {data['machine']['cpus']} cores. {versions}.\n\n"
            + markdown(data))


def costs(data: dict) -> str:
    idle = data["idle"]
    rows = []
    for role in ("worker", "master (rank 0)", "hydra proxy", "mpiexec"):
        procs = [p for p in idle["processes"] if p["role"] == role]
        if procs:
            cpu = sorted(p["cpu_percent"] for p in procs)
            rows.append([role, len(procs), f"{cpu[len(cpu) // 2]:.1f}% (max {cpu[-1]:.1f}%)",
                         f"{sorted(p['pss_mib'] for p in procs)[len(procs) // 2]:.1f}"])
    total = sum(p["pss_mib"] for p in idle["processes"])
    start = "; ".join(f"{s['ranks']} ranks {s['median_s']:.2f} s ({s['min_s']:.2f}-{s['max_s']:.2f}, {s['runs']} runs;"
                      f" plain mpiexec + mpi4py + a barrier {s['mpi_baseline_median_s']:.2f} s)" for s in data["startup"])
    return (f"### Costs users feel: idle CPU, memory per rank, start-up ({data['date']})\n\n`{data['command']}`\n\n"
            f"Idle {data['idle_s']:g} s at {data['idle_ranks']} ranks after 200 tasks, load average"
            f" {idle['load_before']:.1f}; PSS of all processes {total:.0f} MiB. A worker has {idle['worker_modules']}"
            f" modules loaded; heavy packages among them: {', '.join(idle['worker_heavy_modules']) or 'none'}.\n"
            f"Start-up to the first result: {start}.\n\n"
            + _table(["process", "count", "idle CPU (median)", "PSS MiB (median)"], rows))


def statevector_gpu(data: dict) -> str:
    facts = data["facts"]
    tests = "; ".join(f"{t['name']}: {t['summary']}" for t in data.get("tests", []))
    rows = [[r["backend"] + ("" if r["backend"] == "numpy" else f" ({r['engine']})"),
             "GPU" if r["backend"] == "cupy" else f"{r['threads']} cores", r["qubits"], r["dtype"],
             f"{r['state_gib']:g}", f"{r['run_s']:.3f}", f"{r['s_per_layer']:.3f}", f"{r['gates_per_s']:,.0f}",
             f"{r['amp_gate_s']:.2e}"] for r in data["benchmark"]]
    return (f"### State vector on a GPU ({facts['gpu']}, CuPy {facts['cupy']}, one process; numpy on the same"
            f" machine's {facts['cpu_count']} cores)\n\n`python benchmarks/gpu_check.py` (on a lent GPU machine)."
            f" Tests there: {tests}.\n\n"
            + _table(["backend", "on", "qubits", "dtype", "state GiB", "s/run (2 layers)", "s/layer", "gates/s",
                      "s per amplitude x fused gate"], rows))


RENDERERS = {"throughput": throughput, "subcomm": subcomm, "statevector": statevector, "cutting": cutting,
             "scheduler_scale": scheduler_scale, "mixed": mixed, "planner": planner,
             "elastic": elastic, "master_cost": master_cost, "scale_model": scale_model,
             "peers": peers, "costs": costs, "statevector_gpu": statevector_gpu}


def render_all() -> str:
    parts = []
    for name, render in RENDERERS.items():
        data = _load(name)
        if data is not None:
            parts.append(render(data))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite the tables in benchmarks/README.md")
    args = parser.parse_args()
    tables = render_all()
    if not args.update:
        print(tables)
        return
    readme = HERE / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{tables}\n{END}{tail}")
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
