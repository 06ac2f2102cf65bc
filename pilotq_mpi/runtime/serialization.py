"""How the pilot pickles its messages.

Plain pickle is fast but sends functions and classes by reference, and the driver script
(``__main__`` on rank 0) does not exist on the workers. So every message is pickled
with plain pickle first and, when that fails (lambdas, closures) or the bytes refer to
``__main__``, again with cloudpickle, which sends such objects by value.
"""
from __future__ import annotations

import pickle

_MAIN = b"__main__"


def dumps(obj, protocol: int | None = None) -> bytes:
    """Pickle ``obj`` so that it can be loaded on any rank."""
    try:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _by_value(obj)
    if _MAIN in data:
        return _by_value(obj)
    return data


def _by_value(obj) -> bytes:
    import cloudpickle  # only when needed: it costs ~45 ms to import

    return cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


loads = pickle.loads


def install(mpi) -> None:
    """Make mpi4py's lowercase (pickle-based) methods use :func:`dumps`."""
    mpi.pickle.__init__(dumps, loads)
