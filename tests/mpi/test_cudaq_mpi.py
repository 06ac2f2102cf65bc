"""cudaq_task on a 2-rank sub-communicator (world ranks 0 and 1), under pytest-mpi:

    timeout 300 .venv/bin/mpiexec -n 4 .venv/bin/python -m pytest --with-mpi -p no:cacheprovider \
        tests/mpi/test_cudaq_mpi.py          # also -n 2, -n 6

The real-CUDA-Q tests run where cudaq >= 0.15 imports (a GPU machine) and otherwise skip
with the reason from cudaq_comm_support(). The fake-engine tests run everywhere: they
drive the real MPI plumbing (the kept Dup of the task communicator, the agreement step
that keeps ranks from hanging when one fails) with a stand-in ``cudaq`` module.
Ranks other than 0 and 1 take no part in the sub-communicator (Create_group is
collective over the group only), as busy pilot workers would not.
"""
from __future__ import annotations

import sys
import types

import pytest
from mpi4py import MPI

from pilotq_mpi.workflows import cudaq_task as ct
from pilotq_mpi.workflows.cudaq_task import cudaq_comm_support, cudaq_task

WORLD = MPI.COMM_WORLD
TASK_RANKS = (0, 1)
N_QUBITS = 4

pytestmark = [pytest.mark.mpi(min_size=2)]


def _sub_comm(tag: int):
    """The task communicator of world ranks 0 and 1 (None on the other ranks)."""
    if WORLD.Get_rank() not in TASK_RANKS:
        return None
    return WORLD.Create_group(WORLD.Get_group().Incl(list(TASK_RANKS)), tag)


def _require_cudaq() -> None:
    """Skip on every rank alike unless every rank can run CUDA-Q in comm mode."""
    ok, reason = cudaq_comm_support()
    everyone = WORLD.allgather((ok, reason))
    bad = [(r, why) for r, (good, why) in enumerate(everyone) if not good]
    if bad:
        if not ok:
            pytest.skip(reason)
        rank, why = bad[0]
        pytest.skip(f"world rank {rank}: {why}")


# ----------------------------------------------------------------------------- real CUDA-Q

def ghz_factory():
    """Kernel factory (evaluated on every task rank): GHZ state on n qubits."""
    import cudaq

    @cudaq.kernel
    def ghz(n: int):
        q = cudaq.qvector(n)
        h(q[0])  # noqa: F821 (CUDA-Q kernel builtins)
        for i in range(n - 1):
            x.ctrl(q[i], q[i + 1])  # noqa: F821

    return ghz


def zz_factory():
    import cudaq
    return cudaq.spin.z(0) * cudaq.spin.z(N_QUBITS - 1)


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(240)
def test_real_cudaq_observe_on_sub_communicator():
    _require_cudaq()
    sub = _sub_comm(tag=401)
    if sub is None:
        return
    try:
        value = cudaq_task(sub, f"{__name__}:ghz_factory", N_QUBITS,
                           observable=f"{__name__}:zz_factory")
        if sub.Get_rank() == 0:
            assert value == pytest.approx(1.0, abs=1e-5)
        else:
            assert value is None
    finally:
        sub.Free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(240)
def test_real_cudaq_sample_on_sub_communicator():
    _require_cudaq()
    sub = _sub_comm(tag=402)
    if sub is None:
        return
    try:
        counts = cudaq_task(sub, ghz_factory, N_QUBITS, shots_count=400)
        if sub.Get_rank() == 0:
            assert set(counts) <= {"0" * N_QUBITS, "1" * N_QUBITS}
            assert sum(counts.values()) == 400
        else:
            assert counts is None
    finally:
        sub.Free()


# ----------------------------------------------------------------------------- fake engine

def _fake_cudaq():
    mod = types.ModuleType("cudaq")
    mod.__version__ = "CUDA-Q Version 0.15.0 (fake)"
    mod.calls = []
    mod.mpi = types.SimpleNamespace(
        is_initialized=lambda: MPI.Is_initialized(),
        set_communicator=lambda addr: mod.calls.append(("set_communicator", addr)))
    mod.set_target = lambda name, **kw: mod.calls.append(("set_target", name, kw))

    class Result:
        def expectation(self):
            return 0.25

    def observe(kernel, obs, *args, **kw):
        mod.calls.append(("observe", kernel, args))
        return Result()

    mod.observe = observe
    return mod


@pytest.fixture
def fake_cudaq(monkeypatch):
    mod = _fake_cudaq()
    monkeypatch.setitem(sys.modules, "cudaq", mod)
    monkeypatch.setenv(ct.PLUGIN_ENV, "AUTO")
    return mod


def kernel_factory():
    return "kernel"


def failing_on_task_rank1_factory():
    comm = _CURRENT["comm"]
    if comm.Get_rank() == 1:
        raise RuntimeError("deliberate failure building the kernel")
    return "kernel"


_CURRENT: dict = {}


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_fake_engine_gets_a_kept_dup_of_the_task_comm(fake_cudaq):
    addresses = []
    for tag in (411, 412):  # two tasks on the same two ranks, each with its own comm
        sub = _sub_comm(tag)
        if sub is None:
            return
        value = cudaq_task(sub, kernel_factory, 7, observable="builtins:object")
        assert value == (0.25 if sub.Get_rank() == 0 else None)
        sub.Free()  # the pilot frees the task comm; CUDA-Q's copy must stay valid
        addresses.append(fake_cudaq.calls[-2][1])
    kept = ct._kept_comms[TASK_RANKS]
    assert kept.Get_size() == 2
    assert addresses == [MPI._addressof(kept)] * 2  # reused, not one Dup per task
    assert kept.allreduce(1) == 2  # still usable after the task comms were freed
    assert [c[0] for c in fake_cudaq.calls] == ["set_target", "set_communicator", "observe"] * 2


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_fake_engine_failure_on_one_rank_raises_on_both(fake_cudaq, monkeypatch):
    sub = _sub_comm(tag=421)
    if sub is None:
        return
    kept: dict = {}
    monkeypatch.setattr(ct, "_kept_comms", kept)  # no cached Dup: the collective Dup must
    _CURRENT["comm"] = sub                        # not be entered by one rank alone
    try:
        with pytest.raises(RuntimeError, match="building the kernel failed on 1 of 2 ranks: "
                                               "task rank 1: RuntimeError: deliberate"):
            cudaq_task(sub, f"{__name__}:failing_on_task_rank1_factory",
                       observable="builtins:object")
        assert fake_cudaq.calls == []
        assert kept == {}
        # the task's ranks are still in step: the next task on them works
        assert cudaq_task(sub, kernel_factory, observable="builtins:object") == \
            (0.25 if sub.Get_rank() == 0 else None)
    finally:
        _CURRENT.clear()
        for c in kept.values():
            c.Free()
        sub.Free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_fake_engine_rejects_three_ranks_on_every_rank(fake_cudaq):
    if WORLD.Get_size() < 3:
        pytest.skip("needs a world of at least 3 ranks for a 3-rank task")
    if WORLD.Get_rank() >= 3:
        return
    sub = WORLD.Create_group(WORLD.Get_group().Incl([0, 1, 2]), 431)
    try:
        with pytest.raises(ValueError, match="power-of-two number of ranks; this task has 3"):
            cudaq_task(sub, kernel_factory)
        assert fake_cudaq.calls == []
    finally:
        sub.Free()
