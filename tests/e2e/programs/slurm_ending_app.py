"""How a pilot job ends under Slurm, one scenario per run: ``slurm_ending_app.py SCENARIO DIR``.

Tasks write ``DIR/started-<i>`` when they start (so the test knows when to send a signal).
The exit code the job should end with, as ``scontrol show job`` reports it:

- ``ok`` (0): 8 quick tasks, the driver returns.
- ``raise`` (1): 20 one-second tasks queued, the driver raises once one has started.
- ``exit4`` (4): the same, then ``sys.exit(4)``: the driver's own code.
- ``stuck`` (3): a 2-rank task whose rank 0 raises while rank 1 waits in a barrier forever;
  the driver returns; the blocked rank never comes back (``PILOTQ_STUCK_GRACE``).
- ``drain`` (75): a 300 s task and more queued; the test sends the walltime warning; the
  driver's ``result()`` on the running task raises WalltimeError; that task is still running
  past the grace (it is cut: the pilot aborts, srun would say 137).
- ``drain-quick`` (75): one-second tasks; the warning drains the pilot, the running tasks
  finish within the grace and the job ends in order.
"""
import sys

from start_marks import mark, wait_for_a_start

from pilotq_mpi import Pilot


def raise_or_block(comm):
    if comm.Get_rank() == 0:
        raise ValueError("rank 0 of the collective task failed")
    comm.barrier()  # never completes: rank 0 does not come
    return "unreachable"


def main():
    scenario, directory = sys.argv[1], sys.argv[2]
    if scenario == "ok":
        with Pilot() as pilot:
            values = [f.result() for f in [pilot.submit(mark, directory, i, 0.0) for i in range(8)]]
        print(f"APP RESULT {sum(values)}", flush=True)
    elif scenario in ("raise", "exit4"):
        with Pilot() as pilot:
            for i in range(20):
                pilot.submit(mark, directory, i, 1.0)
            wait_for_a_start(directory)
            if scenario == "raise":
                raise RuntimeError("driver bug with work queued")
            sys.exit(4)
    elif scenario == "stuck":
        with Pilot() as pilot:
            error = pilot.submit(raise_or_block, ranks=2).exception()
            print(f"APP COLLECTIVE {type(error).__name__}", flush=True)
    elif scenario == "drain":
        pilot = Pilot()
        running = pilot.submit(mark, directory, 0, 300.0)
        for i in range(1, 20):
            pilot.submit(mark, directory, i, 1.0)
        print("APP WAITING", flush=True)
        running.result()  # WalltimeError once the pilot drains
    elif scenario == "drain-quick":
        with Pilot() as pilot:
            futures = [pilot.submit(mark, directory, i, 1.0) for i in range(40)]
            done = sum(1 for f in futures if f.exception() is None)
        print(f"APP DONE {done} of 40", flush=True)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


main()
