"""One thread per rank for the numeric libraries (BLAS, OpenMP) while a QML task computes.

MPI runs one rank per core. BLAS (scipy's BFGS on 100-200 parameters) and OpenMP
(lightning.qubit) start a thread per core in *every* rank, and on a shared or
oversubscribed node those threads fight over the cores: measured on the 2-core build
machine under load, BFGS on 108 parameters took 2.7 s of CPU with default threads and
0.23 s with one; a lightning gradient 1.3 s per sample instead of 0.06 s.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["one_thread"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Limit BLAS and OpenMP thread pools to one thread inside the block (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the libraries keep their own defaults
        yield
        return
    with threadpool_limits(limits=1):
        yield
