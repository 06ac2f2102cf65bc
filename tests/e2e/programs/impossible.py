"""An impossible request raises ResourceError at submit, before anything runs."""
from pilotq_mpi import Pilot, ResourceError

with Pilot() as pilot:
    try:
        pilot.submit(lambda comm: 1, ranks=64)
    except ResourceError as exc:
        print(f"ResourceError: {exc}")
    print("after", pilot.submit(lambda comm: 41 + 1).result())
    pilot.submit(lambda comm: 1, gpus_per_rank=2)  # not caught: the driver fails
