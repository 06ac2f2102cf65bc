"""Driver of ``pilotq-mpi calibrate``: measure the planner's cost profile on this pilot and save it.

Run as ``python -m pilotq_mpi pilotq_mpi/workflows/planner/calibrate_main.py [--profile PATH] [--quick]``
(``pilotq-mpi calibrate -n 4`` does that). Prints what it measured and where it saved it.
"""
from __future__ import annotations

import argparse
import sys


def describe(profile) -> str:
    """The measured constants, one line per backend."""
    lines = []
    for backend in sorted(profile.calibrated):
        values = profile.backends.get(backend, {})
        parts = []
        for key, value in values.items():
            if isinstance(value, dict):
                by_ranks = key == "sv_task_s"  # keyed by ranks; the other tables by qubits
                parts.append(f"{key}=" + "/".join(
                    (f"{k} rank{'s' * (k != '1')}" if by_ranks else f"{k}q") + f":{float(v):.3g}"
                    for k, v in value.items()))
            elif isinstance(value, (int, float)):
                parts.append(f"{key}={value:.3g}")
        lines.append(f"  {backend:<16}" + " ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from pilotq_mpi import Pilot
    from pilotq_mpi.workflows.planner.calibration import calibrate

    parser = argparse.ArgumentParser(prog="pilotq-mpi calibrate")
    parser.add_argument("--profile", help="profile file (default: ~/.cache/pilotq-mpi/profile-HOST.json or $PILOTQ_PROFILE)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (seconds, less accurate)")
    args = parser.parse_args(argv)
    with Pilot() as pilot:
        profile = calibrate(pilot, save=args.profile or True, quick=args.quick)
    meta = profile.meta
    print(f"calibrated on {profile.host}: {meta.get('workers')} worker ranks, {meta.get('cores')} cores,"
          f" load average {meta.get('loadavg', [0])[0]:.2f}, took {meta.get('total_s', 0):.1f} s")
    print(describe(profile))
    print(f"profile saved to {meta.get('path')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
