"""Planner benchmark (issue 11): does ``plan(...).best`` pick the fastest way to run a circuit here?

    python benchmarks/planner.py                      # default grid (--size small); 21 min at load 11 on 2 cores
    python benchmarks/planner.py --size tiny --out /tmp/x   # 2 circuits, at most 1 cut: a smoke run (< 1 min)
    python benchmarks/planner.py --rescore            # scores and plot again from the stored measurements
    python benchmarks/planner.py --rescore --replan   # POST HOC: the current planner's plans, scores and the
                                                      # cross-family hold-out fit, stored apart
    python benchmarks/planner.py --render             # print the scores and the README table (no writes)

What it does, in order:

1. calibrates the planner's cost profile once on a pilot of the same shape as the measurements
   (``calibrate(pilot)`` inside ``mpiexec -n W+1 python -m pilotq_mpi``), unless ``--profile``;
2. for each batch of circuits of the grid (``benchmarks/planner_circuits.py``: four families,
   10-26 qubits, two depths each, three observable sets), starts one pilot
   (``mpiexec -n W+1 python -m pilotq_mpi benchmarks/planner_driver.py``) that plans each circuit
   on its own resources and runs **every feasible strategy** the plan lists (distributed state
   vector on 1/2/4 ranks, Aer on one rank, cutting at each cut size the planner finds) with the
   planner's ``run()``, with repeats (median);
3. scores the pick against the measured best (within 10%; regret p50/p95/max), the median
   absolute percentage error of each strategy kind's predicted time, and the same for a
   Q-Dreamer-style baseline (``benchmarks/planner_scoring.py``: its power law fitted by log-log
   regression on measured cutting runs, choosing only among the cutting sizes);
4. hold-out: Q-Dreamer is fitted on the ``hea`` and ``qaoa`` families and scored on ``brick`` and
   ``longrange``; the planner is calibrated by microbenchmarks only (never on these
   measurements), and is scored on all circuits and on the same held-out families;
5. writes ``benchmarks/results/planner.json`` (raw measurements, plans, scores) and
   ``planner.png`` (predicted vs measured time per strategy, log-log).

Each measured time is ``RunResult.measured_time`` (execution; planning is reported apart as
``plan_s``). Others share this machine's 2 cores: the 1-minute load average is recorded per batch,
and before every measured run its load average and the runnable processes of others sampled then
(``runnable``, from ``/proc/stat``; the pilot's ranks are idle between runs), beside its time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from planner_circuits import FAMILIES, OBSERVABLE_SETS, spec_id  # noqa: E402
from planner_scoring import plot, score, summary  # noqa: E402
DEPTHS = {"hea": (1, 2), "qaoa": (1, 2), "brick": (4, 8), "longrange": (2, 4)}

SIZES = {
    # name: grid + run settings
    "tiny": {"qubits": (), "extra": [("hea", 10, 1, "zprod"), ("brick", 10, 4, "zsum")], "repeats": 1, "short_repeats": 1,
             "short_s": 0.0, "shots": 20, "max_subexperiments": 20, "max_cuts": 1, "long_s": 5.0, "batch_timeout": 300, "calibrate": False,
             "one_batch": True},
    "small": {"qubits": (10, 16, 22), "extra": [("hea", 26, 1, "zprod"), ("qaoa", 26, 1, "zsum")], "repeats": 3,
              "short_repeats": 9, "short_s": 0.5, "shots": 200, "max_subexperiments": 150, "max_cuts": 3, "long_s": 6.0, "batch_timeout": 600,
              "calibrate": True, "one_batch": False},
}


def grid(size: str, seed: int = 0) -> list[dict]:
    """The circuit specs of a size: every family x qubits x its two depths, observable sets in turn."""
    cfg = SIZES[size]
    specs, i = [], 0
    for family in FAMILIES:
        for n in cfg["qubits"]:
            for depth in DEPTHS[family]:
                specs.append({"family": family, "qubits": n, "depth": depth,
                              "observables": OBSERVABLE_SETS[i % len(OBSERVABLE_SETS)], "seed": seed})
                i += 1
    for family, n, depth, obs in cfg["extra"]:
        specs.append({"family": family, "qubits": n, "depth": depth, "observables": obs, "seed": seed})
    return specs


def batches(specs: list[dict]) -> list[list[dict]]:
    """One pilot per family for circuits up to 24 qubits, one for the wider ones (a failure loses one batch)."""
    out: dict[str, list[dict]] = {}
    for s in specs:
        out.setdefault(s["family"] if s["qubits"] <= 24 else "wide", []).append(s)
    return list(out.values())


def launch(batch: dict, workers: int, timeout: float, workdir: Path, name: str) -> dict:
    """Run one pilot on a batch; return the driver's JSON (partial if it timed out or failed)."""
    bin_dir = Path(sys.executable).parent
    inp, out = workdir / f"{name}.in.json", workdir / f"{name}.out.json"
    inp.write_text(json.dumps(batch))
    argv = [str(bin_dir / "mpiexec"), "-n", str(workers + 1), sys.executable, "-m", "pilotq_mpi",
            str(HERE / "planner_driver.py"), "--batch", str(inp), "--out", str(out)]
    env = dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off")
    threads = str(batch["threads"])
    env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    error = None
    with open(workdir / f"{name}.stderr", "w+") as err:
        # own process group: on a timeout the whole MPI job goes, not just mpiexec
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=HERE.parent,
                                start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            for line in proc.stdout:
                if line.startswith("[planner-bench]"):
                    print(line.rstrip(), flush=True)
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode != 0
            timer.cancel()
        if timed_out:
            error = f"timed out after {timeout:.0f} s"
        elif proc.returncode != 0:
            err.seek(0)
            error = f"exit {proc.returncode}: {err.read()[-3000:]}"
    data = json.loads(out.read_text()) if out.exists() else {"items": []}
    data["batch_s"] = time.perf_counter() - t0
    if error:
        data["error"] = error
        print(f"[planner-bench] batch {name}: {error[:500]}", flush=True)
    return data


def batch_loads(data: dict) -> dict[str, dict]:
    """External load per measured batch: the mean of its 1-minute load averages at start and end,
    minus this benchmark's own busy ranks averaged over the batch (rank-seconds of its measured
    runs / batch seconds: ``ranks`` for the state vector, 1 for Aer, ``min(workers, tasks)`` for
    cutting). Keyed by batch name, with the circuits of each batch."""
    from planner_circuits import spec_id

    items = {it["id"]: it for it in data["items"]}
    workers = data["meta"]["workers"]
    out = {}
    one_batch = SIZES.get(data["meta"].get("size"), {}).get("one_batch", False)
    for i, batch in enumerate([data["grid"]] if one_batch else batches(data["grid"])):
        name = f"batch{i}"
        rec = next((r for r in data["meta"]["batches"] if r.get("name") == name), None)
        if rec is None or not rec.get("loadavg_start") or not rec.get("loadavg_end"):
            continue
        busy = 0.0
        ids = [spec_id(s) for s in batch]
        for cid in ids:
            it = items.get(cid, {})
            tasks = {s["label"]: s["tasks"] for s in it.get("strategies", [])}
            for label, m in it.get("measured", {}).items():
                ranks = (m["params"].get("ranks", 1) if m["kind"] == "statevector" else
                         min(workers, tasks.get(label, workers)) if m["kind"] == "cutting" else 1)
                busy += sum(m["times"]) * ranks
        load = (rec["loadavg_start"][0] + rec["loadavg_end"][0]) / 2
        own = busy / rec["batch_s"]
        out[name] = {"loadavg_1min_mean": load, "own_busy_ranks": own, "external_load": max(0.0, load - own),
                     "circuits": ids}
    return out


def replan(data: dict, profile_path: str | None, command: str) -> dict:
    """Post hoc: the current planner on the stored measurements, as a separate "rescored_model_vN" entry.

    Nothing measured and no original prediction or score is changed. The entry holds, from
    ``benchmarks/planner_posthoc.py``: the current model's plans and scores with the run's
    recorded profile (``plans``, ``scores``: the model as is) and the hold-out by family both
    ways (``cross_family``: multipliers of the model's term groups fitted on two families'
    measured runs, the other two scored). Loads: see :func:`planner_posthoc.replan_items`.
    """
    import copy

    sys.path.insert(0, str(HERE.parent))
    from planner_posthoc import cross_family, replan_items, unfitted_scores

    from pilotq_mpi.workflows.planner import CostProfile
    from pilotq_mpi.workflows.planner.model import MODEL_VERSION

    meta = data["meta"]
    if profile_path:
        profile = CostProfile.load(profile_path)
    elif data.get("profile"):
        profile = CostProfile.from_dict(data["profile"])
    else:
        profile = None
    loads = batch_loads(data)
    load_of = {cid: b["external_load"] for b in loads.values() for cid in b["circuits"]}
    replanned = replan_items(data, profile, load_of)
    items = [dict(copy.deepcopy(it), strategies=replanned[it["id"]]["strategies"], pick=replanned[it["id"]]["pick"])
             for it in data["items"] if it["id"] in replanned]
    clock = (profile.meta.get("clock") if profile is not None else None) or "wall"
    return {
        "model_version": MODEL_VERSION,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": _commit(),
        "post_hoc": True,
        "note": (f"POST HOC. Plans of model v{MODEL_VERSION} on measurements taken before (the measured run's own"
                 f" plans and scores are kept in 'scores' and in each item). Profile: the run's, timed on the"
                 f" {clock} clock. 'scores': the model as is. 'cross_family': hold-out by family, both ways:"
                 " per strategy kind, multipliers of the model's term groups fitted (NNLS on the relative error)"
                 " on the measured runs of two families, the other two families planned and scored with them."
                 " The model was changed after seeing these measurements, so this is not an independent test:"
                 " a new measured run is."),
        "profile_source": profile_path or ("the measured run's calibrated profile" if data.get("profile")
                                           else "planner defaults"),
        "profile_clock": clock,
        "batch_loads": loads,
        "plans": {cid: {k: v for k, v in rp.items() if k != "run_terms"} for cid, rp in replanned.items()},
        "scores": score(items, meta["workers"]),
        "model_as_is": unfitted_scores(data, replanned),
        "cross_family": cross_family(data, replanned),
        "_items": items,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--out", type=Path, default=HERE / "results",
                    help="folder for planner.json and planner.png (default benchmarks/results)")
    ap.add_argument("--workers", type=int, default=4, help="worker ranks per pilot (the job has one more)")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads per rank")
    ap.add_argument("--repeats", type=int, help="runs per strategy (default: per size)")
    ap.add_argument("--shots", type=int, help="shots per cut subexperiment (default: per size)")
    ap.add_argument("--max-subexperiments", type=int, help="cutting strategies with more are not run")
    ap.add_argument("--max-cuts", type=int, help="most cuts of a cutting strategy (default: per size)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", help="use this cost profile file instead of calibrating")
    ap.add_argument("--families", nargs="+", choices=FAMILIES, help="only these families")
    ap.add_argument("--rescore", action="store_true", help="score the stored planner.json again, no measuring")
    ap.add_argument("--render", action="store_true",
                    help="print the scores and the README table of the stored planner.json (nothing written)")
    ap.add_argument("--replan", action="store_true",
                    help="with --rescore: plans and scores from the current planner (each batch's recorded load),"
                         " stored as a separate 'rescored_model_v<N>' entry; measured data and original scores kept")
    args = ap.parse_args(argv)
    json_path, png_path = args.out / "planner.json", args.out / "planner.png"
    command = "python " + " ".join([Path(__file__).relative_to(HERE.parent).as_posix(),
                                     *(argv if argv is not None else sys.argv[1:])])

    if args.render:
        from planner_scoring import main as render

        return render(["--json", str(json_path)])
    if args.rescore:
        data = json.loads(json_path.read_text())
        if args.replan:  # a separate entry; the measured items and the original scores stay as they are
            entry = replan(data, args.profile, command)
            items = entry.pop("_items")
            key = f"rescored_model_v{entry['model_version']}"
            data[key] = entry
            json_path.write_text(json.dumps(data, indent=1))
            plot({"items": items, "scores": entry["scores"]},
                 png_path.with_name(f"planner_model_v{entry['model_version']}.png"),
                 f"\nrescored: predictions of model v{entry['model_version']}, changed after these measurements")
            print(f"original scores (model v1, as measured):\n{summary(data['scores'])}")
            print(f"{key} (POST HOC, model changed after the measurements; see its note):\n{summary(entry['scores'])}")
            for name, v in entry["cross_family"].items():
                b = v.get("scores_brief", v)
                print(f"{key} cross-family {name}: {b['within_tol']}/{b['circuits']} within 10%,"
                      f" regret p95 {b['regret_p95']}")
            return 0
        data["scores"] = score(data["items"], data["meta"]["workers"])
        data["meta"]["rescored"] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        json_path.write_text(json.dumps(data, indent=1))
        plot(data, png_path)
        print(summary(data["scores"]))
        return 0

    cfg = dict(SIZES[args.size])
    for key in ("repeats", "shots", "max_subexperiments", "max_cuts"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    specs = grid(args.size, 0)
    if args.families:
        specs = [s for s in specs if s["family"] in args.families]
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="planner-bench-"))
    profile_path = args.profile or (str(workdir / "profile.json") if cfg["calibrate"] else None)
    base = {"repeats": cfg["repeats"], "short_repeats": cfg["short_repeats"], "short_s": cfg["short_s"],
            "shots": cfg["shots"], "seed": args.seed, "long_s": cfg["long_s"],
            "max_volume": cfg["max_subexperiments"] * cfg["shots"], "max_cuts": cfg["max_cuts"],
            "profile": profile_path, "threads": args.threads, "calibrate": False}
    runs = []
    if cfg["calibrate"] and not args.profile:
        print(f"[planner-bench] calibrating the cost profile on {args.workers} workers", flush=True)
        runs.append(dict(launch(dict(base, items=[], calibrate=True), args.workers, 600, workdir, "calibrate"),
                         name="calibrate"))
    for i, batch in enumerate([specs] if cfg["one_batch"] else batches(specs)):
        print(f"[planner-bench] batch {i}: {', '.join(spec_id(s) for s in batch)}", flush=True)
        runs.append(dict(launch(dict(base, items=batch), args.workers, cfg["batch_timeout"], workdir, f"batch{i}"),
                         name=f"batch{i}"))
    items = [it for r in runs for it in r.get("items", [])]
    profile = next((r["profile"] for r in runs if r.get("profile")), None)
    meta = {"command": command, "size": args.size, "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "workers": args.workers, "threads_per_rank": args.threads,
            "repeats": cfg["repeats"], "short_repeats": cfg["short_repeats"], "short_s": cfg["short_s"],
            "shots": cfg["shots"], "max_subexperiments": cfg["max_subexperiments"],
            "max_cuts": cfg["max_cuts"], "seed": args.seed, "long_s": cfg["long_s"],
            "profile_source": args.profile or ("calibrated in this run" if cfg["calibrate"] else "planner default"),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "total_s": time.perf_counter() - started,
            "commit": _commit(),
            "batches": [{k: r.get(k) for k in ("name", "batch_s", "loadavg_start", "loadavg_end", "warm_up_s",
                                                "calibrate_s", "error", "workers", "workaround_cut_guard")}
                        for r in runs]}
    data = {"benchmark": "planner", "meta": meta, "profile": profile, "grid": specs, "items": items}
    data["scores"] = score(items, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1))
    plot(data, png_path)
    print(summary(data["scores"]))
    print(f"wrote {json_path} and {png_path} in {meta['total_s']:.0f} s")
    return 0


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE.parent,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
