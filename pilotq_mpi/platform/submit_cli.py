"""The ``pilotq-mpi submit`` subcommand: render a batch script for an app and sbatch it.

    pilotq-mpi submit app.py --nodes 2 --gpus-per-node 4 --time 01:00:00 \\
        --target perlmutter-gpu --qos regular --account m1234 -- --app-arg 1

prints the job id; ``--dry-run`` prints the script instead. An elastic pilot names its run
directory (``--run-dir DIR``, optionally ``--pool NAME``); a *join job* runs no app and adds
its nodes to that running pilot:

    pilotq-mpi submit --join DIR --pool gpu --nodes 2 --target perlmutter-gpu --time 01:00:00

``pilotq_mpi.cli`` calls :func:`add_parser` on its subparsers.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .sbatch import LAYOUTS, TARGETS, SbatchRequest, SubmitError, enable_chain, render, submit


def default_launcher() -> str:
    """The ``pilotq-srun`` installed beside this Python (a virtual environment's bin/), else
    the bare name (found on PATH in the job)."""
    beside = Path(sys.executable).parent / "pilotq-srun"
    return str(beside) if beside.exists() else "pilotq-srun"


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=TARGETS, default="generic",
                   help="which template to use (default: generic)")
    p.add_argument("--nodes", "-N", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--ranks-per-node", type=int, default=None,
                   help="MPI ranks per node (default: generic 4, perlmutter-gpu 4, "
                        "perlmutter-cpu 128)")
    p.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node (default: perlmutter-gpu 4, otherwise 0)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="worker-per-gpu (perlmutter-gpu default): one worker per GPU plus the "
                        "master on node 0, nodes x GPUs + 1 ranks; ranks-per-node (default "
                        "elsewhere, and with --ranks-per-node): that many ranks on every node")
    p.add_argument("--time", "-t", default="00:30:00", help="walltime HH:MM:SS or D-HH:MM:SS")
    p.add_argument("--qos", "-q", default=None, help="quality of service, e.g. regular, debug")
    p.add_argument("--account", "-A", default=None, help="project to charge")
    p.add_argument("--constraint", "-C", default=None,
                   help="node features (default: gpu/cpu on Perlmutter)")
    p.add_argument("--job-name", "-J", default=None,
                   help="job name (default pilotq; join jobs pilotq-join)")
    p.add_argument("--output", "-o", default=None,
                   help="output file, %%j = job id (default pilotq-%%j.out; join jobs "
                        "pilotq-join-%%j.out)")
    p.add_argument("--signal-lead", type=int, default=120,
                   help="seconds before the walltime at which the pilot is told to drain")
    p.add_argument("--directive", action="append", default=[], metavar="OPTION",
                   help="extra #SBATCH option, e.g. --directive=--mail-type=END (repeatable)")
    p.add_argument("--python", default=sys.executable,
                   help="Python on the compute nodes (default: this one)")
    p.add_argument("--launcher", default=None,
                   help="pilotq-srun to use (default: the one installed beside --python's "
                        "default, else pilotq-srun on PATH)")
    p.add_argument("--chain", action="store_true",
                   help="job chain: when the pilot drains at the walltime (exit 75), the job "
                        "submits itself again (the script's commented chain block, enabled)")
    p.add_argument("--join", default=None, metavar="DIR",
                   help="render a join job instead of a pilot: its ranks become workers of the "
                        "running pilot whose run directory is DIR (give no app)")
    p.add_argument("--run-dir", default=None, metavar="DIR",
                   help="the pilot's run directory, where it publishes how to join it "
                        "(exported as PILOTQ_RUN_DIR; use a file system the joining jobs see)")
    p.add_argument("--pool", default=None, metavar="NAME",
                   help="the pool of this job's ranks (pilot: PILOTQ_POOL; join job: --pool)")
    p.add_argument("--sbatch", default="sbatch", help="sbatch command (default: sbatch)")
    p.add_argument("--dry-run", action="store_true", help="print the script, do not submit")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``submit`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``) and return it.

    Options may come before or after APP; the app's own arguments go after ``--``.
    """
    p = subparsers.add_parser(
        "submit", help="submit the pilot for an app (or a job joining a pilot) to Slurm",
        description="Render a batch script that runs `python -m pilotq_mpi APP ARGS` on "
                    "the allocation and submit it with sbatch (prints the job id). "
                    "Put the app's own arguments after `--`. With --join DIR and no APP, "
                    "the job joins the running pilot whose run directory is DIR instead.")
    _add_options(p)
    p.add_argument("app", nargs="?", default=None,
                   help="the driver script (rank 0 runs it); none with --join")
    p.add_argument("app_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="arguments for the app, after `--`")
    p.set_defaults(func=run)
    return p


def _split_rest(args: argparse.Namespace) -> argparse.Namespace:
    """Sort out what followed APP: argparse leaves it all in ``app_args``.

    ``APP [options] -- ARGS``: options up to ``--``, then the app's arguments.
    Without ``--``: only submit options (``APP --nodes 2``) or only app arguments
    (``APP x y``, or argparse already dropped a ``--``); a mixture is refused.
    """
    rest = list(args.app_args)
    if "--" in rest:
        i = rest.index("--")
        opts, app_args = rest[:i], rest[i + 1:]
    else:
        opts, app_args = rest, []
    given: dict[str, object] = {}
    if opts:
        later = argparse.ArgumentParser(prog="pilotq-mpi submit", add_help=False)
        _add_options(later)
        known, unknown = later.parse_known_args(opts, namespace=argparse.Namespace())
        given = {a.dest: getattr(known, a.dest) for a in later._actions
                 if any(x == o or x.startswith(o + "=") for o in a.option_strings for x in opts)}
        if unknown and "--" not in rest and not given:
            opts, app_args, given = [], rest, {}
        elif unknown:
            raise ValueError(f"unexpected {' '.join(unknown)!r} after the app: put the "
                             f"app's own arguments after `--` (pilotq-mpi submit "
                             f"{args.app} [options] -- ARGS)")
    for dest, value in given.items():
        setattr(args, dest, value)
    args.app_args = app_args
    return args


def _absolute(path: str | None) -> str | None:
    """A run directory as an absolute path: the job may start in another directory."""
    return None if path is None or path == "" else os.path.abspath(path)


def request_from_args(args: argparse.Namespace) -> SbatchRequest:
    """Build the validated request from parsed arguments (pure but for making ``--join`` and
    ``--run-dir`` absolute against the current directory)."""
    if args.app is None:
        if args.join is None:
            raise ValueError("no app and no --join: give the driver script (pilotq-mpi submit "
                             "app.py ...) or, for a job that joins a running pilot, --join DIR")
        if args.app_args:
            raise ValueError(f"unexpected {' '.join(args.app_args)!r} with --join: a join job "
                             "runs no app, so it takes no app arguments")
    else:
        args = _split_rest(args)
        if args.join is not None:
            raise ValueError(f"both an app ({args.app!r}) and --join {args.join!r}: a join job runs "
                             "no app (the pilot it joins has one); drop the app, or drop --join "
                             "to start a pilot")
    if args.join is not None and args.run_dir is not None:
        raise ValueError(f"--run-dir {args.run_dir!r} with --join: a join job uses the run "
                         "directory of the pilot it joins (--join DIR); drop --run-dir")
    app_argv = () if args.app is None else (args.app, *args.app_args)
    launcher = args.launcher or default_launcher()
    return SbatchRequest(
        app_argv=app_argv, join=_absolute(args.join), run_dir=_absolute(args.run_dir),
        pool=args.pool, target=args.target, nodes=args.nodes,
        ranks_per_node=args.ranks_per_node, gpus_per_node=args.gpus_per_node, time=args.time,
        qos=args.qos, account=args.account, constraint=args.constraint,
        job_name=args.job_name, output=args.output, signal_lead=args.signal_lead,
        extra_directives=tuple(args.directive), launcher=launcher, python=args.python,
        layout=args.layout)


def run(args: argparse.Namespace) -> int:
    """Execute ``submit``: print the job id (or the script with ``--dry-run``); return the exit status."""
    try:
        request = request_from_args(args)
    except (ValueError, TypeError) as exc:
        print(f"pilotq-mpi submit: {exc}", file=sys.stderr)
        return 2
    if args.chain and not request.has_master:
        print("pilotq-mpi submit: --chain with --join: the chain resubmits a pilot that drained "
              "(exit 75); a join job ends with 0 when it leaves: drop --chain", file=sys.stderr)
        return 2
    script = render(request)
    if args.chain:
        script = enable_chain(script)
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    try:
        job_id = submit(script, sbatch=args.sbatch)
    except SubmitError as exc:
        print(f"pilotq-mpi submit: {exc}", file=sys.stderr)
        return 1
    print(job_id)
    return 0
