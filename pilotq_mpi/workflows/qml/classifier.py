"""A variational quantum classifier trained data-parallel on compressed image states.

Model (PennyLane): the input state is loaded with ``StatePrep`` (the state a compressed
circuit prepares, :mod:`.compress`), then ``layers`` times one ``Rot`` per qubit and a ring
of CNOTs; the read-outs are ``<Z_q>`` of the first ``n_classes`` qubits. Class scores are
``logits = scale * <Z> + bias`` (``scale`` and ``bias`` trained with the circuit), the loss
is the softmax cross-entropy, the optimiser Adam.

Backends: ``"jax"`` (``default.qubit`` differentiated by backpropagation in JAX, the
mini-batch gradient ``jit``-compiled and ``vmap``-ped over samples) where JAX is installed,
``"lightning"`` (``lightning.qubit`` with adjoint differentiation, one sample at a time)
otherwise; ``"auto"`` picks the first that imports.

Data parallelism (:func:`train_classifier`): every rank of the task's communicator draws
the same mini-batches (same seed), computes the summed loss and gradient of its shard
(``batch[rank::size]``) and one ``Allreduce`` adds them up; every rank then takes the same
Adam step, so the parameters stay identical on all ranks without being sent around, and
the result equals single-rank training up to floating-point summation order.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from .threads import one_thread

__all__ = ["ClassifierConfig", "TrainResult", "Model", "make_model", "available_backends", "init_params",
           "train_classifier", "train_task", "classical_baseline", "Adam"]

BACKENDS = ("jax", "lightning")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The classifier and its training: circuit size, mini-batches, epochs, Adam's step, seed, backend."""

    n_qubits: int = 7
    n_classes: int = 4
    layers: int = 2
    batch_size: int = 32
    epochs: int = 5
    learning_rate: float = 0.05
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.n_qubits < 1:
            raise ValueError(f"n_qubits={self.n_qubits}: the classifier needs at least 1 qubit")
        if not 2 <= self.n_classes <= self.n_qubits:
            raise ValueError(f"n_classes={self.n_classes}: each class is read from one qubit's <Z>, so use"
                             f" 2..{self.n_qubits} classes (n_qubits={self.n_qubits})")
        for name in ("layers", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: use at least 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate}: use a positive step size")
        if self.backend not in ("auto", *BACKENDS):
            raise ValueError(f"backend={self.backend!r}: choose 'auto', 'jax' or 'lightning'")

    @property
    def n_params(self) -> int:
        """Trainable parameters: 3 angles per qubit and layer, one scale, one bias per class."""
        return 3 * self.layers * self.n_qubits + 1 + self.n_classes


@dataclasses.dataclass
class TrainResult:
    """What training returns (the same on every rank of the task)."""

    params: np.ndarray
    losses: list[float]
    """Mean training loss of each epoch."""
    train_accuracy: float
    test_accuracy: float | None
    backend: str
    ranks: int
    steps: int
    seconds: float


def available_backends() -> list[str]:
    """The backends that import here, in order of preference."""
    found = []
    try:
        import jax  # noqa: F401

        found.append("jax")
    except ImportError:
        pass
    try:
        import pennylane_lightning  # noqa: F401

        found.append("lightning")
    except ImportError:
        pass
    return found


def init_params(config: ClassifierConfig) -> np.ndarray:
    """Initial parameters from ``config.seed``: angles uniform in [0, 2 pi), scale 1, biases 0."""
    rng = np.random.default_rng(config.seed)
    angles = rng.uniform(0, 2 * np.pi, size=3 * config.layers * config.n_qubits)
    return np.concatenate([angles, [1.0], np.zeros(config.n_classes)])


def _layers(qml, config: ClassifierConfig, angles, state) -> None:
    """The circuit body: load ``state``, then rotation layers and CNOT rings."""
    n = config.n_qubits
    qml.StatePrep(state, wires=range(n))
    for layer in range(config.layers):
        for q in range(n):
            base = 3 * (layer * n + q)
            qml.Rot(angles[base], angles[base + 1], angles[base + 2], wires=q)
        if n > 1:
            for q in range(n if n > 2 else 1):  # a ring; on 2 qubits the ring is the one CNOT
                qml.CNOT(wires=[q, (q + 1) % n])


@dataclasses.dataclass
class Model:
    """One backend's functions. ``loss_and_grad(params, states, labels, weights)`` returns the
    weighted *sum* of per-sample losses and its gradient (numpy); ``logits(params, states)``
    the class scores (N, n_classes)."""

    backend: str
    config: ClassifierConfig
    loss_and_grad: Callable[..., tuple[float, np.ndarray]]
    logits: Callable[..., np.ndarray]
    fixed_shapes: bool = False
    """True when every shard should have the same length (JAX: so that jit compiles once)."""


def make_model(config: ClassifierConfig, mode: str = "jit+vmap") -> Model:
    """The classifier's functions for ``config.backend`` (``"auto"``: JAX if it imports, else lightning).

    ``mode`` (JAX only) says how a mini-batch is differentiated: ``"sequential"`` (sample by
    sample, no compilation), ``"vmap"`` (all samples in one vectorised call), ``"jit"`` (a
    compiled per-sample gradient, looped), ``"jit+vmap"`` (one compiled vectorised call).
    """
    backend = config.backend
    if backend == "auto":
        found = available_backends()
        if not found:
            raise ImportError("no classifier backend: pip install jax (or pennylane-lightning)")
        backend = found[0]
    if backend == "jax":
        return _jax_model(config, mode)
    if mode != "sequential" and mode != "jit+vmap":
        raise ValueError(f"mode={mode!r} needs JAX; the lightning backend runs sample by sample ('sequential')")
    return _lightning_model(config)


def _jax_model(config: ClassifierConfig, mode: str) -> Model:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise ImportError("backend 'jax' needs JAX: pip install jax (or use backend='lightning')") from exc
    import pennylane as qml

    jax.config.update("jax_enable_x64", True)
    if mode not in ("sequential", "vmap", "jit", "jit+vmap"):
        raise ValueError(f"mode={mode!r}: choose 'sequential', 'vmap', 'jit' or 'jit+vmap'")
    n_angles = 3 * config.layers * config.n_qubits
    device = qml.device("default.qubit", wires=config.n_qubits)

    @qml.qnode(device, interface="jax", diff_method="backprop")
    def circuit(angles, state):
        _layers(qml, config, angles, state)
        return [qml.expval(qml.PauliZ(q)) for q in range(config.n_classes)]

    def logits_one(params, state):
        z = jnp.stack(circuit(params[:n_angles], state))
        return params[n_angles] * z + params[n_angles + 1:]

    def loss_one(params, state, label, weight):
        logits = logits_one(params, state)
        return weight * (jax.scipy.special.logsumexp(logits) - logits[label]), logits

    def loss_sum(params, states, labels, weights):
        losses, logits = jax.vmap(loss_one, in_axes=(None, 0, 0, 0))(params, states, labels, weights)
        return jnp.sum(losses), logits

    # the class scores come out as auxiliary values of the gradient function: one compiled
    # function serves training and evaluation (XLA compiles cost seconds per input shape)
    one = jax.value_and_grad(loss_one, has_aux=True)
    batched = jax.value_and_grad(loss_sum, has_aux=True)
    if mode in ("jit", "jit+vmap"):
        one, batched = jax.jit(one), jax.jit(batched)
    shapes = {"chunk": None}

    def loss_and_grad(params, states, labels, weights):
        return _run(params, states, labels, weights)[:2]

    def _run(params, states, labels, weights):
        params = jnp.asarray(params)
        if mode in ("vmap", "jit+vmap"):
            shapes["chunk"] = shapes["chunk"] or len(states)
            (value, logits), grad = batched(params, jnp.asarray(states), jnp.asarray(labels), jnp.asarray(weights))
            return float(value), np.asarray(grad), np.asarray(logits)
        total, grad, logits = 0.0, np.zeros(config.n_params), []
        for state, label, weight in zip(states, labels, weights):
            (value, scores), g = one(params, jnp.asarray(state), int(label), float(weight))
            total += float(value)
            grad += np.asarray(g)
            logits.append(np.asarray(scores))
        return total, grad, np.array(logits).reshape(-1, config.n_classes)

    def logits(params, states):
        states = np.asarray(states)
        if mode not in ("vmap", "jit+vmap"):
            return _run(params, states, np.zeros(len(states), np.int64), np.zeros(len(states)))[2]
        chunk = shapes["chunk"] or len(states)  # the shape training compiled for
        out = []
        for start in range(0, len(states), chunk):
            part = states[start:start + chunk]
            padded = np.concatenate([part, np.repeat(part[:1], chunk - len(part), axis=0)])
            out.append(_run(params, padded, np.zeros(chunk, np.int64), np.zeros(chunk))[2][:len(part)])
        return np.concatenate(out) if out else np.zeros((0, config.n_classes))

    return Model("jax", config, loss_and_grad, logits, fixed_shapes=mode != "sequential")


def _lightning_model(config: ClassifierConfig) -> Model:
    import pennylane as qml
    from pennylane import numpy as pnp

    n_angles = 3 * config.layers * config.n_qubits
    device = qml.device("lightning.qubit", wires=config.n_qubits)

    @qml.qnode(device, diff_method="adjoint")
    def circuit(angles, state):
        _layers(qml, config, angles, state)
        return [qml.expval(qml.PauliZ(q)) for q in range(config.n_classes)]

    def logits_one(params, state):
        z = qml.math.stack(circuit(params[:n_angles], state))
        return params[n_angles] * z + params[n_angles + 1:]

    def loss_one(params, state, label):
        logits = logits_one(params, state)
        return pnp.log(pnp.sum(pnp.exp(logits - pnp.max(logits)))) + pnp.max(logits) - logits[label]

    grad_one = qml.grad(loss_one, argnums=0)

    def loss_and_grad(params, states, labels, weights):
        total, grad = 0.0, np.zeros(config.n_params)
        trainable = pnp.array(params, requires_grad=True)
        with one_thread():  # lightning's OpenMP threads per rank oversubscribe the cores
            for state, label, weight in zip(states, labels, weights):
                if weight == 0:
                    continue
                fixed = pnp.array(state, requires_grad=False)
                total += float(weight) * float(loss_one(trainable, fixed, int(label)))
                grad += float(weight) * np.asarray(grad_one(trainable, fixed, int(label)))
        return total, grad

    def logits(params, states):
        params = np.asarray(params)
        with one_thread():
            return np.array([np.asarray(logits_one(params, state)) for state in states]).reshape(-1, config.n_classes)

    return Model("lightning", config, loss_and_grad, logits)


class Adam:
    """Adam (Kingma and Ba) on a flat numpy parameter vector; deterministic, so every rank agrees."""

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The parameters after one step along ``grad``."""
        if self.m is None:
            self.m, self.v = np.zeros_like(params), np.zeros_like(params)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1 ** self.t)
        v_hat = self.v / (1 - self.beta2 ** self.t)
        return params - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


def shard(batch: np.ndarray, rank: int, size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's part of ``batch`` (``batch[rank::size]``), padded to ``length`` with weight-0 copies."""
    mine = batch[rank::size]
    weights = np.ones(len(mine))
    if len(mine) < length:
        filler = np.full(length - len(mine), batch[0])
        mine, weights = np.concatenate([mine, filler]), np.concatenate([weights, np.zeros(length - len(mine))])
    return mine, weights


def _accuracy(comm, model: Model, params: np.ndarray, states: np.ndarray, labels: np.ndarray) -> float:
    """Fraction classified right, the samples shared out over the ranks (one allreduce)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = np.arange(rank, len(labels), size)
    right = 0
    if len(mine):
        right = int(np.sum(np.argmax(model.logits(params, states[mine]), axis=1) == labels[mine]))
    return comm.allreduce(right) / len(labels)


def train_classifier(comm, states: np.ndarray, labels: np.ndarray, config: ClassifierConfig,
                     test_states: np.ndarray | None = None, test_labels: np.ndarray | None = None,
                     model: Model | None = None) -> TrainResult:
    """Train on ``states`` (N, 2^n real amplitudes) with ``labels`` in 0..n_classes-1, data-parallel
    over ``comm`` (collective: every rank of ``comm`` calls it with the same arguments)."""
    from mpi4py import MPI

    states, labels = np.asarray(states, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if states.ndim != 2 or states.shape[1] != 1 << config.n_qubits:
        raise ValueError(f"states of shape {states.shape}: need (N, {1 << config.n_qubits}) for"
                         f" n_qubits={config.n_qubits}")
    if len(labels) != len(states) or labels.min() < 0 or labels.max() >= config.n_classes:
        raise ValueError(f"labels must be one per state in 0..{config.n_classes - 1}; got {len(labels)} labels"
                         f" in [{labels.min()}, {labels.max()}] for {len(states)} states")
    started = time.perf_counter()
    model = model or make_model(config)
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(config.seed + 1)
    params, adam = init_params(config), Adam(config.learning_rate)
    length = -(-config.batch_size // size) if model.fixed_shapes else 0
    losses, steps = [], 0
    buffer, total = np.empty(config.n_params + 2), np.empty(config.n_params + 2)
    for _ in range(config.epochs):
        order, epoch_loss = rng.permutation(len(labels)), 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            mine, weights = shard(batch, rank, size, length)
            loss, grad = model.loss_and_grad(params, states[mine], labels[mine], weights)
            buffer[0], buffer[1], buffer[2:] = loss, weights.sum(), grad
            comm.Allreduce(buffer, total, op=MPI.SUM)
            params = adam.step(params, total[2:] / total[1])
            epoch_loss += total[0]
            steps += 1
        losses.append(epoch_loss / len(labels))
    train_accuracy = _accuracy(comm, model, params, states, labels)
    test_accuracy = None
    if test_states is not None:
        test_accuracy = _accuracy(comm, model, params, np.asarray(test_states, dtype=np.float64),
                                  np.asarray(test_labels, dtype=np.int64))
    return TrainResult(params, losses, train_accuracy, test_accuracy, model.backend, size, steps,
                       time.perf_counter() - started)


def train_task(comm, states, labels, test_states, test_labels, config: ClassifierConfig) -> TrainResult:
    """Pilot task: :func:`train_classifier` on the task's sub-communicator (``pilot.submit(train_task, ...,
    ranks=k)``), with one BLAS/OpenMP thread per rank (:mod:`.threads`)."""
    with one_thread():
        return train_classifier(comm, states, labels, config, test_states, test_labels)


def classical_baseline(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       seed: int = 0) -> float:
    """Test accuracy of scikit-learn's logistic regression on the same features (a classical reference)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=5000, random_state=seed)
    model.fit(train_x, train_y)
    return float(model.score(test_x, test_y))
