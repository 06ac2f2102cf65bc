"""Scores of the planner benchmark (pure functions on stored measurements; no MPI, no qiskit).

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
from dataclasses import dataclass

import numpy as np


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
