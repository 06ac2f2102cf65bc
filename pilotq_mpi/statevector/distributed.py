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

Further arrays of the same size can be *carried* (:meth:`DistributedStatevector.carry`): they
share the layout, every swap moves them too and every gate is applied to all of them (the
adjoint gradient carries its ``<bra|`` state this way, see :mod:`.adjoint`).

Every rank runs the same deterministic plan, so layouts agree on all ranks.

GPU arrays (CuPy backend) go to MPI directly only when the MPI is CUDA-aware; otherwise every
point-to-point exchange is staged through host buffers (:mod:`.staging`), which take up to
one local state's worth of host memory per rank (two halves) beside the device arrays.
"""
from __future__ import annotations

import bisect
import time
from typing import Sequence

import numpy as np

from .backends import get_backend
from .circuit import Gate
from .memory import check_layout, check_memory, resolve_dtype, swap_buffer_length
from .staging import Exchanger, cuda_aware_mpi

_WIDE_TAG = 96
"""Message tag of the exchanges of :meth:`DistributedStatevector._apply_wide`."""


def next_use_planner(gates: Sequence[Gate], num_qubits: int):
    """Return ``next_use(q, i)``: the index of the first gate after ``i`` that acts on qubit ``q``
    (``len(gates)`` if none). ``ValueError`` for a gate outside ``0..num_qubits-1``."""
    uses: dict[int, list[int]] = {}
    for i, g in enumerate(gates):
        for q in g.qubits:
            if not 0 <= q < num_qubits:
                raise ValueError(f"gate {i} acts on qubit {q}, outside 0..{num_qubits - 1}")
            uses.setdefault(q, []).append(i)

    def next_use(q: int, i: int) -> int:
        lst = uses.get(q, [])
        j = bisect.bisect_right(lst, i)
        return lst[j] if j < len(lst) else len(gates)

    return next_use


def _comm_self():
    from mpi4py import MPI

    return MPI.COMM_SELF


class DistributedStatevector:
    """A ``num_qubits`` state vector spread over the ranks of ``comm``, initialised to ``|0...0>``.

    ``dtype``: ``"complex128"`` (default) or ``"complex64"``. ``backend``: ``"numpy"``,
    ``"cupy"`` or ``"auto"`` (or a backend instance). ``memory_budget``: bytes allowed per rank
    (``None``: no check). ``host_staging``: pass MPI host copies of the arrays instead of the arrays
    (``None``: when the arrays are on a GPU and :func:`~.staging.cuda_aware_mpi` is false).
    """

    def __init__(self, num_qubits: int, comm=None, dtype="complex128", backend="numpy",
                 memory_budget: int | None = None, host_staging: bool | None = None):
        self.comm = comm if comm is not None else _comm_self()
        self.size = self.comm.Get_size()
        self.rank = self.comm.Get_rank()
        self.num_qubits = int(num_qubits)
        self.num_global = check_layout(self.num_qubits, self.size)
        self.num_local = self.num_qubits - self.num_global
        self.dtype = resolve_dtype(dtype)
        check_memory(self.num_qubits, self.size, memory_budget, self.dtype)
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        if host_staging is None:
            host_staging = bool(getattr(self.backend, "device", False)) and not cuda_aware_mpi()
        self.exchanger = Exchanger(self.comm, self.backend, host_staging)
        """Point-to-point exchanges of local arrays (staged through host memory or not)."""
        m = self.num_local
        self.layout: list[int] = list(range(m - 1, -1, -1))
        self.global_qubits: list[int] = list(range(m, self.num_qubits))
        self.state = self.backend.empty(1 << m, self.dtype)
        self.buf = self.backend.empty(swap_buffer_length(m), self.dtype)
        self.reset()
        self.carried: list = []
        """Arrays beside :attr:`state` that follow its layout (swapped and gated with it)."""
        self.timings = {"apply": 0.0, "swap": 0.0}
        self.swaps = 0

    def carry(self, array) -> None:
        """Carry ``array`` (local amplitudes in the current layout) through every later swap and gate."""
        if array.shape != self.state.shape or array.dtype != self.state.dtype:
            raise ValueError(f"a carried array must be like the state ({self.state.shape}, {self.dtype}), "
                             f"got {array.shape}, {array.dtype}")
        self.carried.append(array)

    def reset(self) -> None:
        """Set the state to ``|0...0>`` (in whatever layout it has now)."""
        self.state[:] = 0
        if self.rank == 0:
            self.state[0] = 1

    # ------------------------------------------------------------------ gates
    def run(self, gates: Sequence[Gate], global_phase: float = 0.0) -> None:
        """Apply ``gates`` in order (already fused as wanted), then the scalar ``exp(i*global_phase)``.

        Gates on more qubits than each rank holds locally are applied by :meth:`_apply_wide`.
        """
        next_use = next_use_planner(gates, self.num_qubits)
        for i, g in enumerate(gates):
            self.apply_matrix(g.matrix, g.qubits, lambda q, i=i: next_use(q, i))
        if global_phase:
            self.state *= np.exp(1j * global_phase).astype(self.dtype)
        self.backend.synchronize()

    def apply_gate(self, gate: Gate) -> None:
        """Apply one gate (swapping global targets in as needed)."""
        self.run([gate])

    def apply_matrix(self, matrix: np.ndarray, qubits: Sequence[int], priority=None) -> None:
        """Apply ``matrix`` (Qiskit order over ``qubits``) to the state and every carried array.

        Global targets are swapped in first (``priority`` as in :meth:`_make_local`); a gate on
        more qubits than are local goes through :meth:`_apply_wide`.
        """
        if len(qubits) > self.num_local:
            self._apply_wide(Gate(tuple(qubits), matrix))
            return
        self._make_local(qubits, priority)
        t0 = time.perf_counter()
        layouts = [self.backend.apply(a, self.buf, self.layout, matrix, qubits)
                   for a in [self.state] + self.carried]
        if any(lay != layouts[0] for lay in layouts[1:]):  # backends are deterministic: a bug
            raise RuntimeError(f"carried arrays left in different layouts: {layouts}")
        self.layout = layouts[0]
        self.timings["apply"] += time.perf_counter() - t0

    def group_block(self, array, qubits: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """Gather ``array`` over the ranks that differ only in the rank bits of global ``qubits``.

        Returns ``(block, axes)`` on every member: a host array of ``2**(t+m)`` amplitudes
        (``t`` global qubits among ``qubits``) and the logical qubit of each of its axes, most
        significant first (the last exchanged rank bit, ..., the first one, then the local axes).
        Recursive doubling: one ``Sendrecv`` of the whole gathered block per rank bit.
        """
        slots = [self.global_qubits.index(q) for q in qubits if q in self.global_qubits]
        self.backend.synchronize()
        block = np.array(self.backend.to_host(array), dtype=self.dtype)  # a host copy
        for s in slots:
            partner = self.rank ^ (1 << s)
            theirs = np.empty_like(block)
            self.comm.Sendrecv(block, dest=partner, sendtag=_WIDE_TAG, recvbuf=theirs,
                               source=partner, recvtag=_WIDE_TAG)
            block = np.concatenate((theirs, block) if (self.rank >> s) & 1 else (block, theirs))
        axes = [self.global_qubits[s] for s in reversed(slots)] + list(self.layout)
        return block, axes

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
        k = gate.num_qubits
        mt = gate.matrix.T.astype(self.dtype)
        for array in [self.state] + self.carried:
            block, axes = self.group_block(array, gate.qubits)
            n = len(axes)
            targets = [axes.index(q) for q in reversed(gate.qubits)]  # gate.qubits[0] least significant
            rest = [a for a in range(n) if a not in targets]
            perm = rest + targets
            tensor = block.reshape((2,) * n).transpose(perm).reshape(-1, 1 << k) @ mt
            tensor = tensor.reshape((2,) * n).transpose(np.argsort(perm))
            own = tensor[tuple((self.rank >> s) & 1 for s in reversed(slots))]
            array[...] = self.backend.xp.asarray(np.ascontiguousarray(own).reshape(-1))
        self.timings["apply"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ swaps
    def exchange(self, send, recv, partner: int, tag: int) -> None:
        """``Sendrecv`` of the contiguous local arrays ``send``/``recv`` with ``partner`` (GPU work synced first)."""
        self.backend.synchronize()
        self.exchanger.sendrecv(send, recv, partner, tag)

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
        self.backend.synchronize()
        for array in [self.state] + self.carried:
            view = array.reshape(1 << axis, 2, r)[:, 1 - bit, :]  # the half that leaves
            if axis == 0:
                # Contiguous: send it directly, receive into the buffer, copy back.
                send = view.reshape(-1)
                self.exchange(send, self.buf[: 1 << (m - 1)], partner, slot)
                send[:] = self.buf[: 1 << (m - 1)]
            else:
                # Strided: two rounds of a quarter each, packed into and received from the buffer.
                quarter = 1 << (m - 2)
                out, inb = self.buf[:quarter], self.buf[quarter: 2 * quarter]
                h = 1 << (axis - 1)
                for part in (view[:h], view[h:]):
                    out.reshape(part.shape)[...] = part
                    self.exchange(out, inb, partner, slot)
                    part[...] = inb.reshape(part.shape)
            self.backend.synchronize()
        self.layout[axis], self.global_qubits[slot] = self.global_qubits[slot], self.layout[axis]
        self.swaps += 1
        self.timings["swap"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ output
    def norm(self) -> float:
        """Return the 2-norm of the whole state (allreduce of local sums).

        Local sums go in pieces of at most ``2**30`` amplitudes (BLAS dot products take 32-bit lengths).
        """
        xp = self.backend.xp
        step = 1 << 30
        local = sum(float(xp.vdot(piece, piece).real)
                    for piece in (self.state[lo: lo + step] for lo in range(0, self.state.size, step)))
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
