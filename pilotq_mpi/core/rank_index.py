"""Indexes that let the scheduler find ranks without scanning them (pure, no MPI).

Everything here is updated incrementally, one rank at a time (:meth:`RankIndex.changed`), and
answers in time independent of the number of ranks in the common cases; each index chooses
exactly the ranks that a scan in the scheduler's preference order would choose (the
placement sequence is pinned by ``tests/unit/test_scheduler_golden.py``).

The one technique used throughout: *level heaps*. Members (ranks, or nodes) sit at a small
integer level (a rank's load, a node's number of idle ranks) and have a static key (their
preference order within a level). Each level has a min-heap of keys and the members that
have an entry in it (a set, or per-rank flags). A member entering a level pushes its key only
if it has no entry there yet; an entry is dropped when found at the top with the member
elsewhere (stale), or at once when the rank on top is taken (:meth:`RankIndex.take`: it
leaves the level). Because keys are static, an old entry is exactly right again if the
member comes back, so each heap holds at most one entry per member: no growth, no
compaction. Taking the top at once keeps the single-rank heaps about as small as the number
of ranks at their level (in steady state, with every rank full but the one just freed: one
entry), so a placement costs a push and a pop on a tiny heap.

Per-rank tables are lists indexed by rank number when the numbers are dense (dicts
otherwise): at thousands of ranks the scheduler's cost is mostly Python steps and memory
reads, and a list entry is one read where a dict entry is several.

Classes whose single-rank indexes would be equal (same ranks in the same preference order, same
capacity; e.g. "1 GPU" and "no GPU" on nodes where every rank has a GPU) share one index, so
a change of load is counted once. The common transitions, a rank's load going up or down by
one while nothing else about it changes, have their own short paths (:meth:`RankIndex.take`,
which also finds the rank, and :meth:`RankIndex.lowered`); every other change goes through
:meth:`RankIndex.changed`.
"""
from __future__ import annotations

from collections import defaultdict
from heapq import heapify, heappop, heappush
from typing import Callable, Collection, Mapping, MutableSequence, MutableSet, Sequence, Sized

from .inventory import RankInfo

INF = float("inf")
BUSY_WIDE = INF
"""Effective load of a rank that no single-rank task may join: held by a multi-rank task,
shut for waiting tasks (closed), retired, or reserved for a blocked multi-rank task."""

_RANK_BITS = 40
_RANK_MASK = (1 << _RANK_BITS) - 1


def _dense_size(ranks: Sequence[RankInfo]) -> int | None:
    """1 + the largest rank number when rank numbers are dense enough to index lists by them."""
    top = max((info.rank for info in ranks), default=-1)
    if top < 2 * len(ranks) + 1024 and min((info.rank for info in ranks), default=0) >= 0:
        return top + 1
    return None


def _per_rank(size: int | None, fill) -> list | dict:
    """A table indexed by rank: a list of ``size`` (``fill`` where no worker has that number)
    when rank numbers are dense (``size`` from :func:`_dense_size`), else a dict. Lists are read
    faster and keep per-rank state close together in memory, which counts at thousands of ranks."""
    return {} if size is None else [fill] * size


def _flags(size: int | None) -> bytearray | defaultdict:
    """A 0/1 flag per rank, all 0: a bytearray when rank numbers are dense, else a dict."""
    return defaultdict(int) if size is None else bytearray(size)


class SingleRankIndex:
    """The ranks of one single-rank resource class by effective load (levels below ``cap``).

    Within a level the order is (GPU rank when CPU is preferred, rank), encoded in one int
    (``plain``: the key is the rank itself). ``present[level][rank]`` is 1 while the level's heap
    holds an entry for the rank (current or stale).
    ``counts[level]`` is exact; ``open`` is their sum; ``classes`` are the scheduler's
    resource-class keys to wake when a rank becomes available here (every class sharing
    this index).
    """

    __slots__ = ("cap", "counts", "open", "heaps", "present", "keys", "plain", "classes")

    def __init__(self, keys: dict[int, int], cap: int, effective: Mapping[int, float], size: int | None = None):
        self.cap = cap
        self.keys = keys
        self.plain = all(rank == key for rank, key in keys.items())
        self.counts = [0] * cap
        self.heaps: list[list[int]] = [[] for _ in range(cap)]
        self.present = [_flags(size) for _ in range(cap)]
        self.classes: set = set()
        for rank, key in keys.items():
            level = effective[rank]
            if level < cap:
                self.counts[level] += 1
                self.heaps[level].append(key)
                self.present[level][rank] = 1
        for heap in self.heaps:
            heapify(heap)
        self.open = sum(self.counts)


class WideSet:
    """The idle ranks of one eligible set (the ranks a multi-rank class may use), by node.

    ``fast`` when the set lies in one allocation, its ranks ascend in inventory order and
    each node's ranks are contiguous in it: then inventory order, rank order and node
    order agree, which is what lets :meth:`best_fit` and :meth:`reserve` answer from
    per-node counts instead of a scan. Otherwise the scheduler scans (its reference code).

    Candidates are ranks of effective load 0 (idle, not reserved, not retired).
    """

    __slots__ = ("ranks", "members", "fast", "uniform", "node_of", "node_ranks", "idle", "total",
                 "level_counts", "node_heaps", "node_present", "ready_heaps", "ready_present", "classes",
                 "widest", "class_keys")

    def __init__(self, infos: Sequence[RankInfo], effective: Mapping[int, float], ready: Mapping[int, float]):
        self.ranks = tuple(info.rank for info in infos)
        self.members = frozenset(self.ranks)
        nodes: dict[str, int] = {}
        node_ranks: list[list[int]] = []
        contiguous = True
        previous = None
        for info in infos:
            index = nodes.get(info.node)
            if index is None:
                index = nodes[info.node] = len(node_ranks)
                node_ranks.append([])
            elif index != previous:
                contiguous = False
            previous = index
            node_ranks[index].append(info.rank)
        self.node_ranks = [tuple(r) for r in node_ranks]
        self.node_of = {rank: index for index, members in enumerate(self.node_ranks) for rank in members}
        self.fast = (contiguous and len({info.allocation for info in infos}) <= 1
                     and all(a < b for a, b in zip(self.ranks, self.ranks[1:])))
        sizes = {len(members) for members in self.node_ranks}
        self.uniform = sizes.pop() if len(sizes) == 1 else None
        biggest = max((len(members) for members in self.node_ranks), default=0)
        self.idle = [sum(1 for r in members if effective[r] == 0) for members in self.node_ranks]
        self.total = sum(self.idle)
        self.level_counts = [0] * (biggest + 1)
        self.node_heaps: list[list[int]] = [[] for _ in range(biggest + 1)]
        self.node_present: list[set[int]] = [set() for _ in range(biggest + 1)]
        for node, count in enumerate(self.idle):
            if count:
                self.level_counts[count] += 1
                self.node_heaps[count].append(node)
                self.node_present[count].add(node)
        self.ready_heaps: dict[int, list[int]] = {}
        self.ready_present: dict[int, set[int]] = {}
        for rank in self.ranks:
            level = ready[rank]
            if level != INF:
                self.ready_heaps.setdefault(level, []).append(rank)
                self.ready_present.setdefault(level, set()).add(rank)
        for heap in self.ready_heaps.values():
            heapify(heap)
        self.classes: list[tuple[int, object]] = []
        """(width, class key) of the multi-rank classes using this set, narrowest first."""
        self.widest = 0
        self.class_keys: tuple = ()
        """The keys of ``classes`` and the widest width (a rank going idle wakes them all at once
        when the idle candidates cover the widest)."""

    def add_class(self, width: int, key) -> None:
        if (width, key) not in self.classes:
            self.classes.append((width, key))
            self.classes.sort(key=lambda item: item[0])
            self.widest = self.classes[-1][0]
            self.class_keys = tuple(key for _, key in self.classes)

    def candidate(self, rank: int, became: bool, wake: MutableSet) -> None:
        """``rank`` became (or stopped being) an idle candidate."""
        node = self.node_of[rank]
        count = self.idle[node]
        new = count + 1 if became else count - 1
        self.idle[node] = new
        if count:
            self.level_counts[count] -= 1
        if new:
            self.level_counts[new] += 1
            present = self.node_present[new]
            if node not in present:
                present.add(node)
                heappush(self.node_heaps[new], node)
        if became:
            self.total += 1
            total = self.total
            if total >= self.widest:
                wake.update(self.class_keys)
            else:
                for width, key in self.classes:
                    if width > total:
                        break
                    wake.add(key)
        else:
            self.total -= 1

    # --- queries (fast sets only) ---------------------------------------------------------
    def _top_node(self, level: int) -> int:
        heap, present, idle = self.node_heaps[level], self.node_present[level], self.idle
        while idle[heap[0]] != level:
            present.discard(heappop(heap))
        return heap[0]

    def _nodes_covering(self, width: int) -> list[int]:
        """Nodes with idle candidates, most idle first, then in node order, until they hold
        ``width`` candidates (all of them if they hold fewer). The heaps are left as found."""
        idle, counts = self.idle, self.level_counts
        nodes: list[int] = []
        popped: list[tuple[int, int]] = []
        covered = 0
        for level in range(len(counts) - 1, 0, -1):
            if not counts[level]:
                continue
            heap, present = self.node_heaps[level], self.node_present[level]
            found = 0
            while found < counts[level] and covered < width:
                node = heappop(heap)
                if idle[node] != level:
                    present.discard(node)
                    continue
                popped.append((level, node))
                nodes.append(node)
                found += 1
                covered += level
            if covered >= width:
                break
        for level, node in popped:
            heappush(self.node_heaps[level], node)
        return nodes

    def best_fit(self, width: int, same_node: bool, effective: Mapping[int, float]) -> tuple[int, ...] | None:
        """Idle candidates for a ``width``-rank task: the node with the fewest candidates that
        still fit it (first such node), else nodes with most candidates first (not if ``same_node``)."""
        if self.total < width:
            return None
        counts = self.level_counts
        for level in range(width, len(counts)):
            if counts[level]:
                node = self._top_node(level)
                return tuple([r for r in self.node_ranks[node] if effective[r] == 0][:width])
        if same_node:
            return None
        chosen: list[int] = []
        for node in self._nodes_covering(width):
            chosen.extend([r for r in self.node_ranks[node] if effective[r] == 0][: width - len(chosen)])
        return tuple(sorted(chosen)) if len(chosen) == width else None

    def _ready_nodes(self, needed: int, ready: Mapping[int, float]) -> list[int]:
        """The first ``needed`` distinct nodes met going through ranks that no multi-rank task
        holds by (load, rank) (fewer if there are not so many). The heaps are left as found."""
        nodes: list[int] = []
        seen: set[int] = set()
        popped: list[tuple[int, int]] = []
        node_of = self.node_of
        for level in sorted(self.ready_heaps):
            heap, present = self.ready_heaps[level], self.ready_present[level]
            while heap and len(nodes) < needed:
                rank = heappop(heap)
                if ready[rank] != level:
                    present.discard(rank)
                    continue
                popped.append((level, rank))
                node = node_of[rank]
                if node not in seen:
                    seen.add(node)
                    nodes.append(node)
            if len(nodes) >= needed:
                break
        for level, rank in popped:
            heappush(self.ready_heaps[level], rank)
        return nodes

    def reserve(self, width: int, same_node: bool, ready: Mapping[int, float],
                load: Mapping[int, int]) -> tuple[int, ...] | None | bool:
        """Ranks to reserve for a blocked ``width``-rank task (no reservation exists, so every
        idle rank is a candidate): the node with the most idle ranks among nodes that could hold
        it (ties: the one whose most ready rank comes first), else the nodes whose most ready
        ranks come first; within a node its ranks by (held by a multi-rank task, load, rank).
        False when this set cannot answer fast (the caller scans)."""
        if not self.fast or self.uniform is None:
            return False
        size = self.uniform

        def readiness(rank: int) -> tuple:
            return (ready[rank] == INF, load[rank], rank)

        if size >= width:
            top = len(self.level_counts) - 1
            while top and not self.level_counts[top]:
                top -= 1
            if top:
                node = self._top_node(top)
            else:  # no idle rank: the node of the most ready rank (all held by multi-rank tasks: the first)
                first = self._ready_nodes(1, ready)
                node = first[0] if first else self.node_of[self.ranks[0]]
            return tuple(sorted(sorted(self.node_ranks[node], key=readiness)[:width]))
        if same_node:
            return None
        needed = -(-width // size)
        nodes = self._ready_nodes(needed, ready)
        if len(nodes) < needed:
            return False  # nodes held whole by multi-rank tasks come next: rare, scanned
        chosen: list[int] = []
        for node in nodes:
            chosen.extend(sorted(self.node_ranks[node], key=readiness)[: width - len(chosen)])
        return tuple(sorted(chosen))


class RankIndex:
    """Idle ranks, effective loads, and the per-class indexes above, kept up to date.

    The scheduler owns the ``tasks`` (per rank, the tasks on it: their number is its load) and
    ``exclusive`` mappings and the ``closed``, ``retired`` and ``reserved`` sets, and calls
    :meth:`changed` (or a short path: :meth:`take`, :meth:`lowered`) after every change of a
    rank's load or of those. ``wake`` (a set the scheduler owns) collects resource-class
    keys that may have become placeable; ``holder_key`` is the class of the task holding
    the reservation (woken whenever a rank becomes idle).
    """

    def __init__(self, ranks: Sequence[RankInfo], tasks: Mapping[int, Sized], exclusive: Mapping[int, int],
                 closed: Collection[int] = frozenset(), retired: Collection[int] = frozenset(),
                 reserved: Collection[int] = frozenset(), wake: MutableSet | None = None):
        self._tasks = tasks
        self._exclusive = exclusive
        self._closed = closed
        self._retired = retired
        self._reserved = reserved
        self.wake = set() if wake is None else wake
        self.holder_key = None
        self._position = {info.rank: index for index, info in enumerate(ranks)}
        self.idle = {info.rank for info in ranks if not tasks[info.rank]}
        self._size = _dense_size(ranks)
        self.effective: MutableSequence[float] | dict[int, float] = _per_rank(self._size, INF)
        for info in ranks:
            self.effective[info.rank] = self._effective(info.rank)
        self.ready: dict[int, float] = {info.rank: INF if info.rank in exclusive else len(tasks[info.rank])
                                        for info in ranks}
        """Per rank: its load, or infinity while a multi-rank task holds it (the order of reservations);
        up to date after :meth:`flush_ready`."""
        self._ready_changed: set[int] = set()
        """Ranks whose load or exclusivity changed since :meth:`flush_ready` (``ready`` and the
        readiness heaps do not show it yet)."""
        self._singles: dict[tuple, SingleRankIndex] = {}
        self._single_sets: dict[tuple, SingleRankIndex] = {}
        self._singles_of = _per_rank(self._size, None)
        for info in ranks:
            self._singles_of[info.rank] = []
        self._wides: dict[tuple, WideSet] = {}
        self._wides_of = _per_rank(self._size, None)
        for info in ranks:
            self._wides_of[info.rank] = []

    def _effective(self, rank: int) -> float:
        if rank in self._exclusive or rank in self._closed or rank in self._retired or rank in self._reserved:
            return INF
        return len(self._tasks[rank])

    def effective_load(self, rank: int) -> float:
        """Tasks assigned to ``rank``, or infinity while no single-rank task may join it."""
        return self.effective[rank]

    def changed(self, rank: int) -> None:
        """``rank``'s load, exclusivity, or closed/retired/reserved state changed."""
        load = len(self._tasks[rank])
        if load:
            self.idle.discard(rank)
        else:
            self.idle.add(rank)
            if self.holder_key is not None:
                self.wake.add(self.holder_key)
        if rank in self._exclusive:
            effective = INF
        else:
            effective = INF if (rank in self._closed or rank in self._retired or rank in self._reserved) else load
        old = self.effective[rank]
        if effective != old:
            self.effective[rank] = effective
            for single in self._singles_of[rank]:
                cap = single.cap
                if old < cap:
                    single.counts[old] -= 1
                    single.open -= 1
                if effective < cap:
                    single.counts[effective] += 1
                    single.open += 1
                    present = single.present[effective]
                    if not present[rank]:
                        present[rank] = 1
                        heappush(single.heaps[effective], rank if single.plain else single.keys[rank])
                    if effective < old:
                        self.wake.update(single.classes)
            if old == 0 or effective == 0:
                for wide in self._wides_of[rank]:
                    wide.candidate(rank, effective == 0, self.wake)
        self._ready_changed.add(rank)

    def lowered(self, rank: int) -> None:
        """``rank``'s load fell by one and nothing else about it changed (a single-rank task ended).

        The same as :meth:`changed`, in fewer steps: while a rank is open (finite effective
        load) its effective load is its load, so the new one is the old one less one. A rank
        that was shut (held by a multi-rank task, closed, retired or reserved) takes the
        general path.
        """
        effective = self.effective
        old = effective[rank]
        if old == INF:
            self.changed(rank)
            return
        load = old - 1
        effective[rank] = load
        wake = self.wake
        if not load:
            self.idle.add(rank)
            if self.holder_key is not None:
                wake.add(self.holder_key)
            for wide in self._wides_of[rank]:
                wide.candidate(rank, True, wake)
        for single in self._singles_of[rank]:
            cap = single.cap
            if load < cap:
                counts = single.counts
                if old < cap:
                    counts[old] -= 1
                else:
                    single.open += 1
                counts[load] += 1
                present = single.present[load]
                if not present[rank]:
                    present[rank] = 1
                    heappush(single.heaps[load], rank if single.plain else single.keys[rank])
                wake.update(single.classes)
        self._ready_changed.add(rank)

    def flush_ready(self) -> None:
        """Bring the readiness heaps of the multi-rank sets up to date (before :meth:`WideSet.reserve`).

        Readiness changes with nearly every placement and is read only when a reservation is
        chosen, so changes are collected (a set of ranks) and entered here, once per rank.
        """
        changed = self._ready_changed
        if not changed:
            return
        ready, wides_of, tasks, exclusive = self.ready, self._wides_of, self._tasks, self._exclusive
        for rank in changed:
            level = ready[rank] = INF if rank in exclusive else len(tasks[rank])
            if level == INF:
                continue
            for wide in wides_of[rank]:
                present = wide.ready_present.get(level)
                if present is None:
                    present = wide.ready_present[level] = set()
                    wide.ready_heaps[level] = []
                if rank not in present:
                    present.add(rank)
                    heappush(wide.ready_heaps[level], rank)
        changed.clear()

    # --- per-class indexes ------------------------------------------------------------------
    def single(self, key: tuple, eligible: Sequence[RankInfo], prefer_cpu: bool, cap: int) -> SingleRankIndex:
        """The index of single-rank class ``key`` (built on first use; shared with every class
        that has the same ranks in the same preference order and the same ``cap``)."""
        index = self._singles.get(key)
        if index is None:
            # GPU ranks come last when CPU is preferred; if all ranks (or none) have a GPU that
            # changes no order, and the class can share the index of a class without the preference
            gpu_last = prefer_cpu and len({bool(info.gpus) for info in eligible}) > 1
            keys = {info.rank: (1 << _RANK_BITS) | info.rank if gpu_last and info.gpus else info.rank
                    for info in eligible}
            signature = (cap, tuple(sorted(keys.values())))
            index = self._single_sets.get(signature)
            if index is None:
                index = self._single_sets[signature] = SingleRankIndex(keys, cap, self.effective, self._size)
                for info in eligible:
                    self._singles_of[info.rank].append(index)
            index.classes.add(key)
            self._singles[key] = index
        return index

    def wide(self, eligible: Sequence[RankInfo]) -> WideSet:
        """The idle-rank index of eligible set ``eligible`` (built on first use, shared by classes)."""
        signature = tuple(info.rank for info in eligible)
        wide = self._wides.get(signature)
        if wide is None:
            self.flush_ready()
            wide = self._wides[signature] = WideSet(eligible, self.effective, self.ready)
            for info in eligible:
                self._wides_of[info.rank].append(wide)
        return wide

    def take(self, single: SingleRankIndex, limit: int, admit: Callable[[int], bool] | None = None) -> int | None:
        """The rank of ``single`` with the lowest (effective load, GPU rank when CPU is preferred,
        rank) whose effective load is below ``limit``, its load counted one higher (as by
        :meth:`changed` would: the caller places a single-rank task there); None if there is none.

        ``admit(rank)``, if given, is asked about busy candidates; when it says no it must
        have closed the rank (and called :meth:`changed`), and the next candidate is tried.
        """
        effective = self.effective
        counts = single.counts
        for level in range(limit):
            if not counts[level]:
                continue
            heap, present = single.heaps[level], single.present[level]
            while counts[level]:
                rank = heap[0]
                if rank > _RANK_MASK:
                    rank &= _RANK_MASK
                if effective[rank] != level:
                    heappop(heap)
                    present[rank] = 0
                    continue
                if level and admit is not None and not admit(rank):
                    continue
                # it leaves this level: its entry goes now (it is on top), which keeps the heaps about
                # as small as the number of ranks at their level, so the next look is cheap
                heappop(heap)
                present[rank] = 0
                # its load goes up by one: what changed() would do, knowing that the old level is `level`
                load = level + 1
                effective[rank] = load
                if not level:
                    self.idle.discard(rank)
                    for wide in self._wides_of[rank]:
                        wide.candidate(rank, False, self.wake)
                for other in self._singles_of[rank]:
                    cap = other.cap
                    if level < cap:
                        other_counts = other.counts
                        other_counts[level] -= 1
                        if load < cap:
                            other_counts[load] += 1
                            other_present = other.present[load]
                            if not other_present[rank]:
                                other_present[rank] = 1
                                heappush(other.heaps[load], rank if other.plain else other.keys[rank])
                        else:
                            other.open -= 1
                self._ready_changed.add(rank)
                return rank
        return None

    def idle_among(self, eligible_ranks: frozenset[int], exclude: Collection[int]) -> list[int]:
        """Idle ranks of ``eligible_ranks`` outside ``exclude``, in inventory order (a scan)."""
        return sorted((r for r in self.idle
                       if r in eligible_ranks and r not in exclude and r not in self._retired),
                      key=self._position.__getitem__)
