"""Tests of pilotq_mpi.platform.sbatch: validation, golden renders, slurm/ files, submit."""
import argparse
import dataclasses
import subprocess
from pathlib import Path

import pytest

from pilotq_mpi.platform import submit_cli
from pilotq_mpi.platform.sbatch import (
    TARGETS, SbatchRequest, SubmitError, default_request, launch_words, parse_walltime,
    render, submit)

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
    assert "trap 'forward USR1' USR1" in text and "trap 'forward TERM' TERM" in text
    assert "launcher_pid=$!" in text and 'exit "$rc"' in text
    assert "$" + "{" not in text.replace("${PILOTQ", "").replace("${SLURM_JOB_ID}", "")


def test_every_sbatch_directive_is_commented():
    """Each #SBATCH line is preceded by a comment, or belongs to the obvious header block."""
    obvious = ("--job-name", "--nodes", "--ntasks-per-node")
    for target in TARGETS:
        lines = render(GOLDEN_CASES.get(f"{target}", default_request(target))).splitlines()
        for i, line in enumerate(lines):
            if line.startswith("#SBATCH") and not line.startswith(tuple(f"#SBATCH {o}" for o in obvious)):
                assert lines[i - 1].startswith("# "), f"{target}: {line!r} has no comment above"


def test_perlmutter_gpu_specifics():
    text = render(default_request("perlmutter-gpu"))
    assert "#SBATCH --constraint=gpu" in text
    assert "#SBATCH --gpus-per-node=4" in text
    assert "export MPICH_GPU_SUPPORT_ENABLED=1" in text
    assert "# module load cudatoolkit craype-accel-nvidia80" in text
    assert launch_words(default_request("perlmutter-gpu")) == [
        "$PILOTQ_SRUN", "-N", "1", "-n", "4", "--gpu-bind=none", "--ntasks-per-node=4",
        "--cpus-per-task=32", "--cpu-bind=cores", "$PILOTQ_PYTHON", "-m", "pilotq_mpi", "app.py"]


def test_perlmutter_cpu_and_generic_launch():
    assert "#SBATCH --constraint=cpu" in render(default_request("perlmutter-cpu"))
    assert launch_words(default_request("perlmutter-cpu"))[1:9] == [
        "-N", "1", "-n", "128", "--ntasks-per-node=128", "--cpus-per-task=2", "--cpu-bind=cores",
        "$PILOTQ_PYTHON"]
    assert launch_words(default_request("generic")) == [
        "$PILOTQ_SRUN", "-N", "1", "-n", "4", "--ntasks-per-node=4", "$PILOTQ_PYTHON", "-m",
        "pilotq_mpi", "app.py"]
    assert "--constraint" not in render(default_request("generic"))


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


@pytest.mark.timeout(30)
def test_submit_cli_submits_and_reports_errors(tmp_path, capsys):
    fake = _fake_sbatch(tmp_path, "cat > /dev/null; echo 77\n")
    args = _parse(["submit", "app.py", "--sbatch", fake])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "77\n"
    args = _parse(["submit", "app.py", "--time", "forever"])
    assert args.func(args) == 2
    assert "time='forever'" in capsys.readouterr().err
