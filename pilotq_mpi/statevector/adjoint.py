"""Adjoint differentiation on the distributed state vector.

For ``E = <psi|O|psi>`` with ``|psi> = B_N ... B_1 |0>`` (fused gate blocks) and a Hermitian
``O``, the derivative with respect to a circuit parameter ``theta_k`` is

    dE/dtheta_k = 2 Re sum_b <lambda_{b-1}| B_b^dagger dB_b/dtheta_k |phi_{b-1}>,

with ``|phi_b> = B_b ... B_1 |0>`` and ``|lambda_b> = B_{b+1}^dagger ... B_N^dagger O |psi>``. One
backward sweep computes every term: start from ``phi = psi`` and ``lambda = O psi``, and for
each block from the last: apply ``B^dagger`` to both, then read the block's terms off the two
states. ``M_k = B^dagger dB/dtheta_k`` is a small matrix on the block's ``q`` qubits (carried
by :class:`~pilotq_mpi.statevector.circuit.Gate`), so
``<lambda|M_k|phi> = sum_ab M_k[a, b] rho[a, b]`` with the *overlap matrix*
``rho[a, b] = sum_rest conj(lambda[rest, a]) phi[rest, b]`` (``2**q x 2**q``): one pass over the
two states serves every parameter of the block, and no third state vector is needed.

Distributed layout: ``lambda`` is *carried* by the :class:`DistributedStatevector` (same
layout, moved by the same index-bit swaps, gated by the same ``apply_matrix`` on the same
backend: numpy or CuPy/cuStateVec). After ``B^dagger`` the block's qubits are local, so each
rank's ``rho`` is a partial sum over its amplitudes; a block wider than the local part is
read from the blocks gathered within its rank group (as its gate was applied), counted once
per group. The per-rank sums of all terms are added by one ``Allreduce`` at the end.

Memory: the state, ``lambda``, the swap buffer and temporaries of at most ``CHUNK`` amplitudes
(see :func:`~pilotq_mpi.statevector.memory.memory_per_rank` with ``gradient="adjoint"``).
Several observables: one sweep each; the forward pass is recomputed between sweeps (the
sweep uncomputes ``phi`` back to ``|0>``), so ``K`` observables cost ``K`` forward passes and
``K`` sweeps (each about two forward passes plus one overlap pass per parameterised block).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .circuit import Gate
from .distributed import DistributedStatevector, next_use_planner
from .observables import CHUNK, apply_observable


def overlap_matrix(xp, bra, ket, layout: Sequence[int], qubits: Sequence[int]) -> np.ndarray:
    """``rho[a, b] = sum_rest conj(bra[rest, a]) ket[rest, b]`` as a host complex128 array.

    ``bra``/``ket``: flat arrays of ``2**len(layout)`` amplitudes in ``layout`` (logical qubit
    of each axis, most significant first); ``qubits``: the targets, all in ``layout``; ``a``
    and ``b`` in the gate's matrix order (bit ``j`` is ``qubits[j]``). Walks the non-target
    axes in chunks of at most ``CHUNK`` amplitudes (one gemm each); when the targets are the
    trailing axes (the numpy backend leaves them there) the chunks are views, no copies.
    """
    m, k = len(layout), len(qubits)
    pos = {q: i for i, q in enumerate(layout)}
    tax = sorted(pos[q] for q in qubits)
    nt = [i for i in range(m) if i not in tax]
    perm = nt + tax
    dim = 1 << k
    tb = bra.reshape((2,) * m).transpose(perm)
    tk = ket.reshape((2,) * m).transpose(perm)
    c = max(0, m - max(k, CHUNK.bit_length() - 1))  # leading non-target axes walked one by one
    rho = xp.zeros((dim, dim), dtype=np.complex128)
    for o in np.ndindex(*((2,) * c)):
        sb = tb[o].reshape(-1, dim)
        sk = tk[o].reshape(-1, dim)
        rho += xp.conj(sb).T @ sk
    rho = np.asarray(xp.asnumpy(rho) if hasattr(xp, "asnumpy") else rho)
    # rho's index bits follow the sorted target axes; reorder them to the matrix order.
    order = [layout[a] for a in tax]  # most significant first
    p = [order.index(q) for q in reversed(qubits)]
    return rho.reshape((2,) * (2 * k)).transpose(p + [i + k for i in p]).reshape(dim, dim)


def _block_terms(sv: DistributedStatevector, lam, gate: Gate, grad: np.ndarray) -> None:
    """Add this rank's share of ``2 Re <lam|M_k|state>`` for each ``(k, M_k)`` of ``gate`` to ``grad``."""
    if gate.num_qubits <= sv.num_local:
        rho = overlap_matrix(sv.backend.xp, lam, sv.state, sv.layout, gate.qubits)
    else:  # every target is in the gathered group block; one member of the group counts it
        bra, axes = sv.group_block(lam, gate.qubits)
        ket, _ = sv.group_block(sv.state, gate.qubits)
        slots = [sv.global_qubits.index(q) for q in gate.qubits if q in sv.global_qubits]
        if any((sv.rank >> s) & 1 for s in slots):
            return
        rho = overlap_matrix(np, bra, ket, axes, gate.qubits)
    for k, mk in gate.derivatives:
        grad[k] += 2.0 * float(np.real(np.sum(mk * rho)))


def backward_sweep(sv: DistributedStatevector, gates: Sequence[Gate], lam, num_params: int) -> np.ndarray:
    """Run one adjoint sweep over ``gates`` (the blocks that made ``sv.state``); return the gradient.

    On entry ``sv.state`` is ``psi`` and ``lam`` is ``O psi`` (same layout); on return ``sv.state``
    is ``|0>`` again (up to rounding). Collective over ``sv.comm``; every rank gets the gradient.
    """
    rev = list(gates)[::-1]
    next_use = next_use_planner(rev, sv.num_qubits)
    local = np.zeros(num_params, dtype=np.float64)
    sv.carry(lam)
    try:
        for i, g in enumerate(rev):
            sv.apply_matrix(g.matrix.conj().T, g.qubits, lambda q, i=i: next_use(q, i))
            if g.derivatives:
                _block_terms(sv, lam, g, local)
    finally:
        sv.carried = [a for a in sv.carried if a is not lam]
    total = np.empty_like(local)
    sv.comm.Allreduce(local, total)
    return total


def adjoint_gradients(sv: DistributedStatevector, gates: Sequence[Gate], global_phase: float,
                      observables: Sequence, num_params: int) -> tuple[np.ndarray, dict]:
    """Gradients ``d<O_j>/dtheta_k`` (rows: observables, columns: parameters) and timings.

    ``sv.state`` must be the result of ``sv.run(gates, global_phase)``; gates carry their
    ``derivatives``. The state is consumed: on return it is ``|0>``, not the final state.
    """
    t0 = time.perf_counter()
    lam = sv.backend.empty(sv.state.size, sv.dtype)
    out = np.zeros((len(observables), num_params), dtype=np.float64)
    t_forward = 0.0
    for j, op in enumerate(observables):
        if j:
            tf = time.perf_counter()
            sv.reset()
            sv.run(gates, global_phase)
            t_forward += time.perf_counter() - tf
        apply_observable(sv, op, lam)
        out[j] = backward_sweep(sv, gates, lam, num_params)
    del lam
    return out, {"gradient": time.perf_counter() - t0, "gradient_forward": t_forward,
                 "gradient_sweeps": len(observables)}
