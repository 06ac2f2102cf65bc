"""Isolated mode for single-rank tasks: run the task in a child process.

A worker rank that runs a task in its own interpreter dies with the task when
native code segfaults, and is stuck when the task hangs. In isolated mode the
worker instead starts ``python .../runtime/isolated_child.py`` (a fresh
interpreter, never ``fork`` - forking after ``MPI_Init`` is unsafe), hands it
the cloudpickled function and arguments through a temporary directory, and
waits. A segfault becomes a ``"crash"`` outcome, an overrun a ``"timeout"``
outcome (the child's whole process group is SIGKILLed), and the worker rank
keeps serving.

The child must not join the worker's MPI job. The worker was started by
``mpiexec``/``srun``, whose environment tells an MPI library to connect to the
launcher (``PMI_*``, ``PMIX_*``, ``HYDRA_*``, ``MPIR_*``, ``SLURM_STEP_*``,
``OMPI_COMM_WORLD_*``, ...). ``scrub_mpi_env`` removes those, so a task that
imports mpi4py in the child gets a singleton MPI: ``comm`` is
``MPI.COMM_SELF`` (``COMM_WORLD`` has size 1).

The child inherits the worker's stdout; its stderr is captured to a file,
forwarded to the worker's stderr when the child ends, and its tail is kept in
the outcome. If the worker process dies, the child notices (its stdin pipe
closes) and kills its process group.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Mapping

from ..errors import TaskCrashedError, TaskTimeoutError

__all__ = [
    "IsolatedOutcome",
    "IsolatedRun",
    "TaskCrashedError",
    "TaskTimeoutError",
    "run_isolated",
    "scrub_mpi_env",
    "start_isolated",
]

#: Prefixes of environment variables set by MPI launchers / process managers.
MPI_ENV_PREFIXES = (
    "PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPIR_", "MPIEXEC_", "SLURM_STEP_",
    "OMPI_COMM_WORLD_", "OMPI_UNIVERSE_", "OMPI_MCA_ess_", "OMPI_MCA_orte_",
    "OMPI_MCA_pmix", "PRTE_", "PALS_",
)
#: Single variables with the same role (per-rank identity under a launcher).
MPI_ENV_NAMES = frozenset({
    "MPI_LOCALNRANKS", "MPI_LOCALRANKID", "OMPI_FILE_LOCATION", "OMPI_APP_CTX_NUM_PROCS",
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEPID", "SLURM_SRUN_COMM_HOST",
    "SLURM_SRUN_COMM_PORT", "SLURM_LAUNCH_NODE_IPADDR",
})

# Run by path, not with -m: -m would import the pilotq_mpi package first (~0.1 s).
_CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "isolated_child.py")
_STDERR_TAIL = 4000  # characters of the child's stderr kept in the outcome
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timeout_error(timeout: float, pid: int, stderr_tail: str = "") -> TaskTimeoutError:
    """The error for an isolated task killed at its timeout (message only, so it pickles)."""
    msg = (f"task ran longer than its timeout of {timeout:g} s and was killed "
           f"(child pid {pid}, SIGKILL to its process group); raise timeout= in "
           "submit() if it needs longer, or look for a hang (a deadlock, a blocking "
           "receive, a lost remote service)")
    if stderr_tail:
        msg += f"\n--- last stderr of the task ---\n{stderr_tail}"
    return TaskTimeoutError(msg)


def crash_error(pid: int, signal_number: int | None, exit_code: int | None,
                stderr_tail: str = "") -> TaskCrashedError:
    """The error for an isolated task whose process died without reporting."""
    if signal_number is not None:
        how = f"was killed by signal {signal_number} ({_signal_name(signal_number)})"
        if signal_number == signal.SIGKILL:
            hint = ("SIGKILL usually means the out-of-memory killer or someone else "
                    "killed it; check memory use and dmesg")
        else:
            hint = ("this usually means a bug or a bad input in native code (a C/C++/"
                    "CUDA extension): check the native library and its inputs")
    else:
        how = f"exited with code {exit_code} without reporting a result"
        hint = ("something called os._exit() or the interpreter aborted; check the "
                "task for os._exit/abort calls and native code")
    msg = f"isolated task process (pid {pid}) {how}; {hint}"
    if stderr_tail:
        msg += f"\n--- last stderr of the task ---\n{stderr_tail}"
    return TaskCrashedError(msg)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class RemoteTaskError(RuntimeError):
    """Stands in for a task exception that could not be sent back as itself."""


@dataclasses.dataclass(frozen=True)
class IsolatedOutcome:
    """How an isolated task ended.

    ``kind`` is one of:

    - ``"result"``: ``result`` holds the pickled return value (load it with
      ``pickle.loads`` or ``cloudpickle.loads``);
    - ``"exception"``: ``exception`` is the raised exception (or a
      ``RemoteTaskError`` when it could not be pickled), ``exc_type`` its
      qualified type name, ``traceback`` the child's formatted traceback
      (``""`` for the other kinds);
    - ``"crash"``: the child died; ``signal`` or ``exit_code`` says how;
    - ``"timeout"``: the child ran past ``timeout`` and was killed.

    ``stderr_tail`` is the end of the child's stderr (for every kind),
    ``elapsed`` the wall time in seconds, ``pid`` the child's pid.
    """

    kind: str
    pid: int
    elapsed: float
    result: bytes | None = None
    exception: BaseException | None = None
    exc_type: str | None = None
    traceback: str = ""
    signal: int | None = None
    exit_code: int | None = None
    timeout: float | None = None
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """True when the task returned a value."""
        return self.kind == "result"

    @property
    def timed_out(self) -> bool:
        """True when the task was killed for running past its timeout."""
        return self.kind == "timeout"

    def error(self) -> BaseException | None:
        """The exception to set on the task's future (None for a result).

        For ``"exception"`` it is the task's own exception with the child's
        traceback text attached (``add_note`` on Python >= 3.11, else in
        ``.remote_traceback``); ``TaskCrashedError`` / ``TaskTimeoutError``
        for the other kinds.
        """
        if self.kind == "result":
            return None
        if self.kind == "timeout":
            return timeout_error(self.timeout or 0.0, self.pid, self.stderr_tail)
        if self.kind == "crash":
            return crash_error(self.pid, self.signal, self.exit_code, self.stderr_tail)
        exc = self.exception
        assert exc is not None
        note = f"--- traceback in the isolated task process (pid {self.pid}) ---\n{self.traceback}"
        exc.remote_traceback = self.traceback  # type: ignore[attr-defined]
        if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
        return exc

    def unwrap(self) -> bytes:
        """Return the result bytes, or raise ``error()``."""
        if self.kind == "result":
            assert self.result is not None
            return self.result
        raise self.error()  # type: ignore[misc]

    def value(self) -> object:
        """Return the unpickled return value, or raise ``error()``."""
        return pickle.loads(self.unwrap())


def scrub_mpi_env(env: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``env`` without MPI launcher / process-manager variables."""
    return {k: v for k, v in env.items()
            if k not in MPI_ENV_NAMES and not k.startswith(MPI_ENV_PREFIXES)}


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


class IsolatedRun:
    """A running isolated task; use ``start_isolated`` to create one.

    ``poll()`` returns the outcome once the child has ended (or killed it when
    its timeout has passed), else None; ``wait()`` blocks for the outcome;
    ``kill()`` ends it early (the outcome is then a ``"crash"`` with SIGKILL).
    """

    def __init__(self, fn_payload: bytes, args_payload: bytes, *, timeout: float | None,
                 env: Mapping[str, str] | None, mpi: bool, forward_stderr: bool) -> None:
        self.timeout = _check_timeout(timeout)
        self._forward_stderr = forward_stderr
        self._outcome: IsolatedOutcome | None = None
        self._timed_out = False
        self._dir = tempfile.mkdtemp(prefix="pilotq-isolated-")
        try:
            self._in = os.path.join(self._dir, "in.pkl")
            self._out = os.path.join(self._dir, "out.pkl")
            self._err = os.path.join(self._dir, "stderr.txt")
            request = {"fn": bytes(fn_payload), "args": bytes(args_payload),
                       "sys_path": [p or os.getcwd() for p in sys.path], "mpi": bool(mpi)}
            with open(self._in, "wb") as fh:
                pickle.dump(request, fh, protocol=pickle.HIGHEST_PROTOCOL)
            child_env = scrub_mpi_env(os.environ if env is None else env)
            pythonpath = [_PACKAGE_ROOT] + [p for p in child_env.get("PYTHONPATH", "").split(
                os.pathsep) if p]
            child_env["PYTHONPATH"] = os.pathsep.join(pythonpath)
            with open(self._err, "wb") as err:
                self._t0 = time.monotonic()
                self._proc = subprocess.Popen(
                    [sys.executable, _CHILD_SCRIPT, self._in, self._out],
                    stdin=subprocess.PIPE, stderr=err, env=child_env,
                    start_new_session=True, close_fds=True)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.pid = self._proc.pid

    def poll(self) -> IsolatedOutcome | None:
        """Return the outcome if the child has ended; enforce the timeout."""
        if self._outcome is not None:
            return self._outcome
        if self._proc.poll() is None:
            if self.timeout is None or time.monotonic() - self._t0 < self.timeout:
                return None
            self._timed_out = True
            self._kill_group()
            self._proc.wait()
        return self._finish()

    def wait(self) -> IsolatedOutcome:
        """Block until the child ends (or its timeout kills it); return the outcome."""
        if self._outcome is not None:
            return self._outcome
        remaining = None if self.timeout is None else self.timeout - (time.monotonic() - self._t0)
        try:
            self._proc.wait(timeout=None if remaining is None else max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self._kill_group()
            self._proc.wait()
        except BaseException:  # e.g. KeyboardInterrupt: leave no orphan behind
            self._kill_group()
            raise
        return self._finish()

    def kill(self) -> None:
        """SIGKILL the child's process group now (e.g. the task was cancelled)."""
        if self._outcome is None:
            self._kill_group()

    def _kill_group(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self) -> IsolatedOutcome:
        elapsed = time.monotonic() - self._t0
        self._kill_group()  # grandchildren the task left behind in its group
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            stderr_tail = self._read_stderr()
            self._outcome = self._build(elapsed, stderr_tail)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return self._outcome

    def _read_stderr(self) -> str:
        try:
            with open(self._err, "rb") as fh:
                if self._forward_stderr:
                    shutil.copyfileobj(fh, sys.stderr.buffer if hasattr(sys.stderr, "buffer")
                                       else _TextSink(sys.stderr))
                    sys.stderr.flush()
                fh.seek(0, os.SEEK_END)
                fh.seek(max(fh.tell() - _STDERR_TAIL, 0))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _build(self, elapsed: float, stderr_tail: str) -> IsolatedOutcome:
        common = dict(pid=self.pid, elapsed=elapsed, stderr_tail=stderr_tail)
        if self._timed_out:
            return IsolatedOutcome("timeout", timeout=self.timeout, **common)
        code = self._proc.returncode
        if os.path.exists(self._out):
            with open(self._out, "rb") as fh:
                report = pickle.load(fh)
            if report["kind"] == "result":
                return IsolatedOutcome("result", result=report["result"], **common)
            return IsolatedOutcome("exception", exception=_load_exception(report),
                                   exc_type=report["type"], traceback=report["traceback"],
                                   **common)
        if code < 0:
            return IsolatedOutcome("crash", signal=-code, **common)
        return IsolatedOutcome("crash", exit_code=code, **common)


class _TextSink:
    """Adapts a text stream without ``.buffer`` (e.g. pytest capture) to bytes writes."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8", "replace"))


def _load_exception(report: dict) -> BaseException:
    payload = report.get("exception")
    if payload is not None:
        try:
            import cloudpickle

            exc = cloudpickle.loads(payload)
            if isinstance(exc, BaseException):
                return exc
        except Exception:
            pass
    return RemoteTaskError(f"{report['type']}: {report['message']}")


def start_isolated(fn_payload: bytes, args_payload: bytes, *, timeout: float | None,
                   env: Mapping[str, str] | None = None, mpi: bool = True,
                   forward_stderr: bool = True) -> IsolatedRun:
    """Start an isolated task and return its handle without waiting (see ``run_isolated``)."""
    return IsolatedRun(fn_payload, args_payload, timeout=timeout, env=env, mpi=mpi,
                       forward_stderr=forward_stderr)


def run_isolated(fn_payload: bytes, args_payload: bytes, *, timeout: float | None,
                 env: Mapping[str, str] | None = None, mpi: bool = True,
                 forward_stderr: bool = True) -> IsolatedOutcome:
    """Run ``fn(comm, *args, **kwargs)`` in a fresh child process and return how it ended.

    ``fn_payload`` is ``cloudpickle.dumps(fn)``, ``args_payload`` is
    ``cloudpickle.dumps((args, kwargs))``. ``timeout`` (seconds, or None for
    no limit) bounds the child's wall time. ``env`` is the child's environment
    (default: this process's); MPI launcher variables are always removed.
    With ``mpi=True`` the child passes ``MPI.COMM_SELF`` as ``comm`` (importing
    mpi4py and initializing a singleton MPI); ``mpi=False`` passes ``None``
    and skips that start-up cost. ``forward_stderr`` copies the child's stderr
    to this process's stderr when it ends. Never raises for a failing task:
    inspect the outcome, or call ``outcome.unwrap()``.
    """
    return start_isolated(fn_payload, args_payload, timeout=timeout, env=env, mpi=mpi,
                          forward_stderr=forward_stderr).wait()
