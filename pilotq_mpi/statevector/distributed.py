"""The distributed state vector: local amplitudes per rank, gate application, index-bit swaps.

With ``2**g`` ranks, ``g`` logical qubits are *global*: rank bit ``s`` holds logical qubit
``global_qubits[s]``. The other ``m = n - g`` qubits are local axes (``layout``); every
layout has ``m >= 1`` (:func:`~pilotq_mpi.statevector.memory.check_layout`). A gate on
a global qubit first swaps it with a local qubit: each rank sends the half of its amplitudes
whose local bit differs from its rank bit to the partner rank (``rank ^ (1 << s)``) with
uppercase ``Sendrecv`` and receives the partner's half into the swap buffer. A gate on
more qubits than a rank holds (``k > m``, e.g. a CX with one local qubit per rank) cannot
be made local: the ``2**t`` ranks that differ only in the gate's ``t`` global qubits gather
their amplitudes (``2**(t+m)``, small since ``m < k``), each applies the gate to the
gathered block and keeps its own part.

The swap buffer holds ``max(2, 2**(m-1))`` amplitudes: half the local part, and never less
than one chunk of the observables' exchange (two amplitudes when ``m == 1``).

Every rank runs the same deterministic plan, so layouts agree on all ranks.
"""
from __future__ import annotations

import bisect
import time
from typing import Sequence

import numpy as np

from .backends import get_backend
from .circuit import Gate
from .memory import check_layout, check_memory, resolve_dtype, swap_buffer_length

_WIDE_TAG = 96
"""Message tag of the exchanges of :meth:`DistributedStatevector._apply_wide`."""


def _comm_self():
    from mpi4py import MPI

    return MPI.COMM_SELF


class DistributedStatevector:
    """A ``num_qubits`` state vector spread over the ranks of ``comm``, initialised to ``|0...0>``.

    ``dtype``: ``"complex128"`` (default) or ``"complex64"``. ``backend``: ``"numpy"``,
    ``"cupy"`` or ``"auto"``. ``memory_budget``: bytes allowed per rank (``None``: no check).
    """

    def __init__(self, num_qubits: int, comm=None, dtype="complex128", backend="numpy",
                 memory_budget: int | None = None):
        self.comm = comm if comm is not None else _comm_self()
        self.size = self.comm.Get_size()
        self.rank = self.comm.Get_rank()
        self.num_qubits = int(num_qubits)
        self.num_global = check_layout(self.num_qubits, self.size)
        self.num_local = self.num_qubits - self.num_global
        self.dtype = resolve_dtype(dtype)
        check_memory(self.num_qubits, self.size, memory_budget, self.dtype)
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        m = self.num_local
        self.layout: list[int] = list(range(m - 1, -1, -1))
        self.global_qubits: list[int] = list(range(m, self.num_qubits))
        self.state = self.backend.empty(1 << m, self.dtype)
        self.buf = self.backend.empty(swap_buffer_length(m), self.dtype)
        self.state[:] = 0
        if self.rank == 0:
            self.state[0] = 1
        self.timings = {"apply": 0.0, "swap": 0.0}
        self.swaps = 0

    # ------------------------------------------------------------------ gates
    def run(self, gates: Sequence[Gate], global_phase: float = 0.0) -> None:
        """Apply ``gates`` in order (already fused as wanted), then the scalar ``exp(i*global_phase)``.

        Gates on more qubits than each rank holds locally are applied by :meth:`_apply_wide`.
        """
        uses: dict[int, list[int]] = {}
        for i, g in enumerate(gates):
            for q in g.qubits:
                if not 0 <= q < self.num_qubits:
                    raise ValueError(f"gate {i} acts on qubit {q}, outside 0..{self.num_qubits - 1}")
                uses.setdefault(q, []).append(i)

        def next_use(q: int, i: int) -> int:
            lst = uses.get(q, [])
            j = bisect.bisect_right(lst, i)
            return lst[j] if j < len(lst) else len(gates)

        for i, g in enumerate(gates):
            if g.num_qubits > self.num_local:
                self._apply_wide(g)
                continue
            self._make_local(g.qubits, lambda q, i=i: next_use(q, i))
            t0 = time.perf_counter()
            self.layout = self.backend.apply(self.state, self.buf, self.layout, g.matrix, g.qubits)
            self.timings["apply"] += time.perf_counter() - t0
        if global_phase:
            self.state *= np.exp(1j * global_phase).astype(self.dtype)
        self.backend.synchronize()

    def apply_gate(self, gate: Gate) -> None:
        """Apply one gate (swapping global targets in as needed)."""
        self.run([gate])

    def _apply_wide(self, gate: Gate) -> None:
        """Apply a gate on more qubits than are local, by gathering within the gate's rank group.

        The group of this rank is the ``2**t`` ranks that differ from it only in the rank
        bits of the gate's ``t`` global qubits. Recursive doubling over those bits (one
        ``Sendrecv`` of the whole gathered block per bit) leaves every member with the
        group's ``2**(t+m)`` amplitudes; the gate is applied to them on the host, and each
        rank keeps its own ``2**m``. Layout and global qubits do not change. Only called when
        ``k > m``, so the block is at most ``2**(2k)`` amplitudes.
        """
        t0 = time.perf_counter()
        slots = [self.global_qubits.index(q) for q in gate.qubits if q in self.global_qubits]
        self.backend.synchronize()
        block = np.array(self.backend.to_host(self.state), dtype=self.dtype)  # a host copy
        for s in slots:
            partner = self.rank ^ (1 << s)
            theirs = np.empty_like(block)
            self.comm.Sendrecv(block, dest=partner, sendtag=_WIDE_TAG, recvbuf=theirs,
                               source=partner, recvtag=_WIDE_TAG)
            block = np.concatenate((theirs, block) if (self.rank >> s) & 1 else (block, theirs))
        # Axes of the gathered block, most significant first: the last exchanged rank bit, ...,
        # the first one, then the local axes.
        axes = [self.global_qubits[s] for s in reversed(slots)] + list(self.layout)
        n = len(axes)
        k = gate.num_qubits
        targets = [axes.index(q) for q in reversed(gate.qubits)]  # gate.qubits[0] least significant
        rest = [a for a in range(n) if a not in targets]
        perm = rest + targets
        tensor = block.reshape((2,) * n).transpose(perm).reshape(-1, 1 << k)
        tensor = tensor @ gate.matrix.T.astype(self.dtype)
        tensor = tensor.reshape((2,) * n).transpose(np.argsort(perm))
        own = tensor[tuple((self.rank >> s) & 1 for s in reversed(slots))]
        self.state[...] = self.backend.xp.asarray(np.ascontiguousarray(own).reshape(-1))
        self.timings["apply"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ swaps
    def _make_local(self, qubits: Sequence[int], priority=None) -> None:
        """Swap every global qubit of ``qubits`` with a local qubit not in ``qubits``.

        The evicted local qubit is the one with the largest ``priority(q)`` (e.g. the gate
        index of its next use), ties broken towards the outermost axis (contiguous halves).
        """
        need = [q for q in qubits if q in self.global_qubits]
        for q in need:
            cands = [i for i, lq in enumerate(self.layout) if lq not in qubits]
            if priority is None:
                axis = cands[0]
            else:
                axis = max(cands, key=lambda i: (priority(self.layout[i]), -i))
            self._swap(self.global_qubits.index(q), axis)

    def _swap(self, slot: int, axis: int) -> None:
        """Exchange global rank bit ``slot`` with local ``axis`` (half the local amplitudes move)."""
        t0 = time.perf_counter()
        m = self.num_local
        bit = (self.rank >> slot) & 1
        partner = self.rank ^ (1 << slot)
        r = 1 << (m - 1 - axis)
        view = self.state.reshape(1 << axis, 2, r)[:, 1 - bit, :]  # the half that leaves
        self.backend.synchronize()
        if axis == 0:
            # Contiguous: send it directly, receive into the buffer, copy back.
            send = view.reshape(-1)
            self.comm.Sendrecv(send, dest=partner, sendtag=slot, recvbuf=self.buf[: 1 << (m - 1)],
                               source=partner, recvtag=slot)
            send[:] = self.buf[: 1 << (m - 1)]
        else:
            # Strided: two rounds of a quarter each, packed into and received from the buffer.
            quarter = 1 << (m - 2)
            out, inb = self.buf[:quarter], self.buf[quarter: 2 * quarter]
            h = 1 << (axis - 1)
            for part in (view[:h], view[h:]):
                out.reshape(part.shape)[...] = part
                self.backend.synchronize()
                self.comm.Sendrecv(out, dest=partner, sendtag=slot, recvbuf=inb,
                                   source=partner, recvtag=slot)
                part[...] = inb.reshape(part.shape)
        self.layout[axis], self.global_qubits[slot] = self.global_qubits[slot], self.layout[axis]
        self.swaps += 1
        self.timings["swap"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ output
    def norm(self) -> float:
        """Return the 2-norm of the whole state (allreduce of local sums)."""
        xp = self.backend.xp
        local = float(xp.vdot(self.state, self.state).real)
        return float(np.sqrt(self.comm.allreduce(local)))

    def gather(self, root: int | None = 0) -> np.ndarray | None:
        """Return the full state in Qiskit order on ``root`` (all ranks if ``root`` is None).

        For checks and small circuits only: it needs ``2**n`` amplitudes on the receiving ranks.
        """
        local = np.ascontiguousarray(self.backend.to_host(self.state))
        full = np.empty(self.size << self.num_local, dtype=self.dtype) if (root is None or self.rank == root) else None
        if root is None:
            self.comm.Allgather(local, full)
        else:
            self.comm.Gather(local, full, root=root)
        if full is None:
            return None
        return to_canonical(full, self.layout, self.global_qubits)


def to_canonical(full: np.ndarray, layout: Sequence[int], global_qubits: Sequence[int]) -> np.ndarray:
    """Reorder per-rank concatenated data (rank-major, then local axes) into Qiskit index order."""
    g = len(global_qubits)
    # Gathered axes: rank bits from most significant (slot g-1) down, then local axes.
    axes_qubits = [global_qubits[s] for s in range(g - 1, -1, -1)] + list(layout)
    n = len(axes_qubits)
    where = {q: i for i, q in enumerate(axes_qubits)}
    perm = [where[q] for q in range(n - 1, -1, -1)]
    return np.ascontiguousarray(full.reshape((2,) * n).transpose(perm)).reshape(-1)
