"""Expectation values of Pauli sums, probabilities and seeded sampling on a distributed state.

Pauli terms are grouped by their X part. A group whose X part flips global qubits pairs
this rank with ``rank ^ flipped_bits``: the two ranks exchange their amplitudes chunk by
chunk through the swap buffer (uppercase ``Sendrecv``). Each term is then a local sum times
a sign from the rank's global bits; one ``Allreduce`` finishes all terms of all observables.
Local sums walk the amplitudes in chunks of at most ``CHUNK`` amplitudes (bounded temporaries;
a backend's ``chunk`` attribute overrides it: larger on a GPU, where each chunk costs kernel launches).

An observable is a Qiskit ``SparsePauliOp`` (or anything it accepts), or, without Qiskit, a
Pauli label ``"XIZY"`` or a list of ``(label, coeff)`` pairs (Qiskit's order: the rightmost
letter is qubit 0); both forms give the same terms.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .distributed import DistributedStatevector, to_canonical

CHUNK = 1 << 16
_LETTERS = frozenset("IXYZ")


def label_terms(op) -> list[tuple[str, complex]] | None:
    """``[(label, coeff), ...]`` of an observable given as a plain Pauli label (``"XIZ"``) or a list
    of ``(label, coeff)`` pairs; ``None`` for anything else (a Qiskit object, a label with a phase).

    ``ValueError`` for pairs whose labels are not strings of I, X, Y, Z of one length.
    """
    if isinstance(op, str):
        return [(op, 1.0)] if op and set(op) <= _LETTERS else None
    if not isinstance(op, (list, tuple)) or not op or not all(
            isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str) for t in op):
        return None
    width = len(op[0][0])
    for label, coeff in op:
        if not label or not set(label) <= _LETTERS or len(label) != width:
            raise ValueError(f"observable term {label!r}: labels must be strings of I, X, Y, Z, all "
                             f"{width} long (rightmost letter = qubit 0)")
        if not isinstance(coeff, (int, float, complex, np.number)):
            raise ValueError(f"observable term {label!r}: coefficient must be a number, got {coeff!r}")
    return [(label, complex(coeff)) for label, coeff in op]


def _label_paulis(pairs, num_qubits: int):
    """``(x_qubits, z_qubits, coeff)`` of ``(label, coeff)`` pairs, as :func:`_pauli_terms` gives them."""
    width = len(pairs[0][0])
    if width != num_qubits:
        raise ValueError(f"observable acts on {width} qubits but the circuit has {num_qubits}")
    for label, c in pairs:
        letters = label[::-1]  # letters[q] acts on qubit q
        x = tuple(q for q, p in enumerate(letters) if p in "XY")
        z = tuple(q for q, p in enumerate(letters) if p in "ZY")
        yield x, z, complex(c) * (1j) ** len(set(x) & set(z))  # each Y = i X Z


def _pauli_terms(op, num_qubits: int):
    """Yield ``(x_qubits, z_qubits, coeff)`` with ``P = coeff * X^x Z^z`` (Y phases folded in)."""
    pairs = label_terms(op)
    if pairs is not None:
        yield from _label_paulis(pairs, num_qubits)
        return
    from qiskit.quantum_info import SparsePauliOp

    if not isinstance(op, SparsePauliOp):
        try:
            op = SparsePauliOp(op)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"observable must be a SparsePauliOp (or Pauli/label), got {type(op).__name__}") from exc
    if op.num_qubits != num_qubits:
        raise ValueError(f"observable acts on {op.num_qubits} qubits but the circuit has {num_qubits}")
    xs, zs, phases = op.paulis.x, op.paulis.z, op.paulis.phase
    for x, z, ph, c in zip(xs, zs, phases, op.coeffs):
        ny = int(np.count_nonzero(x & z))
        # Pauli = (-i)^phase * (labels); each Y = i X Z.
        coeff = complex(c) * (-1j) ** int(ph) * (1j) ** ny
        yield tuple(np.flatnonzero(x).tolist()), tuple(np.flatnonzero(z).tolist()), coeff


def expectations(sv: DistributedStatevector, observables: Sequence) -> list[complex]:
    """Return ``<psi|O|psi>`` for each observable (same value on every rank)."""
    terms: list[tuple[int, tuple, tuple, complex]] = []
    for k, op in enumerate(observables):
        for x, z, c in _pauli_terms(op, sv.num_qubits):
            terms.append((k, x, z, c))
    groups: dict[tuple, list[int]] = {}
    for t, (_, x, _, _) in enumerate(terms):
        groups.setdefault(x, []).append(t)
    values = np.zeros(len(terms), dtype=np.complex128)
    for x, idx in groups.items():
        _local_group(sv, x, [terms[t][2] for t in idx], values, idx)
    total = np.empty_like(values)
    sv.comm.Allreduce(values, total)
    out = np.zeros(len(observables), dtype=np.complex128)
    for t, (k, _, _, c) in enumerate(terms):
        out[k] += c * total[t]
    return [complex(v) for v in out]


def _local_group(sv, x: tuple, zs: list[tuple], values: np.ndarray, idx: list[int]) -> None:
    """Add sum_l conj(psi[l ^ x]) * (-1)^{|l & z|} psi[l] of this rank for each z, into ``values[idx]``."""
    xp = sv.backend.xp
    axis, slot, inner, c = _chunking(sv)
    tensor = sv.state.reshape((1 << c,) + (2,) * inner)
    gx, xo, flips = _x_plan(x, axis, slot, inner, c)
    recv = sv.buf[: 1 << inner]
    plans = [_z_plan(sv, z, axis, slot, c) for z in zs]
    acc = np.zeros(len(zs), dtype=np.complex128)
    for o in range(1 << c):
        w = xp.conj(_flipped_block(sv, tensor, o, gx, xo, flips, recv, 7)) * tensor[o]
        for j, (gsign, zo, zin) in enumerate(plans):
            s = -1 if bin(o & zo).count("1") & 1 else 1
            acc[j] += gsign * s * complex(_signed_sum(xp, w, zin).item())
    values[idx] += acc


def _chunking(sv) -> tuple[dict, dict, int, int]:
    """(axis of each local qubit, slot of each global qubit, inner, outer) for a chunked walk:
    outer axes are walked one chunk of 2**inner amplitudes at a time; a chunk received from a
    partner lands in the swap buffer, so it must fit there (half the local part; all of it
    when there is one local qubit)."""
    axis = {q: i for i, q in enumerate(sv.layout)}
    slot = {q: s for s, q in enumerate(sv.global_qubits)}
    chunk = getattr(sv.backend, "chunk", CHUNK)
    inner = min(sv.num_local, chunk.bit_length() - 1, sv.buf.size.bit_length() - 1)
    return axis, slot, inner, sv.num_local - inner


def _x_plan(x: tuple, axis: dict, slot: dict, inner: int, outer: int) -> tuple[int, int, list]:
    """Where the X part ``x`` flips bits: global-bit mask (partner rank), outer-axis mask, inner flips."""
    xo, gx = 0, 0
    flips = [slice(None)] * inner
    for q in x:
        if q in slot:
            gx |= 1 << slot[q]
        elif axis[q] < outer:
            xo |= 1 << (outer - 1 - axis[q])
        else:
            flips[axis[q] - outer] = slice(None, None, -1)
    return gx, xo, flips


def _z_plan(sv, z: tuple, axis: dict, slot: dict, outer: int) -> tuple[int, int, tuple]:
    """The Z part ``z``: sign from this rank's global bits, outer-axis mask, inner axes."""
    gsign = (-1) ** sum((sv.rank >> slot[q]) & 1 for q in z if q in slot)
    zo = sum(1 << (outer - 1 - axis[q]) for q in z if q in axis and axis[q] < outer)
    zin = tuple(axis[q] - outer for q in z if q in axis and axis[q] >= outer)
    return gsign, zo, zin


def _flipped_block(sv, tensor, o: int, gx: int, xo: int, flips: list, recv, tag: int):
    """Chunk ``o`` of ``X^x psi`` before signs: from the partner rank when x flips global bits."""
    if gx:
        sv.exchange(tensor[o ^ xo].reshape(-1), recv, sv.rank ^ gx, tag)
        return recv.reshape(tensor.shape[1:])[tuple(flips)]
    return tensor[o ^ xo][tuple(flips)]


def _signed_sum(xp, w, zaxes: tuple):
    """sum over all indices of w * (-1)^(sum of the index bits on ``zaxes``)."""
    if not zaxes:
        return w.sum()
    others = tuple(i for i in range(w.ndim) if i not in zaxes)
    t = w.sum(axis=others) if others else w  # remaining axes: zaxes in increasing order
    while t.ndim:
        t = t[0] - t[1]
    return t


def _local_probabilities(sv: DistributedStatevector):
    """|psi|^2 of the local amplitudes, written into the swap buffer's memory (real view)."""
    xp = sv.backend.xp
    real = sv.buf.view(sv.buf.real.dtype)[: 1 << sv.num_local]
    chunk = getattr(sv.backend, "chunk", CHUNK)
    for lo in range(0, real.size, chunk):
        blk = sv.state[lo: lo + chunk]
        xp.multiply(blk.real, blk.real, out=real[lo: lo + chunk])
        real[lo: lo + chunk] += blk.imag * blk.imag
    return real


def probabilities(sv: DistributedStatevector, root: int = 0) -> np.ndarray | None:
    """Return all ``2**n`` probabilities in Qiskit order on ``root`` (None elsewhere).

    The full array (8 bytes per basis state) is gathered on ``root``: ask for ``shots``
    instead when ``n`` is large.
    """
    local = np.ascontiguousarray(sv.backend.to_host(_local_probabilities(sv)))
    full = np.empty(sv.size * local.size, dtype=local.dtype) if sv.rank == root else None
    sv.comm.Gather(local, full, root=root)
    if full is None:
        return None
    return to_canonical(full, sv.layout, sv.global_qubits).astype(np.float64)


def sample_counts(sv: DistributedStatevector, shots: int, seed: int | None = None,
                  root: int = 0) -> dict[str, int] | None:
    """Draw ``shots`` basis states; return Qiskit-style counts ``{bitstring: count}`` on ``root``.

    Seeded results are reproducible for a given ``seed`` and rank count.
    """
    if not isinstance(shots, (int, np.integer)) or shots < 0:
        raise ValueError(f"shots must be a non-negative int, got {shots!r}")
    xp = sv.backend.xp
    p = _local_probabilities(sv)
    mass = float(p.sum())
    masses = np.array(sv.comm.allgather(mass))
    streams = np.random.SeedSequence(seed).spawn(sv.size + 1)
    if sv.rank == 0:
        split = np.random.default_rng(streams[0]).multinomial(shots, masses / masses.sum()).tolist()
    else:
        split = None
    mine = int(sv.comm.scatter(split, root=0))
    rng = np.random.default_rng(streams[1 + sv.rank])
    counts: dict[int, int] = {}
    if mine:
        xp.cumsum(p, out=p)
        u = np.sort(rng.random(mine)) * float(p[-1])
        local_idx = sv.backend.to_host(xp.searchsorted(p, xp.asarray(u), side="right"))
        local_idx = np.minimum(local_idx, p.size - 1).astype(np.int64)
        full = _global_index(sv, local_idx)
        vals, cnt = np.unique(full, return_counts=True)
        counts = {int(v): int(c) for v, c in zip(vals, cnt)}
    parts = sv.comm.gather(counts, root=root)
    if parts is None:
        return None
    n = sv.num_qubits
    merged: dict[int, int] = {}
    for part in parts:
        for k, v in part.items():
            merged[k] = merged.get(k, 0) + v
    return {format(k, f"0{n}b"): v for k, v in sorted(merged.items())}


def _global_index(sv: DistributedStatevector, local_idx: np.ndarray) -> np.ndarray:
    """Map local flat indices (current layout) to global Qiskit basis-state indices."""
    m = sv.num_local
    out = np.zeros_like(local_idx)
    for a, q in enumerate(sv.layout):
        out |= ((local_idx >> (m - 1 - a)) & 1) << q
    for s, q in enumerate(sv.global_qubits):
        out |= ((sv.rank >> s) & 1) << q
    return out


def hermitian_terms(op, num_qubits: int) -> list[tuple[tuple, tuple, complex]]:
    """The ``(x_qubits, z_qubits, coeff)`` terms of a Hermitian observable (equal terms merged).

    ``ValueError`` if ``op`` is not Hermitian (a gradient of ``<psi|O|psi>`` is defined here
    for real expectation values only).
    """
    pairs = label_terms(op)
    if pairs is not None:
        merged: dict[str, complex] = {}
        for label, c in pairs:  # as SparsePauliOp.simplify(atol=0): first-seen order, exact zeros dropped
            merged[label] = merged.get(label, 0) + c
        kept = [(label, c) for label, c in merged.items() if c != 0] or [("I" * len(pairs[0][0]), 0j)]
        for label, c in kept:
            _check_hermitian(label, c)
        return list(_label_paulis(kept, num_qubits))
    from qiskit.quantum_info import SparsePauliOp

    if not isinstance(op, SparsePauliOp):
        try:
            op = SparsePauliOp(op)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"observable must be a SparsePauliOp (or Pauli/label), got {type(op).__name__}") from exc
    op = op.simplify(atol=0)
    terms = list(_pauli_terms(op, num_qubits))
    for (x, z, c), label in zip(terms, op.paulis.to_labels()):
        ny = len(set(x) & set(z))
        _check_hermitian(label, c * (-1j) ** ny)  # the coefficient of the Hermitian Pauli label
    return terms


def _check_hermitian(label: str, real: complex) -> None:
    if abs(real.imag) > 1e-12 * max(1.0, abs(real)):
        raise ValueError(
            f"gradients need Hermitian observables (real coefficients); the term {label} has "
            f"coefficient {real:.6g}: split the observable into Hermitian parts")


def apply_observable(sv: DistributedStatevector, op, out) -> None:
    """Write ``O |state>`` into ``out`` (an array like ``sv.state``, same layout) for a Pauli sum ``O``.

    ``(X^x Z^z psi)[l] = (-1)^{|(l^x) & z|} psi[l ^ x]``: the terms are grouped by their X part;
    a group that flips global qubits receives the partner rank's amplitudes chunk by chunk into
    the swap buffer, as :func:`expectations` does. Temporaries are one chunk.
    """
    axis, slot, inner, c = _chunking(sv)
    src = sv.state.reshape((1 << c,) + (2,) * inner)
    dst = out.reshape((1 << c,) + (2,) * inner)
    out[...] = 0
    groups: dict[tuple, list] = {}
    for x, z, coeff in hermitian_terms(op, sv.num_qubits):
        groups.setdefault(x, []).append((z, coeff))
    recv = sv.buf[: 1 << inner]
    for x, zs in groups.items():
        gx, xo, flips = _x_plan(x, axis, slot, inner, c)
        plans = []  # per term: scalar (coeff, sign of x & z, sign of this rank's global bits), outer mask, inner axes
        for z, coeff in zs:
            gsign, zo, zin = _z_plan(sv, z, axis, slot, c)
            plans.append((coeff * gsign * (-1) ** len(set(x) & set(z)), zo, zin))
        for o in range(1 << c):
            b_blk = _flipped_block(sv, src, o, gx, xo, flips, recv, 8)
            for scale, zo, zin in plans:
                s = -scale if bin(o & zo).count("1") & 1 else scale
                term = b_blk * s
                for a in zin:
                    term[(slice(None),) * a + (1,)] *= -1
                dst[o] += term
        sv.backend.synchronize()
