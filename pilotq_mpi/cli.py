"""The ``pilotq-mpi`` command: run a driver under MPI, the demo, Slurm submission, reports."""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from .platform.launch import default_mpiexec, in_slurm, mpiexec_argv, srun_argv

DEMO = Path(__file__).resolve().parent / "workflows" / "demo.py"
QML_DEMO = Path(__file__).resolve().parent / "workflows" / "qml" / "demo.py"
"""``pilotq-mpi demo qml``: the QML mini-app (compression ensemble + data-parallel classifier)."""
CALIBRATE = Path(__file__).resolve().parent / "workflows" / "planner" / "calibrate_main.py"
OUTPUT_ROOT = Path("pilotq-out")
"""Where ``pilotq-mpi demo`` writes its trace and plots by default (one folder per run; git-ignored)."""
DURATIONS = ("durations: 'driver time' runs from Pilot() to the demo's last result; the progress display's time"
             " ('[pilotq Ns] final:') from the pilot's start to the driver's end; 'makespan' from the pilot's start"
             " to the end of its last task")
"""The demo prints three durations; this line says what each one measures."""


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
    return _run_and_recover_code(argv, env)


def _run_and_recover_code(argv: list[str], env: dict[str, str]) -> int:
    """Run the launcher; its exit code, or the one rank 0 recorded where an abort hid it (srun: 137)."""
    from .runtime.abort import EXIT_CODE_FILE_VAR

    own_file = None
    if not env.get(EXIT_CODE_FILE_VAR):
        handle, own_file = tempfile.mkstemp(prefix="pilotq-exit-", suffix=".code")
        os.close(handle)
        os.unlink(own_file)
        env = {**env, EXIT_CODE_FILE_VAR: own_file}
    # Ctrl-C reaches the launcher too, and rank 0 ends the job in order: wait for its code
    # (a handler, not SIG_IGN, which the launcher would inherit)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        returncode = subprocess.run(argv, env=env, check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    recorded = _recorded_code(env[EXIT_CODE_FILE_VAR])
    if own_file:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own_file)
    if returncode != 0 and recorded:
        return recorded
    return returncode


def _recorded_code(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.app):
        sys.stderr.write(f"pilotq-mpi: driver script {args.app!r} not found\n")
        return 2
    return launch(args.app, args.app_args, args)


def demo_output_dir(root: Path = OUTPUT_ROOT, now: float | None = None) -> Path:
    """A new folder ``root/demo-YYYYmmdd-HHMMSS`` (with a suffix if that exists) for one demo run."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    folder, n = root / f"demo-{stamp}", 1
    while folder.exists():
        n += 1
        folder = root / f"demo-{stamp}-{n}"
    return folder


def _demo(args: argparse.Namespace) -> int:
    from .report import run_report

    app_args = ["--quick"] if args.quick else []
    if args.qubits:
        if args.workload == "qml":
            sys.stderr.write("pilotq-mpi demo qml: --qubits is for the mixed demo (the digits need 7 qubits);"
                             " pass the QML options after `--`, e.g. pilotq-mpi demo qml -- --images 800\n")
            return 2
        app_args += ["--qubits", str(args.qubits)]
    if args.trace is None:  # trace and plots go to one fresh folder, never loose into the working tree
        folder = Path(args.out) if args.out else demo_output_dir()
        folder.mkdir(parents=True, exist_ok=True)
        args.trace = str(folder / "trace.jsonl")
    if args.workload == "qml":
        app_args += ["--out", str(Path(args.trace).parent)]
    app_args += args.app_args
    code = launch(str(QML_DEMO if args.workload == "qml" else DEMO), app_args, args)
    if code == 0:
        print("\nWhat the allocation did (pilotq-mpi report):")
        code = run_report(argparse.Namespace(trace=Path(args.trace), gantt=None, utilization=None, chrome=None))
        print(f"\n{DURATIONS}\ndemo output (trace and plots) in {Path(args.trace).parent}/")
    return code


def _calibrate(args: argparse.Namespace) -> int:
    app_args = (["--profile", args.profile] if args.profile else []) + (["--quick"] if args.quick else [])
    return launch(str(CALIBRATE), app_args, args)


def _looks_binary(path: Path, probe: int = 1 << 16) -> bool:
    """True when the start of ``path`` has a NUL byte or is not UTF-8 (so it cannot be a JSON-lines trace)."""
    import codecs

    try:
        with open(path, "rb") as handle:
            head = handle.read(probe)
    except OSError:
        return False  # let the report say what is wrong with the path
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return b"\0" in head


def _report(args: argparse.Namespace) -> int:
    from .report import run_report

    if _looks_binary(args.trace):
        sys.stderr.write(f"pilotq-mpi report: {args.trace} is a binary file, not a pilotq trace (a trace is the"
                         " JSON-lines file written by --trace or PILOTQ_TRACE)\n")
        return 1
    return run_report(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pilotq-mpi`` (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(prog="pilotq-mpi", description="An MPI-native pilot job for hybrid quantum-HPC"
                                     " workloads. Subcommands: run, demo, submit, report, calibrate.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (Python {platform.python_version()}, {sys.executable})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,demo,submit,report,calibrate}")

    run = sub.add_parser("run", help="run a driver script as a pilot job on local MPI (or srun in Slurm)",
                         description="Start APP as the driver of a pilot job: `pilotq-mpi run app.py -n 6 -- ARGS`.")
    run.add_argument("app", help="the driver script")
    _add_launch_options(run, default_ranks=4)
    # default=[]: without it argparse calls ARGS required when APP is missing
    run.add_argument("app_args", nargs="*", default=[], metavar="-- ARGS",
                     help="arguments for the driver, after `--`")
    run.set_defaults(func=_run)

    demo = sub.add_parser("demo", help="the mixed quantum workload (state vector + cutting + QPU) on local MPI",
                          description="Run the mixed-workload demo: a distributed state-vector task, a cutting"
                                      " ensemble and fake-QPU calls in one pilot. Its trace and plots go to"
                                      f" {OUTPUT_ROOT}/demo-DATE-TIME/ (or --out DIR); options of the demo"
                                      " program itself (e.g. --shots 500) go after `--`.")
    demo.add_argument("workload", nargs="?", choices=("mixed", "qml"), default="mixed",
                      help="mixed (default): state vector + cutting + QPU; qml: the QML mini-app (digits"
                           " compressed by a task ensemble, a classifier trained data-parallel)")
    _add_launch_options(demo, default_ranks=8)
    demo.add_argument("--quick", action="store_true", help="smaller problem (for tests)")
    demo.add_argument("--qubits", type=int, help="circuit width (default 12)")
    demo.add_argument("--out", help=f"folder for the trace and plots (default: a new {OUTPUT_ROOT}/demo-DATE-TIME)")
    demo.set_defaults(func=_demo, app_args=[])

    calibrate = sub.add_parser("calibrate", help="measure the planner's cost profile on this machine's ranks",
                               description="Start a pilot, run the planner's microbenchmarks (state vector, Aer,"
                                           " cut subexperiments, communication, pilot overheads) on its worker"
                                           " ranks and save the profile, keyed by host, for plan() to reuse.")
    _add_launch_options(calibrate, default_ranks=4)
    calibrate.add_argument("--profile", help="profile file (default: ~/.cache/pilotq-mpi/profile-HOST.json,"
                                            " or $PILOTQ_PROFILE)")
    calibrate.add_argument("--quick", action="store_true", help="smaller sizes: seconds, less accurate")
    calibrate.set_defaults(func=_calibrate)

    for module in ("pilotq_mpi.platform.submit_cli", "pilotq_mpi.report"):
        __import__(module, fromlist=["add_parser"]).add_parser(sub)
    sub.choices["report"].set_defaults(func=_report)
    parser.subcommands = sub.choices  # type: ignore[attr-defined]  # name -> parser, for errors in main()
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pilotq-mpi`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `run app.py -n 6 -- ARGS`: everything after the first `--` belongs to the driver
    extra: list[str] = []
    if argv and argv[0] in ("run", "demo") and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, so that its usage is printed
        command = parser.subcommands[args.command]  # type: ignore[attr-defined]
        message = f"unrecognized arguments: {shlex.join(unknown)}"
        if args.command == "run":
            rest = shlex.join([*args.app_args, *unknown])
            message += f"\n  arguments for the driver go after `--`: pilotq-mpi run {shlex.quote(args.app)} [options] -- {rest}"
        elif args.command == "demo":
            rest = shlex.join(unknown)
            message += f"\n  options of the demo program go after `--`: pilotq-mpi demo [options] -- {rest}"
        command.error(message)
    if hasattr(args, "app_args"):
        args.app_args = [*args.app_args, *extra]
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
