"""The planner: choose how to run a circuit on a pilot (distributed state vector, cutting, one rank, a QPU).

::

    from pilotq_mpi import Pilot, plan
    from pilotq_mpi.workflows.planner import run

    with Pilot() as pilot:
        p = plan(circuit, observables, pilot, target_error=0.01)
        print(p.table())              # ranked strategies, infeasible ones with the reason
        print(p.best.explain())       # the model's terms
        result = run(circuit, observables, pilot, strategy="auto", target_error=0.01)
        print(result.summary())       # values +- std error, predicted vs measured time, what moved

Modules: :mod:`.problem` (input checks), :mod:`.resources`, :mod:`.cutplan` (cut search),
:mod:`.model` (cost terms), :mod:`.profile` / :mod:`.calibration` (machine constants),
:mod:`.strategies` (enumeration and feasibility), :mod:`.planning` (``plan``),
:mod:`.execute` (``run``), :mod:`.failover`.
"""
from __future__ import annotations

from .execute import RunResult, run
from .failover import FailoverError
from .planning import Plan, plan
from .problem import PlanningError
from .profile import CostProfile, calibrate
from .resources import QpuInfo, Resources
from .strategies import Strategy

__all__ = ["CostProfile", "FailoverError", "Plan", "PlanningError", "QpuInfo", "Resources", "RunResult", "Strategy",
           "calibrate", "plan", "run"]
