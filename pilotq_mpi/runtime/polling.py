"""Waiting without spinning a core: MPICH ranks blocked in recv or a barrier busy-poll."""
from __future__ import annotations

import time


class Backoff:
    """Sleep a little longer each idle round, from 0 up to ``ceiling`` seconds.

    Every ``time.sleep`` costs at least ~55 us here, so the first idle rounds only yield;
    a fixed 1 ms sleep would collapse throughput, a busy loop would starve the other ranks
    on an oversubscribed node. After ``idle_after`` seconds of waiting the ceiling becomes
    ``idle_ceiling`` (default: ``ceiling``): a rank with nothing to do for a while then polls
    less (measured here: improbe + sleep costs 2.4% of a core at 1 ms, 0.6% at 10 ms).
    """

    def __init__(self, ceiling: float = 1e-3, spins: int = 8, *, idle_ceiling: float | None = None,
                 idle_after: float = 0.1):
        self.ceiling = ceiling
        self.spins = spins
        self.idle_ceiling = ceiling if idle_ceiling is None else idle_ceiling
        self.idle_after = idle_after
        self._idle = 0
        self._delay = 0.0
        self._waited = 0.0

    def reset(self) -> None:
        """Work arrived: the next wait starts short again."""
        self._idle = 0
        self._delay = 0.0
        self._waited = 0.0

    def next_delay(self) -> float:
        """The delay for this idle round (and advance)."""
        self._idle += 1
        if self._idle <= self.spins:
            return 0.0
        ceiling = self.idle_ceiling if self._waited >= self.idle_after else self.ceiling
        self._delay = min(ceiling, max(2e-5, self._delay * 2))
        self._waited += self._delay
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
