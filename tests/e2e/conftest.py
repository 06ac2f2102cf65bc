"""Fixtures for end-to-end tests: a real one-node Slurm cluster for the session, and
cleanup of the MPICH shared memory that killed or aborted test jobs leave in /dev/shm.

The cluster is stopped for certain (see tests/e2e/slurm_cluster.py): by this fixture's
teardown (also after failed and timed-out tests), by ``atexit``, and by a watchdog
process if pytest itself is killed.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import LocalSlurm, remove_leaked_shm, shm_segments, slurm_available  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_mpich_shm():
    """After the session, remove the /dev/shm/mpich_* segments that appeared during it and
    that no live process uses (tests here kill and abort MPI jobs on purpose)."""
    before = shm_segments()
    yield
    removed = remove_leaked_shm(before)
    if removed:
        sys.stderr.write(f"\ne2e: removed {len(removed)} MPICH segment(s) leaked by killed jobs "
                         f"from /dev/shm\n")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A started :class:`LocalSlurm` (4 fake GPUs, 8 CPUs); skipped loudly without Slurm."""
    yield from _started_cluster(tmp_path_factory, "slurm")


@pytest.fixture(scope="module")
def slurm_cluster_2nodes(tmp_path_factory):
    """A started two-node :class:`LocalSlurm` (two slurmd on this host, 8 CPUs and 4 fake
    GPUs each), for multi-node layouts; its own random job ids, stopped like the other."""
    yield from _started_cluster(tmp_path_factory, "slurm2", nodes=2)


def _started_cluster(tmp_path_factory, name: str, **options):
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"SLURM TESTS SKIPPED: {reason}")
    cluster = LocalSlurm(tmp_path_factory.mktemp(name), **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftovers()
        if left:  # stop() kills until none is left; say so loudly if that ever fails
            sys.stderr.write(f"\nSLURM TEST CLUSTER: processes still alive after stop: {left}\n")
