"""Placement of queued tasks onto worker ranks (pure, no MPI, no clock).

Rules, in order of importance:

* A rank is never shared by two multi-rank tasks, nor by a multi-rank task and anything
  else: a task wider than one rank gets only idle ranks and holds them exclusively.
* A single-rank task may be queued on a rank that already has single-rank work, up to the
  rank's capacity (``1 + prefetch`` for compute ranks, ``concurrency + prefetch`` for QPU
  ranks); the worker runs them one after another (QPU workers: ``concurrency`` at once),
  which hides the round trip to the master. A task with a ``timeout`` is never queued
  behind another one: its clock starts when it is placed.
* Prefetch only behind work known to be short (when a ``horizon`` is given): a task goes
  into a waiting slot of a busy rank only if every task already on that rank has a
  predicted duration (``predict``; unknown means long), their sum is at most ``horizon``
  seconds, and no running one has run past its prediction. Otherwise it stays queued
  here and goes to the first rank that frees: a short task never waits behind a long one
  while another rank would be free first (up to ``horizon`` and the predictions' errors).
* Priority order (larger first), then submission order.
* Best-fit node packing: a multi-rank task goes to the node with the fewest idle ranks that
  still fit it; if no node fits, to as few nodes as possible. It never spans two
  allocations (its sub-communicator comes from one launch's world).
* No starvation: when the first task in priority order that cannot start is wider than one
  rank, it gets a reservation (the ranks that will hold it); other tasks backfill only
  ranks outside the reservation. The reservation is kept until the task starts.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict, deque
from collections.abc import Mapping
from heapq import heapify, heappop, heappush
from typing import Callable, Iterable, NamedTuple

from .inventory import Inventory, RankInfo
from .rank_index import RankIndex, SingleRankIndex, WideSet
from .specs import TaskSpec


_ID_BITS = 64
_ID_MASK = (1 << _ID_BITS) - 1
_SEQ_BIAS = 1 << 63
"""Queue entries are ints ordering as (-priority, sequence, task id): ``(-priority << 128) |
((sequence + _SEQ_BIAS) << 64) | task_id`` (front submissions take negative sequences). One int
compares several times faster than a tuple, and a queue may hold millions."""


_INF = math.inf


class Placement(NamedTuple):
    """Task ``task_id`` starts on world ranks ``ranks`` (its sub-communicator order).

    ``waits``: it was queued behind other tasks on its rank (prefetched), so it starts
    only when they end. (Immutable; a named tuple because one is made per placement.)
    """

    task_id: int
    ranks: tuple[int, ...]
    waits: bool = False


class _RankTasks(deque):
    """The tasks on one rank in the order its worker runs them: ``[task, predicted seconds,
    predicted end]`` entries; the first ``slots`` run, the rest wait (prefetch). Its length is
    the rank's load."""

    __slots__ = ("slots",)

    def __init__(self, slots: int = 1):
        super().__init__()
        self.slots = slots


class _Loads(Mapping):
    """Rank -> tasks on it: a read-only view of the ranks' task lists (a load is their length)."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: dict[int, _RankTasks]):
        self._tasks = tasks

    def __getitem__(self, rank: int) -> int:
        return len(self._tasks[rank])

    def __iter__(self):
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)


_new_placement = tuple.__new__
"""``_new_placement(Placement, (task_id, ranks, waits))``: a Placement without the Python-level
``Placement.__new__`` call (one is made per placement)."""


class Scheduler:
    """Keeps the queue and the load of every worker rank; returns placements on demand.

    ``horizon`` (seconds, or None) turns on prefetch gating: a single-rank task is queued
    behind work on a busy rank only when that work is predicted to end within ``horizon``
    (see the module notes). ``predict(task_id)`` returns a task's predicted duration in
    seconds (``math.inf`` or None when unknown); it is asked once, when the task is
    placed. With a horizon, :meth:`schedule` and :meth:`release` need ``now`` (the
    caller's clock; the scheduler has none). ``horizon=None`` prefetches behind anything.
    ``slack``: a running task counts as overdue only ``slack`` seconds after its predicted
    end (the caller learns of starts and ends late, e.g. by one pass of its message loop;
    without it, tasks of a few microseconds would look overdue at once and never be
    prefetched behind).
    """

    def __init__(self, inventory: Inventory, *, prefetch: int = 1, power_of_two: bool = False,
                 horizon: float | None = None, predict: Callable[[int], float | None] | None = None,
                 slack: float = 0.0):
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        if horizon is not None and not (isinstance(horizon, (int, float)) and horizon >= 0):
            raise ValueError(f"horizon must be a number of seconds >= 0 or None, got {horizon!r}")
        self.prefetch = prefetch
        self.power_of_two = power_of_two
        self.horizon = None if horizon is None or math.isinf(horizon) else float(horizon)
        if not (isinstance(slack, (int, float)) and slack >= 0):
            raise ValueError(f"slack must be a number of seconds >= 0, got {slack!r}")
        self.slack = float(slack)
        self._predict = predict
        self._exclusive: dict[int, int] = {}
        # per rank, its tasks in the order the worker runs them: [task, predicted s, predicted end];
        # the first `slots` entries run, the rest wait (prefetch); end is set when an entry starts
        self._order: dict[int, _RankTasks] = {}
        self._load = _Loads(self._order)
        self._retired: set[int] = set()
        """Ranks that take no new task (their allocation is leaving); they leave once idle."""
        self._closed: set[int] = set()
        """Busy ranks found unfit for a waiting task (work ahead not predicted short, or overdue);
        judged when a placement looks at them (:meth:`_admit`), reopened when their work changes."""
        self._reserved: set[int] = set()
        """The reservation's ranks (no single-rank task and no other multi-rank task takes them)."""
        self._awake: set[tuple] = set()
        """Resource classes that may place something (the others would fail, changing nothing,
        until an event wakes them: see :meth:`_blocked` and :class:`RankIndex`)."""
        self._now: float | None = None
        self._held: dict[int, list[int]] = {}
        self._queues: dict[tuple, list[int]] = {}
        """Per resource class, a heap of queue entries (ints, see ``_ID_BITS``) of queued and cancelled tasks."""
        self._queued: dict[int, TaskSpec] = {}
        self._timed: set[tuple] = set()
        """Classes that have had a task with a timeout queued (only their heads' timeouts are looked up)."""
        self._seq = itertools.count()
        self._front = itertools.count(1)
        self._reservation: tuple[int, tuple[int, ...]] | None = None
        self._holder_key: tuple | None = None
        self.set_inventory(inventory)

    # --- inventory -------------------------------------------------------------------
    def set_inventory(self, inventory: Inventory) -> None:
        """Use a new inventory (a QPU pinned, ranks joined or gone); loads of kept ranks are kept.

        A rank may leave only when it holds no task (release or requeue its tasks first).
        """
        ranks = {r.rank for r in inventory.ranks}
        for rank in [r for r in self._load if r not in ranks]:
            if self._load[rank]:
                raise ValueError(f"rank {rank} still holds tasks {list(self.tasks_on(rank))}; it cannot leave")
            del self._order[rank]
            self._closed.discard(rank)
            self._retired.discard(rank)
        self.inventory = inventory
        for info in inventory.ranks:
            if info.rank not in self._order:
                self._order[info.rank] = _RankTasks()
        self._slots = {r.rank: inventory.qpus[r.qpu].concurrency if r.qpu else 1 for r in inventory.ranks}
        for rank, slots in self._slots.items():
            self._order[rank].slots = slots
        self._capacity = {rank: slots + self.prefetch for rank, slots in self._slots.items()}
        self._closed.clear()  # judged again, with the new slots, when a placement looks at them
        self._info = {info.rank: info for info in inventory.ranks}
        self._reservation = None
        self._reserved.clear()
        self._holder_key = None
        self._rebuild()

    def _rebuild(self) -> None:
        """New indexes (the inventory or the retired ranks changed); every class may place again."""
        self._eligible_cache: dict[tuple, tuple[RankInfo, ...]] = {}
        self._singles: dict[tuple, SingleRankIndex] = {}
        self._wides: dict[tuple, WideSet] = {}
        self._index = RankIndex(self.inventory.ranks, self._order, self._exclusive, self._closed, self._retired,
                                self._reserved, self._awake)
        self._index.holder_key = self._holder_key
        self._awake.update(self._queues)

    def retire(self, ranks) -> None:
        """Place nothing more on ``ranks`` (their allocation is leaving); their tasks run on."""
        self._retired.update(ranks)
        if self._reservation and self._retired.intersection(self._reservation[1]):
            self._set_reservation(None)
        self._rebuild()

    def check(self, spec: TaskSpec) -> None:
        """Raise ResourceError if ``spec`` can never be placed on this pilot."""
        self.inventory.check(spec, power_of_two=self.power_of_two)

    # --- queue -------------------------------------------------------------------------
    def submit(self, task_id: int, spec: TaskSpec, *, front: bool = False) -> None:
        """Queue a ready task (its dependencies are met), or queue it again for a retry.

        ``task_id``: an integer in [0, 2**64) (it is packed into the queue's sort key).

        ``front``: ahead of every task of its priority queued so far (a task whose ranks left
        the pilot mid-run goes on before those submitted after it).
        """
        if task_id in self._queued:
            raise ValueError(f"task {task_id} is already queued")
        if task_id.__class__ is not int and not isinstance(task_id, int) or not 0 <= task_id <= _ID_MASK:
            raise ValueError(f"task ids must be integers in [0, 2**{_ID_BITS}), got {task_id!r}")
        self._queued[task_id] = spec
        entry = (-spec.priority << 128 | (_SEQ_BIAS - next(self._front) if front else _SEQ_BIAS + next(self._seq)) << 64
                 | task_id)
        key = spec.resource_class
        if spec.timeout is not None:
            self._timed.add(key)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
        heappush(queue, entry)
        self._awake.add(key)

    def cancel(self, task_id: int) -> bool:
        """Drop a queued task; False if it is not queued (already placed or unknown)."""
        spec = self._queued.pop(task_id, None)
        if spec is None:
            return False
        if self._reservation and self._reservation[0] == task_id:
            self._set_reservation(None)
        self._awake.add(spec.resource_class)
        return True

    @property
    def queued(self) -> int:
        """Number of queued (not yet placed) tasks."""
        return len(self._queued)

    @property
    def busy_ranks(self) -> int:
        """Number of ranks holding at least one task."""
        return len(self._load) - len(self._index.idle)

    def load(self, rank: int) -> int:
        """Tasks currently assigned to ``rank``."""
        return len(self._order[rank])

    def held_ranks(self) -> dict[int, tuple[int, ...]]:
        """Placed tasks and the ranks they still hold."""
        return {task: tuple(ranks) for task, ranks in self._held.items()}

    def tasks_on(self, rank: int) -> tuple[int, ...]:
        """Tasks placed on ``rank``, in the order its worker runs them.

        The first ``slots(rank)`` (1 for a compute rank, the QPU's concurrency for a QPU
        rank) are running or about to; the others wait in the worker's backlog (prefetch).
        """
        return tuple(entry[0] for entry in self._order[rank])

    def waiting(self, task_id: int, rank: int) -> bool:
        """True if ``task_id`` waits on ``rank`` behind tasks that run first (it was prefetched)."""
        order, slots = self._order[rank], self._slots[rank]
        if len(order) <= slots:
            return False
        for position, entry in enumerate(order):
            if entry[0] == task_id:
                return position >= slots
        return False

    def slots(self, rank: int) -> int:
        """How many tasks ``rank`` runs at once (1, or its QPU's concurrency)."""
        return self._slots[rank]

    @property
    def reservation(self) -> tuple[int, tuple[int, ...]] | None:
        """(task id, ranks) reserved for the blocked wide task at the head, if any."""
        return self._reservation

    # --- placement ---------------------------------------------------------------------
    def schedule(self, now: float | None = None) -> list[Placement]:
        """Place as many queued tasks as fit now, in priority order (``now``: see the class notes).

        Classes (tasks competing for the same ranks) are tried in the order of their first
        queued task; a class that cannot place its first task is done for this call. Only
        classes that may place something are looked at (:meth:`_blocked`): the result is
        the same as trying them all.
        """
        if now is None and self.horizon is not None:
            raise ValueError("schedule() needs now= when the scheduler has a prefetch horizon")
        self._now = now
        awake = self._awake
        if not awake:
            return []
        queued, queues, singles, timed = self._queued, self._queues, self._singles, self._timed
        # (queue entry, class, the class's single-rank index or None for a multi-rank class);
        # entries are unique ints, so the tuples never compare beyond them
        heads: list[tuple[int, tuple, SingleRankIndex | None]] = []
        for key in awake:
            single = singles.get(key)
            if single is not None and not single.open:
                continue  # a single-rank class with no rank to take it: it would fail, changing nothing
            queue = queues.get(key)
            if queue is None:
                continue
            head = queue[0]  # (a class's queue is never empty: it is removed instead)
            if head & _ID_MASK not in queued:
                head = self._head(key)
                if head is None:
                    continue
            if single is None:
                spec = queued[head & _ID_MASK]
                if spec.ranks == 1:  # its index is built now (it is tried as before: no skip)
                    single = self._single(spec, key)
            elif key in timed and not single.counts[0] and queued[head & _ID_MASK].timeout is not None:
                continue  # (a task with a timeout needs an idle rank)
            heads.append((head, key, single))
        awake.clear()
        if not heads:
            return []
        if len(heads) > 1:
            heapify(heads)
        take = self._index.take
        admit = self._admit if self.horizon is not None else None
        held_by, orders = self._held, self._order
        placements = []
        failed: list[tuple] = []  # classes done for this call
        while heads:
            entry, key, single = heappop(heads)
            task_id = entry & _ID_MASK
            if single is not None:  # the common case, kept short: single-rank classes hold no reservation
                if not single.open:
                    failed.append(key)  # it would fail, changing nothing (an event that frees a rank wakes it)
                    continue
                if key in timed and queued[task_id].timeout is not None:
                    rank = take(single, 1, admit) if single.counts[0] else None
                    if rank is None:
                        failed.append(key)
                        if single.counts[0]:
                            awake.add(key)
                        continue
                else:
                    rank = take(single, single.cap, admit)
                    if rank is None:
                        failed.append(key)
                        if single.open:
                            awake.add(key)
                        continue
                queue = queues[key]
                heappop(queue)
                del queued[task_id]
                # record it (the index has counted it already)
                held = held_by.get(task_id)
                if held is None:
                    held_by[task_id] = [rank]
                else:  # a retried task may still hold ranks of an attempt that timed out
                    held.append(rank)
                order = orders[rank]
                predicted = _INF if admit is None else self._predicted(task_id)
                waits = len(order) >= order.slots
                # [task, predicted seconds, predicted end]; the end is known once it runs
                order.append([task_id, predicted, None if waits or now is None else now + predicted])
                placements.append(_new_placement(Placement, (task_id, (rank,), waits)))
                if single.open:
                    while queue:
                        head = queue[0]
                        if head & _ID_MASK in queued:
                            if single.counts[0] or key not in timed or queued[head & _ID_MASK].timeout is None:
                                heappush(heads, (head, key, single))
                            break
                        heappop(queue)
                    else:
                        del queues[key]
                elif not queue:
                    del queues[key]
                # else (not pushed back): no rank left for its next task; it would fail at its turn,
                # changing nothing: it is out of this call as if it had failed, and an event that
                # frees a rank wakes it
                continue
            spec = queued[task_id]
            reservation = self._reservation
            if reservation is not None and reservation[0] != task_id and self._holder_key == key:
                # a higher-priority task of the holder's class now heads that queue: it takes
                # over the reservation (same class, same ranks), else the holder is never tried
                reservation = self._reservation = (task_id, reservation[1])
            holder = reservation is not None and reservation[0] == task_id
            ranks = self._find_wide(spec, key, holder)
            if ranks is None:
                if reservation is None:
                    chosen = self._reserve(spec, key)
                    if chosen:
                        self._set_reservation((task_id, chosen), key)
                failed.append(key)
                if not self._blocked(key, task_id, spec):
                    awake.add(key)
                continue
            queue = queues[key]
            heappop(queue)
            del queued[task_id]
            if holder:
                self._set_reservation(None)
                # ranks are free again: classes not yet tried in this call are tried at their turn
                skip = set(failed)
                skip.update(other for _, other, _ in heads)
                skip.add(key)
                for other in list(queues):
                    if other not in skip:
                        head = self._head(other)
                        if head is not None and head > entry:
                            other_single = singles.get(other)
                            if other_single is None and queued[head & _ID_MASK].ranks == 1:
                                other_single = self._single(queued[head & _ID_MASK], other)
                            heappush(heads, (head, other, other_single))
            placements.append(_new_placement(Placement, (task_id, ranks, self._occupy(task_id, ranks, now))))
            head = self._head(key)
            if head is not None:
                heappush(heads, (head, key, None))
        return placements

    def release(self, task_id: int, rank: int, now: float | None = None) -> int | None:
        """Rank ``rank`` has finished its part of task ``task_id`` (or dropped it unstarted).

        ``now`` (needed with a horizon) is when the next waiting task on the rank starts.
        Returns the task that this moves from waiting to running on ``rank``, if any.
        """
        held = self._held.get(task_id)
        if held is None or rank not in held:
            raise ValueError(f"rank {rank} does not hold task {task_id}")
        gated = self.horizon is not None
        if now is None and gated:
            raise ValueError("release() needs now= when the scheduler has a prefetch horizon")
        if len(held) == 1:
            del self._held[task_id]
        else:
            held.remove(rank)
        exclusive = self._exclusive
        if rank in exclusive and exclusive[rank] == task_id:
            del exclusive[rank]
        order = self._order[rank]  # (its length is the load: one less below)
        slots = order.slots
        if order[0][0] == task_id:
            order.popleft()
            started = order[slots - 1] if slots <= len(order) else None
        else:  # a waiting task dropped before it started (revoked), or a late report
            position = 0
            for position, entry in enumerate(order):
                if entry[0] == task_id:
                    del order[position]
                    break
            started = order[slots - 1] if position < slots <= len(order) else None
        if gated:
            if started is not None and started[2] is None:
                started[2] = now + started[1]  # it starts now at the latest: its predicted end
            self._closed.discard(rank)
        self._index.lowered(rank)  # (the general path when the rank was shut: held by this task, closed...)
        return None if started is None else started[0]

    # --- internals ---------------------------------------------------------------------
    def _head(self, key: tuple) -> int | None:
        """The queue entry of class ``key``'s first queued task (cancelled ones dropped); None and
        the class's queue removed if it has none."""
        queue = self._queues[key]
        queued = self._queued
        while queue and queue[0] & _ID_MASK not in queued:
            heappop(queue)
        if not queue:
            del self._queues[key]
            return None
        return queue[0]

    def _set_reservation(self, reservation: tuple[int, tuple[int, ...]] | None, key: tuple | None = None) -> None:
        """Reserve ranks for a blocked multi-rank task of class ``key``, or drop the reservation."""
        old = self._reserved
        previous = list(old)
        old.clear()
        self._reservation = reservation
        self._holder_key = self._index.holder_key = key if reservation is not None else None
        if reservation is not None:
            old.update(reservation[1])
        for rank in set(previous).symmetric_difference(old):
            self._index.changed(rank)
        if reservation is None:
            self._awake.update(self._queues)  # ranks and the reservation are free for every class

    def _eligible(self, spec: TaskSpec, key: tuple) -> tuple[RankInfo, ...]:
        cached = self._eligible_cache.get(key)
        if cached is None:
            cached = self.inventory.eligible(spec)
            if self._retired:
                cached = tuple(info for info in cached if info.rank not in self._retired)
            self._eligible_cache[key] = cached
        return cached

    def _single(self, spec: TaskSpec, key: tuple) -> SingleRankIndex:
        single = self._singles.get(key)
        if single is None:
            eligible = self._eligible(spec, key)
            cap = self._capacity[eligible[0].rank] if eligible else 1
            single = self._singles[key] = self._index.single(key, eligible, spec.gpus_per_rank == 0, cap)
        return single

    def _wide(self, spec: TaskSpec, key: tuple) -> WideSet:
        wide = self._wides.get(key)
        if wide is None:
            wide = self._wides[key] = self._index.wide(self._eligible(spec, key))
            wide.add_class(spec.ranks, key)
        return wide

    def _find_wide(self, spec: TaskSpec, key: tuple, holder: bool) -> tuple[int, ...] | None:
        """Idle ranks for multi-rank task ``spec`` (the holder of the reservation may use its ranks)."""
        if len(self._index.idle) < spec.ranks:
            return None
        wide = self._wide(spec, key)
        if not wide.ranks:
            return None
        if wide.fast and not holder:
            return wide.best_fit(spec.ranks, spec.same_node, self._index.effective)
        idle = self._index.idle_among(wide.members, () if holder else self._reserved)
        if len(idle) < spec.ranks:
            return None
        return _pack_in_allocation([self._info[r] for r in idle], spec.ranks, spec.same_node,
                                   node_order=lambda members: (len(members),))

    def _blocked(self, key: tuple, task_id: int, spec: TaskSpec) -> bool:
        """True if trying class ``key`` (first task ``task_id``) now would fail and change nothing.

        Its classes stay out of :meth:`schedule` until something that could let them place
        happens (a rank's load falls, a rank goes idle, a submission or cancel in the class,
        the reservation ends, the inventory changes): the index and the methods wake them.
        """
        if spec.ranks == 1:  # (schedule() checks single-rank classes inline, the same way)
            single = self._single(spec, key)
            return (single.counts[0] if spec.timeout is not None else single.open) == 0
        if self._reservation is None:
            return False  # failing would reserve ranks
        wide = self._wide(spec, key)
        if self._holder_key != key:
            return wide.total < spec.ranks
        if self._reservation[0] != task_id:
            return False  # trying it would hand the reservation over
        usable = self._reserved & self._index.idle  # (C loops over the smaller set: the reservation)
        if usable:
            usable &= wide.members
        return wide.total + len(usable) < spec.ranks

    def _reserve(self, spec: TaskSpec, key: tuple) -> tuple[int, ...] | None:
        wide = self._wide(spec, key)
        if wide.ranks:
            self._index.flush_ready()
            chosen = wide.reserve(spec.ranks, spec.same_node, self._index.ready, self._load)
            if chosen is not False:
                return chosen

        tasks = self._order

        def readiness(info: RankInfo) -> tuple:
            return (info.rank in self._exclusive, len(tasks[info.rank]), info.rank)

        candidates = sorted(self._eligible(spec, key), key=readiness)
        return _pack_in_allocation(candidates, spec.ranks, spec.same_node,
                                   node_order=lambda members: (-sum(1 for m in members if not tasks[m.rank]),))

    def _predicted(self, task_id: int) -> float:
        """The task's predicted duration in seconds (infinity when unknown)."""
        predicted = None if self._predict is None else self._predict(task_id)
        return _INF if predicted is None else predicted

    def _occupy(self, task_id: int, ranks: tuple[int, ...], now: float | None) -> bool:
        """Record a multi-rank placement (it never waits: its ranks were idle)."""
        held = self._held.get(task_id)
        if held is None:
            self._held[task_id] = list(ranks)
        else:
            held.extend(ranks)
        for rank in ranks:
            self._exclusive[rank] = task_id
            self._order[rank].append([task_id, math.inf, None])
            self._index.changed(rank)
        return False

    def _admit(self, rank: int) -> bool:
        """May a task wait on busy ``rank`` now? If not, shut the rank until its work changes.

        Yes when a running slot is free (the task starts at once), or when every task on
        the rank has a prediction, they sum to at most ``horizon``, and none that runs is
        past its predicted end (plus ``slack``). Judged here, when a placement looks at
        the rank, not at every change: it costs one check per placement.
        """
        slots = self._slots[rank]
        order = self._order[rank]
        if len(order) < slots:
            return True
        if slots == 1:
            head = order[0]
            ahead = head[1] if len(order) == 1 else sum(entry[1] for entry in order)
            due = math.inf if head[2] is None else head[2]
        else:
            ahead, due = 0.0, math.inf
            for position, entry in enumerate(order):
                ahead += entry[1]
                if position < slots and entry[2] is not None and entry[2] < due:
                    due = entry[2]
        if ahead <= self.horizon and (self._now is None or self._now <= due + self.slack):
            return True
        self._closed.add(rank)
        self._index.changed(rank)
        return False


def _pack_in_allocation(candidates: list[RankInfo], width: int, same_node: bool,
                        node_order: Callable[[list[RankInfo]], tuple]) -> tuple[int, ...] | None:
    """:func:`_pack` within one allocation: the first allocation (in candidate order) that fits."""
    first = candidates[0].allocation if candidates else None
    if all(info.allocation == first for info in candidates):  # one allocation: the common case
        return _pack(candidates, width, same_node, node_order)
    by_allocation: dict[str, list[RankInfo]] = defaultdict(list)
    for info in candidates:
        by_allocation[info.allocation].append(info)
    for members in by_allocation.values():
        if len(members) >= width:
            chosen = _pack(members, width, same_node, node_order)
            if chosen is not None:
                return chosen
    return None


def _pack(candidates: Iterable[RankInfo], width: int, same_node: bool,
          node_order: Callable[[list[RankInfo]], tuple]) -> tuple[int, ...] | None:
    """Choose ``width`` ranks from ``candidates`` (in preference order) on as few nodes as possible.

    If one node can hold them all, the node that sorts first by ``node_order`` among those
    that fit is used; otherwise nodes are taken largest first (never when ``same_node``).
    """
    by_node: dict[str, list[RankInfo]] = defaultdict(list)
    for info in candidates:
        by_node[info.node].append(info)
    fitting = [members for members in by_node.values() if len(members) >= width]
    if fitting:
        members = min(fitting, key=node_order)
        return tuple(sorted(m.rank for m in members[:width]))
    if same_node:
        return None
    chosen: list[int] = []
    for members in sorted(by_node.values(), key=len, reverse=True):
        chosen.extend(m.rank for m in members[: width - len(chosen)])
        if len(chosen) == width:
            return tuple(sorted(chosen))
    return None
