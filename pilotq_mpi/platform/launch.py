"""Command lines that start MPI programs, built by pure functions (no I/O, no os.environ).

Three uses:

* the pilot itself: ``srun_argv`` / ``mpiexec_argv`` around ``python -m pilotq_mpi app.py``;
* step mode: :func:`nested_step_argv` starts a nested job step whose ``MPI_COMM_WORLD``
  is exactly a task's ranks (``srun --exact --overlap`` under Slurm, ``mpiexec``
  elsewhere), with the environment cleaned by :func:`clean_step_env`;
* the ``pilotq-srun`` / ``pilotq-mpiexec`` commands (console scripts installed with the
  package, :mod:`pilotq_mpi.platform.scripts`) run :func:`pilot_srun_argv` /
  :func:`pilot_mpiexec_argv`; ``launch/pilotq-srun`` and ``launch/pilotq-mpiexec`` are shell
  versions of the same for a checkout (a test keeps them equal).

Every function takes the environment as a mapping, so it is tested by exact comparison.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from collections.abc import Mapping, Sequence

#: Flags ``launch/pilotq-srun`` always passes to srun for the pilot job: PMI2 is what
#: MPICH (PyPI wheel and Cray MPICH) bootstraps with (``--mpi=pmix`` aborts MPICH).
#: ``--kill-on-bad-exit`` is deliberately absent: it would kill the workers when rank 0
#: exits 75 ("resume me") first, and the exit status would no longer be 75.
DEFAULT_SRUN_MPI = "pmi2"
PILOT_SRUN_FLAGS: tuple[str, ...] = (f"--mpi={DEFAULT_SRUN_MPI}",)

#: Prefixes of variables a launcher sets for the processes *it* started. A nested
#: mpiexec/srun or a singleton MPI program that inherits them may try to join the
#: outer job (connect to its PMI server) instead of starting its own.
STEP_ENV_DROP_PREFIXES: tuple[str, ...] = (
    "PMI_",          # MPICH/Hydra and Slurm PMI2: PMI_FD, PMI_RANK, PMI_SIZE, PMI_JOBID, ...
    "PMIX_",         # PMIx (Open MPI 5, srun --mpi=pmix): namespace, rank, server URI
    "PALS_",         # HPE PALS (aprun/mpiexec on Cray EX without Slurm)
    "HYDRA_",        # Hydra settings forwarded to ranks
    "HYDI_",         # Hydra's control fd (HYDI_CONTROL_FD)
    "MPIR_",         # debugger/tool interface of the outer launcher
    "SLURM_STEP_",   # the outer step: id, node list, task counts, GPUs, launcher port
    "SLURM_SRUN_COMM_",  # the outer srun's I/O host/port
    "OMPI_COMM_WORLD_",  # Open MPI's rank/size of the outer job
    "OMPI_MCA_ess",      # Open MPI: "you were started by mpirun" (ess/pmix selection)
    "OMPI_MCA_orte_",    # Open MPI 4 HNP URI, job id
    "OMPI_MCA_pmix",
    "PRTE_MCA_ess",
)

#: Exact names dropped as well (per-task facts of the outer step, or srun input
#: variables the outer srun exported that would change the nested step's layout).
STEP_ENV_DROP_NAMES: frozenset[str] = frozenset({
    "MPI_LOCALRANKID", "MPI_LOCALNRANKS",            # Hydra node-local rank/size
    "GFORTRAN_UNBUFFERED_PRECONNECTED",              # Hydra sets it for its ranks
    "OMPI_UNIVERSE_SIZE", "OMPI_FIRST_RANKS", "OMPI_APP_CTX_NUM_PROCS",
    "OMPI_NUM_APP_CTX", "OMPI_FILE_LOCATION",
    "SLURM_STEPID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_GTIDS",
    "SLURM_TASK_PID", "SLURM_LAUNCH_NODE_IPADDR", "SLURMD_TRES_BIND",
    # srun reads these as if given on its command line (see srun(1), INPUT ENVIRONMENT):
    # inherited from the outer step they would impose its task count and binding.
    "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE",
    "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE",
    "SLURM_GPU_BIND", "SLURM_GPUS_PER_TASK", "SLURM_DISTRIBUTION", "SLURM_EXACT",
    "SLURM_OVERLAP", "SLURM_NNODES",
})


def default_mpiexec() -> str:
    """The mpiexec next to this Python (the PyPI ``mpich`` extra puts it there), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")


def in_slurm(env: Mapping[str, str]) -> bool:
    """True when ``env`` is inside a Slurm allocation (``SLURM_JOB_ID`` or ``SLURM_JOBID`` set)."""
    return bool(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))


def clean_step_env(env: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``env`` without the outer job's launcher variables.

    Keeps the allocation (``SLURM_JOB_ID``, node list, ``SLURM_CONF``) so that a nested
    ``srun`` still runs inside it; drops :data:`STEP_ENV_DROP_PREFIXES` and
    :data:`STEP_ENV_DROP_NAMES`.
    """
    return {
        k: v for k, v in env.items()
        if k not in STEP_ENV_DROP_NAMES and not k.startswith(STEP_ENV_DROP_PREFIXES)
    }


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of ranks n={n!r}: must be an integer >= 1")


def check_program(program: Sequence[str]) -> tuple[str, ...]:
    """The program's argv as a tuple; a clear error for a single string or an empty list."""
    if isinstance(program, str):
        raise TypeError(f"program={program!r}: pass the argv as a list of words, "
                        f"e.g. [{program!r}], not a single string")
    words = tuple(program)
    if not words:
        raise ValueError("program=[]: give the program to run, e.g. ['python', 'app.py']")
    return words


def mpiexec_argv(n: int, program: Sequence[str], *, mpiexec: str = "mpiexec",
                 extra: Sequence[str] = ()) -> list[str]:
    """``mpiexec -n N [extra...] program...``.

    >>> mpiexec_argv(4, ["python", "app.py"])
    ['mpiexec', '-n', '4', 'python', 'app.py']
    """
    _check_n(n)
    return [mpiexec, "-n", str(n), *extra, *check_program(program)]


def srun_argv(n: int, program: Sequence[str], *, nodes: int | None = None,
              gpus_per_task: int | None = None, gpu_bind: str | None = None,
              mpi: str | None = "pmi2", exact: bool = False, overlap: bool = False,
              extra: Sequence[str] = ()) -> list[str]:
    """``srun [--mpi=M] [-N nodes] -n N [--gpus-per-task=G] [--gpu-bind=B] [--exact] [--overlap] [extra...] program...``.

    ``mpi=None`` leaves the PMI plugin to Slurm's ``MpiDefault``.

    >>> srun_argv(4, ["python", "app.py"], gpus_per_task=1)
    ['srun', '--mpi=pmi2', '-n', '4', '--gpus-per-task=1', 'python', 'app.py']
    """
    _check_n(n)
    argv = ["srun"]
    if mpi:
        argv.append(f"--mpi={mpi}")
    if nodes is not None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"nodes={nodes!r}: must be an integer >= 1 (or None)")
        if nodes > n:
            raise ValueError(f"nodes={nodes} > n={n}: cannot place {n} ranks on {nodes} nodes; "
                             "lower nodes or raise n")
        argv += ["-N", str(nodes)]
    argv += ["-n", str(n)]
    if gpus_per_task is not None:
        if isinstance(gpus_per_task, bool) or not isinstance(gpus_per_task, int) or gpus_per_task < 1:
            raise ValueError(f"gpus_per_task={gpus_per_task!r}: must be an integer >= 1 (or None)")
        argv.append(f"--gpus-per-task={gpus_per_task}")
    if gpu_bind is not None:
        argv.append(f"--gpu-bind={gpu_bind}")
    if exact:
        argv.append("--exact")
    if overlap:
        argv.append("--overlap")
    return argv + [*extra, *check_program(program)]


def pilot_srun_argv(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """What ``pilotq-srun ARGS`` runs: ``$SRUN`` (default ``srun``), then
    ``--mpi=$PILOTQ_SRUN_MPI`` (default :data:`DEFAULT_SRUN_MPI`; the Perlmutter scripts set
    ``cray_shasta``), then ``ARGS`` unchanged.

    >>> pilot_srun_argv(["python", "-m", "pilotq_mpi", "app.py"], {})
    ['srun', '--mpi=pmi2', 'python', '-m', 'pilotq_mpi', 'app.py']
    """
    return [env.get("SRUN") or "srun", f"--mpi={env.get('PILOTQ_SRUN_MPI') or DEFAULT_SRUN_MPI}",
            *args]


PILOT_MPIEXEC_USAGE = "usage: pilotq-mpiexec N app.py [args]   (N = number of ranks, >= 2)"


def pilot_mpiexec_argv(args: Sequence[str], env: Mapping[str, str], *, python: str = "python",
                       mpiexec: str = "mpiexec") -> list[str]:
    """What ``pilotq-mpiexec N app.py [args]`` runs: ``$MPIEXEC -n N $PYTHON -m pilotq_mpi
    app.py [args]`` (``MPIEXEC``/``PYTHON`` from ``env``, else ``mpiexec``/``python``).

    ValueError (with :data:`PILOT_MPIEXEC_USAGE`) when N is not an integer >= 2 or the app
    is missing.

    >>> pilot_mpiexec_argv(["4", "app.py", "x"], {}, python="py")
    ['mpiexec', '-n', '4', 'py', '-m', 'pilotq_mpi', 'app.py', 'x']
    """
    if len(args) < 2 or not (args[0].isascii() and args[0].isdigit()) or int(args[0]) < 2:
        raise ValueError(PILOT_MPIEXEC_USAGE)
    program = [env.get("PYTHON") or python, "-m", "pilotq_mpi", *args[1:]]
    return mpiexec_argv(int(args[0]), program, mpiexec=env.get("MPIEXEC") or mpiexec)


def nested_step_argv(n: int, program: Sequence[str], env: Mapping[str, str], *,
                     gpus: Sequence[int] = (), nodelist: Sequence[str] = (),
                     mpiexec: str = "mpiexec") -> list[str]:
    """Argv of a nested job step of ``n`` ranks running ``program``.

    Under Slurm (:func:`in_slurm`): ``srun --mpi=pmi2 [-N k --nodelist=...] -n n --exact
    --overlap`` — ``--exact`` takes only the CPUs the step needs, ``--overlap`` lets it
    share them with the pilot's own step, which keeps running. Elsewhere: ``mpiexec -n n``.

    ``gpus`` (node-level GPU ids) are exported to the step as ``CUDA_VISIBLE_DEVICES``
    through ``env VAR=... program``: srun overwrites ``CUDA_VISIBLE_DEVICES`` with the
    step's GPU allocation (every GPU of the job, as nothing is requested), so setting
    it in the environment of srun is not enough. Empty ``gpus`` leaves it alone.
    ``nodelist`` (Slurm only) keeps the step on the task's nodes.
    """
    words = list(check_program(program))
    if gpus:
        ids = [int(g) for g in gpus]
        if any(g < 0 for g in ids):
            raise ValueError(f"gpus={tuple(gpus)!r}: GPU ids must be >= 0")
        words = ["env", "CUDA_VISIBLE_DEVICES=" + ",".join(map(str, ids)), *words]
    if not in_slurm(env):
        return mpiexec_argv(n, words, mpiexec=mpiexec)
    extra: list[str] = []
    nodes = None
    if nodelist:
        unique = list(dict.fromkeys(nodelist))
        nodes = len(unique)
        extra.append("--nodelist=" + ",".join(unique))
    return srun_argv(n, words, nodes=nodes, exact=True, overlap=True, extra=extra)
