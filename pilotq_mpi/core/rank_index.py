"""Indexes that let the scheduler find ranks without scanning all of them (pure, no MPI).

At 4096 ranks a full scan per placement cost ~2 ms; these keep it near 0.1 ms (measured
with ``benchmarks/scheduler_scale.py``) and choose exactly the same ranks as the scan.
"""
from __future__ import annotations

import heapq
from typing import Callable, Collection, Mapping, Sequence

from .inventory import RankInfo

BUSY_WIDE = float("inf")
"""Effective load of a rank held by a multi-rank task, or whose waiting slots are shut: no
single-rank task may join it."""


class RankIndex:
    """Idle ranks, and per resource class a lazy min-heap of (effective load, GPU rank?, rank).

    The scheduler owns the ``load`` and ``exclusive`` mappings and the ``closed`` set (busy
    ranks that take no waiting task now) and calls :meth:`changed` after every change of
    a rank's load or of those. Heap entries are never updated in place: a change
    pushes a fresh entry, and entries that no longer match the rank's load are dropped
    when they reach the top (the heap is compacted when it grows past 4x its ranks).
    """

    def __init__(self, ranks: Sequence[RankInfo], load: Mapping[int, int], exclusive: Mapping[int, int],
                 closed: Collection[int] = frozenset(), retired: Collection[int] = frozenset()):
        self._load = load
        self._exclusive = exclusive
        self._closed = closed
        self._retired = retired
        self._position = {info.rank: index for index, info in enumerate(ranks)}
        self.idle = {info.rank for info in ranks if load[info.rank] == 0}
        self._heaps: dict[tuple, tuple[list, int]] = {}
        self._heaps_of: dict[int, list[tuple[list, bool]]] = {info.rank: [] for info in ranks}

    def effective_load(self, rank: int) -> float:
        """Tasks assigned to ``rank``, or infinity while a multi-rank task holds it or it is closed or retired."""
        if rank in self._exclusive or rank in self._closed or rank in self._retired:
            return BUSY_WIDE
        return self._load[rank]

    def changed(self, rank: int) -> None:
        """``rank``'s load (or exclusivity) changed."""
        if self._load[rank] == 0:
            self.idle.add(rank)
        else:
            self.idle.discard(rank)
        load = self.effective_load(rank)
        for heap, gpu_rank in self._heaps_of[rank]:
            heapq.heappush(heap, (load, gpu_rank, rank))

    def least_loaded(self, key: tuple, eligible: Sequence[RankInfo], *, prefer_cpu: bool, limit: int,
                     exclude: set[int], admit: Callable[[int], bool] | None = None) -> int | None:
        """The eligible rank with the lowest (load, GPU rank when CPU is preferred, rank) whose
        load is below ``limit`` and which is not in ``exclude``; None if there is none.

        ``admit(rank)``, if given, is asked about busy candidates; when it says no it must
        have closed the rank (and called :meth:`changed`), so its entry is stale from then on.

        ``limit`` is the same for all ranks of one class (they are all compute ranks, or all
        ranks of one QPU).
        """
        heap = self._heap(key, eligible, prefer_cpu)
        skipped = []
        found = None
        while heap:
            load, _, rank = heap[0]
            if load != self.effective_load(rank):
                heapq.heappop(heap)  # stale
                continue
            if load >= limit:
                break
            if rank in exclude:
                skipped.append(heapq.heappop(heap))
                continue
            if load and admit is not None and not admit(rank):
                continue
            found = rank
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def idle_among(self, eligible_ranks: frozenset[int], exclude: set[int]) -> list[int]:
        """Idle ranks of ``eligible_ranks`` outside ``exclude``, in inventory order."""
        return sorted((r for r in self.idle
                       if r in eligible_ranks and r not in exclude and r not in self._retired),
                      key=self._position.__getitem__)

    def _heap(self, key: tuple, eligible: Sequence[RankInfo], prefer_cpu: bool) -> list:
        entry = self._heaps.get(key)
        if entry is None:
            heap = []
            for info in eligible:
                gpu_rank = prefer_cpu and bool(info.gpus)
                heap.append((self.effective_load(info.rank), gpu_rank, info.rank))
                self._heaps_of[info.rank].append((heap, gpu_rank))
            heapq.heapify(heap)
            entry = self._heaps[key] = (heap, len(eligible))
        heap, size = entry
        if len(heap) > 4 * size + 64:
            current = {rank: (load, gpu_rank, rank) for load, gpu_rank, rank in heap
                       if load == self.effective_load(rank)}
            heap[:] = current.values()
            heapq.heapify(heap)
        return heap
