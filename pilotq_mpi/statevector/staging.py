"""Point-to-point exchanges of backend arrays: direct, or staged through host buffers.

mpi4py's uppercase ``Sendrecv`` hands MPI the address of a buffer. For CPU arrays that is
always right; for GPU arrays (CuPy) only a CUDA-aware MPI can read and write device memory:
any other one (MPICH from PyPI, most default builds) crashes or moves garbage. So a device
array is copied to a host buffer, exchanged, and copied back, unless the MPI is CUDA-aware.

:func:`cuda_aware_mpi` decides: the environment variable ``PILOTQ_CUDA_AWARE_MPI`` (``1``/``0``)
when set, else ``MPI.Query_cuda_support()`` (MPI 4.1 / MPICH / Open MPI extension; ``False``
when mpi4py lacks it). Collective reductions in this package already act on host values.
"""
from __future__ import annotations

import os

import numpy as np

ENV = "PILOTQ_CUDA_AWARE_MPI"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def cuda_aware_mpi() -> bool:
    """Whether MPI may be given GPU buffers: ``$PILOTQ_CUDA_AWARE_MPI`` if set, else MPI's own answer.

    ``ValueError`` for a value of the variable other than 1/0 (true/false, yes/no, on/off).
    """
    value = os.environ.get(ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        raise ValueError(f"{ENV}={os.environ[ENV]!r}: set it to 1 (MPI is CUDA-aware) or 0 (stage "
                         "GPU buffers through host memory), or unset it to ask MPI")
    from mpi4py import MPI

    query = getattr(MPI, "Query_cuda_support", None)
    if query is None:
        return False
    try:
        return bool(query())
    except Exception:  # noqa: BLE001 - the MPI library lacks the extension
        return False


class Exchanger:
    """``Sendrecv`` of contiguous backend arrays with one partner rank.

    ``staged``: copy through host buffers (grown on demand to the largest message, two of
    them: send and receive); otherwise the arrays go to MPI as they are.
    """

    def __init__(self, comm, backend, staged: bool):
        self.comm = comm
        self.backend = backend
        self.staged = bool(staged)
        self._send: np.ndarray | None = None
        self._recv: np.ndarray | None = None
        self.staged_bytes = 0
        """Bytes copied through the host buffers so far (both directions)."""

    def _buffers(self, size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        if self._send is None or self._send.size < size or self._send.dtype != dtype:
            self._send = self._recv = None  # free the old ones first
            self._send = self.backend.host_empty(size, dtype)
            self._recv = self.backend.host_empty(size, dtype)
        return self._send[:size], self._recv[:size]

    def sendrecv(self, send, recv, partner: int, tag: int) -> None:
        """Send ``send`` to ``partner`` and receive its message into ``recv`` (same size)."""
        if send.size != recv.size:
            raise ValueError(f"send and receive sizes differ: {send.size} != {recv.size}")
        if not self.staged:
            self.comm.Sendrecv(send, dest=partner, sendtag=tag, recvbuf=recv, source=partner, recvtag=tag)
            return
        hs, hr = self._buffers(send.size, np.dtype(send.dtype))
        self.backend.copy_to_host(send, hs)
        self.comm.Sendrecv(hs, dest=partner, sendtag=tag, recvbuf=hr, source=partner, recvtag=tag)
        self.backend.copy_from_host(hr, recv)
        self.staged_bytes += 2 * hs.nbytes
