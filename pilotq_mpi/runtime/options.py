"""Run-time options of a pilot job, read from ``PILOTQ_*`` environment variables.

The launcher (``pilotq-mpi run``, the sbatch templates) sets them, so that every rank of
``python -m pilotq_mpi`` sees the same values; command-line flags of ``python -m
pilotq_mpi`` override them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"4GiB"`` -> 4294967296; plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"memory size {text!r}: write a number with an optional unit, e.g. 4GiB, 512MiB, 2GB")
    return int(float(match.group(1)) * _UNITS[unit])


DEFAULT_PREFETCH = 16
"""Extra single-rank tasks a busy worker may hold (``PILOTQ_PREFETCH``). The horizon, not this
count, keeps short tasks from waiting behind long ones: tasks are queued on a busy worker only while
what it holds is predicted to end within ``DEFAULT_PREFETCH_HORIZON``. A deep queue lets one message
carry many short tasks to a worker and one message bring their results back (measured, no-op tasks
one by one at 4 ranks: CPU per task over all processes 350-458 us at 1, 185-220 us at 16)."""
DEFAULT_PREFETCH_HORIZON = 0.05
"""Seconds; see ``PILOTQ_PREFETCH_HORIZON`` in the README (prefetch and scheduling)."""
DEFAULT_GROUP_HOLD = 0.2
"""Seconds of a sub-master group's ends that tasks held in its queue may cover (``PILOTQ_GROUP_HOLD``;
see :mod:`pilotq_mpi.core.group_queue`). The scale model at 8,192 ranks with 1 s tasks: 86% busy at
0.05 s, 93% at 0.2 s: the held work must outlast the top master's passes between two hand-outs."""


def seconds_from_env(env: Mapping[str, str], name: str, default: float, *, inf: str | None = None) -> float:
    """``env[name]`` as seconds >= 0 (``default`` when unset); ``inf`` is accepted when ``inf`` says
    what it means. A bad value raises ValueError naming the variable."""
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (seconds >= 0 and (inf is not None or math.isfinite(seconds))):
        allowed = f" or inf ({inf})" if inf else ""
        raise ValueError(f"{name}={value!r}: expected seconds >= 0{allowed}")
    return seconds


def prefetch_horizon_from_env(env: Mapping[str, str]) -> float:
    """``PILOTQ_PREFETCH_HORIZON`` in seconds (``inf``: prefetch behind anything, the old rule)."""
    return seconds_from_env(env, "PILOTQ_PREFETCH_HORIZON", DEFAULT_PREFETCH_HORIZON, inf="prefetch behind anything")


@dataclass(frozen=True)
class PilotOptions:
    """Options every rank agrees on (they come from the same environment)."""

    ranks_per_node: int | None = None
    """Fake layout: pretend every ``ranks_per_node`` consecutive world ranks share a node."""
    gpus_per_node: int | None = None
    """Declared GPUs per node (overrides what CUDA/Slurm variables say; for CPU tests)."""
    memory_per_rank: int | None = None
    """Bytes a task may use on one rank (checked at submit time when a task declares its need)."""
    prefetch: int = DEFAULT_PREFETCH
    """Extra single-rank tasks queued on each busy worker to hide the master round trip (only behind
    work predicted to end within ``prefetch_horizon``)."""
    prefetch_horizon: float = DEFAULT_PREFETCH_HORIZON
    """Queue a task behind a busy worker only if its work is predicted to end within this many seconds."""
    group_hold: float = DEFAULT_GROUP_HOLD
    """Sub-master groups only: seconds of a full group's ends that known-long tasks waiting in its own
    queue may cover (0: none held)."""
    power_of_two: bool = False
    """Refuse task widths that are not powers of two."""
    drain_grace: float = 30.0
    """Seconds running tasks get to finish after SIGUSR1/SIGTERM."""
    stuck_grace: float = 10.0
    """Seconds to wait at the end for ranks still inside failed multi-rank tasks."""
    trace: str | None = None
    """Path of the JSON-lines task trace to write."""
    progress: str = "auto"
    """``auto`` (live on a terminal, periodic lines otherwise), ``on`` or ``off``."""
    quiet: bool = False
    """Do not print the resource table at start."""
    run_dir: str | None = None
    """Publish the pilot in this directory so that other launches can join it (``--run-dir``)."""
    pool: str | None = None
    """The pool this launch's ranks belong to (``--pool``); tasks may ask for it with ``pool=``."""
    lost_after: float = 10.0
    """Seconds without a heartbeat after which a joined allocation counts as lost."""
    submasters: str = "auto"
    """Sub-masters (hierarchical masters): a count, or ``auto`` (one master for now: see core.groups); 0: one master."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PilotOptions":
        """Read ``PILOTQ_*`` variables; a bad value raises ValueError naming the variable."""
        def number(name: str, kind, default):
            value = env.get(name)
            if value in (None, ""):
                return default
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected {kind.__name__}") from None

        memory = env.get("PILOTQ_MEMORY_PER_RANK")
        progress = env.get("PILOTQ_PROGRESS", "auto") or "auto"
        if progress not in ("auto", "on", "off"):
            raise ValueError(f"PILOTQ_PROGRESS={progress!r}: expected auto, on or off")
        options = cls(
            ranks_per_node=number("PILOTQ_RANKS_PER_NODE", int, None),
            gpus_per_node=number("PILOTQ_GPUS_PER_NODE", int, None),
            memory_per_rank=parse_bytes(memory) if memory else None,
            prefetch=number("PILOTQ_PREFETCH", int, DEFAULT_PREFETCH),
            prefetch_horizon=prefetch_horizon_from_env(env),
            group_hold=seconds_from_env(env, "PILOTQ_GROUP_HOLD", DEFAULT_GROUP_HOLD),
            power_of_two=env.get("PILOTQ_POWER_OF_TWO", "0") not in ("0", "", "false", "no"),
            drain_grace=number("PILOTQ_DRAIN_GRACE", float, 30.0),
            stuck_grace=number("PILOTQ_STUCK_GRACE", float, 10.0),
            trace=env.get("PILOTQ_TRACE") or None,
            progress=progress,
            quiet=env.get("PILOTQ_QUIET", "0") not in ("0", "", "false", "no"),
            run_dir=env.get("PILOTQ_RUN_DIR") or None,
            pool=env.get("PILOTQ_POOL") or None,
            lost_after=number("PILOTQ_LOST_AFTER", float, 10.0),
            submasters=(env.get("PILOTQ_SUBMASTERS") or "auto").strip(),
        )
        for name, value in (("PILOTQ_RANKS_PER_NODE", options.ranks_per_node),
                            ("PILOTQ_GPUS_PER_NODE", options.gpus_per_node)):
            if value is not None and value < (1 if name == "PILOTQ_RANKS_PER_NODE" else 0):
                raise ValueError(f"{name}={value}: must be positive")
        if options.lost_after <= 0:
            raise ValueError(f"PILOTQ_LOST_AFTER={options.lost_after}: must be > 0 seconds")
        if options.pool is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", options.pool):
            raise ValueError(f"PILOTQ_POOL={options.pool!r}: a pool name is letters, digits, '_', '.', '-'")
        if options.submasters != "auto" and not (options.submasters.isdigit()):
            raise ValueError(f"PILOTQ_SUBMASTERS={options.submasters!r}: expected auto or an integer >= 0")
        if options.prefetch < 0:
            raise ValueError(f"PILOTQ_PREFETCH={options.prefetch}: must be >= 0")
        return options
