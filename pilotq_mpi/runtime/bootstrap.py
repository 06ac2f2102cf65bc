"""``python -m pilotq_mpi [options] app.py [args]``: start the pilot on every rank.

Rank 0 runs the master loop in a background thread and the driver script ``app.py`` in
its main thread; every other rank runs the worker loop. At the end every rank leaves
through a non-blocking barrier (a blocking one spins with MPICH).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import signal
import sys
import time
import traceback
from typing import Callable, TypeVar

from ..errors import EXIT_DRIVER_FAILED, EXIT_INCOMPLETE, EXIT_USAGE
from .abort import abort_job, clear_exit_code, write_exit_code
from .options import PilotOptions

T = TypeVar("T")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options of ``python -m pilotq_mpi``; each also has a ``PILOTQ_*`` variable."""
    parser = argparse.ArgumentParser(
        prog="python -m pilotq_mpi",
        description="Run APP as the driver of a pilot job: rank 0 runs APP and the scheduler, the other"
                    " ranks are workers. Start it with mpiexec or srun.")
    parser.add_argument("--ranks-per-node", type=int, help="fake layout: world ranks per node (PILOTQ_RANKS_PER_NODE)")
    parser.add_argument("--gpus-per-node", type=int, help="declared GPUs per node (PILOTQ_GPUS_PER_NODE)")
    parser.add_argument("--memory-per-rank", help="memory a task may use per rank, e.g. 4GiB (PILOTQ_MEMORY_PER_RANK)")
    parser.add_argument("--trace", help="write the task trace (JSON lines) here (PILOTQ_TRACE)")
    parser.add_argument("--progress", choices=("auto", "on", "off"), help="progress display (PILOTQ_PROGRESS)")
    parser.add_argument("--run-dir", help="publish the pilot in this directory so that other launches can join it"
                                          " (PILOTQ_RUN_DIR)")
    parser.add_argument("--pool", help="the pool of this launch's ranks; tasks ask for it with pool= (PILOTQ_POOL)")
    parser.add_argument("--join", metavar="DIR", help="instead of a driver: join the pilot published in DIR with"
                                                      " this launch's ranks (PILOTQ_JOIN)")
    parser.add_argument("app", nargs="?", help="the driver script (not with --join)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the driver script")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace, env: dict[str, str]) -> PilotOptions:
    """Environment first, flags on top (so every rank agrees: flags are on every rank's command line)."""
    env = dict(env)
    for flag, var in (("ranks_per_node", "PILOTQ_RANKS_PER_NODE"), ("gpus_per_node", "PILOTQ_GPUS_PER_NODE"),
                      ("memory_per_rank", "PILOTQ_MEMORY_PER_RANK"), ("trace", "PILOTQ_TRACE"),
                      ("progress", "PILOTQ_PROGRESS"), ("run_dir", "PILOTQ_RUN_DIR"), ("pool", "PILOTQ_POOL")):
        value = getattr(args, flag)
        if value is not None:
            env[var] = str(value)
    return PilotOptions.from_env(env)


WALLTIME_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Entry point of every rank; returns the process exit code.

    Rank 0 also writes that code to ``$PILOTQ_EXIT_CODE_FILE`` (see :mod:`.abort`), so that
    a batch script can exit with it even where srun reports 137 for an abort.
    """
    # a walltime signal may come before the master is up: remember it instead of dying
    early: list[int] = []
    for sig in WALLTIME_SIGNALS:
        signal.signal(sig, lambda signum, frame: early.append(signum))
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = None
    try:
        options = options_from(args, dict(os.environ))
    except ValueError as exc:
        problem = str(exc)
    join_dir = args.join or (os.environ.get("PILOTQ_JOIN") or None if args.app is None else None)
    if problem is None and join_dir is not None:
        if args.app is not None:
            problem = f"--join {join_dir} runs workers for a pilot that has its driver: drop the script {args.app!r}"
        elif options.run_dir is not None:
            problem = "--join and --run-dir do not go together: a joining launch serves the pilot that publishes DIR"
        else:
            from .joiner import join

            return join(join_dir, options)
    if problem is None and options.run_dir and join_dir is None:
        from .rundir import RunDir

        problem = RunDir(options.run_dir).in_use()
    if problem is None and args.app is None:
        problem = "no driver script: `python -m pilotq_mpi app.py` (or `--join DIR` to join a running pilot)"
    if problem is None and not os.path.isfile(args.app):
        problem = f"driver script {args.app!r} not found"
    if problem is not None:
        return _refuse(problem)

    # modules next to the driver script are importable on every rank, as on rank 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.app)))
    world, all_facts = _agree_layout(None, options)
    try:
        groups = _groups(all_facts, options)
    except ValueError as exc:
        return _refuse(str(exc))
    if world.Get_rank() != 0:
        # the master decides when to stop: a walltime signal or a Ctrl-C forwarded to every
        # rank must not kill work (rank 0 gets it too and ends the job in order)
        for sig in (*WALLTIME_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        _serve(world, all_facts, groups, options)
        return 0
    clear_exit_code()
    master = _start_master(world, all_facts, options, groups)

    def drain(signum, frame):
        sys.stderr.write(f"pilotq-mpi: got {signal.Signals(signum).name}: draining (no new tasks;"
                         f" running tasks get {options.drain_grace:g}s)\n")
        master.post("drain", options.drain_grace)

    for sig in WALLTIME_SIGNALS:
        signal.signal(sig, drain)
    if early:
        drain(early[0], None)
    pidfile = os.environ.get("PILOTQ_RANK0_PIDFILE")
    if pidfile:  # lets a batch script signal rank 0 alone (mpiexec may not forward SIGUSR1)
        with open(pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    with _progress(master, options):
        code = _run_driver(args.app, args.args)
    try:
        if code is None or code != 0:
            if code is None:  # the driver raised (its traceback is printed)
                code = EXIT_INCOMPLETE if master.drained else EXIT_DRIVER_FAILED
            # queued work is cancelled and running work abandoned: the job ends in seconds
            master.abort_and_join(code)
        _finish_master(master, world)
    except KeyboardInterrupt:  # Ctrl-C while waiting for the last tasks
        abort_job(world, EXIT_DRIVER_FAILED, "interrupted while waiting for the last tasks; aborting all ranks")
    if code == 0 and master.drained:
        code = EXIT_INCOMPLETE
        sys.stderr.write(f"pilotq-mpi: drained before finishing; exit code {EXIT_INCOMPLETE} means"
                         " 'incomplete, rerun with the same journal to resume'\n")
    write_exit_code(code)
    return code


def _refuse(problem: str) -> int:
    """Bad options or no driver: say so once (on rank 0), end every rank with exit code 2."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 0:
        sys.stderr.write(f"pilotq-mpi: {problem}\n")
        write_exit_code(EXIT_USAGE)
    return EXIT_USAGE


def run_pilot(driver: Callable[[], T], *, world=None, options: PilotOptions | None = None) -> T | None:
    """Run a pilot on ``world`` (default COMM_WORLD) from inside an MPI program; collective.

    Rank 0 calls ``driver()`` while the master runs (so ``Pilot()`` works in it); every
    other rank serves as a worker until the driver returns and its tasks are done.
    Returns ``driver()``'s value on rank 0 and None elsewhere; if the driver raises, the
    pilot still shuts down in order and the exception propagates on rank 0.
    """
    options = options or PilotOptions.from_env(os.environ)
    world, all_facts = _agree_layout(world, options)
    groups = _groups(all_facts, options)
    if world.Get_rank() != 0:
        _serve(world, all_facts, groups, options)
        return None
    master = _start_master(world, all_facts, options, groups, driver=False)
    try:
        return driver()
    finally:
        _finish_master(master, world)


def _agree_layout(world, options: PilotOptions):
    from mpi4py import MPI

    from . import serialization
    from .layout import local_facts

    serialization.install(MPI)
    world = world or MPI.COMM_WORLD
    return world, world.allgather(local_facts(world, os.environ, options))


def _groups(all_facts, options: PilotOptions) -> list:
    """Sub-master groups (none: one master). ``PILOTQ_SUBMASTERS`` in the environment forces a
    count even when ``options`` came from code (``run_pilot``), so a test suite can run in that mode."""
    from dataclasses import replace

    from .layout import submaster_groups

    if options.submasters == "auto" and os.environ.get("PILOTQ_SUBMASTERS", "auto") != "auto":
        options = replace(options, submasters=os.environ["PILOTQ_SUBMASTERS"])
    groups = submaster_groups(all_facts, options)
    if groups and options.run_dir:
        raise ValueError("--run-dir (a pilot others can join) needs a single master: start it with"
                         " PILOTQ_SUBMASTERS=0")
    return groups


def _serve(world, all_facts, groups: list, options: PilotOptions) -> None:
    """A rank other than 0: its group's sub-master, or a worker (of the master or of its sub-master)."""
    rank = world.Get_rank()
    for group in groups:
        if group.leader == rank:
            from .hierarchy import SubMaster
            from .polling import quiet_barrier

            SubMaster(world, group, options).serve()
            quiet_barrier(world)
            return
    master = next((g.leader for g in groups if any(w.rank == rank for w in g.workers)), 0)
    _serve_worker(world, all_facts, master=master, submasters=frozenset(g.leader for g in groups))


def _serve_worker(world, all_facts, *, master: int = 0, submasters: frozenset[int] = frozenset()) -> None:
    from ..platform.discovery import pin_env
    from .layout import assign_gpus
    from .polling import quiet_barrier
    from .worker import Worker

    rank = world.Get_rank()
    gpus = assign_gpus(all_facts, others=submasters)[rank]
    pinned = pin_env(gpus)
    before = {name: os.environ.get(name) for name in pinned}
    os.environ.update(pinned)  # before any task imports a CUDA library
    try:
        node = next(f.node for f in all_facts if f.rank == rank).split("#")[0]
        Worker(world, node=node, gpus=gpus, master=master).serve()
        quiet_barrier(world)
    finally:
        # run_pilot may run again in this process: its next layout must not see this pilot's pins
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start_master(world, all_facts, options: PilotOptions, groups: list, *, driver: bool = True):
    from . import session
    from .layout import build_inventory
    from .master import Master
    from .observers import build_observer

    inventory = build_inventory(all_facts, options, frozenset(g.leader for g in groups))
    if not options.quiet:
        sys.stderr.write(f"pilotq-mpi: {inventory.describe()}\n")
    observer = build_observer(options, inventory, time.time())
    if groups:
        master = _top_master(world, inventory, groups, options, observer)
    else:
        master = Master(world, inventory, prefetch=options.prefetch, power_of_two=options.power_of_two,
                        stuck_grace=options.stuck_grace, observer=observer, prefetch_horizon=options.prefetch_horizon,
                        elastic=_elastic(world, options, driver), drain_grace=options.drain_grace)
    master.start()
    session.install(master)
    return master


def _top_master(world, inventory, groups: list, options: PilotOptions, observer):
    """The top master over sub-master ``groups`` (hierarchical masters)."""
    from .top_master import TopMaster

    if not options.quiet:
        sizes = ", ".join(str(len(g.workers)) for g in groups)
        sys.stderr.write(f"pilotq-mpi: {len(groups)} sub-masters (world ranks"
                         f" {', '.join(str(g.leader) for g in groups)}) over groups of {sizes} worker ranks\n")
    return TopMaster(world, inventory, groups, prefetch=options.prefetch, power_of_two=options.power_of_two,
                     observer=observer, drain_grace=options.drain_grace, prefetch_horizon=options.prefetch_horizon,
                     group_hold=options.group_hold)


def _elastic(world, options: PilotOptions, driver: bool):
    """The pilot's joinable side when it has a run directory (``--run-dir``), else None."""
    if not options.run_dir:
        return None
    from mpi4py import MPI

    from .elastic import Elastic
    from .rundir import RunDir

    elastic = Elastic(MPI, RunDir(options.run_dir), next_rank=world.Get_size(), lost_after=options.lost_after,
                      import_path=sys.path[0] if driver else None)
    if not options.quiet:
        sys.stderr.write(f"pilotq-mpi: joinable: python -m pilotq_mpi --join {options.run_dir} [--pool NAME]\n")
    return elastic


def _finish_master(master, world) -> None:
    from . import session
    from .polling import quiet_barrier

    master.stop_and_join()
    session.install(None)
    quiet_barrier(world)


def _progress(master, options: PilotOptions):
    """The driver's progress display (rich is imported only when it is on)."""
    if options.progress == "off":
        return contextlib.nullcontext()
    from ..progress import ProgressDisplay

    return ProgressDisplay(master.snapshot)


def _run_driver(path: str, argv: list[str]) -> int | None:
    """Run the driver as ``__main__``; its exit code, or None if it raised."""
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException as exc:
        _print_user_traceback(exc, path)
        return None
    return 0


def _print_user_traceback(exc: BaseException, path: str) -> None:
    """Print ``exc`` from the driver's first frame on (not runpy's or the bootstrap's)."""
    driver = os.path.abspath(path)
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != driver:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.stderr.flush()
