"""Helpers for the Slurm end-to-end tests: render a pilot job with the package's templates,
submit it from a directory outside the checkout, wait for files, read what Slurm recorded."""
from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from pilotq_mpi.platform.sbatch import SbatchRequest, enable_chain, render
from pilotq_mpi.platform.submit_cli import default_launcher

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
PY = sys.executable


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no output file)"


def tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def pilot_script(app_argv, out: Path, *, ranks_per_node: int | None = 4, gpus_per_node: int = 0,
                 target: str = "generic", nodes: int = 1, time_limit: str = "00:05:00",
                 job_name: str = "pilotq-e2e", chain: bool = False, layout: str | None = None,
                 **env: str) -> str:
    """A rendered batch script running ``python -m pilotq_mpi APP ARGS``.

    The launcher is the installed ``pilotq-srun`` command (beside this Python), the Python
    is this one; ``env`` is exported at the top (after ``set -u``), with the progress
    display off and this checkout first on PYTHONPATH. ``chain`` enables the job chain.
    """
    request = SbatchRequest(app_argv=tuple(map(str, app_argv)), target=target, nodes=nodes,
                            ranks_per_node=ranks_per_node, gpus_per_node=gpus_per_node,
                            time=time_limit, signal_lead=60, output=str(out), job_name=job_name,
                            launcher=default_launcher(), python=PY, layout=layout)
    exports = {"PYTHONPATH": str(ROOT), "PILOTQ_PROGRESS": "off", **env}
    lines = "".join(f"export {k}={v}\n" for k, v in exports.items())
    script = render(request)
    if chain:
        script = enable_chain(script)
    assert "set -u\n" in script
    return script.replace("set -u\n", "set -u\n" + lines, 1)


def submit(cluster, script: str, workdir: Path, *sbatch_args: str) -> str:
    """sbatch from ``workdir`` (outside the checkout: the templates work from anywhere)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return cluster.sbatch(script, f"--chdir={workdir}", *sbatch_args)


def wait_for(predicate, *, timeout: float, what: str, cluster=None, job: str | None = None,
             out: Path | None = None) -> None:
    """Poll ``predicate`` until true; fail with ``what`` (and the job's output) after ``timeout``
    s, or at once when ``job`` ended first."""
    give_up = time.monotonic() + timeout
    while not predicate():
        if job is not None and cluster.job_state(job) not in ("PENDING", "RUNNING", "CONFIGURING"):
            raise AssertionError(f"job {job} ended before {what}\n{tail(read(out)) if out else ''}")
        if time.monotonic() > give_up:
            raise AssertionError(f"{what}: not after {timeout} s\n{tail(read(out)) if out else ''}")
        time.sleep(0.05)


def exit_code(cluster, job: str) -> str:
    """The job's ``ExitCode`` as ``scontrol show job`` reports it, e.g. ``75:0``."""
    return cluster.job_info(job)["ExitCode"]


def journal_rows(journal: Path) -> list[tuple[str, str]]:
    """(key, state) of every task in a pilot's journal, read-only; [] while it does not exist yet."""
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT key, state FROM tasks").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
