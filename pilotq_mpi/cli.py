"""The ``pilotq-mpi`` command: run a driver under MPI, the demo, Slurm submission, reports."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .platform.launch import default_mpiexec, in_slurm, mpiexec_argv, srun_argv

DEMO = Path(__file__).resolve().parent / "workflows" / "demo.py"


def _add_launch_options(parser: argparse.ArgumentParser, default_ranks: int) -> None:
    parser.add_argument("-n", "--ranks", type=int, default=default_ranks,
                        help=f"MPI ranks in all: 1 master + workers (default {default_ranks})")
    parser.add_argument("--launcher", choices=("auto", "mpiexec", "srun"), default="auto",
                        help="auto: srun inside a Slurm allocation, mpiexec elsewhere")
    parser.add_argument("--mpiexec", default=None, help="the mpiexec to use (default: beside this Python, else PATH)")
    parser.add_argument("--ranks-per-node", type=int, help="fake layout for tests: world ranks per node")
    parser.add_argument("--gpus-per-node", type=int, help="declare GPUs per node (fake GPUs on a CPU machine)")
    parser.add_argument("--memory-per-rank", help="memory a task may use per rank, e.g. 4GiB")
    parser.add_argument("--trace", help="write the task trace (JSON lines) to this file")
    parser.add_argument("--progress", choices=("auto", "on", "off"), help="progress display on the driver")


def launch(app: str, app_args: list[str], args: argparse.Namespace) -> int:
    """Start ``python -m pilotq_mpi app ...`` on ``args.ranks`` ranks and wait; its exit code."""
    if args.ranks < 2:
        sys.stderr.write(f"pilotq-mpi: -n {args.ranks}: a pilot needs at least 2 ranks (1 master + 1 worker)\n")
        return 2
    env = dict(os.environ)
    for flag, var in (("ranks_per_node", "PILOTQ_RANKS_PER_NODE"), ("gpus_per_node", "PILOTQ_GPUS_PER_NODE"),
                      ("memory_per_rank", "PILOTQ_MEMORY_PER_RANK"), ("trace", "PILOTQ_TRACE"),
                      ("progress", "PILOTQ_PROGRESS")):
        value = getattr(args, flag, None)
        if value is not None:
            env[var] = str(value)
    program = [sys.executable, "-m", "pilotq_mpi", app, *app_args]
    use_srun = args.launcher == "srun" or (args.launcher == "auto" and in_slurm(env))
    if use_srun:  # the PMI plugin as in launch/pilotq-srun (Perlmutter: PILOTQ_SRUN_MPI=cray_shasta)
        argv = srun_argv(args.ranks, program, mpi=env.get("PILOTQ_SRUN_MPI", "pmi2"))
    else:
        mpiexec = args.mpiexec or default_mpiexec()
        if shutil.which(mpiexec) is None:
            sys.stderr.write(f"pilotq-mpi: {mpiexec!r} not found: install MPI (`pip install 'pilotq-mpi[mpich]'`"
                             " on a workstation, or load your cluster's MPI module) or pass --mpiexec PATH\n")
            return 2
        argv = mpiexec_argv(args.ranks, program, mpiexec=mpiexec)
    try:
        return subprocess.run(argv, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.app):
        sys.stderr.write(f"pilotq-mpi: driver script {args.app!r} not found\n")
        return 2
    return launch(args.app, args.app_args, args)


def _demo(args: argparse.Namespace) -> int:
    from .report import run_report

    app_args = ["--quick"] if args.quick else []
    if args.qubits:
        app_args += ["--qubits", str(args.qubits)]
    args.trace = args.trace or "pilotq-demo.trace.jsonl"
    code = launch(str(DEMO), app_args, args)
    if code == 0:
        print("\nWhat the allocation did (pilotq-mpi report):")
        code = run_report(argparse.Namespace(trace=Path(args.trace), gantt=None, utilization=None, chrome=None))
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pilotq-mpi`` (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(prog="pilotq-mpi", description="An MPI-native pilot job for hybrid quantum-HPC"
                                     " workloads. Subcommands: run, demo, submit, report.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a driver script as a pilot job on local MPI (or srun in Slurm)",
                         description="Start APP as the driver of a pilot job: `pilotq-mpi run app.py -n 6 -- ARGS`.")
    run.add_argument("app", help="the driver script")
    _add_launch_options(run, default_ranks=4)
    run.add_argument("app_args", nargs="*", help="arguments for the driver (put them after --)")
    run.set_defaults(func=_run)

    demo = sub.add_parser("demo", help="the mixed quantum workload (state vector + cutting + QPU) on local MPI",
                          description="Run the mixed-workload demo: a distributed state-vector task, a cutting"
                                      " ensemble and fake-QPU calls in one pilot.")
    _add_launch_options(demo, default_ranks=8)
    demo.add_argument("--quick", action="store_true", help="smaller problem (for tests)")
    demo.add_argument("--qubits", type=int, help="circuit width (default 12)")
    demo.set_defaults(func=_demo)

    for module in ("pilotq_mpi.platform.submit_cli", "pilotq_mpi.report"):
        __import__(module, fromlist=["add_parser"]).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pilotq-mpi`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `run app.py -n 6 -- ARGS`: everything after the first `--` belongs to the driver
    extra: list[str] = []
    if argv and argv[0] in ("run", "demo") and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if hasattr(args, "app_args"):
        args.app_args = [*args.app_args, *extra]
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
