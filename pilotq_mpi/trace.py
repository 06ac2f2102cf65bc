"""The pilot's trace: a JSON-lines record of every task, and its Chrome/Perfetto export.

File format (version 1), one JSON object per line:

- first line, the header::

    {"type": "pilot", "version": 1, "start": <unix time>, "hostname": "...",
     "ranks": [{"rank": 1, "node": "nid001", "gpus": [0], "qpu": null}, ...]}

  ``ranks`` lists the worker ranks only (rank 0 runs the driver and the master);
- one ``{"type": "task", ...}`` line per task, written when the task reaches a terminal
  state (see :class:`TaskRecord` for the fields); ``start`` is null for a task that
  never started (e.g. cancelled while queued). ``start``/``end`` of a multi-rank task
  are the earliest start and the latest end over its ranks; such a task may also carry
  ``"spans": [[start, end], ...]``, each rank's own times in the order of ``ranks``
  (``null`` for a rank that never reported). ``spans`` is optional: without it (older
  traces, single-rank tasks) every rank of the task counts as busy from ``start`` to
  ``end`` (see :func:`rank_spans`);
- ``{"type": "resources", "time": ..., "event": "join" | "leave" | "lost", "allocation": "join-1",
  "ranks": [...]}`` when an elastic pilot gains or loses ranks (rank entries as in the
  header, with ``allocation`` and ``pool``);
- ``{"type": "plan", "time": ..., "strategy": ..., "predicted": s, "measured": s, ...}`` after each
  ``run()`` of the planner (:mod:`pilotq_mpi.workflows.planner`): its prediction next to the
  measured time, written by :meth:`TraceWriter.write_record`;
- optionally a last ``{"type": "end", "time": <unix time>}`` line.

Times are unix times in seconds (floats). A killed run leaves a file without an end
record and possibly with a cut last line; :func:`read_trace` accepts both.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence

TRACE_VERSION = 1
TERMINAL_STATES = ("done", "failed", "cancelled", "timed_out")
TASK_FIELDS = (
    "id", "name", "kind", "state", "submit", "start", "end",
    "ranks", "nodes", "gpus", "qpu", "error",
)
"""Fields every task record has."""
OPTIONAL_TASK_FIELDS = ("spans",)
"""Fields a task record may have (written after the ones above)."""
HEADER_FIELDS = ("version", "start", "ranks")
LANE_TID_STEP = 1_000_000
"""Chrome export: lane ``k`` of rank ``r`` (overlapping tasks on one rank) is thread ``r + k * LANE_TID_STEP``."""
_KNOWN_TASK_KEYS = frozenset(TASK_FIELDS) | {"type"}
_OWN_TASK_KEYS = _KNOWN_TASK_KEYS | frozenset(OPTIONAL_TASK_FIELDS)

# One shared encoder: json.dumps(..., separators=...) would build a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_str = encode_basestring  # JSON string literal, quotes and escapes included (C implementation)


class TraceError(ValueError):
    """A file or record that is not a valid pilotq trace."""


@dataclass(frozen=True)
class RankInfo:
    """One worker rank in the trace header: where it runs and what it owns."""

    rank: int
    node: str
    gpus: tuple[int, ...] = ()
    qpu: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The header's JSON form of this rank."""
        return {"rank": self.rank, "node": self.node, "gpus": list(self.gpus), "qpu": self.qpu}


@dataclass
class TaskRecord:
    """The trace line of one task that reached a terminal state."""

    id: int
    name: str
    kind: str
    state: str
    submit: float
    end: float
    start: float | None = None
    ranks: Sequence[int] = ()
    nodes: Sequence[str] = ()
    gpus: Sequence[Sequence[int]] = ()
    qpu: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Further fields written as-is (they must not clash with the fields above)."""
    spans: Sequence[Sequence[float] | None] | None = None
    """Each rank's own ``(start, end)``, in the order of ``ranks`` (None for a rank that never
    reported); None (not written) when the task's ``start``/``end`` hold for all its ranks."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this record (a plain dict, fields in the documented order)."""
        record = {
            "type": "task", "id": self.id, "name": self.name, "kind": self.kind,
            "state": self.state, "submit": self.submit, "start": self.start, "end": self.end,
            "ranks": list(self.ranks), "nodes": list(self.nodes),
            "gpus": [list(g) for g in self.gpus], "qpu": self.qpu, "error": self.error,
        }
        if self.spans is not None:
            record["spans"] = [None if s is None else list(s) for s in self.spans]
        if self.extra:
            record.update(self.extra)
        return record


class TraceWriter:
    """Append-only writer of a trace file; use as a context manager or call :meth:`close`.

    Flush policy: the header and end records are flushed at once; task records are
    buffered in memory and handed to the OS at most ``flush_interval`` seconds after
    they were written (default 0.2 s: by a small background thread, which makes no MPI
    calls), and on :meth:`flush`/:meth:`close` (also run at interpreter exit). A
    SIGKILLed run therefore loses at most the last ~0.2 s of task records; the file
    stays readable (:func:`read_trace` drops a cut last line). ``flush_interval=0``
    flushes every line instead (no thread).

    Cost, measured on the shared 2-core development machine (best of 30 runs of 5,000
    records; ``python benchmarks/trace_writer.py`` reproduces it; timings moved with the
    load of other processes): 4.2-6.5 us per task record with the default policy and
    5.5-10 us with ``flush_interval=0``, i.e. 2-3% and 3-5% of the 200 us per task of
    a 5,000 tasks/s run. Task lines are formatted by hand (:func:`format_task_line`)
    because ``json.dumps`` of the record alone cost 5-7 us there.

    Records may come from more than one thread (a lock guards the buffer).
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval: float = 0.2) -> None:
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be >= 0 seconds, got {flush_interval!r}")
        self.path = Path(path)
        self.flush_interval = flush_interval
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._header_written = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval > 0:
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="pilotq-trace-flush", daemon=True
            )
            self._flusher.start()
        atexit.register(self.close)

    def write_header(
        self,
        ranks: Iterable[RankInfo | Mapping[str, Any]],
        *,
        start: float | None = None,
        hostname: str | None = None,
    ) -> None:
        """Write the header line: worker ranks, start time (default now), host (default this one)."""
        if self._header_written:
            raise TraceError(f"{self.path}: header already written")
        rank_dicts = [r.to_dict() if isinstance(r, RankInfo) else dict(r) for r in ranks]
        for r in rank_dicts:
            if "rank" not in r or "node" not in r:
                raise TraceError(f"rank entry {r!r} needs at least 'rank' and 'node'")
        header = {
            "type": "pilot",
            "version": TRACE_VERSION,
            "start": time.time() if start is None else float(start),
            "hostname": socket.gethostname() if hostname is None else hostname,
            "ranks": rank_dicts,
        }
        self._append(_ENCODER.encode(header) + "\n", flush=True)
        self._header_written = True

    def write_task(self, record: TaskRecord | Mapping[str, Any]) -> None:
        """Write one terminal task record (a :class:`TaskRecord` or a dict of its fields)."""
        if not self._header_written:
            raise TraceError(f"{self.path}: write_header() must come before the first task record")
        self._append(format_task_line(record), flush=self.flush_interval == 0)

    def write_resources(self, event: str, allocation: str, ranks: list[Mapping[str, Any]],
                        time_: float | None = None) -> None:
        """Write a ``resources`` record: ``ranks`` joined or left the pilot (``event``)."""
        record = {"type": "resources", "time": time.time() if time_ is None else float(time_), "event": event,
                  "allocation": allocation, "ranks": [dict(r) for r in ranks]}
        self._append(_ENCODER.encode(record) + "\n", flush=True)

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write a record of another type than task, header or end (e.g. ``plan``), flushed at once."""
        kind = record.get("type")
        if not isinstance(kind, str) or kind in ("task", "pilot", "end"):
            raise TraceError(f"write_record takes records of a new type, got type {kind!r}")
        self._append(_ENCODER.encode(dict(record)) + "\n", flush=True)

    def write_end(self, time_: float | None = None) -> None:
        """Write the optional end record (default: now) and flush."""
        end = {"type": "end", "time": time.time() if time_ is None else float(time_)}
        self._append(_ENCODER.encode(end) + "\n", flush=True)

    def flush(self) -> None:
        """Hand every buffered record to the OS now."""
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Flush and close the file; further writes raise. Calling it twice is harmless."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            if self._file is not None:
                self._flush_locked()
                self._file.close()
                self._file = None
        atexit.unregister(self.close)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _append(self, line: str, *, flush: bool) -> None:
        with self._lock:
            if self._file is None:
                raise TraceError(f"{self.path}: trace writer is closed")
            self._pending.append(line)
            if flush:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending and self._file is not None:
            self._file.write("".join(self._pending))
            self._file.flush()
            self._pending.clear()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()


def format_task_line(record: TaskRecord | Mapping[str, Any]) -> str:
    """The JSON line (with its newline) of one terminal task record.

    Equivalent to ``json.dumps`` of the record's dict, about 1.4x as fast. Fields
    beyond the documented ones (a dict's extra keys, ``TaskRecord.extra``) are kept.
    Raises :class:`TraceError` naming the record when a field is missing or has the
    wrong type, or when the state is not terminal.
    """
    if isinstance(record, TaskRecord):
        fields: Mapping[str, Any] = vars(record)
        extra = record.extra
    else:
        fields = record
        unknown = record.keys() - _OWN_TASK_KEYS
        extra = {k: record[k] for k in unknown}
        if record.get("type", "task") != "task":
            raise TraceError(f"record {record!r:.200} has type {record['type']!r}, expected 'task'")
    state = fields.get("state")
    if state not in TERMINAL_STATES:
        raise TraceError(
            f"task {fields.get('id')!r} has state {state!r}; "
            f"a trace records only terminal states {TERMINAL_STATES}"
        )
    try:
        start, qpu, error = fields["start"], fields["qpu"], fields["error"]
        line = (
            f'{{"type":"task","id":{int(fields["id"])},"name":{_str(fields["name"])},'
            f'"kind":{_str(fields["kind"])},"state":"{state}",'
            f'"submit":{float(fields["submit"])!r},'
            f'"start":{"null" if start is None else repr(float(start))},'
            f'"end":{float(fields["end"])!r},'
            f'"ranks":[{",".join(map(str, map(int, fields["ranks"])))}],'
            f'"nodes":[{",".join(map(_str, fields["nodes"]))}],'
            f'"gpus":[{",".join(["[" + ",".join(map(str, map(int, g))) + "]" for g in fields["gpus"]])}],'
            f'"qpu":{"null" if qpu is None else _str(qpu)},'
            f'"error":{"null" if error is None else _str(error)}'
        )
        spans = fields.get("spans")
        if spans is not None:
            if len(spans) != len(fields["ranks"]):
                raise ValueError(f"{len(spans)} spans for {len(fields['ranks'])} ranks")
            line += ',"spans":[' + ",".join(
                "null" if s is None else f"[{float(s[0])!r},{float(s[1])!r}]" for s in spans) + "]"
    except KeyError as exc:
        raise TraceError(f"task record {dict(fields)!r:.300} lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise TraceError(f"cannot write task record {dict(fields)!r:.300}: {exc}") from None
    if extra:
        clash = extra.keys() & _OWN_TASK_KEYS
        if clash:
            raise TraceError(f"task {fields['id']!r}: extra fields {sorted(clash)} clash with the record's own")
        line += "," + _ENCODER.encode(extra)[1:-1]
    return line + "}\n"


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a trace file into a list of records (header first).

    A cut last line (a killed run) is dropped and a missing end record is fine.
    Raises :class:`TraceError` when the file is not a pilotq trace (empty, first line
    not a version-1 header) or a complete line is not valid JSON or lacks a field.
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if not text.strip():
        raise TraceError(f"{path} is empty, not a pilotq trace")
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines.pop()  # the empty string after the final newline
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if last and not complete and number > 1:
                break  # the run was killed while writing this line
            if number == 1:
                raise TraceError(
                    f"{path} is not a pilotq trace: line 1 is not JSON ({exc.msg}): {line[:80]!r}"
                ) from None
            raise TraceError(f"{path}:{number}: not valid JSON ({exc.msg}): {line[:80]!r}") from None
        _check_record(record, path, number)
        records.append(record)
    return records


def _check_record(record: Any, path: Path, number: int) -> None:
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise TraceError(f"{where}: expected a JSON object, got {record!r:.80}")
    kind = record.get("type")
    if number == 1:
        if kind != "pilot":
            raise TraceError(
                f"{path} is not a pilotq trace: line 1 has type {kind!r}, expected 'pilot'"
            )
        missing = [k for k in HEADER_FIELDS if k not in record]
        if missing:
            raise TraceError(f"{where}: header lacks {missing}")
        if record["version"] != TRACE_VERSION:
            raise TraceError(
                f"{where}: trace version {record['version']!r} is not supported "
                f"(this reader knows version {TRACE_VERSION})"
            )
    elif kind == "task":
        if not _KNOWN_TASK_KEYS <= record.keys():
            missing = [k for k in TASK_FIELDS if k not in record]
            raise TraceError(f"{where}: task record lacks {missing}")
        spans = record.get("spans")
        if spans is not None and not (
            isinstance(spans, list) and isinstance(record["ranks"], list) and len(spans) == len(record["ranks"])
            and all(s is None or (isinstance(s, list) and len(s) == 2
                                  and all(isinstance(v, (int, float)) for v in s)) for s in spans)
        ):
            raise TraceError(f"{where}: task spans {spans!r:.80} must be one [start, end] or null per rank")
    elif kind == "pilot":
        raise TraceError(f"{where}: a second header record")
    # Other types ("end", or ones added later) are kept as they are.


def trace_origin(records: Sequence[Mapping[str, Any]]) -> float:
    """Time zero of a trace: the header's start, else the first submit (0.0 if no tasks)."""
    for r in records:
        if r.get("type") == "pilot":
            return float(r["start"])
    submits = [r["submit"] for r in records if r.get("type") == "task"]
    return float(min(submits)) if submits else 0.0


def worker_ranks(records: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """World rank -> node of every worker rank: from the header, else from the task records."""
    for r in records:
        if r.get("type") == "pilot":
            ranks = {int(x["rank"]): str(x["node"]) for x in r["ranks"]}
            for joined in records:  # ranks of allocations that joined later (elastic pilots)
                if joined.get("type") == "resources" and joined.get("event") == "join":
                    ranks.update((int(x["rank"]), str(x["node"])) for x in joined["ranks"])
            return ranks
    ranks: dict[int, str] = {}
    for r in records:
        if r.get("type") == "task":
            nodes = r.get("nodes") or ["?"] * len(r["ranks"])
            for rank, node in zip(r["ranks"], nodes):
                ranks.setdefault(int(rank), str(node))
    return dict(sorted(ranks.items()))


def rank_presence(records: Sequence[Mapping[str, Any]]) -> dict[int, tuple[float, float | None]]:
    """Worker rank -> ``(since, until)``: when it was part of the pilot (until None: to the end).

    Ranks of the header are there from the trace's start; ranks of an elastic pilot's
    ``resources`` records from when they joined until they left or were lost.
    """
    origin = trace_origin(records)
    presence: dict[int, tuple[float, float | None]] = {rank: (origin, None) for rank in worker_ranks(records)}
    for record in records:
        if record.get("type") == "resources":
            when = float(record["time"])
            for entry in record["ranks"]:
                rank = int(entry["rank"])
                if record.get("event") == "join":
                    presence[rank] = (when, None)
                elif rank in presence:
                    presence[rank] = (presence[rank][0], when)
    return presence


def rank_spans(task: Mapping[str, Any]) -> list[tuple[int, float, float]]:
    """``(rank, start, end)`` for each rank of a task record; empty if the task never started.

    A rank's own times come from the record's ``spans`` where it has them; otherwise (older
    traces, single-rank tasks, a rank that never reported) the task's ``start`` and ``end``.
    """
    if task.get("start") is None:
        return []
    start, end = float(task["start"]), float(task["end"])
    spans = task.get("spans") or ()
    out = []
    for i, rank in enumerate(task["ranks"]):
        span = spans[i] if i < len(spans) else None
        out.append((int(rank), start, end) if span is None else (int(rank), float(span[0]), float(span[1])))
    return out


def assign_lanes(spans: Sequence[tuple[float, float]]) -> list[int]:
    """Lane of each ``(start, end)`` interval of one rank, so that intervals in one lane never overlap.

    Tasks on one rank overlap only where the rank runs several at once (a QPU worker with
    ``concurrency`` > 1). Greedy in order of start: each interval takes the lowest lane whose
    last interval has ended by its start (touching intervals share a lane), so a rank that
    runs one task at a time uses lane 0 only, and the number of lanes is the rank's peak
    concurrency.
    """
    lanes = [0] * len(spans)
    lane_end: list[float] = []
    for i in sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1])):
        start, end = spans[i]
        for lane, busy_until in enumerate(lane_end):
            if busy_until <= start:
                break
        else:
            lane = len(lane_end)
            lane_end.append(end)
        lanes[i] = lane
        lane_end[lane] = max(end, start)
    return lanes


def rank_lanes(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, int, float, float, Mapping[str, Any]]]:
    """Every started task's span on each of its ranks, with its lane on that rank.

    Returns ``(rank, lane, start, end, task)`` tuples (unix times) in the order of the
    records, and of the ranks within a record; lanes as in :func:`assign_lanes`.
    """
    flat: list[tuple[int, int, float, float, Mapping[str, Any]]] = []
    per_rank: dict[int, list[int]] = {}
    for r in records:
        if r.get("type") == "task":
            for rank, start, end in rank_spans(r):
                per_rank.setdefault(rank, []).append(len(flat))
                flat.append((rank, 0, start, end, r))
    for rank, indices in per_rank.items():
        for i, lane in zip(indices, assign_lanes([(flat[i][2], flat[i][3]) for i in indices])):
            if lane:
                flat[i] = (rank, lane) + flat[i][2:]
    return flat


def to_chrome_trace(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Convert trace records to Chrome trace-event JSON (chrome://tracing, ui.perfetto.dev).

    One process per node (pid = node index, named by a ``process_name`` event) and one
    thread track per worker rank (tid = world rank, named ``rank N``). Every started
    task becomes one complete ("X") event on each of its ranks, from that rank's own start
    to its own end (:func:`rank_spans`), with ``ts``/``dur`` in microseconds from the trace
    origin (:func:`trace_origin`) and args holding the task id, state, kind (and error, if
    any). Tasks that overlap on one rank (concurrent QPU calls) go to extra tracks of that
    rank, ``rank N lane K`` (tid ``N + (K - 1) * LANE_TID_STEP``, K from 2), laid out by
    :func:`assign_lanes`. Tasks that never started have no event.
    """
    origin = trace_origin(records)
    ranks = worker_ranks(records)
    for r in records:  # ranks seen only in task records (not in the header) get a track too
        if r.get("type") == "task":
            nodes = r.get("nodes") or []
            for i, rank in enumerate(r["ranks"]):
                ranks.setdefault(int(rank), str(nodes[i]) if i < len(nodes) else "?")
    node_pid = {node: pid for pid, node in enumerate(dict.fromkeys(ranks.values()), start=1)}
    spans = rank_lanes(records)
    lanes: dict[int, int] = {}
    for rank, lane, *_ in spans:
        lanes[rank] = max(lanes.get(rank, 0), lane)
    events: list[dict[str, Any]] = []
    for node, pid in node_pid.items():
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                       "args": {"name": node}})
    for rank, node in sorted(ranks.items()):
        events.append({"ph": "M", "name": "thread_name", "pid": node_pid[node], "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        for lane in range(1, lanes.get(rank, 0) + 1):
            events.append({"ph": "M", "name": "thread_name", "pid": node_pid[node],
                           "tid": rank + lane * LANE_TID_STEP, "args": {"name": f"rank {rank} lane {lane + 1}"}})
    args_of: dict[int, dict[str, Any]] = {}
    for rank, lane, start, end, r in spans:
        args = args_of.get(id(r))
        if args is None:
            args = args_of[id(r)] = {"id": r["id"], "state": r["state"], "kind": r["kind"]}
            if r.get("error"):
                args["error"] = r["error"]
        events.append({"ph": "X", "name": r["name"], "cat": r["kind"], "ts": (start - origin) * 1e6,
                       "dur": (end - start) * 1e6, "pid": node_pid[ranks[rank]],
                       "tid": rank + lane * LANE_TID_STEP, "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_chrome_trace(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write :func:`to_chrome_trace` of ``records`` to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_chrome_trace(records), f)
