"""pilotq-mpi side by side with every peer that installs here, same workloads, one run.

    python benchmarks/peers.py            # 4 and 8 processes, every peer (at most --budget 900 s + one run)
    python benchmarks/peers.py --quick    # 4 processes, smaller workloads, one run each (~2 min)
    python benchmarks/peers.py --peers pilotq-mpi mpi4py.futures --procs 4
    python benchmarks/peers.py --peers parsl --procs 8 --add-to results/peers.json   # fill in runs left out
    python benchmarks/peers.py --peers pilotq-mpi mpi4py.futures --workloads one_by_one \
        --pilot-startup-procs --add-to results/peers.json   # re-measure some rows, keep the others

Peers (``pip install -e '.[peers]'``; one that is not installed is reported as such):
pilotq-mpi (``mpiexec -n P python -m pilotq_mpi``), mpi4py.futures (``mpiexec -n P python -m
mpi4py.futures``), executorlib (SingleNodeExecutor; per-task ``resource_dict`` cores for mixed
widths), Parsl (HighThroughputExecutor, LocalProvider; MPI apps for mixed widths), Dask
(LocalCluster, one thread per worker process) and Ray (``ray.init(num_cpus=workers)``).
P processes = 1 client/master + P-1 workers for every peer.

Workloads, each peer in one fresh process tree per repeat (``peers_drivers.py``):

* ``startup``: from starting the process (``mpiexec`` / ``python``) to the first no-op result;
  pilotq-mpi also at 32 ranks;
* ``memory``: PSS (``/proc/<pid>/smaps_rollup``) of every process of the run, idle after start-up;
* ``one_by_one``: N no-op tasks submitted one by one, then wait for all (N = 1,000 and 10,000);
* ``bulk``: 64,000 no-op items in chunks of 64 (``map(chunksize=64)`` where the peer has one,
  else one task per chunk);
* ``cutting``: 1,000 cutting subexperiments (a 12-qubit EfficientSU2 cut into 3 parts,
  transpiled once here) each sampled with 100 shots by Aer on one thread, one task each;
* ``mixed``: tasks of width 1, 2 and 4 (only widths that fit the workers) that sleep and then
  allreduce over the task's ranks (peers without multi-rank tasks say so).

Every run has a hard timeout (``--timeout``; the mixed workload its own ``--mixed-limit``); a peer
that hangs is reported "timed out" with what it finished, and its whole process tree (session)
is killed afterwards, daemons included. Runs not started within ``--budget`` seconds (default
900) are reported as not run: the MPI peers' repeats run first, then the others. Ratios in the
table are against the best peer of each row (1.00 = best). Results: ``results/peers.json``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from bytecode import compile_package  # noqa: E402

PEERS = ("pilotq-mpi", "mpi4py.futures", "executorlib", "parsl", "dask", "ray")
MPI_PEERS = {"pilotq-mpi": "pilotq_mpi", "mpi4py.futures": "mpi4py.futures"}
DISTRIBUTIONS = {"pilotq-mpi": "pilotq-mpi", "mpi4py.futures": "mpi4py", "executorlib": "executorlib",
                 "parsl": "parsl", "dask": "distributed", "ray": "ray"}
IMPORTS = {"executorlib": "executorlib", "parsl": "parsl", "dask": "distributed", "ray": "ray"}
WORKLOADS = ("startup", "memory", "one_by_one", "bulk", "cutting", "mixed")
#: (width, seconds, count) of the mixed workload; widths wider than the workers are left out
MIXED = ((4, 0.1, 10), (2, 0.1, 20), (1, 0.01, 100))


# --------------------------------------------------------------------------- pure logic (unit-tested)
def mixed_tasks(workers: int, spec=MIXED) -> list[tuple[int, float]]:
    """The mixed workload's ``(width, seconds)`` tasks that fit ``workers`` worker ranks."""
    return [(w, s) for w, s, count in spec for _ in range(count) if w <= workers]


def mixed_lower_bound(tasks: list[tuple[int, float]], workers: int) -> float:
    """No schedule beats max(work / workers, longest task, total time of the tasks wider than half the workers).

    Two tasks wider than ``workers / 2`` can never run at the same time, so their durations add up.
    """
    work = sum(w * s for w, s in tasks) / workers
    serial = sum(s for w, s in tasks if 2 * w > workers)
    return max(work, serial, max(s for _, s in tasks))


def ratios(values: dict[str, float | None], higher_is_better: bool) -> dict[str, float]:
    """How many times worse than the best each peer is (best = 1.0); peers without a value are left out."""
    have = {k: v for k, v in values.items() if v is not None and v > 0}
    if not have:
        return {}
    best = max(have.values()) if higher_is_better else min(have.values())
    return {k: (best / v if higher_is_better else v / best) for k, v in have.items()}


def verdict(ratio: float | None, tolerance: float = 0.10) -> str:
    """'best', 'within 10%' or 'N.NNx the best' for pilotq-mpi's ratio (or 'no result')."""
    if ratio is None:
        return "no result"
    if ratio <= 1.0 + 1e-9:
        return "best"
    if ratio <= 1.0 + tolerance:
        return f"within {tolerance:.0%}"
    return f"{ratio:.2f}x the best"


#: row kind -> (label, result key, unit, higher is better)
METRICS = {
    "startup": ("start-up to first result", "seconds", "s", False),
    "memory": ("PSS idle, all processes", "total_mib", "MiB", False),
    "one_by_one": ("no-op one by one", "per_s", "/s", True),
    "one_by_one_cpu": ("CPU per no-op task, all processes", "cpu_us", "us", False),
    "bulk": ("no-op bulk (chunks of 64)", "per_s", "/s", True),
    "cutting": ("cutting subexperiments (Aer, 100 shots)", "per_s", "/s", True),
    "mixed": ("mixed widths (makespan)", "seconds", "s", False),
}


def summarize(runs: list[dict]) -> dict:
    """Median of each workload's figure over the repeats of one (peer, procs); status of what is missing.

    ``runs``: the per-repeat outputs of :func:`launch` (``results`` list and ``status``).
    Returns ``{row key: {"value": float|None, "note": str, "n": repeats with a value, ...}}`` where
    the row key is the workload, with ``:N`` for one-by-one rows.
    """
    found: dict[str, list[dict]] = {}
    for run in runs:
        for r in run["results"]:
            key = r["workload"] + (f":{r['n']}" if r["workload"] == "one_by_one" else "")
            found.setdefault(key, []).append(r)
            if r["workload"] == "one_by_one":  # the same runs, measured as CPU time
                found.setdefault(f"one_by_one_cpu:{r['n']}", []).append(r)
    out = {}
    for key, results in found.items():
        field = METRICS[key.split(":")[0]][1]
        unsupported = [r.get("unsupported") or r["note"] for r in results if "unsupported" in r or "note" in r]
        bad = [r for r in results if r.get("ok") is False]
        values = [r[field] for r in results if field in r and r.get("ok") is not False]
        entry = {"value": statistics.median(values) if values else None, "n": len(values),
                 "note": unsupported[0] if unsupported else ("wrong results" if bad and not values else "")}
        if values and len(values) > 1:
            entry["min"], entry["max"] = min(values), max(values)
        for extra in ("method", "count", "max_mib", "processes"):
            if extra in results[-1]:
                entry[extra] = results[-1][extra]
        out[key] = entry
    statuses = [run["status"] for run in runs if run["status"] != "ok"]
    if statuses:
        out["_status"] = statuses[0]
    return out


def expected_rows(workloads, tasks) -> list[str]:
    """Row keys a peer should fill, in table order."""
    rows = []
    for kind in WORKLOADS:
        if kind in workloads:
            rows += ([f"one_by_one:{n}" for n in tasks] + [f"one_by_one_cpu:{n}" for n in tasks]
                     if kind == "one_by_one" else [kind])
    return rows


def table_rows(data: dict) -> list[dict]:
    """One row per (workload, procs): every peer's value or reason, ratios to the best, pilotq-mpi's verdict."""
    rows = []
    for block in data["blocks"]:
        procs = block["procs"]
        for key in block["rows"]:
            kind = key.split(":")[0]
            label, _, unit, higher = METRICS[kind]
            if kind in ("one_by_one", "one_by_one_cpu"):
                label = f"{label}, N={int(key.split(':')[1]):,}"
            cells, values = {}, {}
            for peer in block["peers"]:
                summary = data["summaries"].get(f"{peer}@{procs}")
                if summary is None:
                    continue
                entry = summary.get(key)
                if entry is not None and entry["value"] is not None:
                    values[peer] = entry["value"]
                    cells[peer] = entry
                else:
                    reason = (entry or {}).get("note") or summary.get("_status") or "no result"
                    cells[peer] = {"value": None, "note": reason}
            r = ratios(values, higher)
            row = {"key": key, "procs": procs, "label": label, "unit": unit, "higher_is_better": higher,
                   "cells": cells, "ratios": r, "best": min(r, key=r.get) if r else None,
                   "pilotq_verdict": verdict(r.get("pilotq-mpi"))}
            if kind.startswith("one_by_one") and "pilotq-mpi" in values and "mpi4py.futures" in values:
                a, b = values["pilotq-mpi"], values["mpi4py.futures"]  # > 1: pilotq-mpi faster / cheaper
                row["pilotq_over_futures"] = a / b if higher else b / a
            if kind == "mixed" and block.get("mixed_lower_bound"):
                row["lower_bound_s"] = block["mixed_lower_bound"]
            rows.append(row)
    return rows


def _fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:.2f} s"


def markdown(data: dict) -> str:
    """The README table of a peers.json: one line per workload and process count, footnotes for gaps."""
    peers = data["peers"]
    notes: list[str] = []
    lines = []
    for row in table_rows(data):
        cells = []
        for peer in peers:
            cell = row["cells"].get(peer)
            if cell is None:
                cells.append("not run")
            elif cell["value"] is None:
                text = cell["note"]
                if text not in notes:
                    notes.append(text)
                cells.append(f"- ({notes.index(text) + 1})")
            else:
                extra = f", {cell['count']} procs" if "count" in cell else ""
                cells.append(f"{_fmt(cell['value'], row['unit'])} ({row['ratios'][peer]:.2f}{extra})")
        versus = f"{row['pilotq_over_futures']:.2f}" if "pilotq_over_futures" in row else ""
        label = row["label"] + (f" (bound {row['lower_bound_s']:.2f} s)" if "lower_bound_s" in row else "")
        lines.append([label, row["procs"], *cells, row["pilotq_verdict"], versus])
    header = ["workload", "procs", *peers, "pilotq-mpi vs the best",
              "pilotq-mpi vs mpi4py.futures (> 1: better)"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    text = "\n".join(out)
    if notes:
        text += "\n\n" + "\n".join(f"({i}) {n}" for i, n in enumerate(notes, 1))
    return text


def merge_rows(earlier: dict, runs: dict[str, list[dict]], summaries: dict[str, dict], update: dict) -> dict:
    """Put a run of some workloads into an earlier peers.json, row by row (``--add-to`` with ``--workloads``).

    For each ``peer@procs`` in ``runs``, the rows of the workloads in ``update["rows"]`` replace
    those rows of the earlier summary (every run also measures start-up: that row stays unless
    asked for); the earlier summary's other rows (and the other peers) stay. The new runs are
    appended after the earlier ones of that key, and ``update`` (command, date, commit, rows) is
    listed under ``row_updates`` so the file says which cells came from which run.
    """
    for key, new in summaries.items():
        if key not in runs:
            continue
        old = {k: v for k, v in earlier["summaries"].get(key, {}).items() if k != "_status"}
        measured = {k: v for k, v in new.items()
                    if k == "_status" or k.split(":")[0].removesuffix("_cpu") in update["rows"]}
        earlier["summaries"][key] = {**old, **measured}
        earlier["runs"][key] = earlier["runs"].get(key, []) + [dict(run, row_update=True) for run in runs[key]]
    earlier.setdefault("row_updates", []).append({**update, "keys": sorted(runs)})
    earlier["command"] = earlier.get("command", "") + (f"; then {update['command']} (rows {', '.join(update.get('rows', []))} of"
                           f" {', '.join(sorted(runs))}, at {update.get('commit', '?')}, {update.get('date', '?')})")
    return earlier


# --------------------------------------------------------------------------- running peers
def installed(peer: str) -> str | None:
    """None if the peer can be imported here, else why not."""
    module = IMPORTS.get(peer)
    if module is None:
        return None
    try:
        importlib.metadata.version(DISTRIBUTIONS[peer])
    except importlib.metadata.PackageNotFoundError:
        return "not installed (pip install -e '.[peers]')"
    return None


def commit() -> str:
    """The commit measured, with '+changes' when pilotq_mpi/ or benchmarks/peers*.py differ from it."""
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=HERE, capture_output=True, text=True).stdout.strip()

    changed = [word for word in git("status", "--porcelain", "--", "../pilotq_mpi", ".").split() if word.endswith(".py")]
    return (git("rev-parse", "--short", "HEAD") or "unknown") + ("+changes" if changed else "")


def versions() -> dict:
    """Installed versions of the peers (and of MPICH)."""
    out = {}
    for name in sorted(set(DISTRIBUTIONS.values()) | {"mpich", "dask", "qiskit-aer"}):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def prepare_cutting(count: int, seed: int = 0) -> Path:
    """Cut a 12-qubit EfficientSU2 into 3 parts, transpile ``count`` subexperiments for Aer, write them (QPY, hex).

    The file is kept in ``~/.cache/pilotq-mpi/`` (planning 3,888 subexperiments takes ~10 s of CPU) and
    reused while qiskit's and Aer's versions are the same.
    """
    tag = f"{importlib.metadata.version('qiskit')}-{importlib.metadata.version('qiskit-aer')}"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pilotq-mpi"
    path = cache / f"peers-cutting-{count}-{seed}-{tag}.json"
    if path.exists():
        return path
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    from pilotq_mpi.workflows.cutting import efficient_su2_problem, plan_cutting, to_qpy

    circuit, observable = efficient_su2_problem(12, seed=seed)
    plan = plan_cutting(circuit, observable, partition_labels="A" * 4 + "B" * 4 + "C" * 4)
    subs = [c for group in plan.subexperiments.values() for c in group][:count]
    isa = transpile(subs, AerSimulator(), optimization_level=1, seed_transpiler=seed)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([to_qpy([c]).hex() for c in isa]))
    print(f"cutting: {len(isa)} subexperiments transpiled into {path}", flush=True)
    return path


def launch(peer: str, procs: int, cfg: dict, timeout: float, workdir: Path) -> dict:
    """One run of one peer in a new session, with a hard timeout; its whole process tree is killed after."""
    import peers_procs

    driver = str(HERE / "peers_drivers.py")
    if peer in MPI_PEERS:
        argv = [str(BIN / "mpiexec"), "-n", str(procs), sys.executable, "-m", MPI_PEERS[peer], driver]
    else:
        argv = [sys.executable, driver]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off", PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    load_before = os.getloadavg()[0]
    launched = time.time()
    proc = subprocess.Popen(argv + [json.dumps({**cfg, "peer": peer, "procs": procs, "launched_at": launched,
                                               "orchestrator_pid": os.getpid()})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=workdir, start_new_session=True)
    status = "ok"
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            last = [line for line in stderr.splitlines() if line.strip()][-1:] or [""]
            status = f"failed (exit {proc.returncode}): {last[0].strip()[:160]}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
        peers_procs.kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
    results = [json.loads(line[6:]) for line in stdout.splitlines() if line.startswith("PEERS ")]
    known = [tuple(p) for r in results for p in r.pop("tree", [])]
    leftover = peers_procs.kill_tree(proc.pid, known)
    out = {"peer": peer, "procs": procs, "status": status, "results": results, "wall_s": time.time() - launched,
           "load_before": load_before, "load_after": os.getloadavg()[0], "killed_after": leftover}
    if status != "ok":
        out["stderr_tail"] = stderr[-1500:]
    return out


def plan_blocks(args) -> list[dict]:
    """What to run: one block per process count (which peers, which rows)."""
    blocks = [{"procs": p, "peers": list(args.peers), "rows": expected_rows(args.workloads, args.tasks)}
              for p in args.procs]
    for p in args.pilot_startup_procs:  # start-up only, pilotq-mpi only (e.g. 32 ranks)
        blocks.append({"procs": p, "peers": ["pilotq-mpi"], "rows": ["startup"], "only": ["startup"]})
    for block in blocks:
        if "mixed" in block["rows"]:
            block["mixed_lower_bound"] = mixed_lower_bound(mixed_tasks(block["procs"] - 1), block["procs"] - 1)
            block["mixed_tasks"] = len(mixed_tasks(block["procs"] - 1))
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--procs", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--pilot-startup-procs", type=int, nargs="*", default=[32],
                        help="process counts at which only pilotq-mpi's start-up is measured")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000], help="one-by-one task counts")
    parser.add_argument("--bulk", type=int, default=64000)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--cutting-tasks", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="runs of pilotq-mpi and mpi4py.futures (median)")
    parser.add_argument("--slow-repeats", type=int, default=1, help="runs of the other peers")
    parser.add_argument("--budget", type=float, default=900,
                        help="seconds for the whole benchmark: runs not started by then are reported as not run")
    parser.add_argument("--mixed-limit", type=float, help="limit of the mixed workload in one run (default 90 s;"
                        " 45 with --quick): a peer that launches an MPI job per task may need minutes")
    parser.add_argument("--timeout", type=float, help="hard limit per run of one peer (default 240 s; 120 with --quick)")
    parser.add_argument("--quick", action="store_true", help="4 processes, N=1,000, 16,000 bulk, 300 cutting tasks, 1 run")
    parser.add_argument("--out", default=str(HERE / "results" / "peers.json"))
    parser.add_argument("--add-to", metavar="FILE", help="replace these peers' runs at these process counts in an"
                        " earlier peers.json (e.g. runs its --budget left out) and write it to --out; with"
                        " --workloads, only the rows of those workloads are replaced (the others stay)")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/peers.py", *sys.argv[1:]])
    compile_package()  # pilotq-mpi starts with its bytecode compiled, as the peers in site-packages do
    if args.quick:
        args.procs, args.tasks, args.bulk, args.cutting_tasks = [4], [1000], 16000, 300
        args.repeats, args.slow_repeats, args.pilot_startup_procs = 1, 1, []
    args.timeout = args.timeout or (120 if args.quick else 240)
    args.mixed_limit = args.mixed_limit or (45 if args.quick else 90)
    blocks = plan_blocks(args)
    missing = {peer: why for peer in args.peers if (why := installed(peer))}
    started = time.time()
    measured = commit()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        workdir = Path(tmp)
        cfg = {"workloads": args.workloads, "tasks": args.tasks, "bulk": args.bulk, "chunk": args.chunk,
               "cutting_tasks": args.cutting_tasks, "shots": args.shots, "mixed": MIXED,
               "mixed_limit": args.mixed_limit}
        if "cutting" in args.workloads:
            cfg["cutting_file"] = str(prepare_cutting(args.cutting_tasks))
        # the MPI peers' repeats first (cheap; they decide the one-by-one target), interleaved so that
        # both see the machine's drifts alike; then the other peers
        schedule = [(block, peer) for rep in range(args.repeats) for block in blocks
                    for peer in block["peers"] if peer in MPI_PEERS]
        schedule += [(block, peer) for rep in range(args.slow_repeats) for block in blocks
                     for peer in block["peers"] if peer not in MPI_PEERS]
        for block, peer in schedule:
            if peer in missing:
                continue
            if time.time() - started > args.budget:
                runs.setdefault(f"{peer}@{block['procs']}", []).append(
                    {"peer": peer, "procs": block["procs"], "results": [],
                     "status": f"not run: the run's --budget of {args.budget:.0f} s was spent"})
                continue
            run_cfg = dict(cfg, workloads=block.get("only", args.workloads))
            run = launch(peer, block["procs"], run_cfg, min(args.timeout, max(
                30.0, args.budget - (time.time() - started))), workdir)
            runs.setdefault(f"{peer}@{block['procs']}", []).append(run)
            print(f"[{time.time() - started:5.0f}s] {peer} @ {block['procs']}: {run['status']} "
                  f"({run['wall_s']:.1f} s, load {run['load_before']:.1f})  " + "  ".join(
                      f"{r['workload']}{':' + str(r['n']) if r['workload'] == 'one_by_one' else ''}="
                      + (f"{r.get('per_s', r.get('seconds', r.get('total_mib', 0))):,.2f}"
                         if 'unsupported' not in r else 'n/a') for r in run["results"]), flush=True)
            if run["status"] != "ok":
                print(run.get("stderr_tail", "")[-600:], flush=True)
    summaries = {key: summarize(rs) for key, rs in runs.items()}
    for peer, why in missing.items():
        for block in blocks:
            if peer in block["peers"]:
                summaries[f"{peer}@{block['procs']}"] = {"_status": why}
    data = {"benchmark": "peers", "command": command, "peers": list(args.peers), "procs": args.procs,
            "workloads": args.workloads, "tasks": args.tasks, "bulk": args.bulk, "chunk": args.chunk,
            "cutting_tasks": args.cutting_tasks, "shots": args.shots, "mixed_spec": MIXED,
            "mixed_limit_s": args.mixed_limit, "timeout_s": args.timeout,
            "repeats": {"mpi peers": args.repeats, "others": args.slow_repeats}, "statistic": "median",
            "blocks": blocks, "summaries": summaries, "runs": runs, "versions": versions(), "commit": measured,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average_end": os.getloadavg(), "wall_s": time.time() - started,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.add_to and set(args.workloads) != set(WORKLOADS):  # some rows only: merge them in
        data = merge_rows(json.loads(Path(args.add_to).read_text()), runs, summaries, {
            "command": command, "date": data["date"], "commit": measured, "rows": args.workloads,
            "load_average_end": data["load_average_end"], "repeats": args.repeats})
    elif args.add_to:  # keep the earlier run; these (peer, procs) replace their entries in it
        earlier = json.loads(Path(args.add_to).read_text())
        earlier["runs"].update(runs)
        earlier["summaries"].update({key: summaries[key] for key in runs})
        earlier["command"] += f"; then {command} (runs of {', '.join(sorted(runs))}, finished {data['date']})"
        data = earlier
    print(markdown(data))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1))
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
