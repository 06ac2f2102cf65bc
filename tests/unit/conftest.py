"""Shared fixtures of the unit tests."""
import pickle

import pytest


class _Sent:
    """What ``isend`` returns: already complete."""

    def Test(self):
        return True


class RecordingWorld:
    """Stands in for a communicator that only sends: keeps each send as ``(dest, tag, body)``, the body a
    pickled copy (as MPI would send it), and has nothing to receive."""

    def __init__(self):
        self.sent = []

    def isend(self, body, dest, tag):
        self.sent.append((dest, tag, pickle.loads(pickle.dumps(body))))
        return _Sent()

    def improbe(self, *args):
        return None

    @property
    def bodies(self) -> list:
        """What was sent, in order (bodies only)."""
        return [body for _, _, body in self.sent]


@pytest.fixture
def recording_world():
    return RecordingWorld()
