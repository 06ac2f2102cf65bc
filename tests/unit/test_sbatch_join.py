"""Join jobs and elastic pilots in pilotq_mpi.platform.sbatch / submit_cli: golden renders,
slurm/join.sbatch, the joiner's launch line and environment, walltime warning, CLI errors."""
import argparse
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pilotq_mpi.platform import submit_cli
from pilotq_mpi.platform.sbatch import (
    SbatchRequest, default_join_request, enable_chain, job_id_from, launch_words, render)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"

JOIN_CASES = {
    "join-generic-pool": SbatchRequest(
        join="/scratch/me/run 1", pool="cpu", nodes=2, ranks_per_node=8, time="01:00:00",
        qos="debug", launcher="/opt/pilotq/bin/pilotq-srun", python="/opt/venv/bin/python"),
    "join-perlmutter-gpu": SbatchRequest(
        join="/pscratch/sd/u/run", pool="gpu", target="perlmutter-gpu", nodes=2,
        qos="regular", account="m1234", time="02:00:00"),
    "pilot-generic-run-dir-pool": SbatchRequest(
        app_argv=("driver.py", "--n", "3"), run_dir="/scratch/me/run 1", pool="cpu",
        launcher="/opt/pilotq/bin/pilotq-srun", python="/opt/venv/bin/python"),
}


@pytest.mark.parametrize("name", sorted(JOIN_CASES))
def test_render_golden(name):
    assert render(JOIN_CASES[name]) == (GOLDEN / f"{name}.sbatch").read_text()


def test_slurm_join_script_is_the_rendered_default():
    path = ROOT / "slurm" / "join.sbatch"
    assert path.read_text() == render(default_join_request()), (
        f"{path} drifted; regenerate it as slurm/README.md says")


@pytest.mark.parametrize("name", sorted(JOIN_CASES))
def test_every_directive_is_commented_and_bash_accepts_it(name):
    text = render(JOIN_CASES[name])
    subprocess.run(["bash", "-n"], input=text, text=True, check=True, timeout=10)
    lines = text.splitlines()
    obvious = ("--job-name", "--nodes", "--ntasks-per-node")
    for i, line in enumerate(lines):
        if line.startswith("#SBATCH") and not line.startswith(tuple(f"#SBATCH {o}" for o in obvious)):
            assert lines[i - 1].startswith("# "), f"{name}: {line!r} has no comment above"


def test_join_job_runs_the_joiner_on_every_rank():
    req = JOIN_CASES["join-perlmutter-gpu"]
    # no master in a join job: one worker per GPU, nodes x GPUs ranks, no extra rank on node 0
    assert not req.has_master and req.resolved_layout == "worker-per-gpu"
    assert req.total_ranks == 8 and req.cpus_per_task == 32
    assert launch_words(req) == [
        "$PILOTQ_SRUN", "--cpu-bind=cores", "--gpu-bind=none", "$PILOTQ_PYTHON", "-m", "pilotq_mpi",
        "--join", "/pscratch/sd/u/run", "--pool", "gpu"]
    text = render(req)
    assert "#SBATCH --ntasks-per-node=4" in text and "PILOTQ_RANKS" not in text
    assert "#SBATCH --job-name=pilotq-join" in text and "#SBATCH --output=pilotq-join-%j.out" in text
    # the walltime trap is the pilot's, the job chain is not there
    assert "trap 'pilotq_pending=USR1; pilotq_deliver' USR1" in text
    assert "Job chain" not in text and "#fi" not in text
    with pytest.raises(ValueError, match="no job-chain block"):
        enable_chain(text)
    generic = render(JOIN_CASES["join-generic-pool"])
    assert "-m pilotq_mpi --join '/scratch/me/run 1' --pool cpu &" in generic
    assert launch_words(SbatchRequest(join="/r")) == [
        "$PILOTQ_SRUN", "$PILOTQ_PYTHON", "-m", "pilotq_mpi", "--join", "/r"]
    # one worker in all is a valid join job (a pilot needs two ranks)
    assert SbatchRequest(join="/r", ranks_per_node=1).total_ranks == 1


def test_pilot_exports_run_dir_and_pool_only_when_given():
    text = render(JOIN_CASES["pilot-generic-run-dir-pool"])
    assert "export PILOTQ_RUN_DIR='/scratch/me/run 1'\n" in text
    assert "export PILOTQ_POOL=cpu\n" in text
    assert text.index("export PILOTQ_RUN_DIR") < text.index("-m pilotq_mpi driver.py --n 3 &")
    plain = render(SbatchRequest(app_argv=("driver.py",)))
    assert "PILOTQ_RUN_DIR" not in plain and "PILOTQ_POOL" not in plain and "unset" not in plain
    assert "Job chain" in plain


@pytest.mark.parametrize("kwargs,match", [
    (dict(join="/r", app_argv=("app.py",)), r"a join job runs no driver"),
    (dict(join="/r", run_dir="/s"), r"run_dir='/s' with join='/r'"),
    (dict(join=""), r"join='': must be a non-empty single-line string"),
    (dict(join="/r\n#SBATCH -N 99"), r"join="),
    (dict(join="/r", pool="g p"), r"pool='g p': use letters"),
    (dict(app_argv=("a.py",), run_dir="a\nb"), r"run_dir="),
    (dict(), r"app_argv=\(\): give the driver script .* or join="),
])
def test_bad_join_request_names_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SbatchRequest(**kwargs)


def _run_join_script(tmp_path, launcher_body, *, signal_when_ready=False, env=None):
    """Run the rendered join script outside Slurm with a fake launcher; (rc, stderr, log)."""
    fake = tmp_path / "fake-srun"
    fake.write_text("#!/bin/bash\n" + launcher_body)
    fake.chmod(0o755)
    script = tmp_path / "join.sh"
    script.write_text(render(SbatchRequest(join=str(tmp_path / "run"), pool="gpu")))
    full_env = {**os.environ, "SLURM_JOB_ID": "4343", "PILOTQ_SRUN": str(fake),
                "PILOTQ_PYTHON": "python", "LOG": str(tmp_path / "log"), **(env or {})}
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=full_env,
                            stderr=subprocess.PIPE, text=True)
    try:
        if signal_when_ready:
            pidfile = tmp_path / ".pilotq-4343.rank0.pid"
            give_up = time.monotonic() + 30
            while not (tmp_path / "log").exists() and time.monotonic() < give_up:
                time.sleep(0.02)
            assert pidfile.exists(), "the fake joiner writes its pid file before its log"
            proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    return proc.returncode, err, log


@pytest.mark.timeout(60)
def test_join_script_runs_joiner_without_the_submitting_pilots_settings(tmp_path):
    """sbatch passes the submitting environment on: a pilot's PILOTQ_POOL/RUN_DIR (the adapt
    policy submits from rank 0) must not reach the joiner; its pool is on its command line."""
    body = 'echo "argv=$* pool=${PILOTQ_POOL-unset} run=${PILOTQ_RUN_DIR-unset}" > "$LOG"\nexit 0\n'
    rc, err, log = _run_join_script(tmp_path, body, env={"PILOTQ_POOL": "cpu",
                                                         "PILOTQ_RUN_DIR": "/elsewhere"})
    assert rc == 0, err
    assert log.strip() == f"argv=python -m pilotq_mpi --join {tmp_path / 'run'} --pool gpu " \
                          "pool=unset run=unset"


@pytest.mark.timeout(60)
def test_walltime_warning_reaches_the_joiners_rank0_and_the_job_ends_clean(tmp_path):
    """The fake launcher plays srun and the joiner's rank 0: it writes its pid file, and on
    USR1 it leaves (exit 0). The script hands the USR1 to rank 0 only and exits 0."""
    body = r"""
trap 'echo launcher-got-USR1 >> "$LOG"' USR1
( trap 'echo rank0-left >> "$LOG"; exit 0' USR1
  echo "$BASHPID" > "$PILOTQ_RANK0_PIDFILE"
  echo started >> "$LOG"
  while :; do sleep 0.05; done ) &
rank0=$!
while kill -0 $rank0 2>/dev/null; do wait $rank0; done
exit 0
"""
    rc, err, log = _run_join_script(tmp_path, body, signal_when_ready=True)
    assert rc == 0, err
    assert "rank0-left" in log and "launcher-got-USR1" not in log, log
    assert "pilotq: passing SIGUSR1 to rank 0" in err
    assert "pilotq: exit code 0 (launcher exited with status 0)" in err


def test_job_id_from_sbatch_output():
    assert job_id_from("123\n") == "123"
    assert job_id_from("123;perlmutter\n") == "123"
    assert job_id_from("Submitted batch job 456\n") == "456"
    assert job_id_from("sbatch: note: using the default QOS\nSubmitted batch job 789\n") == "789"
    assert job_id_from("sbatch: error: nope\n") is None and job_id_from("") is None


def _parse(argv):
    parser = argparse.ArgumentParser(prog="pilotq-mpi")
    submit_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_join_renders_a_join_job(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _parse(["submit", "--join", "run", "--pool", "gpu", "--nodes", "2", "--python", "py",
                   "--launcher", "L", "--dry-run"])
    assert args.func(args) == 0
    expected = render(SbatchRequest(join=str(tmp_path / "run"), pool="gpu", nodes=2,
                                    python="py", launcher="L"))
    assert capsys.readouterr().out == expected
    # the pilot side: --run-dir (made absolute) and --pool, also after the app
    req = submit_cli.request_from_args(_parse(["submit", "app.py", "--run-dir", "r", "--pool",
                                               "cpu", "--", "--x"]))
    assert req.app_argv == ("app.py", "--x") and req.run_dir == str(tmp_path / "r")
    assert req.pool == "cpu" and req.join is None


@pytest.mark.parametrize("argv,code,message", [
    (["submit", "--join", "r", "app.py"], 2, "both an app ('app.py') and --join 'r'"),
    (["submit", "app.py", "--join", "r"], 2, "both an app ('app.py') and --join 'r'"),
    (["submit", "--nodes", "2"], 2, "no app and no --join"),
    (["submit", "--join", "r", "--run-dir", "s"], 2, "--run-dir 's' with --join"),
    (["submit", "--join", "r", "--chain"], 2, "--chain with --join"),
    (["submit", "--join", "r", "--pool", "a b"], 2, "pool='a b'"),
])
def test_cli_join_errors(argv, code, message, capsys):
    args = _parse(argv)
    assert args.func(args) == code
    assert message in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_cli_join_submits_through_sbatch(tmp_path, capsys):
    fake = tmp_path / "sbatch"
    fake.write_text(f'#!/bin/sh\ncat > {tmp_path}/script\necho "Submitted batch job 31"\n')
    fake.chmod(0o755)
    args = _parse(["submit", "--join", str(tmp_path / "run"), "--sbatch", str(fake)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "31\n"
    assert f"-m pilotq_mpi --join {tmp_path / 'run'} &" in (tmp_path / "script").read_text()
