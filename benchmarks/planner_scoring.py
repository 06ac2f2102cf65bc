"""Scores of the planner benchmark (pure functions on stored measurements; no MPI, no qiskit).

    python benchmarks/planner_scoring.py [--json benchmarks/results/planner.json] [--write]

renders every score, the plot and the README table from a stored ``planner.json`` with no rerun
(``--write``: also store the recomputed scores in the JSON and write ``planner.png`` beside it).

A *record* is one circuit: ``{"id", "family", "measured": {label: seconds or None},
"kinds": {label: kind}, "predicted": {label: seconds}, "pick": label or None}``.

- :func:`pick_scores`: fraction of circuits whose pick is within ``tol`` of the measured best,
  and the regret ``t(pick) / t(best) - 1`` distribution. A pick that was not measured (the
  benchmark did not run that strategy) counts as a miss with unknown regret.
- :func:`prediction_errors`: median absolute percentage error ``|pred - meas| / meas`` per
  strategy group, and the median ``meas / pred`` (above 1: the model is optimistic).
- :class:`QDreamer`: the power-law model of Q-Dreamer (``eta(R) = eta_max / R^p``,
  ``S = 2^(n - n_sub) * eta / R``, ``R = ceil(tasks / workers)``), fitted by log-log least
  squares on measured cutting runs, predicting ``t_cut = t_full / S`` from the measured
  full-circuit time ``t_full``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from planner_circuits import FAMILIES  # noqa: E402

TRAIN_FAMILIES = ("hea", "qaoa")
TEST_FAMILIES = ("brick", "longrange")


def _pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def pick_scores(records: list[dict], tol: float = 0.10, *, only_kind: str | None = None) -> dict:
    """Pick accuracy and regret over ``records`` (see the module docstring).

    ``only_kind``: compare only among strategies of that kind (e.g. ``"cutting"``: the best
    cutting configuration, Q-Dreamer's own question); circuits with no measured strategy of
    that kind are left out.
    """
    hits, regrets, per_circuit, unmeasured, choices, choice_hits = 0, [], [], 0, 0, 0
    for rec in records:
        measured = {lab: t for lab, t in rec["measured"].items()
                    if t is not None and (only_kind is None or rec["kinds"].get(lab) == only_kind)}
        if not measured:
            continue
        best = min(measured, key=measured.get)
        pick = rec.get("pick")
        entry = {"id": rec["id"], "family": rec.get("family"), "best": best, "best_s": measured[best],
                 "pick": pick}
        if pick is None or pick not in measured:
            unmeasured += 1
            entry.update(regret=None, hit=False, why="pick not measured" if pick else "no pick")
        else:
            regret = measured[pick] / measured[best] - 1.0
            regrets.append(regret)
            entry.update(regret=regret, pick_s=measured[pick], hit=regret <= tol)
            hits += entry["hit"]
        if len(measured) >= 2:  # a real choice: at least two measured candidates
            choices += 1
            choice_hits += entry["hit"]
        per_circuit.append(entry)
    n = len(per_circuit)
    return {
        "circuits": n,
        "within_tol": hits,
        "fraction_within_tol": hits / n if n else None,
        "tolerance": tol,
        "unmeasured_picks": unmeasured,
        "circuits_with_choice": choices,
        "within_tol_with_choice": choice_hits,
        "regret_p50": _pct(regrets, 50),
        "regret_p95": _pct(regrets, 95),
        "regret_max": max(regrets) if regrets else None,
        "per_circuit": per_circuit,
    }


def prediction_errors(records: list[dict], group=lambda label, kind: kind) -> dict:
    """Median absolute percentage error of the predicted times, per group (default: strategy kind)."""
    errs: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for rec in records:
        for lab, meas in rec["measured"].items():
            pred = rec["predicted"].get(lab)
            if meas is None or pred is None or not meas > 0 or not pred > 0:
                continue
            key = group(lab, rec["kinds"].get(lab))
            errs.setdefault(key, []).append(abs(pred - meas) / meas)
            ratios.setdefault(key, []).append(meas / pred)
    out = {g: {"mape": float(np.median(v)), "n": len(v), "p90_ape": _pct(v, 90),
               "median_measured_over_predicted": float(np.median(ratios[g]))} for g, v in sorted(errs.items())}
    every = [e for v in errs.values() for e in v]
    out["all"] = {"mape": float(np.median(every)) if every else None, "n": len(every), "p90_ape": _pct(every, 90)}
    return out


@dataclass
class QDreamer:
    """Q-Dreamer's power law, fitted on measurements (defaults: the paper's eta_max and p)."""

    eta_max: float = 0.0008
    p: float = 0.3233
    points: int = 0

    @staticmethod
    def rounds(tasks: int, workers: int) -> int:
        return max(1, math.ceil(tasks / workers))

    def speedup(self, n: int, n_sub: int, tasks: int, workers: int) -> float:
        r = self.rounds(tasks, workers)
        return 2.0 ** (n - n_sub) * (self.eta_max / r ** self.p) / r

    def predict(self, t_full: float, n: int, n_sub: int, tasks: int, workers: int) -> float:
        """Predicted cutting time: the full-circuit time divided by the predicted speedup."""
        return t_full / self.speedup(n, n_sub, tasks, workers)

    @classmethod
    def fit(cls, samples: list[dict]) -> "QDreamer":
        """Log-log regression ``log eta = log eta_max - p log R`` on samples
        ``{"n", "n_sub", "tasks", "workers", "t_full", "t_cut"}`` with ``eta = S * R / 2^(n - n_sub)``,
        ``S = t_full / t_cut``. Fewer than two distinct R: ``p`` keeps the paper's value."""
        xs, ys = [], []
        for s in samples:
            r = cls.rounds(s["tasks"], s["workers"])
            speedup = s["t_full"] / s["t_cut"]
            eta = speedup * r / 2.0 ** (s["n"] - s["n_sub"])
            xs.append(math.log(r))
            ys.append(math.log(eta))
        if not xs:
            return cls()
        if len(set(xs)) < 2:
            p = cls.p
            return cls(eta_max=math.exp(float(np.mean(ys)) + p * float(np.mean(xs))), p=p, points=len(xs))
        slope, intercept = np.polyfit(xs, ys, 1)
        return cls(eta_max=math.exp(intercept), p=-float(slope), points=len(xs))


# --------------------------------------------------------------------------- scores of a benchmark run


def _records(items: list[dict]) -> list[dict]:
    """Scoring records of the planner (see planner_scoring)."""
    recs = []
    for it in items:
        if "strategies" not in it:
            continue
        recs.append({"id": it["id"], "family": it["spec"]["family"],
                     "measured": {lab: m.get("median_s") for lab, m in it.get("measured", {}).items()},
                     "kinds": {s["label"]: s["kind"] for s in it["strategies"]},
                     "predicted": {s["label"]: s["predicted_time"] for s in it["strategies"]},
                     "pick": it.get("pick"),
                     "cutting_pick": min((s for s in it["strategies"] if s["kind"] == "cutting" and s["feasible"]
                                          and s["predicted_time"] is not None),
                                         key=lambda s: s["predicted_time"], default={}).get("label")})
    return recs


def _full_time(item: dict) -> float | None:
    """The measured full-circuit time Q-Dreamer divides by its speedup (Aer on one rank, else state vector/1)."""
    for label in ("single/aer", "statevector/1"):
        m = item.get("measured", {}).get(label)
        if m and m.get("median_s"):
            return m["median_s"]
    return None


def qdreamer_samples(items: list[dict], families, workers: int) -> list[dict]:
    """Measured cutting runs of ``families`` as Q-Dreamer fit samples."""
    out = []
    for it in items:
        if it.get("spec", {}).get("family") not in families:
            continue
        t_full = _full_time(it)
        for lab, m in it.get("measured", {}).items():
            if m["kind"] == "cutting" and m.get("median_s") and t_full:
                out.append({"n": it["qubits"], "n_sub": m["params"]["subcircuit_qubits"],
                            "tasks": m["params"]["subexperiments"], "workers": workers, "t_full": t_full,
                            "t_cut": m["median_s"]})
    return out


def qdreamer_records(items: list[dict], model: QDreamer, families, workers: int) -> list[dict]:
    """Scoring records of Q-Dreamer: predictions for the cutting strategies, the pick among them."""
    recs = []
    for it in items:
        if it.get("spec", {}).get("family") not in families or "strategies" not in it:
            continue
        t_full = _full_time(it)
        cands = [s for s in it["strategies"] if s["kind"] == "cutting" and s["feasible"]]
        pred = {}
        if t_full:
            for s in cands:
                pred[s["label"]] = model.predict(t_full, it["qubits"], s["params"]["subcircuit_qubits"],
                                                 s["params"]["subexperiments"], workers)
        pick = min(pred, key=pred.get) if pred else None
        recs.append({"id": it["id"], "family": it["spec"]["family"],
                     "measured": {lab: m.get("median_s") for lab, m in it.get("measured", {}).items()},
                     "kinds": {s["label"]: s["kind"] for s in it["strategies"]},
                     "predicted": pred, "pick": pick, "cutting_pick": pick})
    return recs


def _brief(s: dict) -> dict:
    return {k: v for k, v in s.items() if k != "per_circuit"}


def score(items: list[dict], workers: int, tol: float = 0.10) -> dict:
    """Every score of the report (see the module docstring)."""
    recs = _records(items)
    test = [r for r in recs if r["family"] in TEST_FAMILIES]
    cut_recs = [dict(r, pick=r["cutting_pick"]) for r in recs]
    planner = {
        "all": pick_scores(recs, tol),
        "held_out_families": _brief(pick_scores(test, tol)),
        "cutting_only": _brief(pick_scores(cut_recs, tol, only_kind="cutting")),
        "cutting_only_held_out": _brief(pick_scores([r for r in cut_recs if r["family"] in TEST_FAMILIES], tol,
                                                    only_kind="cutting")),
        "mape": prediction_errors(recs),
        "mape_held_out": prediction_errors(test),
        "mape_by_label": prediction_errors(recs, group=lambda label, kind: label.split("/")[0] + (
            "/" + label.split("/")[1] if kind != "cutting" else "")),
    }
    fit_train = QDreamer.fit(qdreamer_samples(items, TRAIN_FAMILIES, workers))
    fit_all = QDreamer.fit(qdreamer_samples(items, FAMILIES, workers))
    q_test = qdreamer_records(items, fit_train, TEST_FAMILIES, workers)
    q_all = qdreamer_records(items, fit_all, FAMILIES, workers)
    qdreamer = {
        "fit_train": {"eta_max": fit_train.eta_max, "p": fit_train.p, "points": fit_train.points,
                      "families": list(TRAIN_FAMILIES)},
        "fit_all": {"eta_max": fit_all.eta_max, "p": fit_all.p, "points": fit_all.points},
        "held_out_families": pick_scores(q_test, tol),
        "cutting_only_held_out": _brief(pick_scores(q_test, tol, only_kind="cutting")),
        "mape_held_out": prediction_errors(q_test),
        "in_sample_all": _brief(pick_scores(q_all, tol)),
        "cutting_only_in_sample": _brief(pick_scores(q_all, tol, only_kind="cutting")),
        "mape_in_sample": prediction_errors(q_all),
    }
    return {"tolerance": tol, "train_families": list(TRAIN_FAMILIES), "test_families": list(TEST_FAMILIES),
            "planner": planner, "qdreamer": qdreamer,
            "qdreamer_predictions_held_out": {r["id"]: r["predicted"] for r in q_test}}


def plot(data: dict, path: Path, title: str = "") -> None:
    """Predicted vs measured time per strategy, log-log: the planner (left), Q-Dreamer held out (right).

    ``title``: appended to the figure's title (e.g. which model made the predictions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"statevector/1": "tab:blue", "statevector/2": "tab:cyan", "statevector/4": "tab:purple",
              "single/aer": "tab:green", "cutting": "tab:red"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    points = []
    for it in data["items"]:
        strategies = {s["label"]: s for s in it.get("strategies", [])}
        for lab, m in it.get("measured", {}).items():
            pred = strategies.get(lab, {}).get("predicted_time")
            if m.get("median_s") and pred:
                key = "cutting" if m["kind"] == "cutting" else lab
                points.append((pred, m["median_s"], key, it["spec"]["family"] in TEST_FAMILIES))
    for key, color in colors.items():
        xs = [(p, t) for p, t, k, _ in points if k == key]
        if xs:
            axes[0].scatter([t for _, t in xs], [p for p, _ in xs], s=18, c=color, label=key, alpha=0.8)
    qpred = data["scores"]["qdreamer_predictions_held_out"]
    qpts = []
    for it in data["items"]:
        for lab, pred in qpred.get(it["id"], {}).items():
            m = it.get("measured", {}).get(lab)
            if m and m.get("median_s"):
                qpts.append((pred, m["median_s"]))
    if qpts:
        axes[1].scatter([t for _, t in qpts], [p for p, _ in qpts], s=18, c="tab:red", label="cutting (held out)")
    every = [v for p, t, _, _ in points for v in (p, t)] + [v for p, t in qpts for v in (p, t)]
    lo, hi = (min(every) / 2, max(every) * 2) if every else (1e-3, 1e3)
    for ax, title in zip(axes, ("planner (microbenchmark calibration)",
                                f"Q-Dreamer power law (fit on {'+'.join(TRAIN_FAMILIES)})")):
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured time (s, median)")
        ax.set_title(title, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("predicted time (s)")
    fig.suptitle("Planner benchmark: predicted vs measured wall time per strategy (dotted: +-10%)" + title,
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(scores: dict) -> str:
    """A few lines of the headline numbers."""
    p, q = scores["planner"], scores["qdreamer"]

    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    lines = [f"planner: pick within {scores['tolerance']:.0%} of the measured best on {p['all']['within_tol']}/"
             f"{p['all']['circuits']} circuits ({pct(p['all']['fraction_within_tol'])}); regret p50 "
             f"{pct(p['all']['regret_p50'])} p95 {pct(p['all']['regret_p95'])} max {pct(p['all']['regret_max'])};"
             f" held-out families {pct(p['held_out_families']['fraction_within_tol'])}",
             "planner MAPE: " + ", ".join(f"{k} {pct(v['mape'])} (n={v['n']})" for k, v in p["mape_by_label"].items()),
             f"Q-Dreamer (fit on {'+'.join(scores['train_families'])}, scored on {'+'.join(scores['test_families'])}):"
             f" within {pct(q['held_out_families']['fraction_within_tol'])} of the best of all strategies,"
             f" {pct(q['cutting_only_held_out']['fraction_within_tol'])} of the best cutting size;"
             f" planner on the same circuits: {pct(p['held_out_families']['fraction_within_tol'])} /"
             f" {pct(p['cutting_only_held_out']['fraction_within_tol'])}"]
    return "\n".join(lines)


def _fmt_pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _hits(s: dict) -> str:
    return f"{s['within_tol']}/{s['circuits']} ({_fmt_pct(s['fraction_within_tol'])})"


def _regrets(s: dict) -> str:
    return f"{_fmt_pct(s['regret_p50'])} / {_fmt_pct(s['regret_p95'])} / {_fmt_pct(s['regret_max'])}"


def markdown(data: dict) -> str:
    """The README table of a stored run: the measured run's own scores, then any post-hoc entries (labelled)."""
    meta, sc = data["meta"], data["scores"]
    p, q = sc["planner"], sc["qdreamer"]
    loads = [x for b in meta.get("batches", []) for x in (b.get("loadavg_start") or [None])[:1] + (
        b.get("loadavg_end") or [None])[:1] if x is not None]
    head = (f"Measured run: `{meta.get('command')}`, {meta.get('date')}, {len(data['items'])} circuits,"
            f" {meta.get('workers')} workers on {meta.get('cpus')} cores, {meta.get('total_s', 0):.0f} s, 1-min load"
            f" average {min(loads):.1f}-{max(loads):.1f}" if loads else "")
    rows = [("pick within 10% of the measured best", _hits(p["all"])),
            ("regret p50 / p95 / max", _regrets(p["all"])),
            (f"held-out families ({'+'.join(sc['test_families'])})", _hits(p["held_out_families"])),
            (f"Q-Dreamer baseline (fit {'+'.join(sc['train_families'])}, scored held out)",
             _hits(q["held_out_families"])),
            ("Q-Dreamer on the cutting-only question (held out)", _hits(q["cutting_only_held_out"])),
            ("planner on the cutting-only question (all)", _hits(p["cutting_only"])),
            ("prediction MAPE per strategy", ", ".join(f"{k} {_fmt_pct(v['mape'])}"
                                                        for k, v in p["mape_by_label"].items() if k != "all"))]
    lines = [head, "", "| | measured run |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    for key in sorted(k for k in data if k.startswith("rescored_model_v")):
        e = data[key]
        if "cross_family" not in e:
            lines += ["", f"{key} (POST HOC, see its note): pick {_hits(e['scores']['planner']['all'])},"
                          f" regret {_regrets(e['scores']['planner']['all'])}"]
            continue
        lines += ["", f"**{key}: POST HOC** (model changed after these measurements; profile timed on the"
                      f" {e.get('profile_clock', 'wall')} clock): ", "",
                  "| post hoc | pick within 10% | regret p50 / p95 / max | MAPE |", "|---|---|---|---|"]
        asis = e["model_as_is"]
        lines.append(f"| model v{e['model_version']} as is, all circuits | {_hits(asis['all'])} |"
                     f" {_regrets(asis['all'])} | {_fmt_pct(asis['mape']['all']['mape'])} |")
        for name, v in e["cross_family"].items():
            if name == "both_directions":
                lines.append(f"| cross-family, both directions | {_hits(v)} | {_regrets(v)} | |")
                continue
            lines.append(f"| {name.replace('_', ' ')} | {_hits(v['scores'])} | {_regrets(v['scores'])} |"
                         f" {_fmt_pct(v['mape']['all']['mape'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "planner.json")
    ap.add_argument("--write", action="store_true", help="store the recomputed scores and write planner.png")
    args = ap.parse_args(argv)
    data = json.loads(args.json.read_text())
    data["scores"] = score(data["items"], data["meta"]["workers"])
    print(summary(data["scores"]))
    print()
    print(markdown(data))
    if args.write:
        args.json.write_text(json.dumps(data, indent=1))
        plot(data, args.json.with_name("planner.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
