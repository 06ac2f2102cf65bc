"""Messages of whole pilot jobs as a user reads them (subprocess `mpiexec`, hard timeouts)."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
BIN = Path(sys.executable).parent


def pilot(ranks, program, *args, timeout=120, **env):
    """``mpiexec -n RANKS python -m pilotq_mpi programs/PROGRAM ARGS``; everything it started is killed on timeout."""
    argv = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "pilotq_mpi", str(PROGRAMS / program),
            *map(str, args)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PILOTQ_PROGRESS": "off", **env}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.timeout(150)
def test_remote_traceback_names_the_driver_script_and_line():
    out = pilot(2, "task_raises.py")
    assert out.returncode != 0
    script = PROGRAMS / "task_raises.py"
    line = next(n for n, text in enumerate(script.read_text().splitlines(), 1) if "raise ValueError" in text)
    assert "failed on world rank 1" in out.stderr
    assert f'File "{script}", line {line}, in boom\n    raise ValueError(f"bad value {{y}}")' in out.stderr, out.stderr
    assert "<dynamic-code>" not in out.stderr


@pytest.mark.timeout(150)
def test_refusals_timeout_message_and_final_status_line(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("hello\n")
    out = pilot(2, "messages_app.py", data, PILOTQ_PROGRESS="on")
    assert out.returncode == 0, out.stderr[-3000:]
    refused = [line for line in out.stdout.splitlines() if line.startswith("REFUSED ")]
    assert refused == [
        f"REFUSED cannot send the arguments of task 'size' to a worker: open file {str(data)!r} (mode 'r'): an"
        " open file cannot travel to another rank; pass its path and open it in the task (on a file system the"
        " workers see), or pass its contents",
        "REFUSED task needs 1 rank with 1 GPU; this pilot has no GPUs: start the pilot with `--gpus-per-node N`"
        " (or PILOTQ_GPUS_PER_NODE=N) to declare N GPUs per node (none were found in CUDA_VISIBLE_DEVICES or"
        " Slurm's GPU variables), or submit with gpus_per_rank=0",
    ]
    assert "TIMEOUT TaskTimeoutError" in out.stdout
    assert re.search(r"^pilotq-mpi: task 'slow' \(id \d+\) timed out; world rank 1 is still running it past its"
                     r" timeout and stays reserved until it returns$", out.stderr, re.M), out.stderr
    final = [line for line in out.stderr.splitlines() if "] final: " in line]
    assert len(final) == 1 and " failed 0 timed out 1 |" in final[0], out.stderr
    assert out.stderr.startswith("pilotq-mpi: 1 worker rank on 1 node\n")
