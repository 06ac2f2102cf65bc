"""Post-hoc analyses of a stored planner benchmark run (``planner.json``): nothing is measured again.

Used by ``python benchmarks/planner.py --rescore --replan``. Everything here is **post hoc**:
the model was (or may have been) changed after the measurements were taken, so these scores are
not an independent test of it; a new measured run is. What it computes:

- :func:`replan_items`: every stored circuit planned again by the current planner with the
  profile recorded in the run, at the external load the run met: the pick at the load the plan
  saw (``item["external_load"]`` where the driver recorded it, else the batch's estimate from
  :func:`planner.batch_loads`), and each measured strategy's prediction at the load *its* runs
  met (the mean ``runnable`` sample recorded before each run, where there is one, else the
  same plan-time load);
- :func:`cross_family`: hold-out by family. Per strategy kind, one non-negative multiplier per
  group of the model's terms (e.g. the state vector's amplitude work, its fixed per-gate and
  per-rank costs, its observables) is fitted by least squares on the relative error of the
  measured runs of the *training* families (non-negative least squares on ``pred / meas - 1``);
  the circuits of the other families are then planned with those multipliers and scored
  (pick within 10% of the measured best, regret, MAPE). Both ways: fit ``hea+qaoa``, score
  ``brick+longrange``, and fit ``brick+longrange``, score ``hea+qaoa``. The multipliers stand
  for re-calibrating the profile's constants on measurements of other circuits.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from planner_scoring import TEST_FAMILIES, TRAIN_FAMILIES, _brief, pick_scores, prediction_errors  # noqa: E402

GROUPS = {
    # kind: {group: model terms}; a term not listed is kept as predicted (multiplier 1)
    "statevector": {"amplitudes": ("init", "apply"), "fixed": ("convert", "task", "imports"), "swap": ("swap",),
                    "observables": ("observables",)},
    "single": {"setup": ("setup", "task", "imports"), "amplitudes": ("simulate",), "observables": ("observables",)},
    "cutting": {"sample": ("sample",), "driver": ("generate", "send", "imports"),
                "reconstruct": ("reconstruct", "stderr")},
}


def _groups(kind: str, terms: dict) -> dict[str, float]:
    """The model's ``terms`` of a strategy summed per fit group (see ``GROUPS``); unknown terms as ``_rest``."""
    out: dict[str, float] = {}
    listed = GROUPS.get(kind, {})
    seen = set()
    for group, names in listed.items():
        out[group] = sum(float(terms.get(n, 0.0)) for n in names)
        seen.update(names)
    out["_rest"] = sum(float(v) for k, v in terms.items() if k not in seen)
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def replan_items(data: dict, profile, plan_load_of: dict[str, float]) -> dict[str, dict]:
    """Per circuit: the current planner's strategies at the plan-time load, and each measured
    strategy's terms at the load its runs met (see the module docstring)."""
    from planner_circuits import build
    from planner_driver import strategy_record

    from pilotq_mpi.workflows.planner import Resources, plan

    meta = data["meta"]
    kwargs = {"shots": meta["shots"], "profile": profile, "seed": meta["seed"], "max_cuts": meta["max_cuts"]}
    out = {}
    for it in data["items"]:
        if "strategies" not in it:
            continue
        circuit, observable = build(it["spec"])
        plan_load = it.get("external_load", plan_load_of.get(it["id"], 0.0))
        plans = {}

        def plan_at(load: float):
            key = round(load, 1)
            if key not in plans:
                plans[key] = plan(circuit, observable, Resources(workers=meta["workers"], cores=meta["cpus"],
                                                                 external_load=max(0.0, key)), **kwargs)
            return plans[key]

        p = plan_at(plan_load)
        run_terms, run_loads = {}, {}
        for label, m in it.get("measured", {}).items():
            load = _mean(m.get("runnable") or [])
            load = plan_load if load is None else load
            try:
                s = plan_at(load).get(label)
            except KeyError:
                continue
            run_terms[label] = {"kind": s.kind, "terms": dict(s.terms), "predicted": s.predicted_time}
            run_loads[label] = load
        out[it["id"]] = {"external_load": plan_load, "strategies": [strategy_record(s) for s in p.strategies],
                         "pick": p.best.label if p.best else None, "run_terms": run_terms, "run_loads": run_loads}
    return out


def _fit(rows: list[tuple[dict, float]], groups: list[str]) -> dict[str, float]:
    """Non-negative multipliers per group minimising the squared relative error (rows: (group sums, measured))."""
    from scipy.optimize import nnls

    if not rows:
        return {g: 1.0 for g in groups}
    a = np.array([[r[g] / meas for g in groups] for r, meas in rows])
    b = np.array([1.0 - r["_rest"] / meas for r, meas in rows])
    used = [j for j, g in enumerate(groups) if np.any(a[:, j] > 0)]
    coef = np.ones(len(groups))
    if used:
        x, _ = nnls(a[:, used], b)
        coef[used] = x
    return {g: float(c) for g, c in zip(groups, coef)}


def fit_multipliers(items: list[dict], replanned: dict[str, dict], families) -> dict[str, dict[str, float]]:
    """Per kind, the group multipliers fitted on the measured runs of ``families`` (see :func:`_fit`)."""
    rows: dict[str, list] = {}
    for it in items:
        if it["spec"]["family"] not in families or it["id"] not in replanned:
            continue
        for label, m in it.get("measured", {}).items():
            rt = replanned[it["id"]]["run_terms"].get(label)
            if not rt or not m.get("median_s"):
                continue
            rows.setdefault(rt["kind"], []).append((_groups(rt["kind"], rt["terms"]), m["median_s"]))
    return {kind: _fit(rows.get(kind, []), list(groups)) for kind, groups in GROUPS.items()}


def _apply(kind: str, terms: dict, mult: dict[str, dict[str, float]]) -> float:
    g = _groups(kind, terms)
    m = mult.get(kind, {})
    return g.pop("_rest") + sum(v * m.get(name, 1.0) for name, v in g.items())


def cross_family(data: dict, replanned: dict[str, dict], tol: float = 0.10) -> dict:
    """Both hold-out directions (see the module docstring): multipliers, scores, per-circuit picks."""
    items = [it for it in data["items"] if it["id"] in replanned]
    out = {}
    for fit_on, score_on in ((TRAIN_FAMILIES, TEST_FAMILIES), (TEST_FAMILIES, TRAIN_FAMILIES)):
        mult = fit_multipliers(items, replanned, fit_on)
        recs, picks = [], {}
        for it in items:
            if it["spec"]["family"] not in score_on:
                continue
            rp = replanned[it["id"]]
            plan_pred = {s["label"]: _apply(s["kind"], s["terms"], mult) for s in rp["strategies"]
                         if s["feasible"] and s["predicted_time"] is not None}
            pick = min(plan_pred, key=plan_pred.get) if plan_pred else None
            picks[it["id"]] = pick
            run_pred = {lab: _apply(rt["kind"], rt["terms"], mult) for lab, rt in rp["run_terms"].items()}
            recs.append({"id": it["id"], "family": it["spec"]["family"],
                         "measured": {lab: m.get("median_s") for lab, m in it.get("measured", {}).items()},
                         "kinds": {s["label"]: s["kind"] for s in rp["strategies"]},
                         "predicted": run_pred, "pick": pick})
        key = f"fit_{'+'.join(fit_on)}_score_{'+'.join(score_on)}"
        out[key] = {"multipliers": mult, "picks": picks, "scores": pick_scores(recs, tol),
                    "mape": prediction_errors(recs),
                    "mape_by_label": prediction_errors(recs, group=lambda label, kind: label.split("/")[0] + (
                        "/" + label.split("/")[1] if kind != "cutting" else ""))}
    both = [c for v in out.values() for c in v["scores"]["per_circuit"]]
    hits = sum(1 for c in both if c["hit"])
    regrets = [c["regret"] for c in both if c["regret"] is not None]
    out["both_directions"] = {"circuits": len(both), "within_tol": hits,
                              "fraction_within_tol": hits / len(both) if both else None,
                              "regret_p50": float(np.percentile(regrets, 50)) if regrets else None,
                              "regret_p95": float(np.percentile(regrets, 95)) if regrets else None,
                              "regret_max": max(regrets) if regrets else None}
    for v in out.values():
        if "scores" in v:
            v["scores_brief"] = _brief(v["scores"])
    return out


def unfitted_scores(data: dict, replanned: dict[str, dict], tol: float = 0.10) -> dict:
    """The current model as is (the recorded profile, no multipliers): pick and MAPE on every circuit."""
    recs = []
    for it in data["items"]:
        rp = replanned.get(it["id"])
        if rp is None:
            continue
        recs.append({"id": it["id"], "family": it["spec"]["family"],
                     "measured": {lab: m.get("median_s") for lab, m in it.get("measured", {}).items()},
                     "kinds": {s["label"]: s["kind"] for s in rp["strategies"]},
                     "predicted": {lab: rt["predicted"] for lab, rt in rp["run_terms"].items()},
                     "pick": rp["pick"]})
    return {"all": pick_scores(recs, tol), "mape": prediction_errors(recs),
            "held_out_families": _brief(pick_scores([r for r in recs if r["family"] in TEST_FAMILIES], tol))}

