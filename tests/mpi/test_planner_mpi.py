"""The planner's run() under real MPI: values against the exact expectation, prediction in the trace, failover.

Run with ``timeout 300 mpiexec -n 4 python -m pytest --with-mpi -p no:cacheprovider tests/mpi/test_planner_mpi.py``.
Every test starts its own pilot with ``run_pilot``; rank 0 runs the driver (the assertions).
The cost profile is the built-in one (no timing is asserted anywhere).
"""
import os
import tempfile
import threading

import pytest
from qiskit_aer import AerSimulator

from pilotq_mpi import QPU, Pilot
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions
from pilotq_mpi.trace import read_trace
from pilotq_mpi.workflows.cutting import efficient_su2_problem
from pilotq_mpi.workflows.planner import CostProfile, QpuInfo, plan, run

pytestmark = [pytest.mark.mpi(min_size=4), pytest.mark.timeout(240)]
PROFILE = CostProfile(host="test")


def exact_value(circuit, observable):
    from qiskit.quantum_info import Statevector

    return float(Statevector(circuit).expectation_value(observable).real)


def close_enough(result, exact):
    """Within 5 reported standard errors (exact strategies: to rounding)."""
    (value,), (error,) = result.values, result.std_errors
    return abs(value - exact) <= 5 * error + 1e-9


def shared_path(name):
    from mpi4py import MPI

    path = os.path.join(tempfile.mkdtemp(prefix="pilotq-planner-"), name) if MPI.COMM_WORLD.Get_rank() == 0 else None
    return MPI.COMM_WORLD.bcast(path, root=0)


def test_run_auto_and_two_explicit_strategies_match_the_exact_value_and_land_in_the_trace():
    trace = shared_path("trace.jsonl")
    circuit, observable = efficient_su2_problem(6, reps=1, seed=3, observable="z_sum")
    exact = exact_value(circuit, observable)

    def driver():
        with Pilot() as pilot:
            p = plan(circuit, observable, pilot, shots=1000, profile=PROFILE, search_cuts=True)
            cutting = next(s for s in p.feasible if s.kind == "cutting")
            results = {}
            for strategy in ("auto", "statevector/2", cutting.label):
                results[strategy] = run(circuit, observable, pilot, strategy, shots=1000, profile=PROFILE,
                                        search_cuts=True)
        for strategy, result in results.items():
            assert close_enough(result, exact), (strategy, result.values, result.std_errors, exact)
            assert result.measured_time > 0 and result.predicted_time > 0
            assert result.moved == []
        assert results["auto"].strategy.label == p.best.label
        assert results["statevector/2"].std_errors == [0.0]
        assert results[cutting.label].std_errors[0] > 0, "cutting is sampled: it reports an error bar"
        sv = results["statevector/2"]
        assert sv.details["timings"]["swaps"] == sv.strategy.params["swaps"], "the model counts the swaps made"
        return [r.strategy.label for r in results.values()]

    labels = run_pilot(driver, options=PilotOptions(quiet=True, trace=trace))
    if labels is not None:  # rank 0: the trace has one plan record per run, prediction next to measurement
        records = [r for r in read_trace(trace) if r["type"] == "plan"]
        assert [r["strategy"] for r in records] == labels
        assert all(r["predicted"] > 0 and r["measured"] > 0 and r["terms"] for r in records)


class PickyQPU(AerSimulator):
    """A 'QPU' that runs its first ``accept`` jobs and rejects every later one (also on retries)."""

    def __init__(self, accept=1, **options):
        super().__init__(**options)
        self._accept = accept
        self._jobs = 0
        self._lock = threading.Lock()

    def run(self, run_input, **options):
        with self._lock:
            self._jobs += 1
            jobs = self._jobs
        if jobs > self._accept:
            raise RuntimeError(f"job {jobs} rejected by the QPU: quota exhausted")
        return super().run(run_input, **options)


def picky_qpu(accept=1):
    return PickyQPU(accept=accept)


def test_qpu_rejections_move_only_those_fragments_to_a_simulator():
    circuit, observable = efficient_su2_problem(6, reps=1, seed=5, observable="z_sum")
    exact = exact_value(circuit, observable)
    info = {"picky": QpuInfo("picky", qubits=4, concurrency=2)}

    def driver():
        with Pilot(qpus=[QPU("picky", factory=f"{__name__}:picky_qpu", options={"accept": 1}, concurrency=2)]) as pilot:
            p = plan(circuit, observable, pilot, shots=1000, profile=PROFILE, qpu_info=info)
            qpu = p.get("qpu/picky")
            assert qpu.feasible and qpu.params["cuts"] > 0, "6 qubits on a 4-qubit QPU: cut to fit"
            result = run(circuit, observable, pilot, "qpu/picky", shots=1000, profile=PROFILE, qpu_info=info,
                         qpu_retries=1)
        assert close_enough(result, exact), (result.values, result.std_errors, exact)
        assert len(result.moved) == qpu.tasks - 1, "the first job ran on the QPU and was kept; the others moved"
        for move in result.moved:
            assert move["from"] == "qpu/picky" and move["to"] == "aer on CPU ranks"
            assert "rejected by the QPU" in move["why"] and move["subexperiments"] > 0
        assert "moved from qpu/picky to aer on CPU ranks" in result.summary()
        return True

    run_pilot(driver, options=PilotOptions(quiet=True))


def test_statevector_calibration_probe_reports_cpu_constants_on_each_rank():
    """The state-vector probe of the calibration (CPU-time constants) on every rank's own communicator."""
    from mpi4py import MPI

    from pilotq_mpi.workflows.planner.calibration import bench_statevector

    out = bench_statevector(MPI.COMM_SELF, sizes=(9, 11))
    assert set(out["amp_gate_s"]) <= {"9", "11"} and "11" in out["amp_gate_s"]
    for key in ("gate_s", "observable_amp_s", "observable_term_amp_s", "init_amp_s", "probe_cpu_s"):
        assert out[key] > 0, key
    profile = CostProfile(host="probe")
    profile.update("numpy", {k: v for k, v in out.items() if k != "probe_cpu_s"})
    assert profile.by_size("numpy", "amp_gate_s", 11) == out["amp_gate_s"]["11"]

