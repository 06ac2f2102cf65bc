"""Who is where: node of every rank and the GPUs each worker owns (one collective at start)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..core.groups import Group, split_groups, submaster_count
from ..core.inventory import Inventory, RankInfo
from ..platform.discovery import gpus_for_rank, node_gpus
from .options import PilotOptions

MASTER = 0


@dataclass(frozen=True)
class RankFacts:
    """What one rank knows about itself before the layout is agreed."""

    rank: int
    node: str
    visible_gpus: tuple[int, ...]


def local_facts(world, env: Mapping[str, str], options: PilotOptions) -> RankFacts:
    """This rank's node (real, from ``Split_type(COMM_TYPE_SHARED)``, or fake) and visible GPUs."""
    from mpi4py import MPI

    rank = world.Get_rank()
    if options.ranks_per_node:
        node = f"node{rank // options.ranks_per_node}"
    else:
        shared = world.Split_type(MPI.COMM_TYPE_SHARED)
        # the lowest world rank on the node names it: equal on all its ranks, distinct across nodes
        leader = shared.allreduce(rank, op=MPI.MIN)
        shared.Free()
        node = f"{MPI.Get_processor_name()}#{leader}"
    return RankFacts(rank, node, node_gpus(env, options.gpus_per_node))


def assign_gpus(facts: list[RankFacts], master: int | None = MASTER,
                others: frozenset[int] = frozenset()) -> dict[int, tuple[int, ...]]:
    """GPUs of each worker rank (rank ``master`` and the sub-masters ``others`` get none; a
    joined launch has no master).

    When every rank of a node sees the same GPUs, they are split among the node's worker
    ranks by node-local worker index (one each when counts match). When ranks see
    different GPUs, the launcher already bound them (e.g. ``srun --gpus-per-task=1``):
    each worker keeps what it sees.
    """
    by_node: dict[str, list[RankFacts]] = {}
    for fact in facts:
        by_node.setdefault(fact.node, []).append(fact)
    owned: dict[int, tuple[int, ...]] = {}
    for members in by_node.values():
        workers = [f for f in members if f.rank != master and f.rank not in others]
        shared_view = len({f.visible_gpus for f in members}) == 1
        for index, fact in enumerate(workers):
            owned[fact.rank] = (gpus_for_rank(index, len(workers), fact.visible_gpus)
                                if shared_view else fact.visible_gpus)
    return owned


def build_inventory(facts: list[RankFacts], options: PilotOptions,
                    submasters: frozenset[int] = frozenset()) -> Inventory:
    """The inventory of worker ranks from every rank's facts (not the master, nor ``submasters``)."""
    gpus = assign_gpus(facts, others=submasters)
    names = node_names(facts)
    return Inventory(tuple(RankInfo(f.rank, names[f.node], gpus[f.rank], options.memory_per_rank, pool=options.pool)
                           for f in facts if f.rank != MASTER and f.rank not in submasters))


def submaster_groups(facts: list[RankFacts], options: PilotOptions) -> list[Group]:
    """The sub-master groups for ``options.submasters`` (none: a single master); the same on every rank.

    Raises ValueError (naming PILOTQ_SUBMASTERS) when the ranks cannot make that many groups.
    """
    ranks = build_inventory(facts, options).ranks
    count = submaster_count(options.submasters, len(ranks), joinable=options.run_dir is not None)
    if not count:
        return []
    groups = split_groups(ranks, count)
    workers = {info.rank: info for info in
               build_inventory(facts, options, frozenset(g.leader for g in groups)).ranks}  # GPUs of workers only
    return [Group(g.index, g.leader, tuple(workers[w.rank] for w in g.workers)) for g in groups]


def node_names(facts: list[RankFacts]) -> dict[str, str]:
    """Readable node names: the host name when it tells nodes apart, else ``host#leader``."""
    nodes = list(dict.fromkeys(f.node for f in facts))
    hosts = [node.split("#")[0] for node in nodes]
    if len(set(hosts)) == len(hosts):
        return dict(zip(nodes, hosts))
    return {node: node for node in nodes}
