"""What a pilot has: worker ranks, their nodes, GPUs, memory, and QPU pins (pure, no MPI)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Mapping

from ..errors import ResourceError
from .specs import TaskSpec


def plural(count: int, word: str) -> str:
    """``plural(1, "rank")`` is ``"1 rank"``, ``plural(2, "rank")`` is ``"2 ranks"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


NO_GPUS_HINT = ("start the pilot with `--gpus-per-node N` (or PILOTQ_GPUS_PER_NODE=N) to declare N GPUs per node"
                " (none were found in CUDA_VISIBLE_DEVICES or Slurm's GPU variables), or submit with gpus_per_rank=0")
"""How a pilot gets GPUs: said when a GPU task is submitted to a pilot that has none."""

MAIN_ALLOCATION = "main"
"""The allocation that holds rank 0 (the master); joined allocations get other names."""


@dataclass(frozen=True, slots=True)
class RankInfo:
    """One worker rank: its pilot rank, node name, GPU ids, memory, QPU pin, allocation and pool.

    ``rank`` is the world rank in the main allocation; ranks of a joined allocation get
    numbers after every rank seen before (never reused). ``allocation`` names the launch
    the rank came with (multi-rank tasks stay within one); ``pool`` the pool that launch
    named (``--pool``), if any.
    """

    rank: int
    node: str
    gpus: tuple[int, ...] = ()
    memory: int | None = None
    qpu: str | None = None
    allocation: str = MAIN_ALLOCATION
    pool: str | None = None


@dataclass(frozen=True)
class QpuSpec:
    """A quantum processor the pilot can reach, and the workers pinned to it.

    ``factory`` is an import path ``"module:callable"``; the pinned worker calls it once
    with ``options`` and keeps the backend for the pilot's life. ``ranks`` is how many
    worker ranks to pin; ``concurrency`` how many calls each of them runs at once.
    """

    name: str
    factory: str
    options: Mapping = field(default_factory=dict)
    ranks: int = 1
    concurrency: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a QPU needs a non-empty name, got name={self.name!r}")
        if not isinstance(self.factory, str) or ":" not in self.factory:
            raise ValueError(
                f"QPU {self.name!r}: factory must be an import path 'module:callable', got {self.factory!r}"
            )
        if not isinstance(self.ranks, int) or self.ranks < 1:
            raise ValueError(f"QPU {self.name!r}: ranks must be an integer >= 1, got {self.ranks!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"QPU {self.name!r}: concurrency must be an integer >= 1, got {self.concurrency!r}")


@dataclass(frozen=True)
class Inventory:
    """The worker ranks of a pilot and the QPUs pinned to some of them (immutable)."""

    ranks: tuple[RankInfo, ...]
    qpus: Mapping[str, QpuSpec] = field(default_factory=dict)
    expected_pools: frozenset[str] = frozenset()
    """Pools with no ranks yet that are expected to join (tasks for them wait instead of failing)."""

    def __post_init__(self) -> None:
        seen = [r.rank for r in self.ranks]
        if len(set(seen)) != len(seen):
            raise ValueError(f"worker ranks must be distinct, got {seen}")

    @classmethod
    def from_layout(cls, workers: int, *, ranks_per_node: int | None = None, gpus_per_rank: int = 0,
                    first_rank: int = 1, memory: int | None = None) -> "Inventory":
        """A synthetic inventory: ``workers`` ranks from ``first_rank``, packed ``ranks_per_node`` per node."""
        per_node = ranks_per_node or workers or 1
        infos = []
        for index in range(workers):
            node_index, local = divmod(index, per_node)
            gpus = tuple(range(local * gpus_per_rank, (local + 1) * gpus_per_rank))
            infos.append(RankInfo(first_rank + index, f"node{node_index}", gpus, memory))
        return cls(tuple(infos))

    # --- views -----------------------------------------------------------------
    def rank(self, rank: int) -> RankInfo:
        """The info of world rank ``rank`` (KeyError if it is not a worker)."""
        for info in self.ranks:
            if info.rank == rank:
                return info
        raise KeyError(rank)

    @property
    def compute_ranks(self) -> tuple[RankInfo, ...]:
        """Workers not pinned to a QPU."""
        return tuple(r for r in self.ranks if r.qpu is None)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names in first-seen order."""
        return tuple(dict.fromkeys(r.node for r in self.ranks))

    @property
    def allocations(self) -> tuple[str, ...]:
        """Allocation names in first-seen order (the main one first)."""
        return tuple(dict.fromkeys(r.allocation for r in self.ranks))

    @property
    def pools(self) -> frozenset[str]:
        """Pools that have ranks now or are expected to join."""
        return frozenset(r.pool for r in self.ranks if r.pool is not None) | self.expected_pools

    def qpu_ranks(self, name: str) -> tuple[RankInfo, ...]:
        """Workers pinned to QPU ``name``."""
        return tuple(r for r in self.ranks if r.qpu == name)

    def eligible(self, spec: TaskSpec) -> tuple[RankInfo, ...]:
        """Ranks that could ever run one rank of ``spec`` (ignoring what is busy)."""
        pool = spec.pool
        if spec.qpu is not None:
            return tuple(r for r in self.qpu_ranks(spec.qpu) if pool is None or r.pool == pool)
        return tuple(
            r for r in self.ranks
            if r.qpu is None and len(r.gpus) >= spec.gpus_per_rank and (pool is None or r.pool == pool)
            and (spec.memory_per_rank is None or r.memory is None or r.memory >= spec.memory_per_rank)
        )

    # --- feasibility -------------------------------------------------------------
    def check(self, spec: TaskSpec, *, power_of_two: bool = False) -> None:
        """Raise :class:`ResourceError` if this pilot can never run ``spec``; say what exists."""
        if spec.qpu is not None:
            if spec.qpu not in self.qpus:
                declared = ", ".join(sorted(self.qpus)) or "none"
                raise ResourceError(
                    f"task asks for QPU {spec.qpu!r}, which this pilot does not declare (declared: {declared});"
                    f" pass qpus=[QPU({spec.qpu!r}, ...)] to Pilot()"
                )
        if spec.pool is not None:
            if spec.pool not in self.pools:
                known = ", ".join(sorted(self.pools)) or "none"
                raise ResourceError(
                    f"task asks for pool {spec.pool!r}, which this pilot does not have (pools: {known}); start"
                    f" or join a launch with --pool {spec.pool}, or declare it with Pilot(pools=[{spec.pool!r}])")
            if not any(r.pool == spec.pool for r in self.ranks):
                return  # expected to join: judged when its ranks are here
        if spec.qpu is not None:
            return
        if power_of_two and spec.ranks & (spec.ranks - 1):
            raise ResourceError(
                f"task needs {spec.ranks} ranks; this pilot only places power-of-two widths"
                f" (1, 2, 4, 8, ...): choose ranks={1 << (spec.ranks.bit_length() - 1)} or {1 << spec.ranks.bit_length()}"
            )
        compute = tuple(r for r in self.compute_ranks if spec.pool is None or r.pool == spec.pool)
        where = f" in pool {spec.pool!r}" if spec.pool is not None else ""
        if spec.ranks > len(compute):
            pinned = len(self.ranks) - len(compute)
            raise ResourceError(
                f"task needs {plural(spec.ranks, 'rank')}; this pilot has {plural(len(compute), 'worker rank')}{where}"
                + (f" ({pinned} more {'is pinned to a QPU' if pinned == 1 else 'are pinned to QPUs'})" if pinned else "")
                + f": start the pilot with more ranks or ask for ranks<={len(compute)}"
            )
        if spec.gpus_per_rank:
            with_gpus = [r for r in compute if len(r.gpus) >= spec.gpus_per_rank]
            if len(with_gpus) < spec.ranks:
                most = max((len(r.gpus) for r in compute), default=0)
                need = f"task needs {plural(spec.ranks, 'rank')} with {plural(spec.gpus_per_rank, 'GPU')}" + (
                    " each" if spec.ranks > 1 else "")
                if not any(r.gpus for r in self.ranks):
                    raise ResourceError(f"{need}; this pilot has no GPUs: {NO_GPUS_HINT}")
                raise ResourceError(
                    f"{need}; this pilot has {len(with_gpus)} such worker"
                    f" {'rank' if len(with_gpus) == 1 else 'ranks'} (most GPUs on one rank: {most})"
                )
        if spec.memory_per_rank is not None:
            fits = self.eligible(spec)
            if len(fits) < spec.ranks:
                largest = max((r.memory or 0 for r in compute), default=0)
                raise ResourceError(
                    f"task needs {spec.memory_per_rank / 2**30:.2f} GiB per rank on {plural(spec.ranks, 'rank')};"
                    f" only {plural(len(fits), 'worker rank')} {'has' if len(fits) == 1 else 'have'} that much"
                    f" (largest: {largest / 2**30:.2f} GiB): use more ranks or a smaller problem"
                )
        if spec.same_node:
            per_node = Counter(r.node for r in self.eligible(spec))
            widest = max(per_node.values(), default=0)
            if widest < spec.ranks:
                raise ResourceError(
                    f"task needs {plural(spec.ranks, 'rank')} on one node (same_node=True); the largest node of"
                    f" this pilot has {plural(widest, 'suitable worker rank')}"
                )
        if spec.ranks > 1:
            per_allocation = Counter(r.allocation for r in self.eligible(spec))
            widest = max(per_allocation.values(), default=0)
            if len(per_allocation) > 1 and widest < spec.ranks:
                sizes = ", ".join(f"{name}: {count}" for name, count in per_allocation.items())
                raise ResourceError(
                    f"task needs {plural(spec.ranks, 'rank')} of one allocation (a multi-rank task gets its"
                    f" sub-communicator from one launch's world); the widest allocation has {widest} suitable"
                    f" worker ranks ({sizes}): ask for ranks<={widest} or join a larger allocation"
                )

    # --- changes -------------------------------------------------------------------
    def with_ranks(self, infos: "tuple[RankInfo, ...] | list[RankInfo]") -> "Inventory":
        """A new inventory with ``infos`` added (a joined allocation)."""
        return replace(self, ranks=self.ranks + tuple(infos))

    def without_ranks(self, ranks: "set[int] | frozenset[int]") -> "Inventory":
        """A new inventory without the given ranks (an allocation that left)."""
        return replace(self, ranks=tuple(r for r in self.ranks if r.rank not in ranks))

    def expecting(self, pools) -> "Inventory":
        """A new inventory that also expects ``pools`` to join."""
        return replace(self, expected_pools=self.expected_pools | frozenset(pools))

    def with_qpu(self, qpu: QpuSpec) -> "Inventory":
        """A new inventory with ``qpu.ranks`` compute ranks pinned to ``qpu``.

        Prefers ranks without GPUs (QPU workers need none), highest world rank first, and
        only ranks of the main allocation (joined ones may leave; the QPU session must stay).
        """
        if qpu.name in self.qpus:
            raise ValueError(f"QPU {qpu.name!r} is already declared in this pilot")
        free = sorted((r for r in self.compute_ranks if r.allocation == MAIN_ALLOCATION),
                      key=lambda r: (len(r.gpus) > 0, -r.rank))
        if qpu.ranks >= len(free):
            raise ResourceError(
                f"QPU {qpu.name!r} wants {plural(qpu.ranks, 'pinned rank')} but only"
                f" {plural(len(free), 'compute rank')}{' of the main allocation' if len(self.allocations) > 1 else ''}"
                f" {'is' if len(free) == 1 else 'are'} left;"
                " at least one must stay for other tasks: start the pilot with more ranks"
            )
        chosen = {r.rank for r in free[: qpu.ranks]}
        ranks = tuple(replace(r, qpu=qpu.name) if r.rank in chosen else r for r in self.ranks)
        return replace(self, ranks=ranks, qpus={**self.qpus, qpu.name: qpu})

    def describe(self) -> str:
        """A plain-text resource table (one line per node)."""
        lines = [f"{plural(len(self.ranks), 'worker rank')} on {plural(len(self.nodes), 'node')}"]
        allocations = self.allocations
        if len(allocations) > 1 or any(r.pool for r in self.ranks):
            lines[0] += f" in {plural(len(allocations), 'allocation')}: " + ", ".join(
                f"{name} ({plural(sum(1 for r in self.ranks if r.allocation == name), 'rank')}"
                + "".join(f", pool {p}" for p in dict.fromkeys(r.pool for r in self.ranks
                                                               if r.allocation == name and r.pool)) + ")"
                for name in allocations)
        for node in self.nodes:
            members = [r for r in self.ranks if r.node == node]
            parts = []
            for r in members:
                extra = f" gpu{','.join(map(str, r.gpus))}" if r.gpus else ""
                extra += f" qpu={r.qpu}" if r.qpu else ""
                parts.append(f"{r.rank}{extra}")
            lines.append(f"  {node}: ranks {'; '.join(parts)}")
        return "\n".join(lines)

