"""Latency of forming a task's sub-communicator, and what a task of each width costs end to end.

    python benchmarks/subcomm.py            # 5 and 8 ranks, widths 1, 2, 4; median of 200 / 100
    python benchmarks/subcomm.py --quick

Two measurements, each in a fresh MPI job:
  raw   - ``COMM_WORLD.Create_group(group of k ranks)`` + ``Free`` on ranks 1..k (the worker's
          own path), rank 0 and the other ranks not involved; median over repeats.
  pilot - one-at-a-time ``pilot.submit(noop, ranks=k).result()`` round trips on a running
          pilot; the width-1 figure is the baseline (no sub-communicator: COMM_SELF).
The pilot does not cache sub-communicators: Create_group is collective only over the task's
ranks, and freeing a cached one later would need all of them again.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def noop(comm):
    return comm.Get_size()


def raw(widths: list[int], repeats: int) -> dict:
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    out = {}
    for width in widths:
        members = list(range(1, width + 1))
        samples = []
        world.Barrier()
        if rank in members:
            group = world.Get_group().Incl(members)
            for i in range(repeats):
                start = time.perf_counter()
                comm = world.Create_group(group, i)
                comm.Free()
                samples.append(time.perf_counter() - start)
            group.Free()
        gathered = world.gather(statistics.median(samples) if samples else None, root=0)
        if rank == 0:
            out[width] = max(s for s in gathered if s is not None) * 1e6
    return out


def pilot(widths: list[int], repeats: int) -> dict:
    from pilotq_mpi import Pilot

    out = {}
    with Pilot() as p:
        for width in widths:
            p.submit(noop, ranks=width).result()
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                assert p.submit(noop, ranks=width).result() == width
                samples.append(time.perf_counter() - start)
            out[width] = statistics.median(samples) * 1e6
    return out


def launch(mode: str, ranks: int, widths: list[int], repeats: int) -> dict:
    program = [sys.executable, str(Path(__file__).resolve()), "--inner", mode, "--widths", *map(str, widths),
               "--repeats", str(repeats)]
    if mode == "pilot":
        program = [sys.executable, "-m", "pilotq_mpi", *program[1:]]
    argv = [str(BIN / "mpiexec"), "-n", str(ranks), *program]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PILOTQ_QUIET="1", PILOTQ_PROGRESS="off"))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", choices=("raw", "pilot"), help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, nargs="+", default=[5, 8])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "subcomm.json"))
    args = parser.parse_args()
    if args.inner == "raw":
        result = raw([w for w in args.widths if w > 1], args.repeats)
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_rank() == 0:
            print(json.dumps(result))
        return
    if args.inner == "pilot":
        print(json.dumps(pilot(args.widths, args.repeats)))
        return
    if args.quick:
        args.ranks, args.repeats = [5], 50
    rows = []
    for ranks in args.ranks:
        raw_us = launch("raw", ranks, args.widths, args.repeats)
        pilot_us = launch("pilot", ranks, args.widths, max(20, args.repeats // 2))
        for width in args.widths:
            rows.append({"ranks": ranks, "width": width, "create_group_us": raw_us.get(width),
                         "task_round_trip_us": pilot_us[width]})
            print(f"ranks={ranks} width={width}: Create_group+Free "
                  f"{raw_us.get(width, 0):.0f} us, task round trip {pilot_us[width]:.0f} us", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "subcomm", "statistic": "median", "cpus": os.cpu_count(),
                                          "command": "python benchmarks/subcomm.py" + (" --quick" if args.quick else ""),
                                          "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
