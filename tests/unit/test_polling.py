"""The back-off of idle loops: short at first, then longer once a rank has been idle for a while."""
from pilotq_mpi.runtime.polling import Backoff


def test_spins_then_doubles_to_the_ceiling_then_to_the_idle_ceiling_after_idle_after():
    backoff = Backoff(ceiling=1e-3, spins=2, idle_ceiling=1e-2, idle_after=0.01)
    delays = [backoff.next_delay() for _ in range(40)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] == 2e-5 and delays[3] == 4e-5
    assert 1e-3 in delays and max(delays) == 1e-2
    first_long = delays.index(max(delays))
    assert sum(delays[:first_long]) >= 0.01, "the ceiling rises only after idle_after seconds of waiting"
    assert all(d <= 1e-3 for d in delays[:first_long - 4])
    backoff.reset()
    assert backoff.next_delay() == 0.0


def test_without_an_idle_ceiling_the_delay_never_passes_the_ceiling():
    backoff = Backoff(ceiling=1e-3)
    assert max(backoff.next_delay() for _ in range(1000)) == 1e-3
