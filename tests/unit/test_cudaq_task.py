"""pilotq_mpi.workflows.cudaq_task without CUDA-Q and without MPI.

The pure parts (version parsing, width checks, import paths) run as they are; the
task itself runs against a fake ``cudaq`` module and a fake communicator that record
what was called, in which order, with which environment.
"""
from __future__ import annotations

import os
import sys
import types
from functools import partial

import pytest

from pilotq_mpi.workflows import cudaq_task as ct
from pilotq_mpi.workflows.cudaq_task import (
    CudaqUnavailableError,
    check_plugin_env,
    check_width,
    cudaq_comm_support,
    cudaq_task,
    load_import_path,
    parse_cudaq_version,
    resolve,
    version_supports_comm,
)

# ----------------------------------------------------------------------------- versions

@pytest.mark.parametrize("text, expected", [
    ("0.15.0", (0, 15, 0)),
    ("0.16.0.post1", (0, 16, 0)),
    ("0.15", (0, 15, 0)),
    ("1.0.2rc1", (1, 0, 2)),
    ("CUDA-Q Version 0.15.1 (https://github.com/NVIDIA/cuda-quantum 0a1b2c3)", (0, 15, 1)),
    ("CUDA-Q Version proto-0.8.0 (https://github.com/NVIDIA/cuda-quantum 1234567)", (0, 8, 0)),
    ("CUDA-Q Version latest (https://github.com/NVIDIA/cuda-quantum 1.2.3)", None),
    ("", None),
    (None, None),
])
def test_parse_cudaq_version(text, expected):
    assert parse_cudaq_version(text) == expected


@pytest.mark.parametrize("version, ok", [
    ((0, 14, 9), False), ((0, 15, 0), True), ((0, 16, 0), True), ((1, 0, 0), True),
    ((0, 9, 99), False), (None, False),
])
def test_version_supports_comm(version, ok):
    assert version_supports_comm(version) is ok


# ----------------------------------------------------------------------------- widths

@pytest.mark.parametrize("width", [1, 2, 4, 8, 16, 1024])
def test_power_of_two_widths_pass(width):
    check_width(width)


@pytest.mark.parametrize("width, hint", [(3, "ranks=2 or ranks=4"), (6, "ranks=4 or ranks=8"),
                                         (12, "ranks=8 or ranks=16")])
def test_non_power_of_two_width_names_the_alternatives(width, hint):
    with pytest.raises(ValueError, match=f"power-of-two.*has {width}.*{hint}"):
        check_width(width)


@pytest.mark.parametrize("width", [0, -2, 2.0, True])
def test_bad_width(width):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        check_width(width)


def test_multi_rank_nvidia_needs_mgpu():
    with pytest.raises(ValueError, match="only with the 'mgpu' option"):
        check_width(2, target="nvidia", option="fp64")
    check_width(1, target="nvidia", option="fp64")
    check_width(4, target="nvidia", option="fp64, MGPU")


def test_other_targets_are_not_width_checked():
    check_width(3, target="tensornet", option="")


@pytest.mark.parametrize("value", ["AUTO", "auto", "SELF"])
def test_plugin_env_ok(value):
    check_plugin_env({ct.PLUGIN_ENV: value})
    check_plugin_env({})


@pytest.mark.parametrize("value", ["OpenMPI", "MPICH", "EXTERNAL"])
def test_plugin_env_rejects_providers_without_custom_comm(value):
    with pytest.raises(ValueError, match=f"CUDAQ_MGPU_COMM_PLUGIN_TYPE='{value}'.*AUTO or SELF"):
        check_plugin_env({ct.PLUGIN_ENV: value})


# ----------------------------------------------------------------------------- import paths

def test_load_import_path_finds_nested_attribute():
    assert load_import_path("os.path:join") is os.path.join
    assert load_import_path("pilotq_mpi.workflows.cudaq_task:MIN_COMM_VERSION") == (0, 15, 0)
    assert load_import_path("os:path.join") is os.path.join


@pytest.mark.parametrize("path", ["no_colon", "mod:", ":fn", "a b:fn", "mod:fn()", "1mod:fn",
                                  "mod::fn"])
def test_load_import_path_malformed(path):
    with pytest.raises(ValueError, match="expected 'module:function'"):
        load_import_path(path, what="kernel")


def test_load_import_path_missing_module():
    with pytest.raises(ImportError, match="kernel import path 'no_such_mod_xyz:f'.*"
                                          "cannot import module 'no_such_mod_xyz'"):
        load_import_path("no_such_mod_xyz:f", what="kernel")


def test_load_import_path_missing_attribute():
    with pytest.raises(AttributeError, match="module 'os' has no attribute 'nope'"):
        load_import_path("os:nope")


def test_load_import_path_type():
    with pytest.raises(TypeError, match="must be a str"):
        load_import_path(42)


class _Kernel:
    """Stands for a @cudaq.kernel: callable, but not a plain function."""

    def __call__(self, *a):
        raise AssertionError("a kernel must not be called by resolve()")


def _factory():
    return "built"


def test_resolve_calls_factories_and_passes_kernels_through():
    k = _Kernel()
    assert resolve(k, what="kernel") is k
    assert resolve(_factory, what="kernel") == "built"
    assert resolve(partial(str, 5), what="kernel") == "5"
    assert resolve(f"{__name__}:_factory", what="kernel") == "built"
    with pytest.raises(ValueError, match="returned None"):
        resolve(lambda: None, what="observable")


# ----------------------------------------------------------------------------- support check

def test_support_when_cudaq_missing(monkeypatch):
    monkeypatch.delitem(sys.modules, "cudaq", raising=False)
    monkeypatch.setattr(ct.importlib.util, "find_spec", lambda name: None)
    ok, reason = cudaq_comm_support()
    assert not ok
    assert reason.startswith("CUDA-Q not installed: comm mode needs cudaq >= 0.15")
    assert "step_task" in reason


def _fake_cudaq(version="CUDA-Q Version 0.15.0 (https://github.com/NVIDIA/cuda-quantum abc)",
                with_api=True, mpi_initialized=True):
    calls = []
    mod = types.ModuleType("cudaq")
    mod.__version__ = version
    mod.calls = calls
    mpi = types.SimpleNamespace(is_initialized=lambda: mpi_initialized)
    if with_api:
        mpi.set_communicator = lambda addr: calls.append(("set_communicator", addr))
    mod.mpi = mpi

    def set_target(name, **kw):
        calls.append(("set_target", name, kw, os.environ.get(ct.PLUGIN_ENV)))

    class Result:
        def __init__(self, counts=None, value=None):
            self.counts, self.value = counts, value

        def expectation(self):
            return self.value

        def items(self):
            return self.counts.items()

    def sample(kernel, *args, **kw):
        calls.append(("sample", kernel, args, kw))
        return Result(counts={"00": 3, "11": 5})

    def observe(kernel, obs, *args, **kw):
        calls.append(("observe", kernel, obs, args, kw))
        return Result(value=-0.5)

    mod.set_target, mod.sample, mod.observe = set_target, sample, observe
    return mod


def test_support_too_old(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudaq", _fake_cudaq("CUDA-Q Version 0.14.1 (x)"))
    ok, reason = cudaq_comm_support()
    assert not ok
    assert "CUDA-Q 0.14.1 is too old for comm mode" in reason
    assert "pilotq_mpi.workflows.step.step_task" in reason


def test_support_new_enough(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudaq", _fake_cudaq("CUDA-Q Version 0.16.0 (x)"))
    ok, reason = cudaq_comm_support()
    assert ok, reason
    assert "0.16.0" in reason


def test_support_without_api(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudaq", _fake_cudaq("CUDA-Q Version latest (x)",
                                                          with_api=False))
    ok, reason = cudaq_comm_support()
    assert not ok and "no cudaq.mpi.set_communicator" in reason


def test_support_unknown_version_with_api(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudaq", _fake_cudaq("CUDA-Q Version latest (x)"))
    monkeypatch.setattr(ct, "_installed_version", lambda: (None, None))
    assert cudaq_comm_support()[0]


def test_support_import_failure(monkeypatch):
    monkeypatch.delitem(sys.modules, "cudaq", raising=False)
    monkeypatch.setattr(ct.importlib.util, "find_spec", lambda name: object())

    def boom():
        raise ImportError("libcudart.so.12: cannot open shared object file")
    monkeypatch.setattr(ct, "_import_cudaq", boom)
    ok, reason = cudaq_comm_support()
    assert not ok and "'import cudaq' failed: ImportError: libcudart" in reason


# ----------------------------------------------------------------------------- the task, faked

class FakeComm:
    """One rank of a task communicator whose peers all behave like this rank."""

    def __init__(self, size=2, rank=0, peer_errors=()):
        self.size, self.rank, self.peer_errors = size, rank, list(peer_errors)

    def Get_size(self):
        return self.size

    def Get_rank(self):
        return self.rank

    def allgather(self, value):
        out = [value] * self.size
        for r, msg in self.peer_errors:
            out[r] = msg
        return out


@pytest.fixture
def fake(monkeypatch):
    mod = _fake_cudaq()
    monkeypatch.setitem(sys.modules, "cudaq", mod)
    monkeypatch.delenv(ct.PLUGIN_ENV, raising=False)
    monkeypatch.setattr(ct, "_engine_comm", lambda comm: comm)
    monkeypatch.setattr(ct, "_comm_address", lambda comm: 0xC0FFEE)
    return mod


def test_task_observe_order_env_and_result(fake):
    obs = object()
    kern = _Kernel()
    value = cudaq_task(FakeComm(), kern, 3, observable=obs, shots_count=100)
    assert value == -0.5
    assert fake.calls == [
        ("set_target", "nvidia", {"option": "mgpu"}, "AUTO"),
        ("set_communicator", 0xC0FFEE),
        ("observe", kern, obs, (3,), {"shots_count": 100}),
    ]
    assert os.environ[ct.PLUGIN_ENV] == "AUTO"


def test_task_sample_factory_and_rank1_returns_none(fake):
    assert cudaq_task(FakeComm(rank=0), _factory, option="mgpu,fp64") == {"00": 3, "11": 5}
    assert fake.calls[0][:3] == ("set_target", "nvidia", {"option": "mgpu,fp64"})
    assert fake.calls[-1] == ("sample", "built", (), {})
    assert cudaq_task(FakeComm(rank=1), _factory) is None


def test_task_postprocess_import_path(fake):
    assert cudaq_task(FakeComm(), _Kernel(), postprocess="builtins:type").__name__ == "Result"


def test_task_rejects_non_power_of_two_before_touching_cudaq(fake):
    with pytest.raises(ValueError, match="has 3"):
        cudaq_task(FakeComm(size=3), _Kernel())
    assert fake.calls == []


def test_task_rejects_bad_shots(fake):
    with pytest.raises(ValueError, match="shots_count=0"):
        cudaq_task(FakeComm(), _Kernel(), shots_count=0)


def test_task_too_old(monkeypatch, fake):
    fake.__version__ = "CUDA-Q Version 0.14.0 (x)"
    with pytest.raises(CudaqUnavailableError, match="0.14.0 is too old.*step_task"):
        cudaq_task(FakeComm(), _Kernel())


def test_task_bad_plugin_env(monkeypatch, fake):
    monkeypatch.setenv(ct.PLUGIN_ENV, "OpenMPI")
    with pytest.raises(ValueError, match="AUTO or SELF"):
        cudaq_task(FakeComm(), _Kernel())


def test_task_same_error_everywhere_keeps_its_type(fake):
    with pytest.raises(ImportError, match="no_such_mod_xyz"):
        cudaq_task(FakeComm(), "no_such_mod_xyz:k")


def test_task_error_on_another_rank_is_raised_here_too(fake):
    comm = FakeComm(size=4, rank=0, peer_errors=[(2, "RuntimeError: CUDA out of memory")])
    with pytest.raises(RuntimeError, match="building the kernel failed on 1 of 4 ranks: "
                                           "task rank 2: RuntimeError: CUDA out of memory"):
        cudaq_task(comm, _Kernel())


def test_task_mpi_library_mismatch(monkeypatch, fake):
    fake.mpi.is_initialized = lambda: False
    with pytest.raises(CudaqUnavailableError, match="different MPI library"):
        cudaq_task(FakeComm(), _Kernel())
