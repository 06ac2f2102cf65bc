"""Task resource specifications, validated at construction (pure, no MPI)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ResourceError


def _require(condition: bool, message: str, error: type[ValueError] = ValueError) -> None:
    if not condition:
        raise error(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a task needs and how it is treated; checked when it is built.

    Impossible resource requests (``ranks < 1``, negative GPUs, a multi-rank QPU task)
    raise :class:`~pilotq_mpi.ResourceError`; other bad values raise ``ValueError``.

    ``ranks``: world ranks the task runs on (its sub-communicator size).
    ``gpus_per_rank``: GPUs each of those ranks must own.
    ``qpu``: name of a declared QPU; the task runs on a worker pinned to it.
    ``priority``: larger runs first; ties keep submission order.
    ``same_node``: all ranks on one node (e.g. for intra-node GPU peer access).
    ``memory_per_rank``: bytes each rank needs (checked against declared rank memory).
    ``timeout``: seconds a run may take before it counts as timed out.
    ``retries``: extra attempts after a failure, ``retry_backoff`` seconds apart (doubling).
    ``isolate``: run a single-rank task in a child process the worker can kill.
    ``gather``: the result is the list of every rank's return value, not just rank 0's.
    ``pool``: run only on ranks of that pool (a pool is named by the launch that brought
    the ranks: ``--pool gpu``); None runs anywhere eligible.
    """

    ranks: int = 1
    gpus_per_rank: int = 0
    qpu: str | None = None
    priority: int = 0
    name: str | None = None
    same_node: bool = False
    memory_per_rank: int | None = None
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    isolate: bool = False
    gather: bool = False
    pool: str | None = None

    def __post_init__(self) -> None:
        _require(_is_int(self.ranks) and self.ranks >= 1,
                 f"ranks must be an integer >= 1, got ranks={self.ranks!r}", ResourceError)
        _require(_is_int(self.gpus_per_rank) and self.gpus_per_rank >= 0,
                 f"gpus_per_rank must be an integer >= 0, got gpus_per_rank={self.gpus_per_rank!r}", ResourceError)
        _require(_is_int(self.priority), f"priority must be an integer, got priority={self.priority!r}")
        _require(self.qpu is None or (isinstance(self.qpu, str) and self.qpu != ""),
                 f"qpu must be the name of a declared QPU (a non-empty string) or None, got qpu={self.qpu!r}")
        if self.qpu is not None:
            _require(self.ranks == 1,
                     f"a QPU task runs on one pinned worker rank; got ranks={self.ranks} with qpu={self.qpu!r}",
                     ResourceError)
        _require(self.name is None or isinstance(self.name, str),
                 f"name must be a string or None, got name={self.name!r}")
        _require(self.memory_per_rank is None or (_is_int(self.memory_per_rank) and self.memory_per_rank > 0),
                 f"memory_per_rank must be a positive number of bytes or None, got {self.memory_per_rank!r}")
        _require(self.timeout is None or (isinstance(self.timeout, (int, float)) and self.timeout > 0),
                 f"timeout must be a positive number of seconds or None, got timeout={self.timeout!r}")
        _require(_is_int(self.retries) and self.retries >= 0,
                 f"retries must be an integer >= 0, got retries={self.retries!r}")
        _require(isinstance(self.retry_backoff, (int, float)) and self.retry_backoff >= 0,
                 f"retry_backoff must be a number of seconds >= 0, got {self.retry_backoff!r}")
        _require(not self.isolate or self.ranks == 1,
                 f"isolate=True runs the task in a child process and works for ranks=1 only; got ranks={self.ranks}")
        _require(self.pool is None or (isinstance(self.pool, str) and self.pool != ""),
                 f"pool must be the name of a pool (a non-empty string) or None, got pool={self.pool!r}")
        _require(not (self.isolate and self.qpu is not None),
                 "isolate=True is not available for QPU tasks (their backend lives in the worker process)")

    @property
    def resource_class(self) -> tuple:
        """Tasks with equal classes compete for exactly the same ranks."""
        return (self.ranks, self.gpus_per_rank, self.qpu, self.same_node, self.memory_per_rank, self.pool)
