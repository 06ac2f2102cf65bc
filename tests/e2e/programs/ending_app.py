"""How a driver ends, one scenario per run: ``ending_app.py SCENARIO DIR``.

Every task writes ``DIR/started-<i>`` when it starts, so the test can count what ran.

- ``raise``: 100 one-second tasks queued inside ``with Pilot()``, then the driver raises.
- ``exit4``: the same, then ``sys.exit(4)``.
- ``exit0``: the same, then ``sys.exit(0)``: a clean exit still waits for every task.
- ``interrupt``: the driver waits on a long task until the test sends Ctrl-C (SIGINT) to mpiexec.
- ``drain-result``: a task runs for 300 s and more are queued; the driver waits on it. The test
  sends SIGUSR1 to rank 0: the driver's ``result()`` raises WalltimeError, the task is still
  running: the job must end with 75 (drained), not 1 and not srun's 137.
- ``drain-caught``: the same, but the driver catches the WalltimeError and returns normally.
- ``journal``: 3 quick tasks finish (journaled in DIR/journal.sqlite), then 50 long ones are
  queued and the driver raises; ``journal-resume`` reruns the same submits and reports how
  many came back from the journal.
"""
import json
import os
import sys

from start_marks import mark, wait_for_a_start

from pilotq_mpi import Pilot


def check(name, **fields):
    print(f"CHECK {name} {json.dumps(fields, sort_keys=True)}", flush=True)


def main():
    scenario, directory = sys.argv[1], sys.argv[2]
    if scenario.startswith("journal"):
        with Pilot(journal=os.path.join(directory, "journal.sqlite")) as pilot:
            quick = [pilot.submit(mark, directory, i, 0.0, key=f"quick-{i}") for i in range(3)]
            check("quick", values=[f.result() for f in quick], restored=pilot.restored)
            if scenario == "journal":
                for i in range(3, 53):
                    pilot.submit(mark, directory, i, 1.0, key=f"long-{i}")
                raise RuntimeError("driver bug after the quick tasks")
        return
    if scenario.startswith("drain"):
        pilot = Pilot()
        stuck = pilot.submit(mark, directory, 0, 300.0)
        for i in range(1, 20):
            pilot.submit(mark, directory, i, 1.0)
        wait_for_a_start(directory)
        with open(os.path.join(directory, "waiting"), "w"):
            pass
        try:
            stuck.result()
        except Exception as exc:
            check("stuck", type=type(exc).__name__)
            if scenario == "drain-result":
                raise
        return
    with Pilot() as pilot:
        futures = [pilot.submit(mark, directory, i, 1.0) for i in range(100)]
        if scenario == "interrupt":
            with open(os.path.join(directory, "waiting"), "w"):
                pass
            futures[0].result()
            futures[-1].result()
        wait_for_a_start(directory)
        if scenario == "raise":
            raise RuntimeError("driver bug with work queued")
        if scenario == "exit4":
            sys.exit(4)
        if scenario == "exit0":
            sys.exit(0)
    check("unreachable", scenario=scenario)


main()
