"""The planner without MPI: enumeration, feasibility, the model's terms, ranking, errors, profiles.

Every plan here uses a fixed :class:`CostProfile` (the built-in constants) and a described
:class:`Resources`, so nothing depends on this machine's speed; no test looks at a clock.
"""
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from pilotq_mpi.workflows.cutting import efficient_su2_problem
from pilotq_mpi.workflows.planner import CostProfile, PlanningError, QpuInfo, Resources, plan
from pilotq_mpi.workflows.planner import model
from pilotq_mpi.workflows.planner.cutplan import build_cutting_plan, cut_options
from pilotq_mpi.workflows.planner.failover import FailoverError, Route, run_fragments
from pilotq_mpi.workflows.planner.profile import default_path

PROFILE = CostProfile(host="test")
GIB = 2**30


@pytest.fixture(scope="module")
def su2_8():
    return efficient_su2_problem(8, reps=1, seed=2, observable="z_sum")


@pytest.fixture(scope="module")
def plan_8(su2_8):
    circuit, observable = su2_8
    return plan(circuit, observable, Resources(workers=4, memory_per_rank=GIB, cores=4), profile=PROFILE, shots=1000,
                search_cuts=True)


def test_every_kind_is_listed_with_unique_labels_and_terms_that_add_up(plan_8):
    labels = [s.label for s in plan_8.strategies]
    assert len(labels) == len(set(labels))
    for label in ("statevector/1", "statevector/2", "statevector/4", "single/aer"):
        assert plan_8.get(label).feasible
    assert any(s.kind == "cutting" and s.feasible for s in plan_8.strategies)
    wide = plan_8.get("statevector/8")
    assert not wide.feasible and wide.reason.startswith("qubits/ranks: needs 8 worker ranks, the pilot has 4")
    for s in plan_8.feasible:
        assert math.isclose(sum(s.terms.values()), s.predicted_time)
        text = s.explain()
        assert all(name in text for name in s.terms)
        assert s.memory_per_rank > 0 and s.tasks >= 1


def test_ranking_feasible_first_by_predicted_time_and_best_is_the_first(plan_8):
    feasible = [s.feasible for s in plan_8.strategies]
    assert feasible == sorted(feasible, reverse=True)
    times = [s.predicted_time for s in plan_8.feasible]
    assert times == sorted(times)
    assert plan_8.best is plan_8.strategies[0]
    table = plan_8.table()
    assert "best" in table and "statevector/8" in table and "no: qubits/ranks" in table


def test_exact_strategies_have_no_error_and_cutting_reports_one_from_its_shots(plan_8):
    for s in plan_8.feasible:
        if s.kind in ("statevector", "single"):
            assert s.std_error == 0.0
        else:
            assert s.kind == "cutting" and s.params["shots"] == 1000 and s.std_error > 0
            assert s.params["subexperiments"] >= 6 ** s.params["cuts"]


def test_auto_skips_the_cut_search_when_an_exact_strategy_beats_any_cut(su2_8):
    circuit, observable = su2_8
    p = plan(circuit, observable, Resources(workers=4, memory_per_rank=GIB, cores=4), profile=PROFILE, shots=1000,
             search_cuts="auto")
    assert not any(s.kind == "cutting" for s in p.strategies)
    assert any(n.startswith("cut search skipped: ") and "search_cuts=True" in n for n in p.notes)
    assert p.timings["cut_search"] == 0.0
    with pytest.raises(PlanningError, match="search_cuts must be 'auto', True or False"):
        plan(circuit, observable, Resources(workers=4), profile=PROFILE, search_cuts="yes")


def test_cut_options_count_what_the_cutting_workflow_generates(su2_8):
    circuit, _ = su2_8
    from qiskit.quantum_info import PauliList

    terms = PauliList(["Z" * 8, "X" * 8])
    options, _, _ = cut_options(circuit, terms, max_cuts=3)
    assert options and [o.num_cuts for o in options] == sorted(o.num_cuts for o in options)
    for o in options:
        assert 1 <= o.num_cuts <= 3 and o.size < 8 and max(o.widths.values()) == o.size
    built = build_cutting_plan(circuit, terms, options[0])
    assert built.num_subexperiments == options[0].subexperiments()
    assert built.num_cuts == options[0].num_cuts


def test_memory_makes_narrow_state_vectors_infeasible_and_says_how_many_ranks_fit():
    circuit, observable = efficient_su2_problem(14, reps=1, observable="z_product")
    budget = 150 * 2**10  # 14 qubits need 384 KiB on one rank, 192 KiB each on 2, 96 KiB each on 4
    p = plan(circuit, observable, Resources(workers=4, memory_per_rank=budget, cores=4), profile=PROFILE,
             sizes=[7])
    one = p.get("statevector/1")
    assert not one.feasible and one.reason.startswith("memory:") and "use >= 4 ranks" in one.reason
    assert p.get("statevector/4").feasible
    assert not p.get("single/aer").feasible and p.get("single/aer").reason.startswith("memory:")


def test_first_imports_are_charged_only_to_workers_that_have_not_run_the_library(su2_8):
    circuit, observable = su2_8
    cold = plan(circuit, observable, Resources(workers=4, cores=2, memory_per_rank=GIB, warm={}), profile=PROFILE)
    qiskit_s, aer_s = PROFILE.get("pilot", "import_qiskit_s"), PROFILE.get("pilot", "import_aer_s")
    assert cold.get("statevector/1").terms["imports"] == qiskit_s
    assert cold.get("statevector/4").terms["imports"] == 2 * qiskit_s, "4 cold workers importing on 2 cores"
    assert cold.get("single/aer").terms["imports"] == qiskit_s + aer_s
    half = plan(circuit, observable, Resources(workers=4, cores=2, memory_per_rank=GIB, warm={"qiskit": 2}),
                profile=PROFILE)
    assert "imports" not in half.get("statevector/2").terms
    assert half.get("statevector/4").terms["imports"] == qiskit_s
    described = plan(circuit, observable, Resources(workers=4, cores=2, memory_per_rank=GIB), profile=PROFILE)
    assert all("imports" not in s.terms for s in described.strategies), "warm=None: a description is warm"


def test_replan_takes_the_resources_present_now(plan_8):
    grown = plan_8.replan(Resources(workers=8, memory_per_rank=GIB, cores=8))
    assert grown.get("statevector/8").feasible and not plan_8.get("statevector/8").feasible
    assert grown.problem.digest == plan_8.problem.digest and grown.settings["shots"] == 1000
    shrunk = plan_8.replan(Resources(workers=1, memory_per_rank=GIB, cores=1))
    assert not shrunk.get("statevector/2").feasible and shrunk.get("statevector/1").feasible


def test_target_error_sets_the_shots_and_too_few_shots_are_refused(su2_8):
    circuit, observable = su2_8
    res = Resources(workers=4, memory_per_rank=GIB, cores=4)
    p = plan(circuit, observable, res, profile=PROFILE, target_error=0.02, search_cuts=True)
    cut = next(s for s in p.strategies if s.kind == "cutting")
    assert cut.feasible and cut.std_error <= 0.02
    few = plan(circuit, observable, res, profile=PROFILE, target_error=0.02, shots=100, search_cuts=True)
    cut = next(s for s in few.strategies if s.kind == "cutting")
    assert not cut.feasible and cut.reason.startswith("target_error:") and "use shots >=" in cut.reason
    assert few.best.kind in ("statevector", "single"), "exact strategies reach any target"


def test_time_budget_no_strategy_can_meet_says_what_would(su2_8):
    circuit, observable = su2_8
    with pytest.raises(PlanningError, match=r"raise time_budget to >= [0-9.e-]+ s") as info:
        plan(circuit, observable, Resources(workers=4, memory_per_rank=GIB), profile=PROFILE, time_budget=1e-6,
             target_error=0.01)
    assert "target_error=0.01 within time_budget=1e-06 s" in str(info.value)
    assert info.value.plan is not None and not info.value.plan.feasible


def test_wrong_width_observable_and_bad_settings_fail_early():
    circuit, _ = efficient_su2_problem(4, reps=1)
    res = Resources(workers=2)
    with pytest.raises(PlanningError, match="observable 0 acts on 3 qubits but the circuit has 4"):
        plan(circuit, "ZZZ", res, profile=PROFILE)
    with pytest.raises(PlanningError, match="observable 1 acts on 5 qubits"):
        plan(circuit, ["ZZZZ", SparsePauliOp("XXXXX")], res, profile=PROFILE)
    with pytest.raises(PlanningError, match="target_error must be a positive number"):
        plan(circuit, "ZZZZ", res, profile=PROFILE, target_error=-1)
    with pytest.raises(PlanningError, match="shots must be a positive integer"):
        plan(circuit, "ZZZZ", res, profile=PROFILE, shots=1.5)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        Resources(workers=0)
    unbound = QuantumCircuit(2)
    from qiskit.circuit import Parameter

    unbound.rx(Parameter("theta"), 0)
    with pytest.raises(PlanningError, match="unbound parameters .*assign_parameters"):
        plan(unbound, "ZZ", res, profile=PROFILE)


def test_mid_circuit_measurement_is_refused_naming_where_and_what_to_do():
    qc = QuantumCircuit(3, 1)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure(1, 0)
    qc.cx(1, 2)
    with pytest.raises(PlanningError, match=r"mid-circuit measurement \(instruction 2 on qubit\(s\) \[1\]\).*defer"):
        plan(qc, "ZZZ", Resources(workers=2), profile=PROFILE)
    final = QuantumCircuit(3)
    final.h(0)
    final.cx(0, 1)
    final.measure_all()
    assert plan(final, "ZZI", Resources(workers=2), profile=PROFILE).best.feasible, "final measurements are fine"


def test_a_qpu_narrower_than_the_circuit_gets_the_widest_cut_that_fits(su2_8):
    circuit, observable = su2_8
    res = Resources(workers=3, memory_per_rank=GIB, qpus=(QpuInfo("dev", qubits=5, latency_s=2.0),
                                                          QpuInfo("tiny", qubits=1)))
    p = plan(circuit, observable, res, profile=PROFILE, shots=500)
    dev = p.get("qpu/dev")
    assert dev.feasible and 0 < dev.params["subcircuit_qubits"] <= 5 and dev.params["cuts"] >= 1
    assert dev.terms["queue"] >= 2.0
    tiny = p.get("qpu/tiny")
    assert not tiny.feasible and tiny.reason.startswith("qubits: the circuit has 8 qubits and the QPU 1")


def test_gpu_ranks_add_gpu_variants_within_gpu_memory(su2_8):
    circuit, observable = su2_8
    p = plan(circuit, observable, Resources(workers=4, gpu_workers=2, memory_per_rank=GIB, gpu_memory=GIB),
             profile=PROFILE, shots=500, search_cuts=True)
    assert p.get("statevector/2/gpu").feasible
    assert not p.get("statevector/4/gpu").feasible
    assert any(s.label.endswith("/gpu") and s.kind == "cutting" for s in p.strategies)


def test_count_swaps_and_list_schedule():
    from pilotq_mpi.statevector import Gate

    eye = np.eye(4)
    twice = [Gate((0, 3), eye), Gate((0, 3), eye)]
    assert model.count_swaps(twice, 4, 0) == 0
    assert model.count_swaps(twice, 4, 1) == 1, "qubit 3 is global on 2 ranks: one swap, then it stays local"
    # (1, 2) needs qubit 2, swapped out for 3; 3 and 0 are both next used by the last gate, and the
    # simulator evicts the outer axis (qubit 3), which the last gate then needs again
    assert model.count_swaps([Gate((0, 3), eye), Gate((1, 2), eye), Gate((0, 3), eye)], 4, 1) == 3
    assert model.list_schedule([4, 1, 1, 1, 1], 2) == 4
    assert model.list_schedule([1] * 6, 3, speed=0.5) == 4
    assert model.batch_costs([(3, 1.0), (2, 10.0)], [2, 2, 1], per_task=0.5) == [2.5, 11.5, 10.5]


def _task(value, fail):
    if fail:
        raise RuntimeError(f"backend cannot take fragment {value}")
    return {"results": [value]}


def test_run_fragments_moves_only_failed_fragments_and_keeps_the_rest():
    with ThreadPoolExecutor(2) as pool:
        first = Route("qpu/x", lambda b, payload: pool.submit(_task, payload, b % 2 == 1))
        second = Route("aer on CPU ranks", lambda b, payload: pool.submit(_task, payload, False))
        results, moved = run_fragments(["a", "b", "c", "d"], [3, 3, 3, 1], [first, second])
        assert [r["results"] for r in results] == [["a"], ["b"], ["c"], ["d"]]
        assert sorted((m["fragment"], m["subexperiments"], m["from"], m["to"]) for m in moved) == [
            (1, 3, "qpu/x", "aer on CPU ranks"), (3, 1, "qpu/x", "aer on CPU ranks")]
        assert all("backend cannot take fragment" in m["why"] for m in moved)
        with pytest.raises(FailoverError, match="failed on every route: qpu/x: RuntimeError"):
            run_fragments(["a", "b"], [1, 1], [first])


def test_profile_is_saved_and_loaded_per_host_and_defaults_when_absent(tmp_path, monkeypatch):
    path = tmp_path / "profile.json"
    a = CostProfile(host="node-a")
    a.update("numpy", {"amp_gate_s": {"20": 1e-9}})
    a.save(path)
    b = CostProfile(host="node-b")
    b.update("aer", {"setup_s": 0.5})
    b.save(path)
    loaded_a = CostProfile.load(path, host="node-a")
    assert loaded_a.is_calibrated("numpy") and not loaded_a.is_calibrated("aer")
    assert loaded_a.by_size("numpy", "amp_gate_s", 20) == 1e-9
    assert CostProfile.load(path, host="node-b").get("aer", "setup_s") == 0.5
    fresh = CostProfile.load(path, host="node-c")
    assert fresh.calibrated == {} and fresh.get("aer", "setup_s") == PROFILE.get("aer", "setup_s")
    assert set(json.loads(path.read_text())["hosts"]) == {"node-a", "node-b"}
    monkeypatch.setenv("PILOTQ_PROFILE", str(tmp_path / "env.json"))
    assert default_path("whatever") == tmp_path / "env.json"
    monkeypatch.delenv("PILOTQ_PROFILE")
    assert default_path("my/host").name == "profile-my_host.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read.*pilotq-mpi calibrate"):
        CostProfile.load(path, host="node-a")


def test_by_size_interpolates_between_calibrated_sizes():
    p = CostProfile(host="t")
    p.update("numpy", {"amp_gate_s": {"10": 1e-8, "20": 1e-9}})
    assert p.by_size("numpy", "amp_gate_s", 5) == 1e-8
    assert p.by_size("numpy", "amp_gate_s", 30) == 1e-9
    assert math.isclose(p.by_size("numpy", "amp_gate_s", 15), math.sqrt(1e-8 * 1e-9))


def test_report_prints_prediction_next_to_measurement(tmp_path):
    from pilotq_mpi.report import format_planner, planner_runs
    from pilotq_mpi.trace import TraceWriter, read_trace

    path = tmp_path / "t.jsonl"
    with TraceWriter(path, flush_interval=0) as w:
        w.write_header([{"rank": 1, "node": "n"}], start=0.0)
        w.write_record({"type": "plan", "strategy": "cutting/4q", "predicted": 2.0, "measured": 3.0, "moved": []})
        with pytest.raises(Exception, match="new type"):
            w.write_record({"type": "task"})
    runs = planner_runs(read_trace(path))
    assert [r["strategy"] for r in runs] == ["cutting/4q"]
    text = format_planner(runs)
    assert "cutting/4q" in text and "1.50" in text


# --- model v2: the load-aware CPU share, convert from gate counts, the max_cuts guard


def test_cpu_share_is_the_fair_share_of_the_cores_capped_at_ranks_and_cores():
    assert model.cpu_share(1, 2) == 1.0 and model.cpu_share(2, 2) == 2.0 and model.cpu_share(4, 2) == 2.0
    assert model.cpu_share(4, 2, 1.0) == pytest.approx(2 * 4 / 5)  # 5 runnable on 2 cores
    assert model.cpu_share(1, 4, 1.0) == 1.0  # fewer runnable than cores: one core each
    shares = [model.cpu_share(k, 2, 10.0) for k in (1, 2, 4)]
    assert shares == pytest.approx([2 / 11, 4 / 12, 8 / 14])  # more ranks, a bigger share of a loaded machine
    assert shares[0] < shares[1] < shares[2] < 2
    with pytest.raises(ValueError, match="external_load must be a finite number >= 0"):
        model.cpu_share(2, 2, -1.0)
    with pytest.raises(ValueError, match="external_load must be a finite number >= 0"):
        Resources(workers=4, external_load=-0.5)
    assert Resources(workers=4).external_load == 0.0


def test_each_ranks_cpu_work_is_stretched_by_ranks_over_their_cpu_share():
    def terms(k, load, n=20):
        return model.statevector_terms(PROFILE, num_qubits=n, ranks=k, fused_gates=100, swaps=0, x_groups=1,
                                       terms=3, cores=2, convert_s=0.05, external_load=load)

    gate_s = PROFILE.get("numpy", "gate_s")
    for load in (0.0, 3.0, 10.0):
        for k in (1, 2, 4):
            m = 20 - (k.bit_length() - 1)
            slow = k / model.cpu_share(k, 2, load)
            assert model.stretch(k, 2, load) == pytest.approx(slow) and slow >= 1.0
            per_rank = 100 * (2**m * PROFILE.by_size("numpy", "amp_gate_s", m) + gate_s)
            assert terms(k, load)["apply"] == pytest.approx(per_rank * slow)
            assert terms(k, load)["convert"] == pytest.approx(0.05 * slow)  # every rank converts the circuit
    # idle 2 cores: 4 ranks tie with 2 on amplitude work and pay their fixed costs twice, so they are
    # never predicted faster, at any size; at load 10 they get a bigger share of the machine and win
    for n in (8, 12, 16, 20, 24, 26):
        idle = {k: sum(terms(k, 0.0, n).values()) for k in (1, 2, 4)}
        assert idle[4] > idle[2], (n, idle)
        assert terms(4, 0.0, n)["convert"] == pytest.approx(2 * terms(2, 0.0, n)["convert"])
    assert terms(4, 10.0)["apply"] < terms(2, 10.0)["apply"] < terms(1, 10.0)["apply"]
    aer0 = model.aer_terms(PROFILE, num_qubits=20, fused_gates=100, terms=1, cores=2)
    aer10 = model.aer_terms(PROFILE, num_qubits=20, fused_gates=100, terms=1, cores=2, external_load=10.0)
    assert aer10["simulate"] == pytest.approx(aer0["simulate"] * 11 / 2)
    assert aer10["setup"] == pytest.approx(aer0["setup"] * 11 / 2) and aer10["task"] == aer0["task"]


def test_observables_cost_per_x_group_and_per_pauli_term():
    def obs(groups, n_terms, k=1):
        return model.statevector_terms(PROFILE, num_qubits=18, ranks=k, fused_gates=10, swaps=0, x_groups=groups,
                                       terms=n_terms, cores=2, convert_s=0.0)["observables"]

    per_term = 2**18 * PROFILE.get("numpy", "observable_term_amp_s") + 1e-5
    assert obs(1, 19) - obs(1, 1) == pytest.approx(18 * per_term)
    assert obs(3, 3) - obs(1, 3) == pytest.approx(2 * 2**18 * PROFILE.get("numpy", "observable_amp_s"))
    # 2 ranks on 2 cores: half the amplitudes each; the fixed cost per term is every rank's
    assert obs(1, 4, k=2) - 4e-5 == pytest.approx((obs(1, 4) - 4e-5) / 2)


def test_plan_under_external_load_explains_the_share_and_stretches_cpu_work(su2_8):
    circuit, observable = su2_8
    idle = plan(circuit, observable, Resources(workers=4, memory_per_rank=GIB, cores=2), profile=PROFILE,
                search_cuts=False)
    loaded = plan(circuit, observable, Resources(workers=4, memory_per_rank=GIB, cores=2, external_load=10.0),
                  profile=PROFILE, search_cuts=False)
    assert "external load 10" in loaded.table()
    for label in ("statevector/1", "statevector/4"):
        s, quiet = loaded.get(label), idle.get(label)
        assert "CPU share" in s.explain() and "external load 10" in s.explain()
        slow = model.stretch(s.params["ranks"], 2, 10.0) / model.stretch(s.params["ranks"], 2, 0.0)
        for term in ("apply", "convert", "observables"):
            assert s.terms[term] == pytest.approx(quiet.terms[term] * slow)
        assert s.terms["task"] == quiet.terms["task"]  # wall: not stretched
        convert = idle.problem.gates * PROFILE.get("numpy", "convert_gate_s")
        assert quiet.terms["convert"] == pytest.approx(convert * model.stretch(s.params["ranks"], 2, 0.0))
    assert idle.best.label in ("statevector/1", "statevector/2")


def test_external_load_is_sampled_now_not_the_lagging_load_average():
    from pilotq_mpi.workflows.planner.resources import external_load_now, runnable_now

    now = runnable_now(samples=3, interval=0.001)
    assert now is None or now >= 0.0  # None off Linux
    assert external_load_now(own_busy=10_000) == 0.0  # never negative


def _brick(n: int, depth: int, seed: int = 0):
    """The planner benchmark's random brickwork, from the benchmark itself."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from planner_circuits import circuit
    finally:
        sys.path.pop(0)
    return circuit("brick", n, depth, seed)


def test_cut_search_returns_none_when_find_cuts_exceeds_max_cuts():
    from qiskit_addon_cutting import DeviceConstraints, OptimizationParameters, find_cuts

    from pilotq_mpi.workflows.planner.cutplan import MAX_BACKJUMPS, search

    qc = _brick(10, 4)
    terms = SparsePauliOp("Z" * 10).paulis
    # the case exists: find_cuts ignores max_gamma = 3^3 here and returns more than 3 cuts
    _, meta = find_cuts(qc, OptimizationParameters(seed=0, max_backjumps=MAX_BACKJUMPS, max_gamma=27.0027),
                        DeviceConstraints(qubits_per_subcircuit=3))
    assert len(meta["cuts"]) > 3
    assert search(qc, terms, 3, 0, 3) is None  # refused before enumerating 6^cuts QPD weights
    found = search(qc, terms, 8, 0, 3)  # a size that needs few cuts still gets its option
    assert found is not None and 1 <= found.num_cuts <= 3


def test_statevector_task_term_uses_the_calibrated_tiny_task_at_that_width():
    profile = CostProfile()
    profile.update("pilot", {"task_s": 0.001, "sv_task_s": {"1": 0.004, "2": 0.009}})
    assert model.statevector_task_seconds(profile, 1) == 0.004
    assert model.statevector_task_seconds(profile, 2) == 0.009
    # not measured at 4 ranks, nor for GPU ranks: the round trip times 1 + log2(k)
    assert model.statevector_task_seconds(profile, 4) == pytest.approx(0.003)
    assert model.statevector_task_seconds(profile, 2, "cupy") == pytest.approx(0.002)
    terms = model.statevector_terms(profile, num_qubits=10, ranks=2, fused_gates=3, swaps=1, x_groups=1, terms=1,
                                    cores=2, convert_s=0.0)
    assert terms["task"] == pytest.approx(0.009 + profile.get("pilot", "circuit_s"))
