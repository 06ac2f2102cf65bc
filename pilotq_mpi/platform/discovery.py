"""Facts about where the pilot runs, read from an environment mapping (pure functions).

Nothing here reads ``os.environ`` or calls a program: the caller passes ``env`` (and,
where a fact needs one, a value such as ``squeue``'s time-left field), so every
function is tested with plain dictionaries.

GPU ids are *node-level* ids as the pilot's process sees them (the entries of its
``CUDA_VISIBLE_DEVICES``, or 0..G-1). A worker pins itself with :func:`pin_env`
before importing any CUDA library; inside the worker they then appear as 0..len-1.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "slurm_job_id", "expand_hostlist", "slurm_nodes", "node_local_rank", "node_gpus",
    "parse_slurm_duration", "allocation_end_time", "gpus_for_rank", "pin_env",
]

#: Variables that give a process's rank on its node, in the order they are tried
#: (Slurm, MPICH/Hydra, Open MPI, HPE PALS).
LOCAL_RANK_VARS: tuple[str, ...] = (
    "SLURM_LOCALID", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PALS_LOCAL_RANKID",
)


def slurm_job_id(env: Mapping[str, str]) -> str | None:
    """The Slurm job id (``SLURM_JOB_ID``, else ``SLURM_JOBID``), or None outside Slurm."""
    return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(text: str) -> list[str]:
    """Split a hostlist on commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"hostlist {text!r}: unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"hostlist {text!r}: unbalanced '['")
    parts.append("".join(cur))
    return [p for p in parts if p]


def _expand_one(name: str, whole: str) -> list[str]:
    m = re.search(r"\[([^\[\]]*)\]", name)
    if not m:
        return [name]
    head, tail = name[: m.start()], name[m.end():]
    out = []
    for item in m.group(1).split(","):
        r = _RANGE.match(item.strip())
        if not r:
            raise ValueError(f"hostlist {whole!r}: cannot read range {item!r} "
                             "(expected N or N-M, e.g. nid[001-004,008])")
        lo, hi = r.group(1), r.group(2) or r.group(1)
        if int(hi) < int(lo):
            raise ValueError(f"hostlist {whole!r}: range {item!r} runs backwards")
        width = len(lo)
        for i in range(int(lo), int(hi) + 1):
            out.extend(_expand_one(f"{head}{i:0{width}d}{tail}", whole))
    return out


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Expand a Slurm hostlist: ``"nid[001-003,007],login1"`` -> ``("nid001", ..., "login1")``."""
    return tuple(h for part in _split_top(text.strip()) for h in _expand_one(part, text))


def slurm_nodes(env: Mapping[str, str]) -> tuple[str, ...]:
    """Host names of the allocation (``SLURM_JOB_NODELIST``, else ``SLURM_NODELIST``); () outside Slurm."""
    text = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    return expand_hostlist(text) if text else ()


def node_local_rank(env: Mapping[str, str]) -> int | None:
    """This process's rank on its node from the launcher's variables (:data:`LOCAL_RANK_VARS`), or None.

    Prefer ``COMM_WORLD.Split_type(COMM_TYPE_SHARED).rank`` inside an MPI job; this is
    for code that runs before MPI is initialised.
    """
    for var in LOCAL_RANK_VARS:
        value = env.get(var)
        if value is not None and value != "":
            try:
                rank = int(value)
            except ValueError:
                raise ValueError(f"{var}={value!r}: expected a non-negative integer") from None
            if rank < 0:
                raise ValueError(f"{var}={value!r}: expected a non-negative integer")
            return rank
    return None


def _int_list(var: str, text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(x) for x in text.split(",") if x.strip() != "")
    except ValueError:
        raise ValueError(
            f"{var}={text!r}: expected comma-separated GPU indices such as '0,1,2,3' "
            "(UUIDs are not supported); set indices, or declare a GPU count"
        ) from None
    if any(i < 0 for i in ids):
        raise ValueError(f"{var}={text!r}: GPU indices must be >= 0")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{var}={text!r}: a GPU index is listed twice")
    return ids


def node_gpus(env: Mapping[str, str], declared: int | None = None) -> tuple[int, ...]:
    """GPU ids visible to this process on its node.

    Tried in order: ``declared`` (a fake count for scheduling tests on CPU machines:
    ``range(declared)``), ``CUDA_VISIBLE_DEVICES`` (empty or ``NoDevFiles`` means none),
    ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS``, ``SLURM_GPUS_ON_NODE`` (a count). () when
    nothing says there are GPUs.
    """
    if declared is not None:
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 0:
            raise ValueError(f"declared GPU count {declared!r}: must be an integer >= 0")
        return tuple(range(declared))
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        if cvd.strip() in ("", "NoDevFiles"):
            return ()
        return _int_list("CUDA_VISIBLE_DEVICES", cvd)
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if env.get(var):
            return _int_list(var, env[var])
    count = env.get("SLURM_GPUS_ON_NODE")
    if count:
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"SLURM_GPUS_ON_NODE={count!r}: expected an integer") from None
        return tuple(range(n))
    return ()


_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_slurm_duration(text: str) -> int:
    """Seconds in a Slurm duration ``[D-][HH:]MM:SS`` (as ``squeue -o %L`` prints it).

    >>> parse_slurm_duration("1-02:03:04")
    93784
    """
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"Slurm duration {text!r}: expected [D-][HH:]MM:SS, e.g. 1-02:03:04")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def allocation_end_time(env: Mapping[str, str], *, now: float | None = None,
                        time_left: str | None = None) -> float | None:
    """Epoch seconds at which the allocation ends, if known.

    ``PILOTQ_END_TIME`` (set by a user or a test) wins, then ``SLURM_JOB_END_TIME``
    (Slurm >= 23.02 exports it), then ``now + time_left`` where ``time_left`` is
    ``squeue -h -j $SLURM_JOB_ID -o %L`` output read by the caller. None otherwise
    (also for ``UNLIMITED`` / ``NOT_SET``).
    """
    for var in ("PILOTQ_END_TIME", "SLURM_JOB_END_TIME"):
        value = env.get(var)
        if value:
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{var}={value!r}: expected epoch seconds") from None
    if time_left is not None and time_left.strip() not in ("", "UNLIMITED", "NOT_SET", "INVALID"):
        if now is None:
            raise ValueError("time_left given without now: pass now=time.time()")
        return now + parse_slurm_duration(time_left)
    return None


def gpus_for_rank(local_rank: int, ranks_on_node: int,
                  node_gpus: Sequence[int]) -> tuple[int, ...]:
    """The node GPUs that node-local rank ``local_rank`` (of ``ranks_on_node``) owns.

    * As many GPUs as ranks: one each, by local rank (rank i -> ``node_gpus[i]``).
    * More GPUs than ranks: each rank gets a contiguous block, as even as possible
      (4 GPUs, 2 ranks -> (0, 1) and (2, 3); 4 GPUs, 3 ranks -> (0,), (1,), (2, 3)).
    * Fewer GPUs than ranks: the first ``len(node_gpus)`` local ranks get one each and
      the others get **none** (``()``): they run CPU-only. GPUs are never shared.
    """
    if isinstance(ranks_on_node, bool) or not isinstance(ranks_on_node, int) or ranks_on_node < 1:
        raise ValueError(f"ranks_on_node={ranks_on_node!r}: must be an integer >= 1")
    if isinstance(local_rank, bool) or not isinstance(local_rank, int) \
            or not 0 <= local_rank < ranks_on_node:
        raise ValueError(f"local_rank={local_rank!r}: must be in 0..{ranks_on_node - 1} "
                         f"(ranks_on_node={ranks_on_node})")
    gpus = tuple(node_gpus)
    n = len(gpus)
    if n < ranks_on_node:
        return (gpus[local_rank],) if local_rank < n else ()
    start = local_rank * n // ranks_on_node
    end = (local_rank + 1) * n // ranks_on_node
    return gpus[start:end]


def pin_env(gpus: Sequence[int]) -> dict[str, str]:
    """The environment update that pins a process to ``gpus``: ``{"CUDA_VISIBLE_DEVICES": "0,1"}``.

    Apply it (``os.environ.update``) before any CUDA library is imported. An empty
    ``gpus`` gives ``CUDA_VISIBLE_DEVICES=""``: the process sees no GPU at all.
    """
    ids = [int(g) for g in gpus]
    if any(g < 0 for g in ids):
        raise ValueError(f"gpus={tuple(gpus)!r}: GPU ids must be >= 0")
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, ids))}
