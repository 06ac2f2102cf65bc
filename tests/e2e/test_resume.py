"""Nothing lost, nothing run twice: a journaled pilot killed (SIGKILL) or drained (SIGUSR1)
mid-run, then rerun with the same journal (local ``mpiexec``; see programs/resume_app.py).

Every task appends ``ran <key>`` to a per-run marker log, so the tests can tell which
tasks really ran in which run.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
APP = PROGRAMS / "resume_app.py"
BIN = Path(sys.executable).parent
N_SINGLE, N_WIDE, DELAY = 60, 4, 0.2
RANKS = 5


def _expected():
    # the same formula as the app, written out here so a wrong app cannot agree with itself
    values = {f"single-{i}": i * i + 7 for i in range(N_SINGLE)}
    values.update({f"wide-{i}": 2 * (1000 + i) + 1 for i in range(N_WIDE)})
    return values


def _argv(journal, log):
    return ["timeout", "-s", "KILL", "240", str(BIN / "mpiexec"), "-n", str(RANKS), sys.executable,
            "-m", "pilotq_mpi", str(APP), str(journal), str(log), str(N_SINGLE), str(N_WIDE), str(DELAY)]


def _env(**extra):
    return dict(os.environ, PILOTQ_PROGRESS="off", **extra)


def _start(journal, log, out_dir, name, **env):
    with open(out_dir / f"{name}.out", "w") as stdout, open(out_dir / f"{name}.err", "w") as stderr:
        return subprocess.Popen(_argv(journal, log), stdout=stdout, stderr=stderr, env=_env(**env),
                                start_new_session=True)


def _descendants(pid):
    """``pid`` and every live process below it (MPICH's hydra puts the proxy and each rank in a
    session of its own, so the launcher's process group alone does not reach the ranks)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _kill_everything(proc):
    """SIGKILL the launcher, its process group and every descendant (ranks included) at once,
    as a node failure or an OOM kill of the whole job would."""
    tree = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def _tail(out_dir, name, n=3000):
    parts = []
    for ext in ("out", "err"):
        path = out_dir / f"{name}.{ext}"
        text = path.read_text(errors="replace") if path.exists() else "(missing)"
        parts.append(f"--- {name}.{ext} (tail)\n{text[-n:]}")
    return "\n".join(parts)


def _journal_rows(journal):
    """(key, state, attempts) of every record; [] while the file does not exist yet."""
    if not Path(journal).exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT key, state, attempts FROM tasks").fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        db.close()


def _ran(log):
    """Keys (with their rank-0 line) in a marker log: {key: count of 'ran key rank 0' lines}."""
    counts = {}
    if not Path(log).exists():
        return counts
    for line in Path(log).read_text().splitlines():
        word, key, _, rank = line.split()
        assert word == "ran", line
        if rank == "0":
            counts[key] = counts.get(key, 0) + 1
    return counts


def _leftovers(marker):
    """Pids of live processes whose command line mentions ``marker`` (our unique tmp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


def _wait_gone(marker, timeout=20.0):
    deadline = time.monotonic() + timeout
    while (pids := _leftovers(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def _final_json(out_dir, name):
    lines = (out_dir / f"{name}.out").read_text().strip().splitlines()
    assert lines, f"no output\n{_tail(out_dir, name)}"
    return json.loads(lines[-1])


def _wait_partial(proc, journal, out_dir, name, at_least, timeout=180.0):
    """Poll the journal until it holds >= at_least records (and not all); return their count."""
    total = N_SINGLE + N_WIDE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _journal_rows(journal)
        if at_least <= len(rows) < total:
            return len(rows)
        assert proc.poll() is None, \
            f"run ended (rc {proc.returncode}) before it was interrupted\n{_tail(out_dir, name)}"
        assert len(rows) < total, "the whole workload finished before the test could interrupt it"
        time.sleep(0.02)
    raise AssertionError(f"journal never reached {at_least} records\n{_tail(out_dir, name)}")


def _check_rerun(tmp_path, journal, before, log1, log2, out_dir):
    """The rerun: exit 0, every result once and right, restored = done records, none rerun."""
    done_before = {key for key, state, _ in before if state == "done"}
    rerun = _start(journal, log2, out_dir, "run2")
    try:
        rc = rerun.wait(timeout=250)
    finally:
        if rerun.poll() is None:
            _kill_everything(rerun)
    assert rc == 0, f"rerun exited {rc}\n{_tail(out_dir, 'run2')}"
    report = _final_json(out_dir, "run2")
    expected = _expected()
    assert report["failed"] == {}, report["failed"]
    assert report["results"] == expected, "rerun results differ from the expected (clean-run) values"
    assert report["restored"] == len(done_before), \
        f"restored {report['restored']} tasks, but the journal held {len(done_before)} done records"

    after = _journal_rows(journal)
    keys_after = [key for key, _, _ in after]
    assert sorted(keys_after) == sorted(expected), "the journal must hold every task exactly once"
    assert all(state == "done" for _, state, _ in after), [r for r in after if r[1] != "done"]

    ran1, ran2 = _ran(log1), _ran(log2)
    assert done_before <= set(ran1), f"recorded but never ran in run 1: {done_before - set(ran1)}"
    rerun_twice = done_before & set(ran2)
    assert not rerun_twice, f"tasks recorded as done in run 1 ran again in run 2: {sorted(rerun_twice)}"
    assert set(ran2) == set(expected) - done_before, \
        f"run 2 should run exactly the unrecorded tasks; missing {set(expected) - done_before - set(ran2)}"
    assert all(count == 1 for count in ran2.values()), {k: c for k, c in ran2.items() if c > 1}
    # in run 1 only tasks that were never recorded may have run without a record (killed mid-write)
    assert all(count == 1 for count in ran1.values()), {k: c for k, c in ran1.items() if c > 1}
    return report


@pytest.mark.timeout(600)
def test_sigkill_of_the_whole_job_then_rerun_loses_nothing_and_reruns_nothing(tmp_path):
    journal, log1, log2 = tmp_path / "journal.sqlite", tmp_path / "ran1.log", tmp_path / "ran2.log"
    proc = _start(journal, log1, tmp_path, "run1")
    try:
        _wait_partial(proc, journal, tmp_path, "run1", at_least=8)
        tree = _kill_everything(proc)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            _kill_everything(proc)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    # timeout, mpiexec, hydra_pmi_proxy and the 5 ranks (plus any helper threads' processes)
    assert len(tree) >= 3 + RANKS, f"expected the launcher, proxy and {RANKS} ranks, got pids {tree}"
    left = _wait_gone(str(tmp_path))
    assert not left, f"processes of the killed job still alive: {left}"

    before = _journal_rows(journal)
    assert 0 < len(before) < N_SINGLE + N_WIDE, len(before)
    assert all(state == "done" for _, state, _ in before), \
        f"a killed run records only finished tasks: {[r for r in before if r[1] != 'done']}"
    report = _check_rerun(tmp_path, journal, before, log1, log2, tmp_path)
    print(f"killed after {len(before)} records; rerun restored {report['restored']},"
          f" ran {len(_ran(log2))}")


@pytest.mark.timeout(600)
def test_sigusr1_to_rank0_drains_exits_75_and_rerun_completes(tmp_path):
    journal, log1, log2 = tmp_path / "journal.sqlite", tmp_path / "ran1.log", tmp_path / "ran2.log"
    pidfile = tmp_path / "rank0.pid"
    proc = _start(journal, log1, tmp_path, "run1", PILOTQ_RANK0_PIDFILE=str(pidfile), PILOTQ_DRAIN_GRACE="3")
    try:
        _wait_partial(proc, journal, tmp_path, "run1", at_least=8)
        rank0 = int(pidfile.read_text())
        os.kill(rank0, signal.SIGUSR1)
        signalled = time.monotonic()
        rc = proc.wait(timeout=120)  # grace 3 s + stuck grace 10 s at most; generous for a loaded host
        drain_seconds = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            _kill_everything(proc)
    assert rc == 75, f"drained pilot exited {rc}, expected 75\n{_tail(tmp_path, 'run1')}"
    err = (tmp_path / "run1.err").read_text()
    assert "got SIGUSR1: draining" in err, _tail(tmp_path, "run1")
    report1 = _final_json(tmp_path, "run1")
    assert report1["failed"], "the drain should have cancelled queued tasks"
    assert all(e.startswith("WalltimeError") for e in report1["failed"].values()), report1["failed"]
    assert all(report1["results"][k] == v for k, v in _expected().items() if k in report1["results"])
    assert not _wait_gone(str(tmp_path)), "ranks of the drained job still alive"

    before = _journal_rows(journal)
    done_before = {k for k, s, _ in before if s == "done"}
    # every task that finished in run 1 is recorded as done; the rest as cancelled
    assert done_before == set(report1["results"]), set(report1["results"]) ^ done_before
    assert {k for k, s, _ in before if s != "done"} == set(report1["failed"])
    assert {s for _, s, _ in before} <= {"done", "cancelled"}, before
    report = _check_rerun(tmp_path, journal, before, log1, log2, tmp_path)
    print(f"drain took {drain_seconds:.1f}s; {len(done_before)} done before; rerun restored"
          f" {report['restored']}, ran {len(_ran(log2))}")
