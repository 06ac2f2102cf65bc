"""Exact-argv tests of pilotq_mpi.platform.launch (pure builders, no MPI)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pilotq_mpi.platform import scripts
from pilotq_mpi.platform.launch import (
    PILOT_MPIEXEC_USAGE, PILOT_SRUN_FLAGS, clean_step_env, in_slurm, mpiexec_argv,
    nested_step_argv, pilot_mpiexec_argv, pilot_srun_argv, srun_argv)

ROOT = Path(__file__).resolve().parents[2]


def test_mpiexec_argv():
    assert mpiexec_argv(4, ["python", "app.py"]) == ["mpiexec", "-n", "4", "python", "app.py"]
    assert mpiexec_argv(2, ("x",), mpiexec="/v/bin/mpiexec", extra=["-bind-to", "core"]) == [
        "/v/bin/mpiexec", "-n", "2", "-bind-to", "core", "x"]


def test_srun_argv_minimal_and_full():
    assert srun_argv(4, ["python", "a.py"]) == ["srun", "--mpi=pmi2", "-n", "4", "python", "a.py"]
    assert srun_argv(8, ["p"], nodes=2, gpus_per_task=1, gpu_bind="none", exact=True,
                     overlap=True, extra=["-c", "32"]) == [
        "srun", "--mpi=pmi2", "-N", "2", "-n", "8", "--gpus-per-task=1", "--gpu-bind=none",
        "--exact", "--overlap", "-c", "32", "p"]
    assert srun_argv(1, ["p"], mpi=None) == ["srun", "-n", "1", "p"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_bad_rank_count_names_value(bad):
    with pytest.raises(ValueError, match=r"n=.*must be an integer >= 1"):
        mpiexec_argv(bad, ["p"])


def test_program_must_be_words():
    with pytest.raises(TypeError, match="list of words"):
        srun_argv(2, "python app.py")
    with pytest.raises(ValueError, match="program=\\[\\]"):
        srun_argv(2, [])


def test_srun_more_nodes_than_ranks():
    with pytest.raises(ValueError, match="nodes=3 > n=2"):
        srun_argv(2, ["p"], nodes=3)


def test_in_slurm():
    assert in_slurm({"SLURM_JOB_ID": "12"})
    assert in_slurm({"SLURM_JOBID": "12"})
    assert not in_slurm({"SLURM_CONF": "/x"})
    assert not in_slurm({})


def test_nested_step_argv_outside_slurm():
    assert nested_step_argv(3, ["python", "e.py"], {"PATH": "/bin"}) == [
        "mpiexec", "-n", "3", "python", "e.py"]
    assert nested_step_argv(2, ["python", "e.py"], {}, gpus=(2, 3), mpiexec="/m") == [
        "/m", "-n", "2", "env", "CUDA_VISIBLE_DEVICES=2,3", "python", "e.py"]


def test_nested_step_argv_under_slurm():
    env = {"SLURM_JOB_ID": "7"}
    assert nested_step_argv(4, ["python", "e.py"], env) == [
        "srun", "--mpi=pmi2", "-n", "4", "--exact", "--overlap", "python", "e.py"]
    assert nested_step_argv(4, ["e"], env, gpus=[0, 1], nodelist=["n1", "n2", "n1"]) == [
        "srun", "--mpi=pmi2", "-N", "2", "-n", "4", "--exact", "--overlap",
        "--nodelist=n1,n2", "env", "CUDA_VISIBLE_DEVICES=0,1", "e"]


def test_clean_step_env_hydra_ranks():
    # what MPICH's Hydra gives each rank (measured here)
    env = {"PATH": "/bin", "HOME": "/root", "PMI_RANK": "1", "PMI_SIZE": "2", "PMI_FD": "11",
           "PMI_HOSTNAME": "vm", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2",
           "HYDI_CONTROL_FD": "7", "GFORTRAN_UNBUFFERED_PRECONNECTED": "y",
           "CUDA_VISIBLE_DEVICES": "1"}
    assert clean_step_env(env) == {"PATH": "/bin", "HOME": "/root", "CUDA_VISIBLE_DEVICES": "1"}


def test_clean_step_env_slurm_step_keeps_allocation():
    # a subset of what `srun --mpi=pmi2 -n 2 --gpus-per-task=1` gives a task (measured here)
    env = {"SLURM_JOB_ID": "1", "SLURM_JOBID": "1", "SLURM_JOB_NODELIST": "vm",
           "SLURM_CONF": "/c", "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "4",
           "SLURMD_NODENAME": "vm", "SLURM_CLUSTER_NAME": "c",
           "PMI_FD": "11", "PMI_JOBID": "1.0", "PMI_RANK": "0", "PMI_SIZE": "2",
           "SLURMD_TRES_BIND": "gpu:per_task:1", "SLURM_DISTRIBUTION": "block",
           "SLURM_GTIDS": "0,1", "SLURM_LAUNCH_NODE_IPADDR": "127.0.0.1",
           "SLURM_MPI_TYPE": "pmi2", "SLURM_NPROCS": "2", "SLURM_NTASKS": "2",
           "SLURM_SRUN_COMM_HOST": "127.0.0.1", "SLURM_SRUN_COMM_PORT": "41343",
           "SLURM_STEPID": "0", "SLURM_STEP_GPUS": "0", "SLURM_STEP_ID": "0",
           "SLURM_STEP_LAUNCHER_PORT": "41343", "SLURM_STEP_NODELIST": "vm",
           "SLURM_STEP_NUM_NODES": "1", "SLURM_STEP_NUM_TASKS": "2",
           "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_TASKS_PER_NODE": "2",
           "SLURM_TASK_PID": "4535", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_NODEID": "0", "SLURM_NNODES": "1", "SLURM_GPUS_PER_TASK": "1",
           "SLURM_CPU_BIND": "quiet,none"}
    assert clean_step_env(env) == {
        "SLURM_JOB_ID": "1", "SLURM_JOBID": "1", "SLURM_JOB_NODELIST": "vm", "SLURM_CONF": "/c",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "4", "SLURMD_NODENAME": "vm",
        "SLURM_CLUSTER_NAME": "c", "SLURM_MPI_TYPE": "pmi2"}


def test_clean_step_env_pmix_pals_openmpi():
    env = {"PMIX_RANK": "0", "PMIX_NAMESPACE": "x", "PALS_RANKID": "0", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_MCA_ess": "pmi", "OMPI_MCA_btl": "self,vader", "MPIR_CVAR_X": "1",
           "HYDRA_LAUNCHER": "fork", "OMPI_UNIVERSE_SIZE": "4"}
    # user-chosen MCA settings (not launcher facts) are kept
    assert clean_step_env(env) == {"OMPI_MCA_btl": "self,vader"}


def test_clean_step_env_does_not_mutate():
    env = {"PMI_RANK": "0"}
    clean_step_env(env)
    assert env == {"PMI_RANK": "0"}


def _fake_bin(tmp_path, name):
    fake = tmp_path / name
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    return fake


def test_pilot_srun_argv():
    assert pilot_srun_argv(["-n", "4", "python", "app.py"], {}) == [
        "srun", *PILOT_SRUN_FLAGS, "-n", "4", "python", "app.py"]
    assert pilot_srun_argv(["x"], {"SRUN": "/s/srun", "PILOTQ_SRUN_MPI": "cray_shasta"}) == [
        "/s/srun", "--mpi=cray_shasta", "x"]
    assert pilot_srun_argv([], {"SRUN": "", "PILOTQ_SRUN_MPI": ""}) == ["srun", "--mpi=pmi2"]


def test_pilot_mpiexec_argv():
    assert pilot_mpiexec_argv(["3", "app.py", "--x", "1"], {}, python="/v/py", mpiexec="/v/mpiexec") == [
        "/v/mpiexec", "-n", "3", "/v/py", "-m", "pilotq_mpi", "app.py", "--x", "1"]
    assert pilot_mpiexec_argv(["2", "a.py"], {"MPIEXEC": "m", "PYTHON": "p"}) == [
        "m", "-n", "2", "p", "-m", "pilotq_mpi", "a.py"]
    for bad in ([], ["4"], ["x", "a.py"], ["1", "a.py"], ["-3", "a.py"], ["2.5", "a.py"]):
        with pytest.raises(ValueError, match="usage: pilotq-mpiexec N app.py"):
            pilot_mpiexec_argv(bad, {})


def _fake_bin(tmp_path, name):
    fake = tmp_path / name
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    return fake


def _run(argv, env):
    return subprocess.run(["timeout", "20", *argv], env=env, capture_output=True, text=True)


SRUN_CASES = [
    (["-n", "4", "python", "-m", "pilotq_mpi", "app.py", "a b"], {}),
    (["--ntasks=5", "--distribution=cyclic", "p"], {"PILOTQ_SRUN_MPI": "cray_shasta"}),
    ([], {"PILOTQ_SRUN_MPI": ""}),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args,extra_env", SRUN_CASES)
def test_pilotq_srun_checkout_script_installed_command_and_python_agree(tmp_path, args, extra_env):
    """launch/pilotq-srun, the installed pilotq-srun command and pilot_srun_argv run the same."""
    fake = _fake_bin(tmp_path, "srun")
    env = {**os.environ, "SRUN": str(fake), **extra_env}
    expected = pilot_srun_argv(args, env)[1:]
    for command in ([str(ROOT / "launch" / "pilotq-srun")],
                    [sys.executable, "-c", "import sys; from pilotq_mpi.platform.scripts import "
                     "srun_main; sys.exit(srun_main())"]):
        out = _run([*command, *args], env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == expected, command


MPIEXEC_CASES = [["3", "app.py", "--x", "1"], ["2", "a b.py"], ["007", "a.py"]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", MPIEXEC_CASES)
def test_pilotq_mpiexec_checkout_script_installed_command_and_python_agree(tmp_path, args):
    fake = _fake_bin(tmp_path, "mpiexec")
    env = {**os.environ, "MPIEXEC": str(fake), "PYTHON": "py"}
    expected = pilot_mpiexec_argv(args, env)[1:]
    assert expected[:2] == ["-n", str(int(args[0]))]
    for command in ([str(ROOT / "launch" / "pilotq-mpiexec")],
                    [sys.executable, "-c", "import sys; from pilotq_mpi.platform.scripts import "
                     "mpiexec_main; sys.exit(mpiexec_main())"]):
        out = _run([*command, *args], env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == expected, command


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [[], ["4"], ["x", "a.py"], ["1", "a.py"]])
def test_pilotq_mpiexec_usage_errors_agree(args):
    for command in ([str(ROOT / "launch" / "pilotq-mpiexec")],
                    [sys.executable, "-c", "import sys; from pilotq_mpi.platform.scripts import "
                     "mpiexec_main; sys.exit(mpiexec_main())"]):
        out = _run([*command, *args], dict(os.environ))
        assert out.returncode == 2 and out.stderr.strip() == PILOT_MPIEXEC_USAGE, (command, out)


def test_installed_command_defaults_to_this_python():
    assert scripts.pilot_mpiexec_argv(["2", "a.py"], {}, python=sys.executable)[3] == sys.executable


@pytest.mark.timeout(60)
def test_console_scripts_are_installed_beside_python(tmp_path):
    """pyproject's [project.scripts] put pilotq-srun and pilotq-mpiexec on PATH (the sbatch
    scripts default to the bare name). Needs the package installed (make test does it)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared["pilotq-srun"] == "pilotq_mpi.platform.scripts:srun_main"
    assert declared["pilotq-mpiexec"] == "pilotq_mpi.platform.scripts:mpiexec_main"
    installed = Path(sys.executable).parent / "pilotq-srun"
    if not installed.exists():
        pytest.skip(f"{installed} not installed (pip install -e . installs it)")
    out = _run([str(installed), "-n", "2", "x"], {**os.environ, "SRUN": str(_fake_bin(tmp_path, "srun"))})
    assert out.stdout.splitlines() == [*PILOT_SRUN_FLAGS, "-n", "2", "x"], out.stderr
