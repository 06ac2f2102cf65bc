"""The top master's queue under hierarchical masters: which group gets each ready task (pure, no MPI).

The top master does not place tasks on ranks: each sub-master does that over its own group
with the ordinary :class:`~.scheduler.Scheduler`. The top keeps every group fed, no more, by
the rule the scheduler applies to one rank (prefetch only behind short work), per group:

* a group takes a task while the tasks it holds (rank-slots: a task of width k takes k) fit
  its ranks' running slots (one per rank, a QPU's concurrency on its ranks);
* beyond that, up to ``prefetch`` more per rank, only a single-rank task predicted short
  (``predict(task) <= horizon``), and only while the group's tasks not predicted short leave
  a slot free: short work then queues behind short work, never in a group whose ranks are all
  held by long or unknown tasks while another group has a free rank;
* a single-rank task predicted long (known, over the horizon) may also wait in a full group's
  own queue (its sub-master's, not behind a task on a worker), a few per group: while
  ``held x predicted <= slots x hold`` (``hold``: ``PILOTQ_GROUP_HOLD``, seconds), so that the
  last one held expects to start within ``hold`` (its group frees ``slots / predicted`` ranks a
  second) and the held work outlasts the top's passes between two hand-outs, and only while at least a
  round of other work (a task per running slot of every group) still waits here: at the end of
  a bag of tasks a held task could otherwise wait for its own group while another group's rank
  idles. Without holding, each rank of a group of long tasks would idle for a round trip to the
  top between two tasks (the top hears of the end, then sends the next); with ``prefetch=0``, or
  without a horizon, a prediction or a ``hold``, no task is held.

Among groups that may take a task, it goes to the least loaded (tasks held over capacity).

Order: priority (larger first), then submission, per resource class; a class whose head
cannot be handed out waits (no task of that class overtakes it), other classes go on.
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import replace
from typing import Callable, Sequence

from ..errors import ResourceError
from .groups import Group
from .inventory import Inventory, plural
from .specs import TaskSpec


class GroupQueue:
    """Ready tasks of the top master and the load of each group (see the module notes)."""

    def __init__(self, inventory: Inventory, groups: Sequence[Group], *, prefetch: int = 1,
                 power_of_two: bool = False, horizon: float | None = None,
                 predict: Callable[[int], float | None] | None = None, hold: float = 0.0):
        self.inventory = inventory
        self.hold = float(hold)
        self.groups = list(groups)
        self.power_of_two = power_of_two
        self.prefetch = prefetch
        self.horizon = None if horizon is None or math.isinf(horizon) else float(horizon)
        self._predict = predict
        self._inventories = [group.inventory for group in self.groups]
        self._running = [self._slots(inv, 0) for inv in self._inventories]
        self._round = sum(self._running)
        """Running slots of every group: a round of work."""
        self._capacity = [self._slots(inv, prefetch) for inv in self._inventories]
        self._outstanding = [0] * len(self.groups)
        self._long = [0] * len(self.groups)
        """Slots held per group by tasks not predicted short."""
        self._fits: dict[tuple, tuple[int, ...]] = {}
        self._queues: dict[tuple, list[tuple[int, int, int]]] = {}
        self._queued: dict[int, TaskSpec] = {}
        self._placed: dict[int, tuple[int, int, bool]] = {}
        """task -> (group index, slots it holds there, predicted short)."""
        self._class_of: dict[int, tuple[TaskSpec, tuple]] = {}
        """id(spec) -> (spec, its resource class): most submissions reuse a spec object."""
        self._seq = itertools.count()
        self._front = itertools.count(1)
        self._changed = True
        """Something that :meth:`assign` depends on changed since it last found nothing to hand out."""

    @staticmethod
    def _slots(inventory: Inventory, prefetch: int) -> int:
        """Rank-slots of a group: ``1 + prefetch`` per rank (``concurrency + prefetch`` on QPU ranks)."""
        return sum((inventory.qpus[r.qpu].concurrency if r.qpu else 1) + prefetch for r in inventory.ranks)

    # --- QPUs ----------------------------------------------------------------------------
    def with_qpu(self, qpu) -> tuple[int, Inventory, Inventory]:
        """Where ``qpu`` would be pinned: (group, that group's new inventory, the pilot's new inventory).

        The group with the most compute ranks, pinned exactly as its sub-master's own
        ``Inventory.with_qpu`` will pin it. Raises what ``with_qpu`` raises (ResourceError).
        """
        index = max(range(len(self.groups)), key=lambda i: (len(self._inventories[i].compute_ranks), -i))
        group_inventory = self._inventories[index].with_qpu(qpu)
        pinned = {r.rank: r for r in group_inventory.ranks if r.qpu == qpu.name}
        ranks = tuple(pinned.get(r.rank, r) for r in self.inventory.ranks)
        return index, group_inventory, replace(self.inventory, ranks=ranks, qpus={**self.inventory.qpus, qpu.name: qpu})

    def pin(self, index: int, group_inventory: Inventory, inventory: Inventory) -> None:
        """Apply a :meth:`with_qpu` result."""
        self._inventories[index] = group_inventory
        self._running[index] = self._slots(group_inventory, 0)
        self._round = sum(self._running)
        self._capacity[index] = self._slots(group_inventory, self.prefetch)
        self.inventory = inventory
        self._fits.clear()
        self._changed = True

    def check_pinned(self, spec: TaskSpec, index: int, group_inventory: Inventory) -> None:
        """Raise :class:`ResourceError` unless some group could still run ``spec`` with group ``index``
        holding ``group_inventory`` (a :meth:`with_qpu` result)."""
        reasons = []
        for position, inventory in enumerate(self._inventories):
            inventory = group_inventory if position == index else inventory
            try:
                inventory.check(spec, power_of_two=self.power_of_two)
            except ResourceError as exc:
                reasons.append(f"group {position}: {exc}")
                continue
            if len(inventory.eligible(spec)) >= spec.ranks:
                return
        raise ResourceError("; ".join(reasons) or "no group has room for it")

    def group_inventory(self, index: int) -> Inventory:
        """What group ``index`` has (its QPU pins included)."""
        return self._inventories[index]

    # --- feasibility -------------------------------------------------------------------
    def check(self, spec: TaskSpec) -> None:
        """Raise :class:`ResourceError` if no group can ever run ``spec`` (say which sizes exist)."""
        self.inventory.check(spec, power_of_two=self.power_of_two)
        if spec.pool is not None and not any(r.pool == spec.pool for r in self.inventory.ranks):
            raise ResourceError(f"task asks for pool {spec.pool!r}, which has no ranks yet; pools that join later"
                                " need a single master: start the pilot with PILOTQ_SUBMASTERS=0")
        if not self.fits(spec):
            sizes = ", ".join(str(len(group.workers)) for group in self.groups)
            widest = max(len(group.workers) for group in self.groups)
            raise ResourceError(
                f"task needs {plural(spec.ranks, 'rank')} of one sub-master group (this pilot runs"
                f" {len(self.groups)} sub-masters over groups of {sizes} worker ranks); ask for"
                f" ranks<={widest}, or start it with fewer sub-masters (PILOTQ_SUBMASTERS=0 for one master)")

    @classmethod
    def over(cls, inventories: Sequence[Inventory], **options) -> "GroupQueue":
        """A queue over groups given as inventories of their worker ranks (the simulator's groups,
        which have no sub-master rank); ``options`` as for the constructor."""
        groups = [Group(index, -1, tuple(inventory.ranks)) for index, inventory in enumerate(inventories)]
        qpus = {name: qpu for inventory in inventories for name, qpu in inventory.qpus.items()}
        whole = Inventory(tuple(r for g in groups for r in g.workers), qpus)
        queue = cls(whole, groups, **options)
        for index, inventory in enumerate(inventories):
            if inventory.qpus:  # (a Group's own inventory has no QPUs: pin them as given)
                queue.pin(index, inventory, whole)
        return queue

    def fits(self, spec: TaskSpec) -> tuple[int, ...]:
        """Indexes of the groups that can ever run ``spec``."""
        key = spec.resource_class
        fits = self._fits.get(key)
        if fits is None:
            fits = []
            for index, inventory in enumerate(self._inventories):
                try:
                    inventory.check(spec, power_of_two=self.power_of_two)
                except ResourceError:
                    continue
                if len(inventory.eligible(spec)) >= spec.ranks:
                    fits.append(index)
            fits = self._fits[key] = tuple(fits)
        return fits

    # --- queue ---------------------------------------------------------------------------
    def submit(self, task_id: int, spec: TaskSpec, *, front: bool = False) -> None:
        """Queue a ready task (``front``: ahead of the tasks of its priority queued so far)."""
        if task_id in self._queued:
            raise ValueError(f"task {task_id} is already queued")
        self._queued[task_id] = spec
        entry = (-spec.priority, -next(self._front) if front else next(self._seq), task_id)
        known = self._class_of.get(id(spec))  # by identity: the driver reuses spec objects
        if known is None or known[0] is not spec:
            if len(self._class_of) > 4096:
                self._class_of.clear()
            known = self._class_of[id(spec)] = (spec, spec.resource_class)
        queue = self._queues.get(known[1])
        if queue is None:
            queue = self._queues[known[1]] = []
        heapq.heappush(queue, entry)
        self._changed = True

    def cancel(self, task_id: int) -> bool:
        """Drop a queued task; False if it is not queued (handed to a group, or unknown)."""
        if self._queued.pop(task_id, None) is None:
            return False
        self._changed = True  # the next task of its class may fit where it did not
        return True

    @property
    def queued(self) -> int:
        """Tasks waiting here (not yet handed to a group)."""
        return len(self._queued)

    @property
    def busy_ranks(self) -> int:
        """Worker ranks that hold work, as far as the top knows (at most one task per rank counted)."""
        return sum(min(load, len(group.workers)) for load, group in zip(self._outstanding, self.groups))

    def outstanding(self, group: int) -> int:
        """Rank-slots of tasks handed to ``group`` and not yet ended."""
        return self._outstanding[group]

    def group_of(self, task_id: int) -> int | None:
        """The group a task was handed to (None while it is queued here)."""
        placed = self._placed.get(task_id)
        return None if placed is None else placed[0]

    # --- hand-out ------------------------------------------------------------------------
    def assign(self, waiting: int = 0) -> list[tuple[int, int]]:
        """Hand out every queued task that has room now: ``[(task_id, group index), ...]``.

        ``waiting``: tasks submitted and not queued here yet (the top master's inbox); they count
        toward the round of other work that holding needs (see the module notes)."""
        if not self._queued or not self._changed:
            return []  # nothing new: the queue and every group's room are as when nothing fit
        queued, queues = self._queued, self._queues
        round_left = self._round - waiting  # holding needs more than this many queued here
        if len(queues) == 1:  # one resource class (the common case)
            heads = []
            for key, queue in queues.items():
                while queue and queue[0][2] not in queued:
                    heapq.heappop(queue)
                if queue:
                    heads.append((queue[0], key))
        else:
            heads = []
            for key, queue in list(queues.items()):
                while queue and queue[0][2] not in queued:
                    heapq.heappop(queue)
                if queue:
                    heads.append((queue[0], key))
                else:
                    del queues[key]
            heapq.heapify(heads)
        handed: list[tuple[int, int]] = []
        outstanding, long, placed = self._outstanding, self._long, self._placed
        running, capacity = self._running, self._capacity
        horizon, predict, hold = self.horizon, self._predict, self.hold
        heappop = heapq.heappop
        while heads:
            entry, key = heappop(heads)
            queue = queues[key]
            rival = heads[0][0] if heads else None
            spec = queued[entry[2]]
            width = spec.ranks  # (the same for every task of the class, as are the groups it fits)
            fits = self._fits.get(key)
            if fits is None:
                fits = self.fits(spec)
            while True:  # this class's tasks while its head goes first (no heap round trip per task)
                task_id = entry[2]
                # short: predicted to end within the horizon (always without one: prefetch behind anything)
                predicted = None
                if width != 1:
                    short = False
                elif horizon is None:
                    short = True
                else:
                    predicted = None if predict is None else predict(task_id)
                    short = predicted is not None and predicted <= horizon
                # held in a full group's own queue: a known long single-rank task (see the module notes)
                holdable = (predicted is not None and not short and self.prefetch > 0 and hold > 0
                            and len(queued) > round_left)  # (a round of other work waits)
                # the least loaded group with room (see the module notes), inline
                group, best = None, None
                for index in fits:
                    load = outstanding[index]
                    if load + width > running[index]:  # no free running slot for it
                        if short:
                            if load + width > capacity[index] or long[index] >= running[index]:
                                continue
                        elif not holdable or (load + 1 - running[index]) * predicted > running[index] * hold:
                            continue
                    load /= capacity[index]
                    if best is None or load < best:
                        group, best = index, load
                if group is None:
                    break  # this class waits for room; others go on
                heappop(queue)
                del queued[task_id]
                outstanding[group] += width
                if not short:
                    long[group] += width
                placed[task_id] = (group, width, short)
                handed.append((task_id, group))
                while queue and queue[0][2] not in queued:
                    heappop(queue)
                if not queue:
                    break
                entry = queue[0]
                if rival is not None and rival < entry:
                    heapq.heappush(heads, (entry, key))
                    break
        self._changed = False  # every class's head was tried: what is left waits for a change
        return handed

    def finished(self, task_id: int) -> None:
        """A task handed to a group ended there: its slots are free."""
        placed = self._placed.pop(task_id, None)
        if placed is not None:
            self._changed = True
            group, width, short = placed
            self._outstanding[group] -= width
            if not short:
                self._long[group] -= width
