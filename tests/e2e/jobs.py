"""Running whole pilot jobs as subprocesses under a hard timeout, and cleaning up after them."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent / "programs"
BIN = Path(sys.executable).parent


class Run:
    """What a finished job left: exit code, output, and any of its processes still alive."""

    def __init__(self, proc: subprocess.CompletedProcess, elapsed: float, leftovers: list[int]):
        self.leftovers = leftovers
        """Pids of the job's processes (ranks, proxy) still alive 15 s after the launcher exited."""
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed

    def tail(self, n: int = 3000) -> str:
        return (f"exit {self.returncode} after {self.elapsed:.1f}s\n--- stdout (tail)\n{self.stdout[-n:]}"
                f"\n--- stderr (tail)\n{self.stderr[-n:]}")

    def checks(self) -> dict:
        """The ``CHECK <name> <json>`` lines the program printed, by name."""
        found = {}
        for line in self.stdout.splitlines():
            if line.startswith("CHECK "):
                _, name, body = line.split(" ", 2)
                found[name] = json.loads(body)
        return found


def run_job(program: str, args: list[str], marker: Path, *, ranks: int = 3, timeout: int = 180,
            interrupt_when=None, then=None, program_path: Path | None = None, **env) -> Run:
    """``mpiexec -n ranks python -m pilotq_mpi programs/PROGRAM ARGS`` under ``timeout -s KILL``.

    ``marker`` (a test's tmp dir) must appear on the command line: processes that mention it
    and outlive the job are reported in ``Run.leftovers`` and then killed. With
    ``interrupt_when`` (a callable polled while the job runs), ``then`` is called once it
    returns True; by default ``then`` sends SIGINT to the launcher, as Ctrl-C at a terminal would.
    ``program_path`` runs that file instead of programs/PROGRAM.
    """
    argv = ["timeout", "-s", "KILL", str(timeout), str(BIN / "mpiexec"), "-n", str(ranks), sys.executable,
            "-m", "pilotq_mpi", str(program_path or PROGRAMS / program), *args]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PILOTQ_PROGRESS="off", **env), start_new_session=True)
    try:
        if interrupt_when is not None:
            while proc.poll() is None and not interrupt_when():
                time.sleep(0.05)
            if then is not None:
                then()
            else:
                for pid in _children(proc.pid):  # `timeout` runs mpiexec as its child
                    os.kill(pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=timeout + 30)
        elapsed = time.monotonic() - started
        # MPICH's hydra runs every rank in a session of its own: find them by their command line
        deadline = time.monotonic() + 15
        while (leftovers := processes_mentioning(str(marker))) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:  # communicate() timed out: end the launcher and its group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in processes_mentioning(str(marker)):
            _kill(pid)  # whatever the job left behind (processes this test started)
    return Run(subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), elapsed, leftovers)


def processes_mentioning(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``marker`` (the test's tmp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and _alive(int(entry)):
                found.append(int(entry))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
