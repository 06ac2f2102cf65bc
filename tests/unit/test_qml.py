"""The QML mini-app without MPI: encoding, the two compression stages, the classifier's gradients."""
import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the QML mini-app needs the qml extra: pip install -e '.[qml]'")

from pilotq_mpi.workflows.qml.classifier import (Adam, ClassifierConfig, init_params, make_model,  # noqa: E402
                                                 shard)
from pilotq_mpi.workflows.qml.compress import (CompressionConfig, _loss_and_grad, compress_state,  # noqa: E402
                                               fidelity, mps_layers)
from pilotq_mpi.workflows.qml.data import (frqi_decode, frqi_state, frqi_states, load_digits_images,  # noqa: E402
                                           position_order)
from pilotq_mpi.workflows.qml.ensemble import batch_key, compress_batch  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(classes=(0, 1, 2, 3), limit=12, seed=0)


def test_frqi_round_trip_and_norm(digits):
    images, labels = digits
    assert images.shape == (12, 8, 8) and set(labels) <= {0, 1, 2, 3}
    assert 0 <= images.min() and images.max() <= 1
    states = frqi_states(images)
    assert states.shape == (12, 128)
    assert np.allclose(np.linalg.norm(states, axis=1), 1.0)
    for image, state in zip(images, states):
        assert np.allclose(frqi_decode(state), image, atol=1e-12)
    assert sorted(position_order().ravel()) == list(range(64)), "every pixel gets its own position"


def test_frqi_position_order_is_hierarchical():
    order = position_order(4)
    # the coarsest bits (row 2, column 2) are the most significant: each 2x2 quadrant is one block of 4
    assert sorted(order[:2, :2].ravel()) == [0, 1, 2, 3]
    assert sorted(order[2:, 2:].ravel()) == [12, 13, 14, 15]


def test_bad_images_and_classes_are_refused_with_what_to_change():
    with pytest.raises(ValueError, match="scale them to"):
        frqi_state(np.full((4, 4), 3.0))
    with pytest.raises(ValueError, match="power-of-two side"):
        frqi_state(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="classes 0..9"):
        load_digits_images(classes=(11,))
    with pytest.raises(ValueError, match="at least 1 layer"):
        CompressionConfig(layers=0)
    with pytest.raises(ValueError, match="2..7 classes"):
        ClassifierConfig(n_qubits=7, n_classes=9)


def test_one_mps_layer_prepares_a_bond_two_state_exactly():
    rng = np.random.default_rng(3)
    tensors = [rng.normal(size=(1, 2, 2)), *(rng.normal(size=(2, 2, 2)) for _ in range(3)),
               rng.normal(size=(2, 2, 1))]
    state = tensors[0]
    for tensor in tensors[1:]:
        state = np.tensordot(state, tensor, axes=([-1], [0]))
    state = state.reshape(-1) / np.linalg.norm(state)
    gates, qubits = mps_layers(state, 1)
    assert qubits == (3, 2, 1, 0), "one staircase of nearest-neighbour gates"
    assert fidelity(state, gates, qubits) == pytest.approx(1.0, abs=1e-10)
    for gate in gates:
        assert np.allclose(gate @ gate.T, np.eye(4)) and np.linalg.det(gate) == pytest.approx(1.0)
    blank = frqi_state(np.zeros((8, 8)))  # a product state: bond dimension 1 everywhere
    assert fidelity(blank, *mps_layers(blank, 1)) == pytest.approx(1.0, abs=1e-10)


def test_bfgs_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    target = rng.normal(size=32)
    target /= np.linalg.norm(target)
    gates, qubits = mps_layers(target, 2)
    theta = rng.normal(size=6 * len(qubits)) * 0.3
    _, grad = _loss_and_grad(theta, gates, qubits, target)
    eps, numeric = 1e-6, np.zeros_like(theta)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = eps
        numeric[i] = (_loss_and_grad(theta + step, gates, qubits, target)[0]
                      - _loss_and_grad(theta - step, gates, qubits, target)[0]) / (2 * eps)
    assert np.allclose(grad, numeric, atol=1e-7)


def test_compression_fidelity_improves_from_stage_one_to_stage_two(digits):
    images, _ = digits
    config = CompressionConfig(layers=2, sweeps=1, bfgs_maxiter=60)
    for image in images[:3]:
        target = frqi_state(image)
        result = compress_state(target, config)
        assert 0.5 < result.fidelity_mps <= result.fidelity_sweep + 1e-12, "sweeps never lower the overlap"
        assert result.fidelity_bfgs > result.fidelity_sweep + 1e-4, "BFGS refines what the sweeps left"
        assert float(np.dot(target, result.state()) ** 2) == pytest.approx(result.fidelity_bfgs)
        assert result.parameters == 6 * 12 and result.bfgs_iterations > 0
        for gate in result.gates:
            assert np.allclose(gate @ gate.T, np.eye(4), atol=1e-10)


def test_batches_keep_their_indices_and_keys_follow_content(digits):
    images, _ = digits
    config = CompressionConfig(layers=1, sweeps=1, bfgs_maxiter=5)
    out = compress_batch(None, images[:2], [7, 9], config)
    assert [r.index for r in out] == [7, 9]
    key = batch_key(images[:2], [7, 9], config)
    assert key == batch_key(images[:2].copy(), [7, 9], CompressionConfig(layers=1, sweeps=1, bfgs_maxiter=5))
    assert key != batch_key(images[:2], [7, 9], CompressionConfig(layers=2, sweeps=1, bfgs_maxiter=5))
    assert key != batch_key(images[:2], [7, 8], config)
    assert key != batch_key(images[1:3], [7, 9], config)


TINY = dict(n_qubits=3, n_classes=2, layers=1)


def _tiny_data(count=4, seed=0):
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(count, 8))
    return states / np.linalg.norm(states, axis=1, keepdims=True), np.arange(count) % 2


def _numeric_gradient(model, params, states, labels, weights, eps=1e-6):
    numeric = np.zeros_like(params)
    for i in range(len(params)):
        step = np.zeros_like(params)
        step[i] = eps
        numeric[i] = (model.loss_and_grad(params + step, states, labels, weights)[0]
                      - model.loss_and_grad(params - step, states, labels, weights)[0]) / (2 * eps)
    return numeric


@pytest.fixture(scope="module")
def jax_model():
    pytest.importorskip("jax")
    return make_model(ClassifierConfig(**TINY, backend="jax"), mode="jit+vmap")


def test_classifier_gradient_matches_finite_differences_jax(jax_model):
    states, labels = _tiny_data()
    params = init_params(jax_model.config) + 0.1
    loss, grad = jax_model.loss_and_grad(params, states, labels, np.ones(4))
    assert loss > 0 and grad.shape == (jax_model.config.n_params,)
    assert np.allclose(grad, _numeric_gradient(jax_model, params, states, labels, np.ones(4)), atol=1e-6)


def test_classifier_gradient_matches_finite_differences_lightning():
    pytest.importorskip("pennylane_lightning")
    model = make_model(ClassifierConfig(**TINY, backend="lightning"))
    states, labels = _tiny_data(3, seed=1)
    params = init_params(model.config) - 0.2
    _, grad = model.loss_and_grad(params, states, labels, np.ones(3))
    assert np.allclose(grad, _numeric_gradient(model, params, states, labels, np.ones(3)), atol=1e-6)


def test_data_parallel_gradient_equals_single_rank_gradient(jax_model):
    """The shards of a mini-batch (padded with weight-0 samples, as the ranks do it) add up to the
    whole batch's loss and gradient."""
    states, labels = _tiny_data()
    params = init_params(jax_model.config)
    batch = np.arange(4)
    whole = jax_model.loss_and_grad(params, states, labels, np.ones(4))
    for size in (2, 3):
        total, grad = 0.0, np.zeros_like(params)
        for rank in range(size):
            mine, weights = shard(batch, rank, size, length=4)  # one shape: jit compiled once
            loss, g = jax_model.loss_and_grad(params, states[mine], labels[mine], weights)
            total, grad = total + loss, grad + g
        assert total == pytest.approx(whole[0], rel=1e-12)
        assert np.allclose(grad, whole[1], atol=1e-12)


def test_shard_covers_the_batch_once_and_adam_moves_downhill():
    batch = np.array([5, 1, 4, 2, 3])
    seen = []
    for rank in range(3):
        mine, weights = shard(batch, rank, 3, length=2)
        assert len(mine) == 2
        seen += list(mine[weights == 1])
    assert sorted(seen) == sorted(batch)
    adam, x = Adam(0.1), np.array([1.0, -2.0])
    for _ in range(200):
        x = adam.step(x, 2 * x)  # gradient of |x|^2
    assert np.linalg.norm(x) < 0.1
