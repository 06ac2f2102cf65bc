"""QPU factories and the sampling task, with real qiskit-ibm-runtime fake backends.

Sampling uses ``fake_manila`` (5 qubits, ~0.3 s a job): ``fake_fez`` (156 qubits) costs
~10-25 s per job in Aer on this machine, so it is only built here, not run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from qiskit import QuantumCircuit

from pilotq_mpi.workflows.qpu import (
    EmulatedQPU,
    QpuConfigError,
    build_backend,
    fake_backend,
    load_factory,
    pennylane_device,
    sample_on_backend,
)

REPO = Path(__file__).resolve().parents[2]


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, name="bell")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def test_fake_factory_builds_fez_without_simulating():
    backend = fake_backend()
    assert isinstance(backend, EmulatedQPU)
    assert backend.name == "fake_fez"
    assert backend.num_qubits == 156 and backend.target.num_qubits == 156
    assert backend.latency_s == 0.0 and backend.jobs == 0


def test_fake_factory_rejects_unknown_name_and_lists_valid_ones():
    with pytest.raises(QpuConfigError, match="no fake backend named 'fake_nowhere'.*fake_fez"):
        fake_backend("fake_nowhere")


@pytest.mark.parametrize("latency", [-1, "1s", True])
def test_fake_factory_rejects_bad_latency(latency):
    with pytest.raises(QpuConfigError, match="latency_s must be a number >= 0"):
        fake_backend("fake_manila", latency_s=latency)


def test_latency_is_paid_on_every_job(monkeypatch):
    from pilotq_mpi.workflows import qpu

    slept = []
    monkeypatch.setattr(qpu.time, "sleep", slept.append)  # record the waits instead of timing them
    backend = fake_backend("fake_manila", latency_s=0.4, seed=3)
    for expected_jobs in (1, 2):
        counts = sample_on_backend(backend, bell(), shots=100)
        assert slept == [0.4] * expected_jobs
        assert backend.jobs == expected_jobs
        assert sum(counts[0].values()) == 100


def test_bell_counts_are_plausible_on_noisy_fake_device():
    shots = 4000
    backend = fake_backend("fake_manila", seed=1234)
    first, second = sample_on_backend(backend, [bell(), bell()], shots)
    for counts in (first, second):
        assert sum(counts.values()) == shots
        assert set(counts) <= {"00", "01", "10", "11"}
        correlated = counts.get("00", 0) + counts.get("11", 0)
        # Ideal Bell state: only 00 and 11. fake_manila's CX (~1% error) and readout
        # (~2-4% per qubit) errors leave ~5% of shots in 01/10 (measured 6%); 0.85 keeps a
        # wide margin yet fails for an uncorrelated result (50%) or a missing CX.
        assert correlated / shots >= 0.85, counts
        # 00 vs 11 is 50/50 ideally. Binomial sd at ~3,800 shots is 0.008; T1 decay during
        # readout biases towards 0 by a few percent (measured 0.516). 0.06 = that bias + ~4 sd.
        assert abs(counts.get("00", 0) / correlated - 0.5) <= 0.06, counts
    # a fixed seed makes a job reproducible
    again = sample_on_backend(fake_backend("fake_manila", seed=1234), [bell()], shots)[0]
    assert again == first


def test_sample_on_backend_rejects_bad_input():
    backend = fake_backend("fake_manila")
    unmeasured = QuantumCircuit(2)
    unmeasured.h(0)
    with pytest.raises(ValueError, match="no measurements"):
        sample_on_backend(backend, unmeasured, 10)
    with pytest.raises(ValueError, match="shots must be a positive integer, got 0"):
        sample_on_backend(backend, bell(), 0)
    with pytest.raises(TypeError, match="needs a qiskit BackendV2.*got str"):
        sample_on_backend("fake_manila", bell(), 10)
    with pytest.raises(TypeError, match="QuantumCircuit"):
        sample_on_backend(backend, [], 10)
    assert backend.jobs == 0


@pytest.mark.parametrize(
    "path, message",
    [
        ("pilotq_mpi.workflows.qpu.fake_backend", "must look like 'package.module:function'"),
        ("a:b:c", "must look like 'package.module:function'"),
        (":fake_backend", "needs both a module and an attribute"),
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        ("pilotq_mpi.workflows.qpu:no_such_factory", "has no attribute 'no_such_factory'"),
        ("pilotq_mpi.workflows.qpu:__all__", "is a list, not a callable"),
        (None, "must look like"),
    ],
)
def test_load_factory_errors_name_the_path(path, message):
    with pytest.raises(QpuConfigError, match=message) as info:
        load_factory(path)
    assert repr(path) in str(info.value)


def test_build_backend_from_path_and_bad_kwargs():
    backend = build_backend("pilotq_mpi.workflows.qpu:fake_backend", {"name": "fake_manila", "latency_s": 0.25})
    assert isinstance(backend, EmulatedQPU) and backend.name == "fake_manila" and backend.latency_s == 0.25
    assert load_factory("pilotq_mpi.workflows.qpu:EmulatedQPU.run") is EmulatedQPU.run  # dotted attribute
    with pytest.raises(QpuConfigError, match=r"rejected arguments \['nmae'\]"):
        build_backend("pilotq_mpi.workflows.qpu:fake_backend", {"nmae": "fake_manila"})


def test_pennylane_device_factory():
    dev = pennylane_device("default.qubit", wires=3)
    assert len(dev.wires) == 3
    with pytest.raises(QpuConfigError, match="'no.such.device' cannot be built"):
        pennylane_device("no.such.device", wires=1)
    with pytest.raises(QpuConfigError, match="wires must be >= 1"):
        pennylane_device(wires=0)


_IBM_PROBE = textwrap.dedent(
    """
    import json, os
    from pilotq_mpi.workflows.qpu import ibm_runtime_backend
    out = {}
    def attempt(key, **kw):
        try:
            ibm_runtime_backend(**kw)
            out[key] = None
        except Exception as exc:
            out[key] = [type(exc).__name__, str(exc), repr(exc.__cause__), repr(exc.__context__)]
    attempt("none")
    os.environ["QISKIT_IBM_TOKEN"] = "tok-SECRET-5f3e9a"
    os.environ["QISKIT_IBM_CHANNEL"] = "no_such_channel"   # fails before any network use
    attempt("bad_channel")
    print(json.dumps(out))
    """
)


def test_ibm_factory_without_credentials_fails_clearly_and_leaks_nothing(tmp_path):
    # The saved-account path is fixed when qiskit_ibm_runtime is imported, from HOME:
    # run in a fresh interpreter with an empty HOME and no QISKIT_IBM_* variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QISKIT_IBM")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", _IBM_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "SECRET" not in proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    kind, message, cause, _ = out["none"]
    assert kind == "QpuConfigError"
    assert "no IBM Quantum account is configured" in message and "QISKIT_IBM_TOKEN" in message
    assert cause == "None"  # raised `from None`: no chained library exception
    kind, message, cause, _ = out["bad_channel"]
    assert kind == "QpuConfigError" and "no_such_channel" in message
