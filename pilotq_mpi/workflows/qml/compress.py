"""Compress an encoded image into a shallow nearest-neighbour circuit (two stages).

Following the data-loading scheme the Pilot-Quantum QML mini-app uses (Dilip et al. 2022;
Kiwit et al. 2025), a target state ``|psi>`` (an FRQI image, :mod:`.data`) is approximated
by ``layers`` staircases of two-qubit gates on neighbouring qubits, applied to ``|0...0>``:

Stage 1, matrix-product state and sweeping
    Each layer is built from a matrix-product-state (MPS) approximation of bond dimension 2
    (successive truncated SVDs, left-canonical form): a bond-2 MPS is exactly a staircase
    of n-1 two-qubit gates (Ran 2020). The first layer encodes the MPS of ``|psi>``, each
    further layer the MPS of what the layers so far leave over (``U^T |psi>``). Then every
    gate is re-optimised in turn with the others fixed (its *environment*, the overlap as a
    linear function of that gate, and the best orthogonal gate for it from one SVD), sweeping
    forward and back through the circuit ``sweeps`` times. The overlap never decreases.
Stage 2, state vector and BFGS
    All gates at once: each gate is ``g0 @ expm(A(theta))`` with ``g0`` the stage-1 gate and
    ``A`` antisymmetric (6 parameters per gate), and scipy's BFGS minimises ``1 - F`` with the
    exact gradient (forward and backward state vectors give every gate's environment; the
    derivative of the matrix exponential comes from one eigendecomposition per gate).

Gates are real orthogonal with determinant 1 (SO(4)): FRQI amplitudes are real, and so is
everything here. The fidelity is ``F = <psi|U|0>^2``. The state vectors are numpy arrays
of 2^n amplitudes: the encoded digits have 7 qubits (128 amplitudes), where exact
contraction costs microseconds; an MPS contraction would be the way past ~25 qubits.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.optimize import minimize  # at import, not in the first task's timing (~1-5 s here)

__all__ = ["CompressionConfig", "CompressedImage", "compress_state", "circuit_state", "mps_layers",
           "sweep", "refine_bfgs", "fidelity"]


@dataclasses.dataclass(frozen=True)
class CompressionConfig:
    """How hard to compress: ``layers`` staircases, ``sweeps`` forward+back sweeps (stage 1),
    at most ``bfgs_maxiter`` BFGS iterations (stage 2; 0 skips it), stopping at gradient norm ``bfgs_gtol``."""

    layers: int = 2
    sweeps: int = 3
    bfgs_maxiter: int = 100
    bfgs_gtol: float = 1e-6

    def __post_init__(self) -> None:
        if not isinstance(self.layers, int) or self.layers < 1:
            raise ValueError(f"layers={self.layers!r}: use at least 1 layer of gates")
        if not isinstance(self.sweeps, int) or self.sweeps < 0:
            raise ValueError(f"sweeps={self.sweeps!r}: use 0 or more sweeps")
        if not isinstance(self.bfgs_maxiter, int) or self.bfgs_maxiter < 0:
            raise ValueError(f"bfgs_maxiter={self.bfgs_maxiter!r}: use 0 (no BFGS) or more iterations")
        if not self.bfgs_gtol > 0:
            raise ValueError(f"bfgs_gtol={self.bfgs_gtol!r}: use a positive tolerance")


@dataclasses.dataclass
class CompressedImage:
    """One compressed state: the circuit (``gates[i]`` on qubits ``qubits[i]``, ``qubits[i] + 1``,
    in the order they are applied to ``|0...0>``) and what each stage achieved."""

    n_qubits: int
    gates: np.ndarray
    """(G, 4, 4) real orthogonal gates; index ``2 * bit(q) + bit(q + 1)``."""
    qubits: tuple[int, ...]
    fidelity_mps: float
    """Fidelity of the layers built from the MPS, before any sweep."""
    fidelity_sweep: float
    """After stage 1 (MPS layers + sweeps)."""
    fidelity_bfgs: float
    """After stage 2 (the final circuit)."""
    seconds_sweep: float
    """Stage 1 time: MPS layers and sweeps."""
    seconds_bfgs: float
    bfgs_iterations: int
    index: int = -1
    """Position of the image in the data set (set by the ensemble)."""

    @property
    def parameters(self) -> int:
        """Free parameters of the circuit: 6 per SO(4) gate."""
        return 6 * len(self.qubits)

    def state(self) -> np.ndarray:
        """The state the circuit prepares (2^n real amplitudes)."""
        return circuit_state(self.gates, self.qubits, self.n_qubits)


# --- state vectors ------------------------------------------------------------------------
def _apply(state: np.ndarray, gate: np.ndarray, qubit: int) -> np.ndarray:
    """``gate`` on qubits (qubit, qubit+1) of a flat state of 2^n amplitudes (qubit 0 most significant)."""
    n = state.size.bit_length() - 1
    return np.matmul(gate, state.reshape(1 << qubit, 4, 1 << (n - qubit - 2))).reshape(-1)


def _zero_state(n: int) -> np.ndarray:
    state = np.zeros(1 << n)
    state[0] = 1.0
    return state


def circuit_state(gates: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """Apply ``gates`` (on ``qubits``, in order) to ``|0...0>`` of ``n`` qubits."""
    state = _zero_state(n)
    for gate, qubit in zip(gates, qubits):
        state = _apply(state, gate, qubit)
    return state


def fidelity(target: np.ndarray, gates: np.ndarray, qubits: tuple[int, ...]) -> float:
    """``|<target|U|0>|^2`` for the circuit ``U`` given by ``gates`` and ``qubits``."""
    n = target.size.bit_length() - 1
    return float(np.dot(target, circuit_state(gates, qubits, n)) ** 2)


def _environment(left: np.ndarray, right: np.ndarray, qubit: int) -> np.ndarray:
    """E with ``<right| g |left> = sum(E * g)`` for a gate g on (qubit, qubit+1)."""
    n = left.size.bit_length() - 1
    shape = (1 << qubit, 4, 1 << (n - qubit - 2))
    r = right.reshape(shape).transpose(1, 0, 2).reshape(4, -1)
    return r @ left.reshape(shape).transpose(1, 0, 2).reshape(4, -1).T


def _forward_states(gates, qubits, n) -> list[np.ndarray]:
    """``states[p]``: the state just before gate p (``states[G]``: the output)."""
    states = [_zero_state(n)]
    for gate, qubit in zip(gates, qubits):
        states.append(_apply(states[-1], gate, qubit))
    return states


def _backward_states(gates, qubits, target) -> list[np.ndarray]:
    """``states[p]``: ``target`` pulled back through the gates after p (overlap = <states[p]|g_p|before p>)."""
    states = [target] * len(qubits)
    for p in range(len(qubits) - 1, 0, -1):
        states[p - 1] = _apply(states[p], gates[p].T, qubits[p])
    return states


# --- stage 1: MPS layers ----------------------------------------------------------------------
def _left_canonical_mps(state: np.ndarray, n: int, chi: int = 2) -> list[np.ndarray]:
    """Bond-``chi`` MPS of ``state``: tensors (left, 2, right) left-isometric, the last (left, 2) of norm 1."""
    tensors, rest, bond = [], state.reshape(1, -1), 1
    for _ in range(n - 1):
        u, s, vt = np.linalg.svd(rest.reshape(bond * 2, -1), full_matrices=False)
        keep = min(chi, max(1, int(np.sum(s > 1e-14 * s[0]))))  # drop exact zeros: a product state has bond 1
        tensors.append(u[:, :keep].reshape(bond, 2, keep))
        rest, bond = s[:keep, None] * vt[:keep], keep
    last = rest.reshape(bond, 2)
    tensors.append(last / np.linalg.norm(last))  # the kept singular values: what truncation left of the norm
    return tensors


def _complete_so4(columns: np.ndarray) -> np.ndarray:
    """A 4x4 rotation (det +1) whose first columns are the orthonormal ``columns`` (4, r), r <= 2."""
    r = columns.shape[1]
    u, _, _ = np.linalg.svd(columns, full_matrices=True)
    gate = np.hstack([columns, u[:, r:]])
    if np.linalg.det(gate) < 0:
        gate[:, -1] *= -1
    return gate


def _mps_to_staircase(tensors: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """One staircase (gates in the order applied, and their first qubits) that prepares the bond-2 MPS."""
    n = len(tensors)
    if n == 2:
        return [_complete_so4((tensors[0][0] @ tensors[1]).reshape(4, 1))], [0]
    gates, qubits = [], []
    last = np.zeros((2, 2))
    last[: tensors[-1].shape[0]] = tensors[-1]
    gates.append(_complete_so4(last.reshape(4, 1)))  # |00> -> sum A[a, b] |a b> on qubits n-2, n-1
    qubits.append(n - 2)
    for k in range(n - 3, 0, -1):  # |0>_k |c>_{k+1} -> sum A_{k+1}[a, b, c] |a>_k |b>_{k+1}
        tensor = tensors[k + 1]
        padded = np.zeros((2, 2, tensor.shape[2]))
        padded[: tensor.shape[0]] = tensor
        gates.append(_complete_so4(padded.reshape(4, -1)))
        qubits.append(k)
    first = np.einsum("xba,acd->bcd", tensors[0], tensors[1])  # sites 0 and 1 together
    gates.append(_complete_so4(first.reshape(4, -1)))
    qubits.append(0)
    return gates, qubits


def mps_layers(target: np.ndarray, layers: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``layers`` staircases from bond-2 MPS approximations of ``target`` and of what is left over."""
    n = target.size.bit_length() - 1
    if n < 2 or target.size != 1 << n:
        raise ValueError(f"target of {target.size} amplitudes: need 2^n with n >= 2")
    gates: list[np.ndarray] = []
    qubits: list[int] = []
    residual = target
    for _ in range(layers):
        new_gates, new_qubits = _mps_to_staircase(_left_canonical_mps(residual, n))
        gates, qubits = new_gates + gates, new_qubits + qubits  # the new layer acts first
        residual = target
        for gate, qubit in zip(reversed(gates), reversed(qubits)):  # U^T |psi>
            residual = _apply(residual, gate.T, qubit)
    return np.array(gates), tuple(qubits)


def _best_rotation(environment: np.ndarray) -> np.ndarray:
    """The SO(4) gate g that maximises ``sum(environment * g)`` (SVD, with the Kabsch sign fix)."""
    u, _, vt = np.linalg.svd(environment)
    if np.linalg.det(u @ vt) < 0:
        u = u.copy()
        u[:, -1] *= -1
    return u @ vt


def sweep(target: np.ndarray, gates: np.ndarray, qubits: tuple[int, ...], sweeps: int) -> np.ndarray:
    """Optimise one gate at a time (the others fixed), forward then back, ``sweeps`` times."""
    n = target.size.bit_length() - 1
    gates = np.array(gates, dtype=np.float64)
    count = len(qubits)
    for _ in range(sweeps):
        right = _backward_states(gates, qubits, target)
        left = _zero_state(n)
        for p in range(count):
            gates[p] = _best_rotation(_environment(left, right[p], qubits[p]))
            left = _apply(left, gates[p], qubits[p])
        lefts = _forward_states(gates, qubits, n)
        back = target
        for p in range(count - 1, -1, -1):
            gates[p] = _best_rotation(_environment(lefts[p], back, qubits[p]))
            back = _apply(back, gates[p].T, qubits[p])
    return gates


# --- stage 2: BFGS on all gates ------------------------------------------------------------------
_PAIRS = [(a, b) for a in range(4) for b in range(a + 1, 4)]
_ROWS = np.array([a for a, _ in _PAIRS])
_COLS = np.array([b for _, b in _PAIRS])


def _generators(theta: np.ndarray) -> np.ndarray:
    """Antisymmetric (G, 4, 4) matrices from (G, 6) parameters."""
    a = np.zeros((theta.shape[0], 4, 4))
    a[:, _ROWS, _COLS] = theta
    a[:, _COLS, _ROWS] = -theta
    return a


def _expm_and_pullback(a: np.ndarray, cotangent: np.ndarray | None):
    """``expm(a)`` for antisymmetric (G, 4, 4) ``a``, and (if ``cotangent``) the gradient of
    ``sum(cotangent * expm(a))`` with respect to ``a`` (the adjoint Frechet derivative)."""
    w, q = np.linalg.eigh(1j * a)  # 1j*a is Hermitian: a = q diag(-1j*w) q^H
    lam = -1j * w
    e = np.exp(lam)
    qh = np.conj(np.swapaxes(q, 1, 2))
    expm = np.real((q * e[:, None, :]) @ qh)
    if cotangent is None:
        return expm, None
    d = lam[:, :, None] - lam[:, None, :]
    small = np.abs(d) < 1e-9
    ratio = np.where(small, 1.0 + d / 2, np.expm1(np.where(small, 1.0, d)) / np.where(small, 1.0, d))
    phi = e[:, None, :] * ratio  # (e^li - e^lj) / (li - lj), e^li on the diagonal
    inner = qh @ cotangent @ q
    grad = np.real(q @ (inner * np.conj(phi)) @ qh)
    return expm, grad


def _loss_and_grad(theta: np.ndarray, base: np.ndarray, qubits, target: np.ndarray):
    count = len(qubits)
    theta = theta.reshape(count, 6)
    rotations, _ = _expm_and_pullback(_generators(theta), None)
    gates = base @ rotations
    n = target.size.bit_length() - 1
    lefts = _forward_states(gates, qubits, n)
    overlap = float(np.dot(target, lefts[-1]))
    envs = np.empty((count, 4, 4))
    back = target
    for p in range(count - 1, -1, -1):
        envs[p] = _environment(lefts[p], back, qubits[p])
        back = _apply(back, gates[p].T, qubits[p])
    # d overlap / d rotation_p = base_p^T env_p; pulled back through expm to the generator
    _, grad_a = _expm_and_pullback(_generators(theta), np.swapaxes(base, 1, 2) @ envs)
    grad_theta = grad_a[:, _ROWS, _COLS] - grad_a[:, _COLS, _ROWS]
    loss = 1.0 - overlap * overlap
    return loss, (-2.0 * overlap * grad_theta).reshape(-1)


def refine_bfgs(target: np.ndarray, gates: np.ndarray, qubits: tuple[int, ...], maxiter: int,
                gtol: float = 1e-6) -> tuple[np.ndarray, int]:
    """Stage 2: BFGS on all gates (``gates @ expm(A(theta))``, theta from 0); the gates and iterations."""
    if maxiter == 0:
        return np.array(gates), 0
    base = np.array(gates, dtype=np.float64)
    result = minimize(_loss_and_grad, np.zeros(6 * len(qubits)), args=(base, qubits, target), jac=True,
                      method="BFGS", options={"maxiter": maxiter, "gtol": gtol})
    rotations, _ = _expm_and_pullback(_generators(result.x.reshape(len(qubits), 6)), None)
    refined = base @ rotations
    if fidelity(target, refined, qubits) < fidelity(target, base, qubits):  # BFGS never makes it worse
        return base, int(result.nit)
    return refined, int(result.nit)


def compress_state(target: np.ndarray, config: CompressionConfig = CompressionConfig()) -> CompressedImage:
    """Both stages for one normalised real state; times and fidelity after each stage."""
    target = np.asarray(target, dtype=np.float64)
    n = target.size.bit_length() - 1
    if target.ndim != 1 or target.size != 1 << n or n < 2:
        raise ValueError(f"target of shape {target.shape}: need a flat real state of 2^n amplitudes, n >= 2")
    if not np.isclose(np.linalg.norm(target), 1.0, atol=1e-8):
        raise ValueError(f"target has norm {np.linalg.norm(target):.6g}: normalise it first")
    start = time.perf_counter()
    gates, qubits = mps_layers(target, config.layers)
    fidelity_mps = fidelity(target, gates, qubits)
    gates = sweep(target, gates, qubits, config.sweeps)
    fidelity_sweep = fidelity(target, gates, qubits)
    middle = time.perf_counter()
    gates, iterations = refine_bfgs(target, gates, qubits, config.bfgs_maxiter, config.bfgs_gtol)
    end = time.perf_counter()
    return CompressedImage(n, gates, qubits, fidelity_mps, fidelity_sweep, fidelity(target, gates, qubits),
                           middle - start, end - middle, iterations)
