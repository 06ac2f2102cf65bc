"""``python -m pilotq_mpi --join DIR``: this launch's ranks become workers of the pilot running in DIR.

Every rank of the launch takes part: rank 0 asks the pilot through the run directory
(:mod:`.rundir`), all of them then ``Connect`` to the pilot's MPI port, and each serves
as a worker until the pilot sends it home. A walltime signal (SIGUSR1/SIGTERM) drains
this allocation only: the master places nothing more here, gives running tasks the
drain grace and runs what is left elsewhere; the launch then exits 0.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

from ..errors import EXIT_JOIN_FAILED, EXIT_PILOT_GONE
from .abort import write_exit_code
from .options import PilotOptions
from .rundir import HEARTBEAT_S, STALE_AFTER_S, JoinError, RunDir, age, touch

REPLY_TIMEOUT_S = 30.0
"""How long rank 0 waits for the master to answer the join request."""
WALLTIME_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


def join(path: str, options: PilotOptions) -> int:
    """Join the pilot in run directory ``path`` (collective over COMM_WORLD); the exit code."""
    from mpi4py import MPI

    from . import serialization
    from .layout import assign_gpus, local_facts, node_names

    serialization.install(MPI)
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    run_dir = RunDir(path)
    facts = world.allgather(local_facts(world, os.environ, options))
    gpus = assign_gpus(facts, master=None)
    names = node_names(facts)
    answer = None
    if rank == 0:
        answer = _ask(run_dir, options, [{"node": names[f.node], "gpus": list(gpus[f.rank])} for f in facts])
    answer = world.bcast(answer, root=0)
    if not answer["accept"]:
        if rank == 0:
            sys.stderr.write(f"pilotq-mpi: cannot join the pilot in {path}: {answer['reason']}\n")
            write_exit_code(EXIT_JOIN_FAILED)
        return EXIT_JOIN_FAILED
    allocation, first = answer["allocation"], answer["first"]
    if answer.get("import_path"):  # modules next to the pilot's driver script, as on its own workers
        sys.path.insert(0, answer["import_path"])
    pilot = world.Connect(answer["port"], root=0)
    if rank == 0:
        sys.stderr.write(f"pilotq-mpi: joined the pilot in {path} as allocation {allocation}"
                         f" (pilot ranks {first}-{first + world.Get_size() - 1})\n")
    _install_leave_signals(run_dir, allocation, options.drain_grace, rank)
    watchdog = threading.Thread(target=_watch, args=(run_dir, allocation, rank), name="pilotq-join-watch",
                                daemon=True)
    watchdog.start()
    _serve(pilot, world, rank, facts, gpus, names, first)
    if rank == 0:
        write_exit_code(0)
    return 0


def _ask(run_dir: RunDir, options: PilotOptions, ranks: list[dict]) -> dict:
    """Rank 0: request to join and wait for the answer (never raises: a refusal is an answer)."""
    try:
        pilot = run_dir.find_pilot()
        request = run_dir.request({"ranks": ranks, "pool": options.pool, "memory": options.memory_per_rank,
                                   "job_id": os.environ.get("SLURM_JOB_ID"), "host": socket.gethostname(),
                                   "pid": os.getpid()})
        answer = run_dir.wait_reply(request, REPLY_TIMEOUT_S)
    except JoinError as exc:
        return {"accept": False, "reason": str(exc)}
    return {**answer, "port": pilot["port"], "import_path": pilot.get("import_path")}


def _serve(pilot, world, rank: int, facts, gpus, names, first: int) -> None:
    from ..platform.discovery import pin_env
    from .polling import quiet_barrier
    from .worker import Worker

    for sig in (signal.SIGINT,):
        signal.signal(sig, signal.SIG_IGN)
    os.environ.update(pin_env(gpus[rank]))  # before any task imports a CUDA library
    node = names[next(f.node for f in facts if f.rank == rank)]
    Worker(pilot, node=node, gpus=gpus[rank], local_world=world, rank_offset=first).serve()
    quiet_barrier(world)


def _install_leave_signals(run_dir: RunDir, allocation: str, grace: float, rank: int) -> None:
    """A walltime signal on any rank asks the master to drain this allocation (a file, no MPI)."""
    def leave(signum, frame):
        run_dir.ask_to_leave(allocation, grace, f"got {signal.Signals(signum).name}")

    for sig in WALLTIME_SIGNALS:
        signal.signal(sig, leave)
    pidfile = os.environ.get("PILOTQ_RANK0_PIDFILE")
    if pidfile and rank == 0:
        with open(pidfile, "w") as handle:  # lets a batch script signal this launch's rank 0
            handle.write(f"{os.getpid()}\n")


def _watch(run_dir: RunDir, allocation: str, rank: int) -> None:
    """Heartbeat of this rank; leave when the master says so or when the master is gone (no MPI here)."""
    alive = run_dir.allocation_dir(allocation) / f"alive-{rank}"
    while True:
        touch(alive)
        now = time.time()
        exit_by = run_dir.exit_by(allocation)
        if exit_by is not None and now >= exit_by:
            # still inside a task the master has already re-queued elsewhere: end the process
            sys.stderr.write(f"pilotq-mpi: allocation {allocation} rank {rank}: left the pilot"
                             " (its unfinished task runs elsewhere)\n")
            sys.stderr.flush()
            os._exit(0)
        silent = age(run_dir.heartbeat_file, now)
        if silent is None or silent > STALE_AFTER_S:
            if exit_by is None:  # not already leaving: the master died
                sys.stderr.write(f"pilotq-mpi: allocation {allocation} rank {rank}: the pilot in {run_dir.path}"
                                 f" stopped (no heartbeat for {STALE_AFTER_S:g}s); leaving\n")
                sys.stderr.flush()
                os._exit(EXIT_PILOT_GONE)
        time.sleep(HEARTBEAT_S)
