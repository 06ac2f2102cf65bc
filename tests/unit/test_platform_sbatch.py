"""Tests of pilotq_mpi.platform.sbatch: validation, golden renders, slurm/ files, submit."""
import argparse
import dataclasses
import signal
import subprocess
from pathlib import Path

import pytest

from pilotq_mpi.platform import submit_cli
from pilotq_mpi.platform.sbatch import (
    TARGETS, SbatchRequest, SubmitError, default_request, enable_chain, launch_words,
    parse_walltime, render, submit)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = ("regenerate with: python -c \"from pilotq_mpi.platform.sbatch import *; "
              "[open(f'slurm/{t}.sbatch','w').write(render(default_request(t))) for t in TARGETS]\"")

GOLDEN_CASES = {
    "generic-2nodes-gpus-qos": SbatchRequest(
        app_argv=("my app.py", "--x", "it's"), nodes=2, gpus_per_node=2, qos="debug",
        account="proj1", time="1-02:00:00", signal_lead=300,
        extra_directives=("--mail-type=END",), job_name="demo",
        launcher="/opt/pilotq/launch/pilotq-srun", python="/opt/venv/bin/python"),
    "perlmutter-gpu-4nodes": SbatchRequest(
        app_argv=("cutting.py", "--qubits", "34"), target="perlmutter-gpu", nodes=4,
        qos="regular", account="m1234", time="02:00:00"),
    "perlmutter-cpu-ranks64": SbatchRequest(
        app_argv=("qml.py",), target="perlmutter-cpu", nodes=2, ranks_per_node=64,
        qos="debug", time="00:20:00", signal_lead=60),
    "perlmutter-gpu-ranks-per-node": SbatchRequest(
        app_argv=("sv.py",), target="perlmutter-gpu", nodes=2, layout="ranks-per-node",
        gpus_per_node=4, ranks_per_node=4, account="m1234"),
}


@pytest.mark.parametrize("target", TARGETS)
def test_slurm_dir_scripts_are_rendered_defaults(target):
    path = ROOT / "slurm" / f"{target}.sbatch"
    assert path.read_text() == render(default_request(target)), f"{path} drifted; {REGENERATE}"


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_render_golden(name):
    assert render(GOLDEN_CASES[name]) == (GOLDEN / f"{name}.sbatch").read_text()


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_script_is_valid_bash_with_signal_handling(target):
    text = render(default_request(target))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True, timeout=10)
    assert "#SBATCH --signal=B:USR1@120" in text
    assert "trap 'pilotq_pending=USR1; pilotq_deliver' USR1" in text
    assert "trap 'pilotq_pending=TERM; pilotq_deliver' TERM" in text
    assert "pilotq_launcher=$!" in text and 'exit "$pilotq_code"' in text
    # the traps come before anything slow (modules, environment) and before the launcher
    assert text.index("trap 'pilotq_pending=USR1") < text.index("# module load python") \
        < text.index("pilotq_launcher=$!")
    # the script signals rank 0 only: never the launcher (srun would pass it to every rank)
    assert 'kill -s "$pilotq_pending" "$pilotq_rank0"' in text
    assert 'kill -s "$pilotq_pending" "$pilotq_launcher"' not in text
    assert 'export PILOTQ_EXIT_CODE_FILE="$PWD/.pilotq-${SLURM_JOB_ID}.exit"' in text


def test_srun_line_takes_rank_count_from_the_allocation():
    for req in [default_request("generic"), default_request("perlmutter-cpu"),
                GOLDEN_CASES["perlmutter-gpu-ranks-per-node"], GOLDEN_CASES["generic-2nodes-gpus-qos"]]:
        launch = next(line for line in render(req).splitlines() if line.startswith('"$PILOTQ_SRUN"'))
        assert not {"-n", "-N"} & set(launch.split()), launch
        assert "--ntasks" not in launch and "--nodes" not in launch, launch
    # worker-per-gpu counts its ranks from the allocation's nodes and GPUs
    text = render(default_request("perlmutter-gpu"))
    assert "PILOTQ_RANKS=$(( SLURM_JOB_NUM_NODES * ${pilotq_gpus##*:} + 1 ))" in text
    assert "--ntasks-per-node" not in text


def test_chain_block_is_commented_and_valid_once_uncommented():
    text = render(default_request("generic"))
    block = [line for line in text.splitlines() if line.startswith("#if [") or line.startswith("#    ")
             or line == "#fi"]
    assert block[0].startswith('#if [ "$pilotq_code" -eq 75 ]') and block[-1] == "#fi", block
    assert any("sbatch --parsable --dependency=afterany:" in line for line in block)
    uncommented = enable_chain(text)
    assert uncommented != text and "\nif [ \"$pilotq_code\" -eq 75 ]" in uncommented
    subprocess.run(["bash", "-n"], input=uncommented, text=True, check=True, timeout=10)


def _run_body(tmp_path, launcher_body, *, signal_at=None, env=None):
    """Run a rendered generic script outside Slurm with a fake launcher; return (rc, stderr, log)."""
    import os
    import time

    fake = tmp_path / "fake-srun"
    fake.write_text("#!/bin/bash\n" + launcher_body)
    fake.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(render(default_request("generic")))
    full_env = {**os.environ, "SLURM_JOB_ID": "4242", "PILOTQ_SRUN": str(fake),
                "PILOTQ_PYTHON": "python", "LOG": str(tmp_path / "log"), **(env or {})}
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=full_env,
                            stderr=subprocess.PIPE, text=True)
    try:
        if signal_at is not None:
            signal_at(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    return proc.returncode, err, log


@pytest.mark.timeout(90)
@pytest.mark.parametrize("written,launcher_rc,expected", [
    ("75", 137, 75), ("3", 137, 3), ("1", 137, 1), ("0", 0, 0), (None, 9, 9), ("junk", 5, 5)])
def test_script_exits_with_the_code_rank0_wrote(tmp_path, written, launcher_rc, expected):
    write = f'echo {written} > "$PILOTQ_EXIT_CODE_FILE"\n' if written is not None else ""
    rc, err, _ = _run_body(tmp_path, f"{write}exit {launcher_rc}\n")
    assert rc == expected, err
    assert f"pilotq: exit code {expected} (launcher exited with status {launcher_rc})" in err
    assert not list(tmp_path.glob(".pilotq-4242.*")), "the job's pid and code files are removed"


@pytest.mark.timeout(90)
def test_early_signal_waits_for_rank0_and_never_reaches_the_launcher(tmp_path):
    """USR1 before rank 0 is up: the launcher (srun) is never signalled; rank 0 gets it once
    its pid file exists. The fake launcher plays srun (logs any USR1 it gets) and a rank 0
    that writes its pid file only when told to, and drains (code 75) on USR1."""
    import time

    launcher = r"""
trap 'echo launcher-got-USR1 >> "$LOG"' USR1
( trap 'echo rank0-got-USR1 >> "$LOG"; echo 75 > "$PILOTQ_EXIT_CODE_FILE"; exit 0' USR1
  touch "$LOG.started"
  while [ ! -e "$LOG.go" ]; do sleep 0.05; done
  echo "$BASHPID" > "$PILOTQ_RANK0_PIDFILE"
  while :; do sleep 0.05; done ) &
rank0=$!
while kill -0 $rank0 2>/dev/null; do wait $rank0; done
exit 137
"""

    def signal_early(proc):
        give_up = time.monotonic() + 30
        while not (tmp_path / "log.started").exists() and time.monotonic() < give_up:
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)  # rank 0 is not up yet
        time.sleep(1.5)  # the script looks for rank 0 every second meanwhile
        (tmp_path / "log.go").write_text("")  # now rank 0 writes its pid file

    rc, err, log = _run_body(tmp_path, launcher, signal_at=signal_early)
    assert "launcher-got-USR1" not in log, log
    assert log.count("rank0-got-USR1") == 1, (log, err)
    assert rc == 75, err
    assert "pilotq: passing SIGUSR1 to rank 0" in err




def test_every_sbatch_directive_is_commented():
    """Each #SBATCH line is preceded by a comment, or belongs to the obvious header block."""
    obvious = ("--job-name", "--nodes", "--ntasks-per-node")
    for target in TARGETS:
        lines = render(GOLDEN_CASES.get(f"{target}", default_request(target))).splitlines()
        for i, line in enumerate(lines):
            if line.startswith("#SBATCH") and not line.startswith(tuple(f"#SBATCH {o}" for o in obvious)):
                assert lines[i - 1].startswith("# "), f"{target}: {line!r} has no comment above"


def test_perlmutter_gpu_specifics():
    req = default_request("perlmutter-gpu")
    text = render(req)
    assert "#SBATCH --constraint=gpu" in text
    assert "#SBATCH --gpus-per-node=4" in text and "#SBATCH --exclusive" in text
    assert "export MPICH_GPU_SUPPORT_ENABLED=1" in text
    assert "# module load cudatoolkit craype-accel-nvidia80" in text
    assert 'export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK:-1}"' in text
    # worker-per-gpu: node 0 holds 5 ranks (master + 4 workers): 128 threads / 5 -> 24 (whole cores)
    assert req.resolved_layout == "worker-per-gpu" and req.total_ranks == 5
    assert req.cpus_per_task == 24 and "#SBATCH --cpus-per-task=24" in text
    assert launch_words(req) == [
        "$PILOTQ_SRUN", "--ntasks=$PILOTQ_RANKS", "--distribution=cyclic", "--cpu-bind=cores",
        "--gpu-bind=none", "$PILOTQ_PYTHON", "-m", "pilotq_mpi", "app.py"]
    four = SbatchRequest(app_argv=("a.py",), target="perlmutter-gpu", nodes=4)
    assert four.total_ranks == 17
    # asking for ranks per node picks the layout that has them
    two = SbatchRequest(app_argv=("a.py",), target="perlmutter-gpu", nodes=4, ranks_per_node=2)
    assert two.resolved_layout == "ranks-per-node" and two.total_ranks == 8 and two.cpus_per_task == 64
    per_node = GOLDEN_CASES["perlmutter-gpu-ranks-per-node"]
    assert per_node.total_ranks == 8 and per_node.cpus_per_task == 32
    assert launch_words(per_node) == [
        "$PILOTQ_SRUN", "--cpu-bind=cores", "--gpu-bind=none", "$PILOTQ_PYTHON", "-m",
        "pilotq_mpi", "sv.py"]


def test_perlmutter_cpu_and_generic_launch():
    text = render(default_request("perlmutter-cpu"))
    assert "#SBATCH --constraint=cpu" in text and "#SBATCH --cpus-per-task=2" in text
    assert launch_words(default_request("perlmutter-cpu")) == [
        "$PILOTQ_SRUN", "--cpu-bind=cores", "$PILOTQ_PYTHON", "-m", "pilotq_mpi", "app.py"]
    assert launch_words(default_request("generic")) == [
        "$PILOTQ_SRUN", "$PILOTQ_PYTHON", "-m", "pilotq_mpi", "app.py"]
    assert "--constraint" not in render(default_request("generic"))
    assert 'PILOTQ_SRUN="${PILOTQ_SRUN:-pilotq-srun}"' in render(default_request("generic"))


def test_render_is_pure():
    req = GOLDEN_CASES["perlmutter-gpu-4nodes"]
    assert render(req) == render(dataclasses.replace(req))


@pytest.mark.parametrize("text,seconds", [("00:30:00", 1800), ("1-00:00:00", 86400),
                                          ("48:00:00", 172800), ("2-23:59:59", 259199)])
def test_parse_walltime(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("kwargs,match", [
    (dict(time="30"), r"time='30': use HH:MM:SS or D-HH:MM:SS"),
    (dict(time="00:61:00"), r"time='00:61:00'"),
    (dict(time="1-25:00:00"), r"hours must be 0-23"),
    (dict(time="00:00:00"), r"longer than zero"),
    (dict(target="summit"), r"target='summit': choose one of generic, perlmutter-gpu"),
    (dict(nodes=0), r"nodes=0: must be an integer >= 1"),
    (dict(ranks_per_node=1), r"= 1 rank: the pilot needs rank 0"),
    (dict(target="perlmutter-gpu", gpus_per_node=8), r"gpus_per_node=8: a Perlmutter GPU node has 4"),
    (dict(target="perlmutter-cpu", gpus_per_node=1), r"CPU nodes have no GPUs"),
    (dict(target="perlmutter-cpu", ranks_per_node=512), r"ranks_per_node=512"),
    (dict(signal_lead=1800), r"signal_lead=1800 s is not shorter than time='00:30:00'"),
    (dict(signal_lead=0), r"signal_lead=0"),
    (dict(qos="a b"), r"qos='a b': use letters"),
    (dict(account="x\n#SBATCH -N 99"), r"account="),
    (dict(extra_directives=("mail-type=END",)), r"write it as an sbatch option"),
    (dict(app_argv=()), r"app_argv=\(\)"),
    (dict(output="a\nb"), r"output="),
    (dict(layout="cyclic"), r"layout='cyclic': choose one of ranks-per-node, worker-per-gpu"),
    (dict(layout="worker-per-gpu"), r"only the perlmutter-gpu target has it"),
    (dict(target="perlmutter-gpu", ranks_per_node=5, layout="worker-per-gpu"),
     r"ranks_per_node=5 with layout='worker-per-gpu'"),
])
def test_bad_request_names_value(kwargs, match):
    args = dict(app_argv=("app.py",))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SbatchRequest(**args)


def test_app_argv_as_string_is_refused():
    with pytest.raises(TypeError, match="sequence of words"):
        SbatchRequest(app_argv="app.py")


def _fake_sbatch(tmp_path, body):
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.timeout(30)
def test_submit_reads_stdin_and_returns_id(tmp_path):
    fake = _fake_sbatch(tmp_path, f'[ "$1" = --parsable ] || exit 9\ncat > {tmp_path}/got\necho "123;cluster"\n')
    assert submit("#!/bin/bash\necho hi\n", sbatch=fake) == "123"
    assert (tmp_path / "got").read_text() == "#!/bin/bash\necho hi\n"


@pytest.mark.timeout(30)
def test_submit_errors(tmp_path):
    fake = _fake_sbatch(tmp_path, 'echo "sbatch: error: invalid qos" >&2; exit 1\n')
    with pytest.raises(SubmitError, match="invalid qos"):
        submit("x", sbatch=fake)
    with pytest.raises(SubmitError, match="not found"):
        submit("x", sbatch=str(tmp_path / "nope"))


def _parse(argv):
    parser = argparse.ArgumentParser(prog="pilotq-mpi")
    submit_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv,app_argv,nodes", [
    (["submit", "app.py", "--nodes", "2", "--", "--x", "1"], ("app.py", "--x", "1"), 2),
    (["submit", "--nodes", "2", "app.py", "--", "--x", "1"], ("app.py", "--x", "1"), 2),
    (["submit", "app.py", "--nodes=3"], ("app.py",), 3),
    (["submit", "app.py", "a", "b"], ("app.py", "a", "b"), 1),
])
def test_submit_cli_argument_forms(argv, app_argv, nodes):
    req = submit_cli.request_from_args(_parse(argv))
    assert req.app_argv == app_argv and req.nodes == nodes


def test_submit_cli_mixed_without_separator_is_refused():
    with pytest.raises(ValueError, match="after `--`"):
        submit_cli.request_from_args(_parse(["submit", "app.py", "--nodes", "2", "--x"]))


def test_submit_cli_dry_run_prints_script(capsys):
    args = _parse(["submit", "app.py", "--target", "perlmutter-gpu", "-N", "2", "-t",
                   "01:00:00", "-q", "regular", "-A", "m1", "--python", "py", "--launcher",
                   "L", "--dry-run", "--", "--steps", "3"])
    assert args.func(args) == 0
    expected = render(SbatchRequest(app_argv=("app.py", "--steps", "3"),
                                    target="perlmutter-gpu", nodes=2, time="01:00:00",
                                    qos="regular", account="m1", python="py", launcher="L"))
    assert capsys.readouterr().out == expected
    args = _parse(["submit", "app.py", "--target", "perlmutter-gpu", "--layout", "ranks-per-node",
                   "--ranks-per-node", "4", "--dry-run"])
    assert args.func(args) == 0
    assert "#SBATCH --ntasks-per-node=4" in capsys.readouterr().out


def test_submit_cli_default_launcher_is_the_installed_command():
    req = submit_cli.request_from_args(_parse(["submit", "app.py"]))
    assert req.launcher == submit_cli.default_launcher()
    assert Path(req.launcher).name == "pilotq-srun"


@pytest.mark.timeout(30)
def test_submit_cli_submits_and_reports_errors(tmp_path, capsys):
    fake = _fake_sbatch(tmp_path, "cat > /dev/null; echo 77\n")
    args = _parse(["submit", "app.py", "--sbatch", fake])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "77\n"
    args = _parse(["submit", "app.py", "--time", "forever"])
    assert args.func(args) == 2
    assert "time='forever'" in capsys.readouterr().err
