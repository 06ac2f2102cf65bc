"""What a plan may use: compute worker ranks, GPUs, memory per rank, cores, declared QPUs.

A plan is made for the resources that exist when it is made (:meth:`Resources.from_pilot`
reads a live pilot's inventory); the benchmark and the tests describe them directly
(``Resources(workers=4, memory_per_rank=2 * 2**30)``) to plan without a running pilot.
"""
from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

FAKE_BACKEND_FACTORY = "pilotq_mpi.workflows.qpu:fake_backend"


@dataclass(frozen=True)
class QpuInfo:
    """A declared QPU as the planner sees it.

    ``qubits``: device width (``None``: unknown, circuits are assumed to fit);
    ``latency_s``: queue + network time per job; ``concurrency``: jobs at once per pinned
    rank; ``ranks``: pinned ranks; ``shot_s``: device time per shot; ``circuit_s``: per
    circuit (transpile, load).
    """

    name: str
    qubits: int | None = None
    latency_s: float = 0.0
    concurrency: int = 1
    ranks: int = 1
    shot_s: float = 2e-4
    circuit_s: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a QPU needs a non-empty name, got {self.name!r}")
        if self.qubits is not None and (not isinstance(self.qubits, int) or self.qubits < 1):
            raise ValueError(f"QPU {self.name!r}: qubits must be a positive integer or None, got {self.qubits!r}")
        for attr in ("latency_s", "shot_s", "circuit_s"):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"QPU {self.name!r}: {attr} must be a number >= 0, got {value!r}")
        for attr in ("concurrency", "ranks"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"QPU {self.name!r}: {attr} must be an integer >= 1, got {value!r}")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Resources:
    """Free resources a plan may use.

    Args:
        workers: compute worker ranks (not pinned to a QPU).
        gpu_workers: how many of them own a GPU (the first ``gpu_workers``).
        memory_per_rank: bytes a CPU rank may use (``None``: this host's memory divided
            by its ranks).
        gpu_memory: bytes of one GPU (``None``: 16 GiB assumed when there are GPU ranks).
        cores: CPU cores the workers share (``None``: this host's usable cores times nodes).
        nodes: nodes the workers are on.
        qpus: declared QPUs.
        host: host name the cost profile is looked up by.
    """

    workers: int
    gpu_workers: int = 0
    memory_per_rank: int | None = None
    gpu_memory: int | None = None
    cores: int | None = None
    nodes: int = 1
    qpus: tuple[QpuInfo, ...] = ()
    host: str = field(default_factory=socket.gethostname)
    warm: Mapping[str, int] | None = None
    """Library -> how many workers already imported it (``"qiskit"``, ``"aer"``); None: all are
    warm (no import term). :meth:`from_pilot` fills it from what ``run()`` did on that pilot."""
    external_load: float = 0.0
    """Runnable processes of others competing for the workers' cores (0: the cores are the
    pilot's own). The model gives ``k`` busy ranks ``cores * k / (k + external_load)`` cores,
    at most ``k`` and ``cores`` (:func:`~.model.cpu_share`). :meth:`from_pilot` reads it from
    the load average now (:func:`external_load_now`); a benchmark passes the load it recorded."""

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1 (compute worker ranks), got {self.workers!r}")
        if not isinstance(self.gpu_workers, int) or not 0 <= self.gpu_workers <= self.workers:
            raise ValueError(f"gpu_workers must be an integer in 0..workers={self.workers}, got {self.gpu_workers!r}")
        if not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"nodes must be an integer >= 1, got {self.nodes!r}")
        for attr in ("memory_per_rank", "gpu_memory", "cores"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{attr} must be a positive integer or None, got {value!r}")
        load = self.external_load
        if isinstance(load, bool) or not isinstance(load, (int, float)) or not 0 <= load < float("inf"):
            raise ValueError(f"external_load must be a finite number >= 0 (runnable processes of others on the"
                             f" cores, e.g. os.getloadavg()[0] minus this pilot's busy ranks), got {load!r}")
        object.__setattr__(self, "external_load", float(load))
        object.__setattr__(self, "qpus", tuple(self.qpus))
        names = [q.name for q in self.qpus]
        if len(set(names)) != len(names):
            raise ValueError(f"QPU names must be distinct, got {names}")

    @property
    def cpu_memory(self) -> int:
        """Bytes one CPU rank may use (declared, else an equal share of this host's memory)."""
        if self.memory_per_rank is not None:
            return self.memory_per_rank
        total = _physical_memory() or 8 * 2**30
        ranks_here = -(-(self.workers + 1) // self.nodes)  # + rank 0 (driver and master)
        return total // max(1, ranks_here)

    @property
    def gpu_bytes(self) -> int:
        """Bytes of one GPU (declared, else 16 GiB)."""
        return self.gpu_memory if self.gpu_memory is not None else 16 * 2**30

    @property
    def cpu_cores(self) -> int:
        """CPU cores the workers share (declared, else this host's usable cores times nodes)."""
        return self.cores if self.cores is not None else _cores() * self.nodes

    def qpu(self, name: str) -> QpuInfo:
        """The declared QPU ``name`` (KeyError naming the declared ones otherwise)."""
        for q in self.qpus:
            if q.name == name:
                return q
        raise KeyError(f"no QPU {name!r} is declared (declared: {', '.join(q.name for q in self.qpus) or 'none'})")

    def describe(self) -> str:
        """One line: what the plan may use."""
        parts = [f"{self.workers} worker ranks"]
        if self.gpu_workers:
            parts.append(f"{self.gpu_workers} with a GPU ({self.gpu_bytes / 2**30:.0f} GiB)")
        parts.append(f"{self.cpu_memory / 2**30:.2f} GiB per rank")
        parts.append(f"{self.cpu_cores} cores on {self.nodes} node{'s' if self.nodes > 1 else ''}")
        if self.external_load:
            parts.append(f"external load {self.external_load:.3g}")
        if self.qpus:
            parts.append("QPUs " + ", ".join(f"{q.name} ({q.qubits or '?'} qubits)" for q in self.qpus))
        return ", ".join(parts) + f" on {self.host}"

    @classmethod
    def from_pilot(cls, pilot: Any, qpu_info: Mapping[str, QpuInfo] | None = None) -> "Resources":
        """The resources of a live ``Pilot`` now (its inventory), QPUs included.

        ``qpu_info`` gives the planner's view of QPUs by name (width, latency); otherwise it
        is derived from the declaration (fake backends: the device's width and ``latency_s``).
        """
        if isinstance(pilot, Resources):
            return pilot
        inventory = pilot.resources
        compute = inventory.compute_ranks
        if not compute:
            raise ValueError("the pilot has no compute worker ranks (all are pinned to QPUs)")
        memories = [r.memory for r in compute if r.memory is not None]
        gpu_ranks = sum(1 for r in compute if r.gpus)
        nodes = len(dict.fromkeys(r.node for r in compute))
        qpus = []
        for name, spec in inventory.qpus.items():
            info = (qpu_info or {}).get(name)
            if info is None:
                info = qpu_from_spec(spec, len(inventory.qpu_ranks(name)))
            qpus.append(info)
        busy = sum(1 for f in getattr(pilot, "_futures", ()) if not f.done())
        return cls(workers=len(compute), gpu_workers=gpu_ranks, memory_per_rank=min(memories) if memories else None,
                   nodes=nodes, qpus=tuple(qpus), warm=dict(WARM.get(pilot_key(pilot), {})),
                   external_load=external_load_now(min(busy, len(compute))) if nodes == 1 else 0.0)


def runnable_now(samples: int = 10, interval: float = 0.01) -> float | None:
    """Mean number of runnable threads on this host over ``samples`` readings of ``procs_running``
    in ``/proc/stat`` (Linux), ``interval`` seconds apart, the reading thread itself excluded; None
    where there is no ``/proc/stat``. Unlike the load average it does not lag (the 1-minute load
    average still counts work this pilot finished a minute ago)."""
    counts = []
    for i in range(max(1, samples)):
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"procs_running"):
                        counts.append(int(line.split()[1]) - 1)
                        break
        except (OSError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(interval)
    return sum(counts) / len(counts) if counts else None


def external_load_now(own_busy: int = 0) -> float:
    """Runnable processes of others on this host now, minus ``own_busy``.

    ``own_busy``: this pilot's ranks running tasks now (its idle ranks sleep, so they count
    little). Measured as the mean of ``procs_running`` over 0.1 s (:func:`runnable_now`), where
    Linux gives it, else the 1-minute load average (which lags: it still counts this pilot's own
    work of the last minute); 0 where neither is available. An estimate of the load the run will
    meet.
    """
    load = runnable_now()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            return 0.0
    return max(0.0, float(load) - max(0, int(own_busy)))


WARM: dict[int, dict[str, int]] = {}
"""Per live pilot (:func:`pilot_key`): library -> workers that have imported it (through ``run()``)."""


def pilot_key(pilot: Any) -> int:
    """Identity of a live pilot's session (its master), shared by every ``Pilot()`` attached to it."""
    return id(getattr(pilot, "_master", pilot))


def mark_warm(pilot: Any, libraries: Sequence[str], workers: int) -> None:
    """Record that ``workers`` workers of ``pilot`` have imported ``libraries``."""
    entry = WARM.setdefault(pilot_key(pilot), {})
    for lib in libraries:
        entry[lib] = max(entry.get(lib, 0), int(workers))


def qpu_from_spec(spec: Any, ranks: int) -> QpuInfo:
    """The planner's view of a declared ``QPU`` (its width is known for fake backends)."""
    options = dict(spec.options or {})
    qubits = None
    if spec.factory == FAKE_BACKEND_FACTORY:
        qubits = _fake_width(options.get("name", "fake_fez"))
    latency = options.get("latency_s", 0.0)
    return QpuInfo(spec.name, qubits=qubits, latency_s=float(latency) if isinstance(latency, (int, float)) else 0.0,
                   concurrency=spec.concurrency, ranks=max(1, ranks))


@functools.lru_cache(maxsize=None)
def _fake_width(name: str) -> int | None:
    try:
        import warnings

        from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(FakeProviderForBackendV2().backend(name).num_qubits)
    except Exception:  # noqa: BLE001 - an unknown name fails when the pinned worker builds it
        return None
