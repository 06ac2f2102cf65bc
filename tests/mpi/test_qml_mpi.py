"""The QML mini-app through a real pilot (pytest-mpi), e.g.:

    timeout 300 mpiexec -n 4 python -m pytest --with-mpi -p no:cacheprovider tests/mpi/test_qml_mpi.py

- the compression ensemble runs as single-rank tasks, is journaled, and an interrupted run
  resumes: the second run takes the finished batches from the journal and computes only the rest;
- the classifier trained on a 2-rank task (gradient shards + allreduce) ends with the same
  parameters as on 1 rank.
"""
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pilotq_mpi import Pilot
from pilotq_mpi.journal import Journal
from pilotq_mpi.runtime.bootstrap import run_pilot
from pilotq_mpi.runtime.options import PilotOptions

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(150)]
OPTIONS = PilotOptions(quiet=True)


def test_compression_ensemble_resumes_from_its_journal():
    pytest.importorskip("sklearn")
    from pilotq_mpi.workflows.qml.compress import CompressionConfig, compress_state
    from pilotq_mpi.workflows.qml.data import frqi_state, load_digits_images
    from pilotq_mpi.workflows.qml.ensemble import collect, run_compression, submit_compression

    images, _ = load_digits_images(limit=6, seed=1)
    config = CompressionConfig(layers=1, sweeps=1, bfgs_maxiter=10)

    def driver():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "qml.sqlite"
            with Pilot(journal=path) as pilot:  # the interrupted run: one batch waited for, the rest cancelled
                futures = submit_compression(pilot, images, config, batch_size=2)
                first = collect(futures[:1])
                for future in futures[1:]:
                    future.cancel()
            with Journal(path) as journal:
                finished = journal.counts()["done"]
            assert 1 <= finished <= 3 and [r.index for r in first] == [0, 1]
            with Pilot(journal=path) as pilot:  # the rerun
                results = run_compression(pilot, images, config, batch_size=2)
                restored = pilot.restored
            with Pilot(journal=path) as pilot:  # everything recorded now
                again = run_compression(pilot, images, config, batch_size=2)
                restored_again = pilot.restored
        assert restored == finished, "exactly the batches finished before come back from the journal"
        assert restored_again == 3
        assert [r.index for r in results] == list(range(6)) == [r.index for r in again]
        for result, image in zip(results, images):
            direct = compress_state(frqi_state(image), config)
            assert result.fidelity_bfgs == pytest.approx(direct.fidelity_bfgs, abs=1e-9)
            assert np.allclose(result.gates, direct.gates, atol=1e-8)
        assert [r.fidelity_bfgs for r in again] == [r.fidelity_bfgs for r in results]
        return True

    assert run_pilot(driver, options=OPTIONS) in (True, None)


def test_classifier_on_two_ranks_trains_like_one_rank():
    pytest.importorskip("pennylane_lightning")
    from pilotq_mpi.workflows.qml.classifier import ClassifierConfig, init_params, train_task

    rng = np.random.default_rng(2)
    states = rng.normal(size=(10, 8))
    states /= np.linalg.norm(states, axis=1, keepdims=True)
    labels = np.arange(10) % 2
    config = ClassifierConfig(n_qubits=3, n_classes=2, layers=1, batch_size=4, epochs=2, learning_rate=0.1,
                              backend="lightning")

    def driver():
        with Pilot() as pilot:
            two = pilot.submit(train_task, states[:8], labels[:8], states[8:], labels[8:], config, ranks=2,
                               gather=True)
            one = pilot.submit(train_task, states[:8], labels[:8], states[8:], labels[8:], config, ranks=1)
            per_rank, single = two.result(), one.result()
        assert [r.ranks for r in per_rank] == [2, 2] and single.ranks == 1
        assert np.array_equal(per_rank[0].params, per_rank[1].params), "every rank takes the same step"
        assert single.steps == per_rank[0].steps == 4  # 2 epochs of 8 samples in mini-batches of 4
        assert np.allclose(per_rank[0].params, single.params, atol=1e-10)
        assert np.allclose(per_rank[0].losses, single.losses, atol=1e-10)
        assert per_rank[0].test_accuracy == single.test_accuracy
        assert not np.allclose(single.params, init_params(config)), "training moved the parameters"
        return True

    assert run_pilot(driver, options=OPTIONS) in (True, None)
