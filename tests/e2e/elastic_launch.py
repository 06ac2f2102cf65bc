"""Background MPI launches for the elastic-pilot tests: a pilot and the launches that join it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs import BIN, PROGRAMS, _kill, processes_mentioning


class Launch:
    """``mpiexec -n RANKS python -m pilotq_mpi ARGS`` in the background, under ``timeout -s KILL``.

    Every launch of a test mentions the test's tmp dir (the run directory) on its command
    line; :func:`stop_all` kills whatever of them is still alive.
    """

    def __init__(self, ranks: int, args: list[str], *, timeout: int = 150, **env):
        self.argv = ["timeout", "-s", "KILL", str(timeout), str(BIN / "mpiexec"), "-n", str(ranks),
                     sys.executable, "-m", "pilotq_mpi", *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PILOTQ_PROGRESS="off", **env), start_new_session=True)
        self.stdout = self.stderr = ""

    def wait(self, timeout: float = 150) -> int:
        """Wait for the launch to end; its exit code (output in ``stdout``/``stderr``)."""
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def tail(self) -> str:
        return f"exit {self.proc.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def pilot(run_dir: Path, marks: Path, *app_args: str, ranks: int = 3, **env) -> Launch:
    """The pilot: ``--run-dir RUN_DIR programs/elastic_app.py MARKS ...``."""
    return Launch(ranks, ["--run-dir", str(run_dir), str(PROGRAMS / "elastic_app.py"), str(marks), *app_args], **env)


def joiner(run_dir: Path, *, ranks: int = 3, pool: str | None = None, wait: bool = True, **env) -> Launch:
    """A launch joining the pilot published in ``run_dir`` (once it is published, unless ``wait=False``)."""
    if wait:
        wait_until((run_dir / "pilot.json").exists, what=f"a pilot published in {run_dir}")
    return Launch(ranks, ["--join", str(run_dir), *(["--pool", pool] if pool else [])], **env)


def wait_until(condition, timeout: float = 90, what: str = "a condition") -> None:
    """Poll ``condition`` (no timing is asserted: the limit only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def signal_ranks(run_dir: Path, sig: int, *, joined_only: str | None = None) -> int:
    """Send ``sig`` to the rank processes whose command line has ``joined_only`` (e.g. "--join"); how many."""
    count = 0
    for pid in processes_mentioning(str(run_dir)):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if "pilotq_mpi" in cmdline and (joined_only is None or joined_only in cmdline) \
                and "mpiexec" not in cmdline and "hydra" not in cmdline and not cmdline.startswith("timeout"):
            try:
                os.kill(pid, sig)
                count += 1
            except ProcessLookupError:
                pass
    return count


def stop_all(marker: Path) -> None:
    """Kill every process of the test (its launches mention ``marker``)."""
    for pid in processes_mentioning(str(marker)):
        _kill(pid)


__all__ = ["Launch", "pilot", "joiner", "wait_until", "signal_ranks", "stop_all", "signal"]
