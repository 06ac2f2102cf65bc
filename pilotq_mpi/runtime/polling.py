"""Waiting without spinning a core: MPICH ranks blocked in recv or a barrier busy-poll."""
from __future__ import annotations

import time


class Backoff:
    """Sleep a little longer each idle round, from 0 up to ``ceiling`` seconds.

    Every ``time.sleep`` costs at least ~55 us here, so the first idle rounds only yield;
    a fixed 1 ms sleep would collapse throughput, a busy loop would starve the other ranks
    on an oversubscribed node.
    """

    def __init__(self, ceiling: float = 1e-3, spins: int = 8):
        self.ceiling = ceiling
        self.spins = spins
        self._idle = 0
        self._delay = 0.0

    def reset(self) -> None:
        """Work arrived: the next wait starts short again."""
        self._idle = 0
        self._delay = 0.0

    def next_delay(self) -> float:
        """The delay for this idle round (and advance)."""
        self._idle += 1
        if self._idle <= self.spins:
            return 0.0
        self._delay = min(self.ceiling, max(2e-5, self._delay * 2))
        return self._delay

    def sleep(self) -> None:
        """Wait for this idle round."""
        time.sleep(self.next_delay())


def quiet_barrier(comm, ceiling: float = 1e-3) -> None:
    """A barrier that sleeps while it waits (``Ibarrier`` + ``Test``), so idle ranks stay idle."""
    request = comm.Ibarrier()
    backoff = Backoff(ceiling)
    while not request.Test():
        backoff.sleep()
