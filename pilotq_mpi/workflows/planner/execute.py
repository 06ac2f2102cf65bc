"""``run()``: execute a planned strategy with the existing workflows, with failover.

- ``statevector/<k>``: one ``k``-rank task of :func:`pilotq_mpi.statevector.statevector_task`;
- ``single/aer``: one single-rank task of :func:`aer_estimate_task` (Aer's exact estimator);
- ``cutting/<w>q``: the cut's :class:`~pilotq_mpi.workflows.cutting.CuttingPlan`, its
  subexperiments in guided batches (:func:`~pilotq_mpi.workflows.cutting.guided_batch_sizes`)
  as single-rank tasks of :func:`aer_sample_batch`, reconstructed with qiskit-addon-cutting;
- ``qpu/<name>``: the same batches as QPU tasks of :func:`qpu_sample_batch` on the declared QPU.

Failover (:mod:`.failover`): batches that fail for good move to the next route (QPU -> Aer on
GPU ranks -> Aer on CPU ranks); a whole-circuit strategy that fails moves to the next feasible
strategy of a plan made with the resources present then. ``RunResult.moved`` says what moved
and why. The measured time (from the start of execution to the values) is recorded next to the
predicted one in the pilot's trace (a ``"plan"`` record; ``pilotq-mpi report`` shows it).
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .failover import Route, run_fragments, summarize_moves
from .planning import Plan, plan as make_plan
from .problem import PlanningError
from .strategies import Strategy


@dataclass
class RunResult:
    """What :func:`run` returns."""

    values: list[float]
    """One value per observable."""
    std_errors: list[float]
    """Standard error of each value (0.0 when exact; an upper estimate for cutting and QPUs)."""
    strategy: Strategy
    """The strategy that was asked for (or picked by ``"auto"``)."""
    predicted_time: float
    measured_time: float
    """Seconds from the start of execution to the values (planning excluded: ``plan_time``)."""
    moved: list[dict] = field(default_factory=list)
    """Failover records: what moved (fragments, subexperiments or the whole circuit), from, to, why."""
    plan: Plan | None = None
    plan_time: float = 0.0
    ran: list[str] = field(default_factory=list)
    """Labels of the strategies/routes that produced the values."""
    details: dict = field(default_factory=dict)
    """Per kind: tasks, shots, subexperiments, phase seconds."""

    def summary(self) -> str:
        """Values with error bars, predicted vs measured time, and what moved."""
        vals = ", ".join(f"{v:.6g} +- {e:.2g}" if e else f"{v:.6g} (exact)"
                         for v, e in zip(self.values, self.std_errors))
        ratio = self.measured_time / self.predicted_time if self.predicted_time > 0 else math.nan
        lines = [f"{self.strategy.label}: {vals}",
                 f"time: predicted {self.predicted_time:.3g} s, measured {self.measured_time:.3g} s"
                 f" (x{ratio:.2f}); planning {self.plan_time:.3g} s"]
        lines += summarize_moves([m for m in self.moved if "fragment" in m])
        lines += [f"whole circuit moved from {m['from']} to {m['to']}: {m['why']}" for m in self.moved
                  if "fragment" not in m]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy.label, "values": self.values, "std_errors": self.std_errors,
                "predicted_time": self.predicted_time, "measured_time": self.measured_time,
                "plan_time": self.plan_time, "moved": self.moved, "ran": self.ran,
                "terms": dict(self.strategy.terms)}


# --------------------------------------------------------------------------- tasks


def aer_estimate_task(comm, circuit, labels: list[str]) -> list[float]:
    """Pilot task: exact expectation values of the Pauli ``labels`` with Aer's estimator (one rank)."""
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2

    sim = AerSimulator(method="statevector")
    isa = transpile(circuit, backend=sim, optimization_level=0)
    est = EstimatorV2(options={"default_precision": 0.0})
    result = est.run([(isa, [SparsePauliOp(label) for label in labels])]).result()
    return [float(v) for v in np.asarray(result[0].data.evs).reshape(-1)]


def _load(circuits):
    if isinstance(circuits, (bytes, bytearray)):
        from qiskit import qpy

        return qpy.load(io.BytesIO(circuits))
    return list(circuits)


_PASS_MANAGERS: dict = {}
"""Aer transpilation pass manager per device, kept by each worker process across batches."""


def aer_sample_batch(comm, circuits, shots: int, seed: int, device: str = "auto") -> dict:
    """Pilot task: sample a batch of (QPY) subexperiments with Aer's SamplerV2.

    ``device``: ``"GPU"``, ``"CPU"`` or ``"auto"`` (GPU when this rank owns one).
    """
    import os
    import socket

    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    from ...context import current_task

    t0 = time.perf_counter()
    circuits = _load(circuits)
    if device == "auto":
        task = current_task()
        device = "GPU" if task is not None and task.has_gpu else "CPU"
    options = {"device": device}
    pm = _PASS_MANAGERS.get(device)
    if pm is None:  # ~0.3 CPU-s to build (2 s the first time): once per worker process and device
        pm = _PASS_MANAGERS[device] = generate_preset_pass_manager(optimization_level=1,
                                                                   backend=AerSimulator(**options))
    isa = pm.run(circuits)
    sampler = SamplerV2(default_shots=int(shots), seed=int(seed), options={"backend_options": options})
    results = list(sampler.run(isa).result())
    return {"results": results, "seconds": time.perf_counter() - t0, "device": device,
            "host": socket.gethostname(), "pid": os.getpid()}


def qpu_sample_batch(backend, circuits, shots: int, seed: int) -> dict:
    """QPU task: transpile a batch of (QPY) circuits for ``backend`` and sample them in one job.

    IBM Quantum backends run through qiskit-ibm-runtime's SamplerV2; any other ``BackendV2``
    (fake devices, ``EmulatedQPU``) through qiskit's ``BackendSamplerV2``.
    """
    from qiskit.transpiler import generate_preset_pass_manager

    t0 = time.perf_counter()
    circuits = _load(circuits)
    pm = generate_preset_pass_manager(optimization_level=1, backend=backend)
    isa = pm.run(circuits)
    if any(cls.__name__ == "IBMBackend" for cls in type(backend).__mro__):
        import warnings

        from qiskit_ibm_runtime import SamplerV2 as RuntimeSampler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sampler = RuntimeSampler(mode=backend, options={"default_shots": int(shots)})
    else:
        from qiskit.primitives import BackendSamplerV2

        sampler = BackendSamplerV2(backend=backend, options={"default_shots": int(shots),
                                                             "seed_simulator": int(seed)})
    results = list(sampler.run(isa).result())
    return {"results": results, "seconds": time.perf_counter() - t0, "device": getattr(backend, "name", "qpu")}


# --------------------------------------------------------------------------- execution


def _whole_circuit(pilot, p: Plan, s: Strategy) -> tuple[list[float], dict]:
    """Run a state-vector or one-rank Aer strategy; term values and details."""
    labels = p.problem.terms.to_labels()
    if s.kind == "statevector":
        from qiskit.quantum_info import SparsePauliOp

        from ...statevector import statevector_task

        k = s.params["ranks"]
        gpu = s.params.get("backend") == "cupy"
        kwargs: dict[str, Any] = {"ranks": k, "name": f"planner:{s.label}"}
        if gpu:
            kwargs["gpus_per_rank"] = 1
        if p.resources.memory_per_rank is not None:
            kwargs["memory_per_rank"] = s.memory_per_rank
        fut = pilot.submit(statevector_task, p.problem.circuit, [SparsePauliOp(label) for label in labels],
                           backend="cupy" if gpu else "numpy", **kwargs)
        res = fut.result()
        return [float(np.real(v)) for v in res.expectations], {"timings": res.timings, "tasks": 1}
    if s.kind == "single":
        fut = pilot.submit(aer_estimate_task, p.problem.circuit, labels, name=f"planner:{s.label}")
        return fut.result(), {"tasks": 1}
    raise ValueError(f"{s.label} is not a whole-circuit strategy")


def _routes(pilot, p: Plan, s: Strategy, shots: int, qpu_retries: int) -> list[Route]:
    from ...workflows.cutting import batch_seed

    seed = int(p.settings.get("seed") or 0)
    routes: list[Route] = []

    def qpu_route(name: str) -> Route:
        return Route(f"qpu/{name}", lambda b, payload: pilot.submit(
            qpu_sample_batch, payload, shots, batch_seed(seed, b), qpu=name, retries=qpu_retries,
            retry_backoff=0.1, name=f"planner:qpu/{name}"))

    def aer_route(device: str) -> Route:
        gpus = 1 if device == "GPU" else 0
        label = "aer on GPU ranks" if gpus else "aer on CPU ranks"
        return Route(label, lambda b, payload: pilot.submit(
            aer_sample_batch, payload, shots, batch_seed(seed, b), device, gpus_per_rank=gpus,
            name=f"planner:{s.label}"))

    if s.kind == "qpu":
        routes.append(qpu_route(s.params["qpu"]))
    elif s.params.get("backend") == "aer-sampler-gpu":
        routes.append(aer_route("GPU"))
    if p.resources.gpu_workers and not any(r.label == "aer on GPU ranks" for r in routes):
        routes.append(aer_route("GPU"))
    routes.append(aer_route("CPU"))
    return routes


def _fragmented(pilot, p: Plan, s: Strategy, qpu_retries: int) -> tuple[list[float], list[float], list[dict], dict]:
    """Run a cutting or QPU strategy with failover; term values, errors, moves, details."""
    from qiskit.primitives import PrimitiveResult
    from qiskit_addon_cutting import reconstruct_expectation_values

    from ..cutting import _standard_errors, guided_batch_sizes, make_batches, to_qpy
    from .cutplan import build_cutting_plan

    shots = int(s.params["shots"])
    t0 = time.perf_counter()
    cplan = build_cutting_plan(p.problem.circuit, p.problem.terms, s.option, seed=int(p.settings.get("seed") or 0))
    t1 = time.perf_counter()
    if s.kind == "qpu":
        sizes = [len(b) for b in _qpu_batches(cplan.num_subexperiments, s.tasks)]
    else:
        sizes = guided_batch_sizes(cplan.num_subexperiments, int(s.params.get("workers") or p.resources.workers))
    batches = make_batches(cplan, sizes)
    payloads = [to_qpy([cplan.subexperiments[label][i] for label, i in keys]) for keys in batches]
    routes = _routes(pilot, p, s, shots, qpu_retries)
    results, moved = run_fragments(payloads, sizes, routes)
    t2 = time.perf_counter()
    pubs: dict = {label: [None] * len(v) for label, v in cplan.subexperiments.items()}
    for keys, out in zip(batches, results):
        if len(out["results"]) != len(keys):
            raise RuntimeError(f"a batch of {len(keys)} subexperiments returned {len(out['results'])} results")
        for (label, i), pub in zip(keys, out["results"]):
            pubs[label][i] = pub
    merged = {label: PrimitiveResult(lst) for label, lst in pubs.items()}
    estimates = [float(v) for v in reconstruct_expectation_values(merged, cplan.coefficients, cplan.subobservables)]
    t3 = time.perf_counter()
    errors = _standard_errors(cplan, pubs, shots)
    t4 = time.perf_counter()
    details = {"tasks": len(batches) + len(moved), "subexperiments": cplan.num_subexperiments, "shots": shots,
               "batch_sizes": sizes, "cuts": cplan.num_cuts,
               "phases": {"generate": t1 - t0, "sample": t2 - t1, "reconstruct": t3 - t2, "stderr": t4 - t3}}
    return estimates, errors, moved, details


def _qpu_batches(total: int, jobs: int) -> list[range]:
    per = math.ceil(total / max(1, jobs))
    return [range(i, min(total, i + per)) for i in range(0, total, per)]


def _record(pilot, result: RunResult) -> None:
    """Put the prediction and the measurement in the pilot's trace (``Pilot.note``; if it writes one)."""
    note = getattr(pilot, "note", None)
    if note is None:
        return
    p = result.plan
    record = {"type": "plan", "time": time.time(), "strategy": result.strategy.label,
              "kind": result.strategy.kind, "predicted": result.predicted_time, "measured": result.measured_time,
              "plan_time": result.plan_time, "terms": dict(result.strategy.terms), "values": result.values,
              "std_errors": result.std_errors, "moved": result.moved, "ran": result.ran,
              "qubits": p.problem.num_qubits if p else None,
              "alternatives": [{"label": s.label, "predicted": s.predicted_time} for s in (p.feasible if p else [])][:8]}
    try:
        note(record)
    except Exception:  # noqa: BLE001 - a trace problem must not lose the values
        pass


def run(circuit, observables, pilot, strategy: "str | Strategy" = "auto", *, qpu_retries: int = 1,
        **plan_kwargs: Any) -> RunResult:
    """Plan (unless a :class:`Strategy` is given with its plan's settings) and run one strategy.

    Args:
        circuit, observables, pilot: as for :func:`~.planning.plan` (``pilot`` must be a running
            ``Pilot`` here: the tasks go to it).
        strategy: ``"auto"`` (the plan's best), a label from the plan (``"statevector/4"``) or a
            :class:`Strategy` from a plan.
        qpu_retries: retries of a failed QPU job before its fragments move on.
        plan_kwargs: ``target_error``, ``shots``, ``time_budget``, ``profile``, ``max_cuts``, ...

    Returns:
        :class:`RunResult`: values with standard errors, predicted and measured time, what moved.

    Raises:
        PlanningError: the strategy is infeasible (its reason), not in the plan, or nothing is feasible.
    """
    if not hasattr(pilot, "submit"):
        raise TypeError(f"run() needs a running Pilot to submit tasks to, got {type(pilot).__name__}")
    t0 = time.perf_counter()
    p = make_plan(circuit, observables, pilot, **plan_kwargs)
    if isinstance(strategy, Strategy):
        chosen = strategy
    elif strategy == "auto":
        chosen = p.best
    else:
        try:
            chosen = p.get(strategy)
        except KeyError as exc:
            raise PlanningError(str(exc.args[0]), p) from None
    if not chosen.feasible:
        raise PlanningError(f"strategy {chosen.label} is infeasible: {chosen.reason}", p)
    plan_time = time.perf_counter() - t0
    started = time.perf_counter()
    moved: list[dict] = []
    ran: list[str] = []
    current, tried = chosen, {chosen.label}
    while True:
        try:
            if current.kind in ("statevector", "single"):
                term_values, details = _whole_circuit(pilot, p, current)
                term_errors = None
            else:
                term_values, term_errors, frag_moves, details = _fragmented(pilot, p, current, qpu_retries)
                moved.extend(frag_moves)
            ran.append(current.label)
            break
        except PlanningError:
            raise
        except Exception as exc:  # noqa: BLE001 - the whole circuit moves to the next feasible strategy
            fresh = p.replan(pilot) if hasattr(pilot, "resources") else p
            nxt = next((s for s in fresh.strategies if s.feasible and s.label not in tried), None)
            why = f"{type(exc).__name__}: {exc}"[:300]
            if nxt is None:
                raise PlanningError(f"{current.label} failed ({why}) and no other feasible strategy is left"
                                    f" (tried: {', '.join(sorted(tried))})", p) from exc
            moved.append({"what": "whole circuit", "from": current.label, "to": nxt.label, "why": why})
            tried.add(nxt.label)
            p, current = fresh, nxt
    from .resources import mark_warm
    from .strategies import LIBRARIES

    done = current
    used = done.params.get("ranks", 1) if done.kind == "statevector" else (
        min(done.tasks, p.resources.workers) if done.kind == "cutting" else 1)
    mark_warm(pilot, LIBRARIES.get(done.kind, ()), used)
    if moved:  # fragments that moved ran Aer on the compute ranks
        mark_warm(pilot, LIBRARIES["cutting"], min(len(moved), p.resources.workers))
    values, errors = p.problem.combine(term_values, term_errors)
    result = RunResult(values=values, std_errors=errors, strategy=chosen, predicted_time=chosen.predicted_time,
                       measured_time=time.perf_counter() - started, moved=moved, plan=p, plan_time=plan_time,
                       ran=ran, details=details)
    _record(pilot, result)
    return result
