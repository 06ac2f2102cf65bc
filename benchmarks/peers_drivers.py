"""Inside one run of ``peers.py``: drive one peer through the workloads and print one JSON line per result.

Started by ``peers.py`` (never by hand), as ``python peers_drivers.py CONFIG_JSON`` for peers
that start their own workers, or under ``mpiexec`` (``-m pilotq_mpi`` / ``-m mpi4py.futures``)
for the MPI ones. Each result is printed as it is measured (``PEERS {...}``), so a run that
times out later still reports what it finished. Each peer is driven the way its documentation
suggests for no-op and short tasks on one machine with ``workers`` worker processes.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import peers_procs
import peers_tasks as T


class Unsupported(Exception):
    """The peer cannot run this workload (the message says why)."""


def emit(workload: str, **fields) -> None:
    """Print one result line for the parent."""
    print("PEERS " + json.dumps({"workload": workload, **fields}), flush=True)


# --------------------------------------------------------------------------- peers
class Peer:
    """What the workloads need from a peer. ``submit`` returns an object with ``result()``."""

    bulk_method = "map(chunksize)"
    mixed_method = ""
    mixed_last = False  # True: run the mixed workload after everything else (it may disturb what follows)

    def __init__(self, workers: int, cfg: dict):
        self.workers, self.cfg = workers, cfg

    def submit_noop(self, i):
        raise NotImplementedError

    def submit_sample(self, qpy_bytes, shots, seed):
        raise NotImplementedError

    def gather(self, futures) -> list:
        return [f.result() for f in futures]

    def gather_within(self, futures, limit: float) -> list:
        """Results of concurrent.futures futures, or TimeoutError saying how many finished within ``limit`` s."""
        from concurrent.futures import wait

        done, _ = wait(futures, timeout=limit)
        if len(done) < len(futures):
            self.abandon = True  # end the run without waiting in the peer's shutdown
            for f in futures:
                try:
                    f.cancel()  # those not started yet
                except NotImplementedError:  # Parsl's AppFuture
                    pass
            raise TimeoutError(f"finished {len(done)} of {len(futures)} mixed tasks within the {limit:.0f} s limit")
        return [f.result() for f in futures]

    def bulk(self, n: int, chunk: int) -> int:
        raise NotImplementedError

    def mixed(self, tasks: list[tuple[int, float]]) -> list:
        raise Unsupported("no multi-rank tasks")

    def close(self) -> None:
        pass


def _chunks(n: int, chunk: int) -> list[list[int]]:
    return [list(range(i, min(n, i + chunk))) for i in range(0, n, chunk)]


class PilotqPeer(Peer):
    """pilotq-mpi: ``mpiexec -n P python -m pilotq_mpi`` (rank 0 = driver + master)."""

    mixed_method = "submit(ranks=w): a sub-communicator per task inside the running job"

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        from pilotq_mpi import Pilot

        self.ex = Pilot()

    def submit_noop(self, i):
        return self.ex.submit(T.noop_comm, i)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.ex.submit(T.sample_comm, qpy_bytes, shots, seed)

    def bulk(self, n, chunk):
        return sum(self.ex.map(T.noop_comm, range(n), chunksize=chunk))

    def mixed(self, tasks):
        return self.gather_within([self.ex.submit(T.wide_comm, s, ranks=w) for w, s in tasks], self.cfg["mixed_limit"])

    def close(self):
        self.ex.shutdown()


class FuturesPeer(Peer):
    """mpi4py.futures: ``mpiexec -n P python -m mpi4py.futures`` (MPIPoolExecutor)."""

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        from mpi4py.futures import MPIPoolExecutor

        self.ex = MPIPoolExecutor()

    def submit_noop(self, i):
        return self.ex.submit(T.noop, i)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.ex.submit(T.sample, qpy_bytes, shots, seed)

    def bulk(self, n, chunk):
        return sum(self.ex.map(T.noop, range(n), chunksize=chunk))

    def mixed(self, tasks):
        raise Unsupported("no multi-rank tasks: every task runs in one worker process (MPI.COMM_SELF)")

    def close(self):
        self.ex.shutdown()


class ExecutorlibPeer(Peer):
    """executorlib SingleNodeExecutor: block-allocated workers; per-task ``resource_dict`` cores for mixed widths."""

    bulk_method = "submit of chunks (its map sends items one by one)"
    mixed_method = "resource_dict={'cores': w}, block_allocation=False: one mpiexec -n w per task"
    mixed_last = True  # past its limit, its per-task MPI launches go on and slow everything after

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        from executorlib import SingleNodeExecutor

        self.ex = SingleNodeExecutor(max_workers=workers, block_allocation=True)

    def submit_noop(self, i):
        return self.ex.submit(T.noop, i)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.ex.submit(T.sample, qpy_bytes, shots, seed)

    def bulk(self, n, chunk):
        return sum(sum(f.result()) for f in [self.ex.submit(T.noop_chunk, c) for c in _chunks(n, chunk)])

    def mixed(self, tasks):
        from executorlib import SingleNodeExecutor

        ex = SingleNodeExecutor(max_cores=self.workers, block_allocation=False)
        futures = [ex.submit(T.wide_world, s, resource_dict={"cores": w}) for w, s in tasks]
        out = self.gather_within(futures, self.cfg["mixed_limit"])  # past the limit: left as is, tasks cancelled
        ex.shutdown(wait=True)
        return out

    def close(self):
        self.ex.shutdown(wait=True)


class ParslPeer(Peer):
    """Parsl HighThroughputExecutor on a LocalProvider; MPI apps (``enable_mpi_mode``) for mixed widths."""

    bulk_method = "python_app per chunk (no chunked map)"
    mixed_method = ("MPIExecutor, bash_app with $PARSL_MPI_PREFIX: one mpiexec -n w per task; the client submits a"
                    " task only when it fits (Parsl's own backlog hangs: RecursionError in the manager)")

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        import parsl
        from parsl.app.app import python_app

        self.parsl = parsl
        self.run_dir = tempfile.mkdtemp(prefix="peers-parsl-")
        parsl.load(self._config(mpi=False))
        self.noop = python_app(T.noop, executors=["htex"])
        self.noop_chunk = python_app(T.noop_chunk, executors=["htex"])
        self.sample = python_app(T.sample, executors=["htex"])

    def _config(self, mpi: bool):
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor, MPIExecutor
        from parsl.launchers import SimpleLauncher
        from parsl.providers import LocalProvider

        provider = LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1, launcher=SimpleLauncher())
        if mpi:  # at most `workers` MPI tasks at once, one "node" (slot) per rank
            executor = MPIExecutor(label="htex", address="127.0.0.1", max_workers_per_block=self.workers,
                                   mpi_launcher="mpiexec", provider=provider)
        else:
            executor = HighThroughputExecutor(label="htex", address="127.0.0.1", max_workers_per_node=self.workers,
                                              provider=provider)
        return Config(executors=[executor], run_dir=self.run_dir)

    def submit_noop(self, i):
        return self.noop(i)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.sample(qpy_bytes, shots, seed)

    def bulk(self, n, chunk):
        return sum(sum(f.result()) for f in [self.noop_chunk(c) for c in _chunks(n, chunk)])

    def mixed(self, tasks):
        from parsl.app.app import bash_app

        # MPI mode takes "nodes" from PBS_NODEFILE; one line per worker slot lets w one-rank
        # "nodes" (all localhost) form a task of width w, as many slots as workers.
        nodefile = Path(self.run_dir) / "nodefile"
        nodefile.write_text("localhost\n" * self.workers)
        os.environ["PBS_NODEFILE"] = str(nodefile)
        self.close()
        self.parsl.load(self._config(mpi=True))
        try:
            return self._mixed(tasks, bash_app(T.wide_bash, executors=["htex"]))
        finally:  # back to the plain executor for what follows
            self.close()
            self.parsl.load(self._config(mpi=False))

    def _mixed(self, tasks, wide):
        wide(0.0, parsl_resource_specification={"num_nodes": 1, "num_ranks": 1, "ranks_per_node": 1}).result()
        start = time.perf_counter()
        futures = self._admit(tasks, start + self.cfg["mixed_limit"], lambda w, s: wide(
            s, parsl_resource_specification={"num_nodes": w, "num_ranks": w, "ranks_per_node": 1}))
        codes = self.gather_within(futures, self.cfg["mixed_limit"] - (time.perf_counter() - start))  # exit codes
        self.mixed_makespan = time.perf_counter() - start
        return [w if code == 0 else -1 for (w, _), code in zip(tasks, codes)]

    def _admit(self, tasks, deadline: float, submit) -> list:
        """Submit each task only when its width fits the free slots (first pending task that fits first).

        Parsl's MPITaskScheduler re-queues a task that does not fit the free nodes by recursing
        (``_schedule_backlog_tasks``) until the manager's result thread dies with RecursionError and
        every task after it hangs; so the client keeps Parsl's backlog empty.
        """
        from concurrent.futures import FIRST_COMPLETED, wait

        futures: list = [None] * len(tasks)
        pending, running, free = list(range(len(tasks))), {}, self.workers
        while pending:
            fits = next((i for i in pending if tasks[i][0] <= free), None)
            if fits is None:
                if time.perf_counter() > deadline:
                    self.abandon = True
                    raise TimeoutError(f"submitted {len(tasks) - len(pending)} of {len(tasks)} mixed tasks"
                                       f" within the {self.cfg['mixed_limit']:.0f} s limit")
                done, _ = wait(list(running), timeout=max(0.0, deadline - time.perf_counter()),
                               return_when=FIRST_COMPLETED)
                for f in done:
                    free += running.pop(f)
                continue
            pending.remove(fits)
            width, seconds = tasks[fits]
            futures[fits] = submit(width, seconds)
            running[futures[fits]] = width
            free -= width
        return futures

    def close(self):
        try:
            self.parsl.dfk().cleanup()
        except Exception:  # no DFK loaded
            pass
        self.parsl.clear()


class DaskPeer(Peer):
    """Dask distributed LocalCluster: ``workers`` worker processes of one thread each."""

    bulk_method = "submit of chunks (Client.map sends items one by one)"

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        import dask
        from dask.distributed import Client, LocalCluster

        # a shared, loaded machine (load average 10-25 on 2 cores) trips Dask's 30 s connection limits
        dask.config.set({"distributed.comm.timeouts.connect": "180s", "distributed.comm.timeouts.tcp": "180s"})
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def submit_noop(self, i):
        return self.client.submit(T.noop, i, pure=False)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.client.submit(T.sample, qpy_bytes, shots, seed, pure=False)

    def gather(self, futures):
        return self.client.gather(futures)

    def bulk(self, n, chunk):
        return sum(sum(r) for r in self.client.gather(
            [self.client.submit(T.noop_chunk, c, pure=False) for c in _chunks(n, chunk)]))

    def mixed(self, tasks):
        raise Unsupported("no multi-rank MPI tasks: a task runs in one worker (dask-mpi only starts the cluster on MPI ranks)")

    def close(self):
        self.client.close()
        self.cluster.close()


class RayPeer(Peer):
    """Ray: ``ray.init(num_cpus=workers)`` on this machine, remote functions."""

    bulk_method = "remote function per chunk"

    def __init__(self, workers, cfg):
        super().__init__(workers, cfg)
        import ray

        self.ray = ray
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        self.noop = ray.remote(T.noop)
        self.noop_chunk = ray.remote(T.noop_chunk)
        self.sample = ray.remote(T.sample)

    def submit_noop(self, i):
        return self.noop.remote(i)

    def submit_sample(self, qpy_bytes, shots, seed):
        return self.sample.remote(qpy_bytes, shots, seed)

    def gather(self, futures):
        return self.ray.get(list(futures))

    def bulk(self, n, chunk):
        return sum(sum(r) for r in self.ray.get([self.noop_chunk.remote(c) for c in _chunks(n, chunk)]))

    def mixed(self, tasks):
        raise Unsupported("no multi-rank MPI tasks (tasks and actors are single processes; no MPI communicator)")

    def close(self):
        self.ray.shutdown()


PEERS = {"pilotq-mpi": PilotqPeer, "mpi4py.futures": FuturesPeer, "executorlib": ExecutorlibPeer,
         "parsl": ParslPeer, "dask": DaskPeer, "ray": RayPeer}


# --------------------------------------------------------------------------- workloads
def tree_cpu(tree: list[int]) -> float:
    """CPU seconds used so far by the run's processes (robust to the load others put on the machine)."""
    return sum(c for c in map(peers_procs.cpu_seconds, tree) if c is not None)


def one_by_one(peer: Peer, n: int, tree: list[int]) -> None:
    """Submit ``n`` no-op tasks one by one, then wait for all; wall time and the CPU time of all processes."""
    cpu = tree_cpu(tree)
    start = time.perf_counter()
    futures = [peer.submit_noop(i) for i in range(n)]
    total = sum(peer.gather(futures))
    seconds = time.perf_counter() - start
    emit("one_by_one", n=n, seconds=seconds, per_s=n / seconds, cpu_us=1e6 * (tree_cpu(tree) - cpu) / n,
         ok=total == n * (n - 1) // 2)


def mixed(peer: Peer, cfg: dict, workers: int) -> None:
    """The mixed-width workload (if configured): makespan, or why the peer cannot run it."""
    if "mixed" not in cfg["workloads"]:
        return
    tasks = [(w, s) for w, s, count in cfg["mixed"] for _ in range(count) if w <= workers]
    order = sorted(range(len(tasks)), key=lambda i: (i * 7919) % len(tasks))  # interleave the widths
    tasks = [tasks[i] for i in order]
    try:
        start = time.perf_counter()
        results = peer.mixed(tasks)
        seconds = getattr(peer, "mixed_makespan", None) or time.perf_counter() - start
        widths = [r if isinstance(r, int) else r[0] for r in results]
        emit("mixed", n=len(tasks), seconds=seconds, method=peer.mixed_method,
             ok=widths == [w for w, _ in tasks])
    except Unsupported as e:
        emit("mixed", unsupported=str(e))
    except TimeoutError as e:
        emit("mixed", note=str(e))


def run(cfg: dict) -> None:
    """Start the peer, run the configured workloads, print each result, shut down."""
    workers = cfg["procs"] - 1
    peer = PEERS[cfg["peer"]](workers, cfg)
    try:
        first = peer.gather([peer.submit_noop(7)])[0]
        emit("startup", seconds=time.time() - cfg["launched_at"], ok=first == 7)
        workloads = cfg["workloads"]
        tree = peers_procs.session_tree(peers_procs.run_root(cfg["orchestrator_pid"]))
        if "memory" in workloads:
            time.sleep(1.0)  # idle: let start-up work settle
            tree = peers_procs.session_tree(peers_procs.run_root(cfg["orchestrator_pid"]))
            emit("memory", tree=[(pid, peers_procs.start_time(pid)) for pid in tree],
                 **peers_procs.memory_of(tree))
        counts = sorted(cfg["tasks"]) if "one_by_one" in workloads else []
        for n in counts[:-1]:
            one_by_one(peer, n, tree)
        if "bulk" in workloads:
            n, chunk = cfg["bulk"], cfg["chunk"]
            start = time.perf_counter()
            total = peer.bulk(n, chunk)
            seconds = time.perf_counter() - start
            emit("bulk", n=n, chunk=chunk, seconds=seconds, per_s=n / seconds, method=peer.bulk_method,
                 ok=total == n * (n - 1) // 2)
        if "cutting" in workloads:
            circuits = json.loads(Path(cfg["cutting_file"]).read_text())
            blobs = [bytes.fromhex(c) for c in circuits][: cfg["cutting_tasks"]]
            shots = cfg["shots"]
            # warm: every worker loads qiskit and Aer (~1 s of CPU each) before the timed part
            peer.gather([peer.submit_sample(blobs[0], shots, i) for i in range(4 * workers)])
            start = time.perf_counter()
            futures = [peer.submit_sample(b, shots, i) for i, b in enumerate(blobs)]
            results = peer.gather(futures)
            seconds = time.perf_counter() - start
            emit("cutting", n=len(blobs), shots=shots, seconds=seconds, per_s=len(blobs) / seconds,
                 ok=all(sum(c.values()) == shots for c in results))
        if not peer.mixed_last:
            mixed(peer, cfg, workers)
        for n in counts[-1:]:  # the largest count late: on the slowest peers it may reach the run's timeout
            one_by_one(peer, n, tree)
        if peer.mixed_last:
            mixed(peer, cfg, workers)
    finally:
        if getattr(peer, "abandon", False):  # tasks left running: shutting down would wait for them
            sys.stdout.flush()
            os._exit(0)  # peers.py kills the run's process tree
        peer.close()


if __name__ == "__main__":
    run(json.loads(sys.argv[-1]))
