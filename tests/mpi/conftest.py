"""Run the MPI suite in the hierarchical-masters mode too: ``PILOTQ_SUBMASTERS=2 mpiexec -n 10 ...``.

Tests marked ``single_master`` check what only one master offers (QPU pins, joined pools,
a layout where rank 1 is a worker); in that mode they are skipped, saying so.
"""
import os

import pytest

SUBMASTERS = os.environ.get("PILOTQ_SUBMASTERS", "auto")
HIERARCHICAL = SUBMASTERS not in ("auto", "", "0")


def pytest_collection_modifyitems(config, items):
    if not HIERARCHICAL:
        return
    for item in items:
        marker = item.get_closest_marker("single_master")
        if marker is not None:
            reason = marker.args[0] if marker.args else "needs a single master"
            item.add_marker(pytest.mark.skip(reason=f"PILOTQ_SUBMASTERS={SUBMASTERS}: {reason}"))
