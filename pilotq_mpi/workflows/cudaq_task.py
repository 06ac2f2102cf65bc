"""CUDA-Q in comm mode: run a CUDA-Q kernel on the task's own sub-communicator.

CUDA-Q >= 0.15 lets the ``nvidia`` target's multi-GPU state vector (option ``mgpu``)
run on any MPI communicator, so a k-rank pilot task can simulate one distributed
state vector over exactly its k ranks while other tasks use the other ranks::

    from pilotq_mpi.workflows.cudaq_task import cudaq_task

    # mykernels.py (importable on every rank):
    #     def ghz():            # a kernel *factory*: kernels may not pickle
    #         @cudaq.kernel
    #         def k(n: int): ...
    #         return k
    #     def zz(): return cudaq.spin.z(0) * cudaq.spin.z(1)
    fut = pilot.submit(cudaq_task, "mykernels:ghz", 30, observable="mykernels:zz",
                       ranks=4, gpus_per_rank=1)
    energy = fut.result()          # float, from the task's rank 0

CUDA-Q <= 0.14 can only use ``MPI_COMM_WORLD``: run it in step mode with
:func:`pilotq_mpi.workflows.step.step_task` instead.

CUDA-Q API relied on (read in the ``cuda-quantum-cu12`` 0.16.0.post1 wheel: the
docstrings of ``cudaq.mpi.set_communicator`` / ``split_communicator`` in
``cudaq/mlir/_mlir_libs/_quakeDialects*.so``, the messages in ``lib/libcudaq.so`` and
``lib/libnvqir-nvidia-mgpu*.so``; and ``docs/sphinx/using/backends/sims/svsims.rst`` of
NVIDIA/cuda-quantum, "Multi-GPU multi-node"):

* ``CUDAQ_MGPU_*`` variables "must be set prior to setting the target or running
  ``import cudaq``" (svsims.rst). A custom communicator "requires the CUDA-Q cuStateVecEx
  provider selected by AUTO or SELF" (libnvqir-nvidia-mgpu), so
  ``CUDAQ_MGPU_COMM_PLUGIN_TYPE`` is set to ``AUTO`` when unset, before the import;
  ``SELF`` additionally needs CUDA-Q's own MPI plugin activated
  (``distributed_interfaces/activate_custom_mpi.sh``).
* ``cudaq.set_target("nvidia", option="mgpu")`` first, then
  ``cudaq.mpi.set_communicator(MPI._addressof(comm))``: the docstring's mpi4py example
  uses this order, and ``set_communicator`` acts on the *current* simulator ("does not
  support MPI-based distributed simulation. Ignoring the set_communicator call").
  "MPI must be initialized before calling set_communicator" (libcudaq): mpi4py has
  done that, and CUDA-Q's own view (``cudaq.mpi.is_initialized()``) is checked.
* "When using mpi4py, keep the communicator object alive while CUDA-Q uses it": the
  pilot frees a task's communicator after the task, so CUDA-Q is handed a ``Dup`` that
  this module keeps (one per distinct set of world ranks, reused by later tasks on
  the same ranks).
* Rank and node counts must be powers of two (svsims.rst note). Below
  ``CUDAQ_MGPU_NQUBITS_THRESH`` qubits (default 25) the ranks simulate independently
  instead of distributing the state (svsims.rst): results are the same.
* ``cudaq.__version__`` is ``cudaq_runtime.__version__``, a text such as
  ``"CUDA-Q Version 0.16.0 (https://github.com/NVIDIA/cuda-quantum <sha>)"``; the
  wheel's distribution is ``cuda-quantum-cu12`` / ``-cu13`` (``cudaq`` is a meta sdist).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import types
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

__all__ = [
    "MIN_COMM_VERSION",
    "CudaqUnavailableError",
    "check_width",
    "cudaq_comm_support",
    "cudaq_task",
    "load_import_path",
    "parse_cudaq_version",
]

MIN_COMM_VERSION: tuple[int, int, int] = (0, 15, 0)
"""First CUDA-Q release whose simulators accept a communicator (``cudaq.mpi.set_communicator``)."""

PLUGIN_ENV = "CUDAQ_MGPU_COMM_PLUGIN_TYPE"
_PLUGIN_OK = ("AUTO", "SELF")
_DISTRIBUTIONS = ("cuda-quantum-cu12", "cuda-quantum-cu13", "cuda-quantum-cu11",
                  "cuda-quantum", "cudaq")
_STEP_HINT = ("or run CUDA-Q in step mode with pilotq_mpi.workflows.step.step_task "
              "(a nested job whose MPI_COMM_WORLD is the task)")

_kept_comms: dict[tuple[int, ...], Any] = {}
"""Dups of task communicators handed to CUDA-Q, by world ranks; kept alive on purpose."""


class CudaqUnavailableError(RuntimeError):
    """CUDA-Q cannot run in comm mode here: not installed, not importable, or older than 0.15."""


# ----------------------------------------------------------------------------- pure helpers

def _version_text(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def parse_cudaq_version(text: str | None) -> tuple[int, int, int] | None:
    """The (major, minor, patch) in a CUDA-Q version text, or None when there is none.

    Accepts a plain version (``"0.15.1"``, ``"0.16.0.post1"``) and the text of
    ``cudaq.__version__`` (``"CUDA-Q Version 0.15.0 (https://github.com/... <sha>)"``,
    ``"CUDA-Q Version proto-0.8.0 (...)"``); the part in parentheses is ignored.
    """
    if not text:
        return None
    head = str(text).split("(", 1)[0]
    m = re.search(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?", head)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_supports_comm(version: tuple[int, ...] | None) -> bool:
    """True when ``version`` is at least :data:`MIN_COMM_VERSION` (False when unknown)."""
    return version is not None and tuple(version) >= MIN_COMM_VERSION


def check_width(width: int, *, target: str = "nvidia", option: str = "mgpu") -> None:
    """Raise ValueError unless ``width`` ranks can run ``target``/``option`` on one communicator.

    The ``nvidia`` target needs the ``mgpu`` option to use more than one rank, and its
    rank count must be a power of two. Other targets are passed through unchecked.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"communicator size {width!r}: must be an int >= 1")
    if target != "nvidia":
        return
    flags = {f.strip().lower() for f in (option or "").split(",") if f.strip()}
    if width > 1 and "mgpu" not in flags:
        raise ValueError(f"target='nvidia', option={option!r} on {width} ranks: the nvidia "
                         "target distributes a state vector only with the 'mgpu' option "
                         "(e.g. option='mgpu' or 'mgpu,fp64'); without it every rank would "
                         "simulate the whole circuit. Use ranks=1 or add 'mgpu'.")
    if width & (width - 1):
        lower = 1 << (width.bit_length() - 1)
        raise ValueError(f"CUDA-Q nvidia/mgpu needs a power-of-two number of ranks; this task "
                         f"has {width}: submit it with ranks={lower} or ranks={lower * 2}")


def check_plugin_env(environ: Mapping[str, str]) -> None:
    """Raise ValueError when ``$CUDAQ_MGPU_COMM_PLUGIN_TYPE`` is set to a value that
    cannot use a custom communicator (anything but AUTO or SELF)."""
    value = environ.get(PLUGIN_ENV)
    if value is not None and value.strip().upper() not in _PLUGIN_OK:
        raise ValueError(f"{PLUGIN_ENV}={value!r}: CUDA-Q can use the task's communicator "
                         "only with AUTO or SELF (it defaults to AUTO when unset); unset it or "
                         f"set AUTO, or {_STEP_HINT}")


def load_import_path(path: str, *, what: str = "object") -> Any:
    """Import ``"package.module:attr.sub"`` and return that attribute.

    Raises ValueError for a malformed path, ImportError (with the path) when the
    module cannot be imported, AttributeError when it lacks the attribute.
    """
    if not isinstance(path, str):
        raise TypeError(f"{what} import path must be a str 'module:function', got "
                        f"{type(path).__name__}")
    module_name, sep, attr = path.partition(":")
    ident = r"[A-Za-z_]\w*"
    if (not sep or not re.fullmatch(rf"{ident}(\.{ident})*", module_name)
            or not re.fullmatch(rf"{ident}(\.{ident})*", attr)):
        raise ValueError(f"{what} import path {path!r}: expected 'module:function' such as "
                         "'mypkg.kernels:make_ghz' (the module must be importable on every "
                         "task rank)")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"{what} import path {path!r}: cannot import module "
                          f"{module_name!r} on this rank ({exc}); put it on PYTHONPATH of "
                          "every rank", name=module_name) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{what} import path {path!r}: module {module_name!r} has "
                                 f"no attribute {attr!r}") from None
    return obj


def _is_factory(obj: Any) -> bool:
    """Plain Python functions (and partials of them) are factories; anything else
    (a ``@cudaq.kernel``, a builder kernel, a spin operator) is used as it is."""
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, partial))


def resolve(spec: Any, *, what: str) -> Any:
    """Turn a kernel/observable spec into the object: an import path is loaded, and a
    plain function (a factory) is called with no arguments; other objects pass through."""
    obj = load_import_path(spec, what=what) if isinstance(spec, str) else spec
    if _is_factory(obj):
        obj = obj()
        if obj is None:
            raise ValueError(f"{what} factory {spec!r} returned None: it must return the "
                             f"{what}")
    return obj


# ----------------------------------------------------------------------------- CUDA-Q discovery

def _installed_version() -> tuple[tuple[int, int, int] | None, str | None]:
    from importlib import metadata
    for dist in _DISTRIBUTIONS:
        try:
            text = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return parse_cudaq_version(text), f"{dist} {text}"
    return None, None


def _import_cudaq():
    """Import cudaq with ``$CUDAQ_MGPU_COMM_PLUGIN_TYPE`` defaulted to AUTO first."""
    check_plugin_env(os.environ)
    os.environ.setdefault(PLUGIN_ENV, "AUTO")
    return importlib.import_module("cudaq")


def cudaq_comm_support(*, import_check: bool = True) -> tuple[bool, str]:
    """Can CUDA-Q run in comm mode here? Returns ``(ok, reason)``.

    ``ok`` is True when ``cudaq`` is present, its version is >= 0.15 and (with
    ``import_check``, the default) it imports and has ``cudaq.mpi.set_communicator``.
    ``reason`` says why not (or what was found), fit for ``pytest.skip(reason)``.
    With ``import_check=False`` only the installed metadata is read (cheap, no import).
    """
    need = _version_text(MIN_COMM_VERSION)
    if "cudaq" not in sys.modules and importlib.util.find_spec("cudaq") is None:
        return False, (f"CUDA-Q not installed: comm mode needs cudaq >= {need} "
                       f"(pip install 'cudaq>={need}' on a GPU machine), {_STEP_HINT}")
    version, found = _installed_version()
    mod = sys.modules.get("cudaq")
    if import_check and mod is None:
        try:
            mod = _import_cudaq()
        except ValueError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - ImportError, OSError (CUDA/MPI libs), ...
            return False, (f"CUDA-Q is installed ({found or 'version unknown'}) but "
                           f"'import cudaq' failed: {type(exc).__name__}: {exc}")
    if mod is not None:
        text = getattr(mod, "__version__", None)
        version = parse_cudaq_version(text) or version
        found = f"cudaq.__version__={text!r}" if text else found
    if version is not None and not version_supports_comm(version):
        return False, (f"CUDA-Q {_version_text(version)} is too old for comm mode "
                       f"(cudaq.mpi.set_communicator needs >= {need}): upgrade "
                       f"(pip install 'cudaq>={need}'), {_STEP_HINT}")
    has_api = None if mod is None else hasattr(getattr(mod, "mpi", None), "set_communicator")
    if has_api is False:
        return False, (f"CUDA-Q ({found}) has no cudaq.mpi.set_communicator: comm mode "
                       f"needs cudaq >= {need}, {_STEP_HINT}")
    if version is None and has_api is None:
        return False, (f"CUDA-Q is installed but its version is unknown ({found}); "
                       "call cudaq_comm_support(import_check=True) to check its API")
    return True, f"CUDA-Q comm mode available ({found or 'version unknown, API present'})"


# ----------------------------------------------------------------------------- MPI plumbing

def _comm_address(comm) -> int:
    """Address of the MPI_Comm handle inside the mpi4py object (what CUDA-Q takes)."""
    from mpi4py import MPI
    return MPI._addressof(comm)


def _engine_comm(comm):
    """A duplicate of ``comm`` that outlives the task (the pilot frees ``comm`` afterwards).

    Collective over ``comm``. Keyed by the world ranks of ``comm``: every member of a
    given rank set has the same history with it, so all agree whether to reuse or Dup.
    """
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    key = tuple(comm.Get_group().Translate_ranks(list(range(comm.Get_size())),
                                                 world.Get_group()))
    kept = _kept_comms.get(key)
    if kept is None:
        kept = _kept_comms[key] = comm.Dup()
    return kept


def _agree(comm, error: BaseException | None, stage: str) -> None:
    """Every rank learns whether any rank failed ``stage``; all raise the same error then.

    Keeps the other ranks of the task from waiting forever in a CUDA-Q collective
    when one rank could not configure or run.
    """
    mine = None if error is None else f"{type(error).__name__}: {error}"
    everyone = comm.allgather(mine)
    failed = [(r, m) for r, m in enumerate(everyone) if m is not None]
    if not failed:
        return
    if error is not None and len(failed) == len(everyone) and len(set(everyone)) == 1:
        raise error  # the same failure everywhere: keep its type
    lines = "; ".join(f"task rank {r}: {m}" for r, m in failed)
    raise RuntimeError(f"cudaq_task: {stage} failed on {len(failed)} of {len(everyone)} "
                       f"ranks: {lines}") from error


def _configure(cudaq, engine_comm, target: str, option: str | None) -> None:
    mpi = cudaq.mpi
    if hasattr(mpi, "is_initialized") and not mpi.is_initialized():
        raise CudaqUnavailableError(
            "mpi4py has initialized MPI but cudaq.mpi.is_initialized() is False: CUDA-Q's "
            "MPI plugin loads a different MPI library than mpi4py (set CUDAQ_MGPU_LIB_MPI, "
            "or build mpi4py against the MPI CUDA-Q uses)")
    if option:
        cudaq.set_target(target, option=option)
    else:
        cudaq.set_target(target)
    mpi.set_communicator(_comm_address(engine_comm))


def _plain(result: Any, observe: bool) -> Any:
    """ObserveResult -> float, SampleResult -> dict of counts (picklable, for the driver)."""
    if observe:
        return float(result.expectation())
    if isinstance(result, list):
        return [_plain(r, False) for r in result]
    return {k: int(v) for k, v in result.items()}


# ----------------------------------------------------------------------------- the task

def cudaq_task(comm, kernel, *args, observable=None, shots_count: int | None = None,
               target: str = "nvidia", option: str | None = "mgpu",
               postprocess: Callable[[Any], Any] | str | None = None):
    """Run a CUDA-Q kernel on the task communicator ``comm``; a pilot task (CUDA-Q >= 0.15).

    Call it on every rank of ``comm`` (the pilot does, when it is the task function).

    ``kernel``: a ``@cudaq.kernel`` / builder kernel, or — since kernels do not always
    pickle — a kernel *factory*: a plain function, or an import path
    ``"module:function"``, called with no arguments on every rank to build the kernel.
    ``args`` are the kernel's arguments. ``observable``: None to ``cudaq.sample``;
    otherwise a spin operator (or a factory / import path returning one) to
    ``cudaq.observe``. ``shots_count``: passed on when given (CUDA-Q's defaults: exact
    expectation, 1000 samples). ``target``/``option``: the CUDA-Q target, default the
    multi-GPU state vector ``nvidia`` / ``mgpu`` (use ``"mgpu,fp64"`` for double).

    Returns on task rank 0 the expectation value (float) for observe, the counts
    (``dict[str, int]``) for sample, or ``postprocess(raw_result)`` when
    ``postprocess`` (a function or import path) is given; None on the other ranks.

    Raises :class:`CudaqUnavailableError` when CUDA-Q is missing or older than 0.15
    (use :func:`pilotq_mpi.workflows.step.step_task` then) and ValueError for a width
    the target cannot use (nvidia/mgpu: a power of two). These are raised on every
    rank alike; a rank that fails to configure or run makes every rank raise.
    """
    if shots_count is not None and (isinstance(shots_count, bool)
                                    or not isinstance(shots_count, int) or shots_count < 1):
        raise ValueError(f"shots_count={shots_count!r}: must be a positive int (or None for "
                         "CUDA-Q's default)")
    check_width(comm.Get_size(), target=target, option=option or "")
    check_plugin_env(os.environ)

    # Local work first (no collectives), then agree, so a rank that fails here (say,
    # CUDA-Q missing on one node) never leaves the others inside a collective (the Dup
    # below, or CUDA-Q's own).
    error: BaseException | None = None
    try:
        ok, reason = cudaq_comm_support()
        if not ok:
            raise CudaqUnavailableError(reason)
        cudaq = _import_cudaq()
        kern = resolve(kernel, what="kernel")
        obs = None if observable is None else resolve(observable, what="observable")
        post = resolve_postprocess(postprocess)
    except Exception as exc:  # noqa: BLE001 - reported to every rank by _agree
        error = exc
    _agree(comm, error, "building the kernel")

    engine_comm = _engine_comm(comm)  # collective over comm
    try:
        _configure(cudaq, engine_comm, target, option)
    except Exception as exc:  # noqa: BLE001 - reported to every rank by _agree
        error = exc
    _agree(comm, error, "configuring CUDA-Q")

    kwargs = {} if shots_count is None else {"shots_count": shots_count}
    raw = None
    try:
        if obs is None:
            raw = cudaq.sample(kern, *args, **kwargs)
        else:
            raw = cudaq.observe(kern, obs, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to every rank by _agree
        error = exc
    _agree(comm, error, "cudaq.observe" if obs is not None else "cudaq.sample")

    if comm.Get_rank() != 0:
        return None
    return post(raw) if post is not None else _plain(raw, obs is not None)


def resolve_postprocess(postprocess) -> Callable[[Any], Any] | None:
    """None, a callable, or an import path ``"module:function"`` naming one."""
    if postprocess is None:
        return None
    fn = load_import_path(postprocess, what="postprocess") if isinstance(postprocess, str) \
        else postprocess
    if not callable(fn):
        raise TypeError(f"postprocess={postprocess!r}: must be callable (raw result -> value)")
    return fn
