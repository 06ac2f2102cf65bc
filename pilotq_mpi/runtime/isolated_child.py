"""Child side of isolated task execution (see ``pilotq_mpi.runtime.isolation``).

Run as ``python .../pilotq_mpi/runtime/isolated_child.py IN OUT`` (the parent
does this; by path rather than ``-m`` so the child does not import the
``pilotq_mpi`` package, ~0.1 s, unless the task needs it; ``python -m
pilotq_mpi.runtime.isolated_child IN OUT`` works too). It imports only the
standard library until it unpickles the task. ``IN`` is a
pickle of a dict with the cloudpickled function (``fn``), the cloudpickled
``(args, kwargs)`` (``args``), the parent's ``sys_path`` and ``mpi`` (whether
to pass ``MPI.COMM_SELF`` as ``comm`` or ``None``). The child calls
``fn(comm, *args, **kwargs)`` and writes ``OUT`` (atomically: temp file +
rename) as a pickle of a dict::

    {"kind": "result", "result": <pickle bytes of the return value>}
    {"kind": "exception", "exception": <pickle bytes or None>,
     "type": "module.Class", "message": str, "traceback": str}

then exits with ``os._exit(0)`` (no interpreter teardown, so threads the task
left behind cannot hang the exit). A crash (signal, ``os._exit``) leaves no
``OUT``; the parent reports it from the exit status and the stderr tail, to
which ``faulthandler`` writes the Python stack of a fatal signal.

Standard input is the parent-death watch: the parent keeps the pipe open while
it waits, and when it reads EOF (the worker rank died) the child kills its own
process group. The task sees ``/dev/null`` as stdin.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys
import threading

if __name__ == "__main__" and sys.path and \
        os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # run by path: our directory must not shadow the task's imports


def _watch_parent(fd: int) -> None:
    """Kill our process group when the parent's end of the pipe closes."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    if os.getpgid(0) == os.getpid():  # our own group (start_new_session): take it all
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(70)  # started some other way: never kill a group we do not lead


def _start_parent_watch() -> None:
    watch_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    threading.Thread(target=_watch_parent, args=(watch_fd,), daemon=True,
                     name="pilotq-parent-watch").start()


def _write_atomic(path: str, obj: dict) -> None:
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _dumps(obj: object) -> bytes:
    """Plain pickle when it works (no cloudpickle import: ~45 ms), else cloudpickle."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj)


def _exception_outcome(exc: BaseException) -> dict:
    import traceback  # only on failure: saves ~4 ms of start-up

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        payload = _dumps(exc)
        pickle.loads(payload)  # the parent must be able to load it too
    except Exception:
        payload = None
    return {"kind": "exception", "exception": payload,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc), "traceback": tb}


def _run(request: dict) -> dict:
    for entry in request.get("sys_path", ()):
        if entry not in sys.path:
            sys.path.append(entry)
    try:
        # pickle.loads imports cloudpickle itself only if the payload needs it
        # (functions and classes sent by value), which saves its import time.
        fn = pickle.loads(request["fn"])
        args, kwargs = pickle.loads(request["args"])
        if request.get("mpi", True):
            from mpi4py import MPI  # lazily: only the child initializes (singleton) MPI

            comm = MPI.COMM_SELF
        else:
            comm = None
        value = fn(comm, *args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit etc. are task failures too
        return _exception_outcome(exc)
    try:
        return {"kind": "result", "result": _dumps(value)}
    except Exception as exc:
        try:
            raise TypeError(f"the task's return value ({type(value).__qualname__}) cannot be "
                            f"pickled to send it back: {exc}") from exc
        except TypeError as wrapped:
            return _exception_outcome(wrapped)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the request in ``argv[0]``, write the outcome to ``argv[1]``."""
    in_path, out_path = (sys.argv[1:] if argv is None else argv)[:2]
    faulthandler.enable()
    _start_parent_watch()
    with open(in_path, "rb") as fh:
        request = pickle.load(fh)
    outcome = _run(request)
    _write_atomic(out_path, outcome)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
