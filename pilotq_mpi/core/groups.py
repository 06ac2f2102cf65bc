"""Hierarchical masters: which ranks form each sub-master's group (pure, no MPI).

Past one master's message and bookkeeping rate, the worker ranks are split into groups.
The first rank of each group becomes its sub-master (it runs no tasks); the others are
its workers. Groups are whole nodes where the node count allows it, so that multi-rank
tasks (which stay within one group) can keep to one node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .inventory import Inventory, RankInfo

AUTO_FROM_WORKERS = 6144
"""``auto`` runs sub-masters from this many worker ranks up (one master below, and for a joinable
pilot). Measured (benchmarks/master_cost.py --submasters 2 --prefetch 1): the top master costs 105 us
per task busy + 21 us of the driver's submit, against 139 + 21 us for a single master interleaved
with it. With these costs benchmarks/scale_model.py predicts, for 1 s tasks, one master at 100% up to
4,096 ranks and below 90% from about 7,000 (80% at 8,192: at 6,144 ranks it would be ~98% busy), and
the runtime's hand-out rule with 4-32 sub-masters at 92-93% at 8,192."""
AUTO_GROUP_WORKERS = 2048
"""Worker ranks per group that ``auto`` aims at (4 groups at 8,192 ranks: 93% in the scale model; a
sub-master of 2,046 workers 40% busy)."""


@dataclass(frozen=True)
class Group:
    """A sub-master rank and the worker ranks it schedules."""

    index: int
    leader: int
    """The world rank of the sub-master."""
    workers: tuple[RankInfo, ...]

    @property
    def inventory(self) -> Inventory:
        return Inventory(self.workers)


def submaster_count(setting: str | int | None, workers: int, *, joinable: bool = False) -> int:
    """How many sub-masters to run for ``workers`` ranks: a number (0: one master), or ``"auto"``/None:
    none below :data:`AUTO_FROM_WORKERS` workers or for a ``joinable`` pilot (joins need one master),
    else groups of about :data:`AUTO_GROUP_WORKERS`."""
    if setting in (None, "", "auto"):
        if joinable or workers < AUTO_FROM_WORKERS:
            return 0
        return -(-workers // AUTO_GROUP_WORKERS)
    count = int(setting)
    if count < 0:
        raise ValueError(f"PILOTQ_SUBMASTERS={setting!r}: must be 'auto' or an integer >= 0")
    if count and workers < 2 * count:
        raise ValueError(f"PILOTQ_SUBMASTERS={count}: {workers} worker ranks cannot make {count} groups of a"
                         f" sub-master and at least one worker; use at most {workers // 2}, or 0 for one master")
    return count


def split_groups(ranks: Sequence[RankInfo], count: int) -> list[Group]:
    """Split the worker ranks (in rank order) into ``count`` groups of near-equal size.

    Group boundaries fall between nodes when there are at least as many nodes as groups,
    else within nodes. The lowest rank of each group is its sub-master.
    """
    ordered = sorted(ranks, key=lambda info: info.rank)
    if count < 1 or len(ordered) < 2 * count:
        raise ValueError(f"cannot split {len(ordered)} ranks into {count} groups of at least 2")
    nodes: dict[str, list[RankInfo]] = {}
    for info in ordered:
        nodes.setdefault(info.node, []).append(info)
    parts = _split_units(list(nodes.values()), count) if len(nodes) >= count else []
    if not parts or min(map(len, parts)) < 2:  # too few nodes, or a one-rank node left alone
        parts = _split_units([[info] for info in ordered], count)
    return [Group(index, part[0].rank, tuple(part[1:])) for index, part in enumerate(parts)]


def _split_units(units: list[list[RankInfo]], count: int) -> list[list[RankInfo]]:
    """Consecutive runs of ``units`` (nodes, or single ranks) with near-equal rank counts.

    A run ends where the running total is closest to its share of the ranks.
    """
    total = sum(len(unit) for unit in units)
    parts: list[list[RankInfo]] = []
    current: list[RankInfo] = []
    taken = 0
    for position, unit in enumerate(units):
        current.extend(unit)
        taken += len(unit)
        groups_left = count - len(parts) - 1
        if not groups_left:
            continue
        units_left = len(units) - position - 1
        target = total * (len(parts) + 1) / count
        after_next = taken + len(units[position + 1]) if units_left else taken
        if units_left == groups_left or taken >= target or after_next - target > target - taken:
            parts.append(current)
            current = []
    parts.append(current)
    return parts
