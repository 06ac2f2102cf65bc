"""How the pilot pickles its messages.

Plain pickle is fast but sends functions and classes by reference, and the driver script
(``__main__`` on rank 0) does not exist on the workers. So every message is pickled
with plain pickle first and, when that fails (lambdas, closures) or the bytes refer to
``__main__``, again with cloudpickle, which sends such objects by value.

cloudpickle (>= 3.1) replaces the file name of every code object it sends by value with
``"<dynamic-code>"`` (to make its bytes independent of where a function was defined), so a
task from the driver script that raised on a worker showed ``File "<dynamic-code>"``. Our
pickler keeps the real ``co_filename``: the worker's traceback names the driver script and
the line, and shows the source line when the worker can read the script (a shared file
system; the script's folder is on every rank's ``sys.path``).

Open files are refused (:class:`OpenFileError`) whatever their mode: cloudpickle would send
a read-mode text file as a snapshot of its contents (writes and later reads would silently
go nowhere) and refuse the others with a less helpful message. ``sys.stdout`` and
``sys.stderr`` travel as "the receiving rank's own stream", as in cloudpickle.
"""
from __future__ import annotations

import io
import pickle
import sys
import types

_MAIN = b"__main__"
_FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


class OpenFileError(pickle.PicklingError):
    """An open file object was to be sent to another rank; its text says what to pass instead."""

    def __init__(self, file) -> None:
        name, mode = getattr(file, "name", None), getattr(file, "mode", None)
        what = f"open file {name!r}" + (f" (mode {mode!r})" if mode is not None else "")
        super().__init__(f"{what}: an open file cannot travel to another rank; pass its path and open it"
                         " in the task (on a file system the workers see), or pass its contents")


def dumps(obj, protocol: int | None = None) -> bytes:
    """Pickle ``obj`` so that it can be loaded on any rank."""
    try:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _by_value(obj)
    if _MAIN in data:
        return _by_value(obj)
    return data


_pickler: type | None = None


def _by_value(obj) -> bytes:
    global _pickler
    if _pickler is None:
        _pickler = _make_pickler()  # only when needed: importing cloudpickle costs ~45 ms
    with io.BytesIO() as buffer:
        _pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(obj)
        return buffer.getvalue()


def _make_pickler() -> type:
    """cloudpickle's pickler, except that code objects keep their file name."""
    from collections import ChainMap

    import cloudpickle

    code_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]

    def reduce_code(code: types.CodeType):
        constructor, args = code_reduce(code)
        return _code_with_filename, (constructor, args, code.co_filename)

    def reduce_file(file):
        if file is sys.stdout:
            return getattr, (sys, "stdout")
        if file is sys.stderr:
            return getattr, (sys, "stderr")
        raise OpenFileError(file)

    ours = {types.CodeType: reduce_code, **dict.fromkeys(_FILE_TYPES, reduce_file)}

    class Pickler(cloudpickle.Pickler):
        dispatch_table = ChainMap(ours, cloudpickle.Pickler.dispatch_table)

    return Pickler


def _code_with_filename(constructor, args: tuple, filename: str) -> types.CodeType:
    """Rebuild a code object pickled by cloudpickle and give it back its file name."""
    return constructor(*args).replace(co_filename=filename)


loads = pickle.loads


def install(mpi) -> None:
    """Make mpi4py's lowercase (pickle-based) methods use :func:`dumps`."""
    mpi.pickle.__init__(dumps, loads)
