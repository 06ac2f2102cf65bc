"""10,000 single-rank tasks, a few wide ones, a map; prints a checksum."""
import sys

from pilotq_mpi import Pilot


def square(comm, x):
    return x * x


def width(comm):
    return comm.allreduce(1)


with Pilot() as pilot:
    count = int(sys.argv[1])
    futures = [pilot.submit(square, i) for i in range(count)]
    wide = [pilot.submit(width, ranks=r) for r in (2, 3, 4)]
    mapped = sum(pilot.map(square, range(count), chunksize=64))
    total = sum(f.result() for f in futures)
    assert [f.result() for f in wide] == [2, 3, 4]
    assert total == mapped == sum(i * i for i in range(count))
    print(f"OK {total}")
