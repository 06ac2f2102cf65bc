"""Fixtures for end-to-end tests: a real one-node Slurm cluster for the session."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import LocalSlurm, slurm_available  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A started :class:`LocalSlurm` (4 fake GPUs, 8 CPUs); skipped loudly without Slurm."""
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"SLURM TESTS SKIPPED: {reason}")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
