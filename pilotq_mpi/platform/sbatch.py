"""Batch scripts for the pilot: a validated request, a pure renderer, and ``submit``.

``render(SbatchRequest(...))`` fills one of the templates in ``templates/`` (package
data, ``string.Template`` with ``$placeholders``: a header per target plus the common
``_body.sbatch``) and returns the script text; ``submit(script)`` pipes it to
``sbatch --parsable`` and returns the job id. The files in ``slurm/`` at the top of the
repository are ``render(default_request(t))`` for each target (a test keeps them equal).

Every rendered script asks Slurm for ``--signal=B:USR1@<lead>``; it remembers a USR1/TERM
whenever it comes and hands it to the pilot's rank 0 alone once rank 0 has written its pid
(``$PILOTQ_RANK0_PIDFILE``), never to srun or the ranks. It runs the launcher as
``cmd & wait``, takes the rank count from the allocation, and exits with the code rank 0
wrote to ``$PILOTQ_EXIT_CODE_FILE`` (srun reports 137 for any ``MPI_Abort``), else with
the launcher's status.

A request with ``join=DIR`` renders a *join job* instead: no driver, every rank runs
``python -m pilotq_mpi --join DIR [--pool NAME]`` and becomes a worker of the pilot
whose run directory is DIR; the same trap hands a walltime warning to the joiner's
rank 0, which leaves the pilot (its running tasks are re-queued elsewhere) and exits 0.
A pilot request may name its run directory and pool (``run_dir``, ``pool``): the script
exports them as ``PILOTQ_RUN_DIR``/``PILOTQ_POOL`` for the pilot.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from string import Template

TARGETS: tuple[str, ...] = ("generic", "perlmutter-gpu", "perlmutter-cpu")
"""Targets with a template (``templates/<target>.sbatch``)."""

LAYOUTS: tuple[str, ...] = ("ranks-per-node", "worker-per-gpu")
"""How ranks are laid out. ``ranks-per-node``: ``ranks_per_node`` ranks on every node
(rank 0, the master, takes one slot on node 0). ``worker-per-gpu`` (perlmutter-gpu only):
one worker per GPU on every node plus the master on node 0, ``nodes x gpus + 1`` ranks,
so that every GPU has exactly one worker."""

#: Per-target defaults used when a field is left as None.
_DEFAULTS: dict[str, dict] = {
    "generic": dict(ranks_per_node=4, gpus_per_node=0, constraint=None, layout="ranks-per-node"),
    "perlmutter-gpu": dict(ranks_per_node=4, gpus_per_node=4, constraint="gpu",
                           layout="worker-per-gpu"),
    "perlmutter-cpu": dict(ranks_per_node=128, gpus_per_node=0, constraint="cpu",
                           layout="ranks-per-node"),
}
#: Hardware threads per node, to give each rank an even share (``-c``) on Perlmutter.
_THREADS_PER_NODE = {"perlmutter-gpu": 128, "perlmutter-cpu": 256}
_PERLMUTTER_GPUS = 4
_MAX_SIGNAL_LEAD = 65535  # Slurm's limit for --signal=...@time

_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):([0-5]\d):([0-5]\d)$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.+\-]+$")


def parse_walltime(text: str) -> int:
    """Seconds in a walltime ``HH:MM:SS`` or ``D-HH:MM:SS``; ValueError naming the value otherwise."""
    m = _TIME.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"time={text!r}: use HH:MM:SS or D-HH:MM:SS, e.g. '00:30:00' or "
                         "'1-12:00:00'")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None and hours > 23:
        raise ValueError(f"time={text!r}: hours must be 0-23 after a day count")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise ValueError(f"time={text!r}: the walltime must be longer than zero")
    return total


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: must be an integer >= 1")


def _one_line(name: str, value: str | None, *, word: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value == "" or "\n" in value or "\r" in value:
        raise ValueError(f"{name}={value!r}: must be a non-empty single-line string")
    if word and not _SAFE_WORD.match(value):
        raise ValueError(f"{name}={value!r}: use letters, digits and _ . + - only")


@dataclass(frozen=True)
class SbatchRequest:
    """What to ask Slurm for and what to run; validated at construction.

    ``app_argv`` is the driver and its arguments (``("app.py", "--steps", "10")``):
    the job runs ``python -m pilotq_mpi app.py --steps 10`` on ``nodes x
    ranks_per_node`` ranks. Fields left as None take the target's default
    (ranks per node: generic 4, perlmutter-gpu 4 = one per GPU, perlmutter-cpu 128;
    GPUs per node: perlmutter-gpu 4, otherwise 0; constraint: "gpu"/"cpu" on Perlmutter).
    ``signal_lead`` is how many seconds before the walltime the pilot is warned.
    ``extra_directives`` are added as ``#SBATCH <d>`` lines (e.g. ``"--mail-type=END"``).
    ``launcher`` and ``python`` are the defaults of ``$PILOTQ_SRUN``/``$PILOTQ_PYTHON``
    in the script (the submitting environment may override them); the default launcher is
    the ``pilotq-srun`` command that installing pilotq-mpi puts on PATH.
    ``layout`` (see :data:`LAYOUTS`; default: ``worker-per-gpu`` on perlmutter-gpu unless
    ``ranks_per_node`` is given, ``ranks-per-node`` elsewhere) decides how many ranks run where.

    Elastic pilots: ``run_dir`` and ``pool`` are exported for the pilot as
    ``PILOTQ_RUN_DIR``/``PILOTQ_POOL`` (where it publishes how to join it, and its pool).
    ``join`` (the run directory of a running pilot) makes a *join job* instead: leave
    ``app_argv`` empty; every rank becomes a worker of that pilot (``--join DIR``, with
    ``--pool`` when ``pool`` is given), so there is no master rank: ``worker-per-gpu`` runs
    nodes x GPUs ranks, and one rank in all is enough. ``job_name``/``output`` default to
    ``pilotq``/``pilotq-%j.out`` (join jobs: ``pilotq-join``/``pilotq-join-%j.out``).
    """

    app_argv: tuple[str, ...] = ()
    target: str = "generic"
    nodes: int = 1
    ranks_per_node: int | None = None
    gpus_per_node: int | None = None
    time: str = "00:30:00"
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    job_name: str | None = None
    output: str | None = None
    signal_lead: int = 120
    extra_directives: tuple[str, ...] = ()
    launcher: str = "pilotq-srun"
    python: str = "python"
    layout: str | None = None
    join: str | None = None
    run_dir: str | None = None
    pool: str | None = None
    _resolved: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.app_argv, str):
            raise TypeError(f"app_argv={self.app_argv!r}: pass a sequence of words, "
                            f"e.g. ({self.app_argv!r},)")
        object.__setattr__(self, "app_argv", tuple(self.app_argv))
        object.__setattr__(self, "extra_directives", tuple(self.extra_directives))
        _one_line("join", self.join)
        _one_line("run_dir", self.run_dir)
        _one_line("pool", self.pool, word=True)
        if self.join is not None:
            if self.app_argv:
                raise ValueError(f"app_argv={self.app_argv!r} with join={self.join!r}: a join job "
                                 "runs no driver (the pilot it joins has one); leave app_argv "
                                 "empty, or drop join to run the app as a pilot")
            if self.run_dir is not None:
                raise ValueError(f"run_dir={self.run_dir!r} with join={self.join!r}: a join job "
                                 "uses the run directory of the pilot it joins (join=); drop "
                                 "run_dir")
        elif not self.app_argv or not all(isinstance(a, str) and a for a in self.app_argv):
            raise ValueError(f"app_argv={self.app_argv!r}: give the driver script and its "
                             "arguments as non-empty strings, e.g. ('app.py',), or join= "
                             "the run directory of a running pilot")
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r}: choose one of {', '.join(TARGETS)}")
        defaults = _DEFAULTS[self.target]
        layout = self.layout
        if layout is None:  # ranks_per_node given: the user wants that many ranks per node
            layout = "ranks-per-node" if self.ranks_per_node is not None else defaults["layout"]
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r}: choose one of {', '.join(LAYOUTS)}")
        if layout == "worker-per-gpu":
            if self.target != "perlmutter-gpu":
                raise ValueError(f"layout='worker-per-gpu' with target={self.target!r}: only "
                                 "the perlmutter-gpu target has it; use ranks_per_node")
            if self.ranks_per_node is not None:
                raise ValueError(f"ranks_per_node={self.ranks_per_node!r} with layout="
                                 "'worker-per-gpu': that layout runs nodes x gpus_per_node + 1 "
                                 "ranks; leave ranks_per_node out or use layout='ranks-per-node'")
        ranks = defaults["ranks_per_node"] if self.ranks_per_node is None else self.ranks_per_node
        gpus = defaults["gpus_per_node"] if self.gpus_per_node is None else self.gpus_per_node
        constraint = defaults["constraint"] if self.constraint is None else self.constraint
        _positive_int("nodes", self.nodes)
        _positive_int("ranks_per_node", ranks)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus_per_node={gpus!r}: must be an integer >= 0")
        if layout == "worker-per-gpu":
            ranks = gpus  # workers per node; a pilot's node 0 also holds the master
        elif self.nodes * ranks < 2 and self.join is None:
            raise ValueError(f"nodes={self.nodes} x ranks_per_node={ranks} = 1 rank: the pilot "
                             "needs rank 0 (driver and master) plus at least one worker; "
                             "use ranks_per_node >= 2")
        if self.target == "perlmutter-gpu":
            if gpus < 1 or gpus > _PERLMUTTER_GPUS:
                raise ValueError(f"gpus_per_node={gpus}: a Perlmutter GPU node has "
                                 f"{_PERLMUTTER_GPUS} GPUs; use 1-{_PERLMUTTER_GPUS}")
        elif self.target == "perlmutter-cpu" and gpus:
            raise ValueError(f"gpus_per_node={gpus}: Perlmutter CPU nodes have no GPUs; "
                             "use target='perlmutter-gpu' or gpus_per_node=0")
        if self.target in _THREADS_PER_NODE and ranks > _THREADS_PER_NODE[self.target]:
            raise ValueError(f"ranks_per_node={ranks}: a {self.target} node has "
                             f"{_THREADS_PER_NODE[self.target]} hardware threads; use fewer ranks")
        walltime = parse_walltime(self.time)
        if isinstance(self.signal_lead, bool) or not isinstance(self.signal_lead, int) \
                or not 0 < self.signal_lead <= _MAX_SIGNAL_LEAD:
            raise ValueError(f"signal_lead={self.signal_lead!r}: seconds before the walltime, "
                             f"an integer in 1..{_MAX_SIGNAL_LEAD}")
        if self.signal_lead >= walltime:
            raise ValueError(f"signal_lead={self.signal_lead} s is not shorter than "
                             f"time={self.time!r} ({walltime} s): lower signal_lead or "
                             "ask for more time")
        job_name = self.job_name or ("pilotq" if self.join is None else "pilotq-join")
        output = self.output or ("pilotq-%j.out" if self.join is None else "pilotq-join-%j.out")
        for name in ("qos", "account", "job_name"):
            _one_line(name, getattr(self, name), word=True)
        for name in ("constraint", "output", "launcher", "python"):
            _one_line(name, constraint if name == "constraint" else getattr(self, name))
        for d in self.extra_directives:
            _one_line("extra_directives item", d)
            if not d.startswith("-"):
                raise ValueError(f"extra directive {d!r}: write it as an sbatch option, "
                                 "e.g. '--mail-type=END' (the '#SBATCH ' is added)")
        for a in self.app_argv:
            if "\n" in a or "\r" in a:
                raise ValueError(f"app argument {a!r}: must not contain a newline")
        self._resolved.update(ranks_per_node=ranks, gpus_per_node=gpus, constraint=constraint,
                              layout=layout, job_name=job_name, output=output)

    @property
    def has_master(self) -> bool:
        """True for a pilot (rank 0 is the driver and master); False for a join job."""
        return self.join is None

    @property
    def resolved_job_name(self) -> str:
        """The job name after applying the default (``pilotq``, join jobs ``pilotq-join``)."""
        return self._resolved["job_name"]

    @property
    def resolved_output(self) -> str:
        """The output file after applying the default (``<default job name>-%j.out``)."""
        return self._resolved["output"]

    @property
    def resolved_ranks_per_node(self) -> int:
        """Ranks per node after applying the target's default (``worker-per-gpu``: workers
        per node; a pilot's node 0 holds one rank more)."""
        return self._resolved["ranks_per_node"]

    @property
    def resolved_layout(self) -> str:
        """The layout after applying the target's default."""
        return self._resolved["layout"]

    @property
    def resolved_gpus_per_node(self) -> int:
        """GPUs per node after applying the target's default."""
        return self._resolved["gpus_per_node"]

    @property
    def resolved_constraint(self) -> str | None:
        """The ``--constraint`` after applying the target's default."""
        return self._resolved["constraint"]

    @property
    def total_ranks(self) -> int:
        """nodes x ranks per node (``worker-per-gpu``: nodes x GPUs per node, + 1 for a
        pilot's master)."""
        extra = 1 if self._master_rank_extra else 0
        return self.nodes * self.resolved_ranks_per_node + extra

    @property
    def _master_rank_extra(self) -> bool:
        """worker-per-gpu pilot: node 0 holds the master on top of one worker per GPU."""
        return self.resolved_layout == "worker-per-gpu" and self.has_master

    @property
    def cpus_per_task(self) -> int | None:
        """Hardware threads per rank on Perlmutter (an even share of the busiest node, in
        whole cores); None elsewhere."""
        threads = _THREADS_PER_NODE.get(self.target)
        if threads is None:
            return None
        busiest = self.resolved_ranks_per_node + self._master_rank_extra
        share = threads // busiest
        return max(1, share - share % 2) if share >= 2 else 1


def default_request(target: str) -> SbatchRequest:
    """The request behind ``slurm/<target>.sbatch``: ``app.py`` on 1 node, 30 minutes."""
    return SbatchRequest(app_argv=("app.py",), target=target)


JOIN_EXAMPLE_DIR = "/path/to/run-dir"
"""The run directory in ``slurm/join.sbatch`` (users put their pilot's there)."""


def default_join_request() -> SbatchRequest:
    """The request behind ``slurm/join.sbatch``: a generic join job of 1 node, 30 minutes."""
    return SbatchRequest(join=JOIN_EXAMPLE_DIR)


def template_text(target: str) -> str:
    """The raw template for ``target`` (package data): its header, then the common body."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: choose one of {', '.join(TARGETS)}")
    return _fragment(f"{target}.sbatch") + _fragment("_body.sbatch")


def _fragment(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text()


def _optional_directives(req: SbatchRequest) -> str:
    lines: list[str] = []
    perlmutter = req.target.startswith("perlmutter")
    if req.qos:
        lines += ["# Quality of service (queue).", f"#SBATCH --qos={req.qos}"]
    elif perlmutter:
        lines += ["# Quality of service: regular, debug (short, small) or preempt.",
                  "##SBATCH --qos=regular"]
    if req.account:
        lines += ["# Project charged for the job.", f"#SBATCH --account={req.account}"]
    elif perlmutter:
        lines += ["# Project charged for the job (your NERSC project, e.g. m1234).",
                  "##SBATCH --account=<project>"]
    if not perlmutter:
        if req.resolved_constraint:
            lines += ["# Node features required.",
                      f"#SBATCH --constraint={req.resolved_constraint}"]
        if req.resolved_gpus_per_node:
            lines += ["# GPUs per node; every rank sees them all and the pilot pins one per",
                      "# worker by its node-local rank.",
                      f"#SBATCH --gpus-per-node={req.resolved_gpus_per_node}"]
    if req.extra_directives:
        lines.append("# Extra directives.")
        lines += [f"#SBATCH {d}" for d in req.extra_directives]
    return "\n".join(lines) + ("\n" if lines else "")


def launch_words(req: SbatchRequest) -> list[str]:
    """The pilot's (or joiner's) launch command as words; ``$PILOTQ_*`` words stay shell variables.

    No ``-n``/``-N``: srun takes the rank count and nodes from the allocation (the
    ``#SBATCH`` lines), so they are written in one place. A ``worker-per-gpu`` pilot counts
    its ranks in the script (``$PILOTQ_RANKS``) from the allocation's nodes and GPUs.
    """
    flags: list[str] = []
    if req._master_rank_extra:
        flags += ["--ntasks=$PILOTQ_RANKS", "--distribution=cyclic"]
    if req.target in _THREADS_PER_NODE:
        flags.append("--cpu-bind=cores")
    if req.resolved_gpus_per_node:
        flags.append("--gpu-bind=none")
    if req.join is not None:
        program = ["--join", req.join, *(["--pool", req.pool] if req.pool else [])]
    else:
        program = list(req.app_argv)
    return ["$PILOTQ_SRUN", *flags, "$PILOTQ_PYTHON", "-m", "pilotq_mpi", *program]


def _shell_line(words: Sequence[str]) -> str:
    return " ".join(f'"{w}"' if "$PILOTQ_" in w else shlex.quote(w) for w in words)


_ENVIRONMENT = {
    "generic": """\
# Example environment (uncomment and adapt): a Python with mpi4py built against this
# cluster's MPI, and pilotq-mpi installed in it (which puts `pilotq-srun` on PATH).
# module load python
# source $$HOME/venvs/pilotq/bin/activate""",
    "perlmutter-cpu": """\
# Example environment (uncomment and adapt); build mpi4py against Cray MPICH, not the
# PyPI mpich wheel: MPICC="cc -shared" pip install --no-binary=mpi4py mpi4py
# pilotq-mpi installed in the environment puts `pilotq-srun` on PATH.
# module load python
# source $$HOME/venvs/pilotq/bin/activate""",
    "perlmutter-gpu": """\
# Example environment (uncomment and adapt); build mpi4py against Cray MPICH, not the
# PyPI mpich wheel: MPICC="cc -shared" pip install --no-binary=mpi4py mpi4py
# pilotq-mpi installed in the environment puts `pilotq-srun` on PATH.
# module load python
# module load cudatoolkit craype-accel-nvidia80
# source $$HOME/venvs/pilotq/bin/activate
# CUDA-aware Cray MPICH: MPI calls may take GPU buffers (CuPy arrays) directly.
export MPICH_GPU_SUPPORT_ENABLED=1""",
}

_PERLMUTTER_LAUNCH = """\
# Perlmutter's Slurm starts Cray MPICH with its own PMI plugin (cray_shasta); the launcher's
# default, --mpi=pmi2, is for the PyPI MPICH of workstations and test clusters.
export PILOTQ_SRUN_MPI="$${PILOTQ_SRUN_MPI:-cray_shasta}"
# Slurm 22.05 and later: srun does not take --cpus-per-task from the job; pass it on.
export SRUN_CPUS_PER_TASK="$${SLURM_CPUS_PER_TASK:-1}"
"""


def _layout_lines(req: SbatchRequest) -> str:
    lines = _PERLMUTTER_LAUNCH if req.target.startswith("perlmutter") else ""
    if req._master_rank_extra:
        lines += """\
# One worker per GPU on every node, plus rank 0 (driver and master, no GPU) on node 0:
# nodes x GPUs + 1 ranks, dealt out cyclically so that node 0 holds ranks 0, N, 2N, ...
# (one more than the others). Both numbers come from the #SBATCH lines above.
pilotq_gpus="$${SLURM_GPUS_PER_NODE:?this layout needs #SBATCH --gpus-per-node}"
PILOTQ_RANKS=$$(( SLURM_JOB_NUM_NODES * $${pilotq_gpus##*:} + 1 ))
"""
    return lines


def _launch_comment(req: SbatchRequest) -> str:
    if req._master_rank_extra:
        text = "# srun runs the $PILOTQ_RANKS ranks counted above, dealt out cyclically over the nodes.\n"
    else:
        text = ("# srun takes the rank count and the nodes from the allocation (the #SBATCH lines "
                "above).\n")
    if not req.has_master:
        text += ("# --join: the pilot's run directory (its --run-dir), on a file system both jobs "
                 "see; a pilot\n# that is not running there is reported at once. --pool: the "
                 "pool these ranks serve.\n")
    if req.target == "perlmutter-gpu":
        text += ("# --gpu-bind=none: binding one GPU per task (--gpus-per-task=1) breaks CUDA IPC "
                 "between\n# ranks (cuIpcOpenMemHandle errors); --cpu-bind=cores gives each rank "
                 "its share of cores.\n")
    elif req.target == "perlmutter-cpu":
        text += "# --cpu-bind=cores: each rank gets its share of the node's cores.\n"
    elif req.resolved_gpus_per_node:
        text += ("# --gpu-bind=none: every rank sees the node's GPUs; the pilot gives each "
                 "worker its own.\n")
    return text


def _perlmutter_gpu_header(req: SbatchRequest) -> tuple[str, str]:
    """(layout note, task directives) of the perlmutter-gpu header."""
    gpus, cpt = req.resolved_gpus_per_node, req.cpus_per_task
    threads = _THREADS_PER_NODE[req.target]
    if not req.has_master:
        note = (f"# A join job has no master: every rank is a worker, {req.resolved_ranks_per_node} "
                f"per node for the node's\n# {gpus} GPUs (layout {req.resolved_layout}).")
        tasks = (f"#SBATCH --ntasks-per-node={req.resolved_ranks_per_node}\n"
                 f"# Hardware threads per rank: {threads} / ranks per node (change both together).\n"
                 f"#SBATCH --cpus-per-task={cpt}")
    elif req.resolved_layout == "worker-per-gpu":
        note = (f"# Layout worker-per-gpu: one worker rank per GPU on every node, plus rank 0 (the\n"
                f"# master, no GPU) sharing node 0: nodes x {gpus} + 1 ranks, every GPU with exactly\n"
                f"# one worker. (Layout ranks-per-node instead runs the same number of ranks on every\n"
                f"# node, so node 0's workers are one fewer than its GPUs: pilotq-mpi submit --layout.)")
        tasks = (f"# Whole nodes (as Perlmutter gives GPU jobs anyway); the script counts the ranks\n"
                 f"# from the nodes and GPUs.\n"
                 f"#SBATCH --exclusive\n"
                 f"# Hardware threads per rank: node 0's {gpus + 1} ranks share its {threads} "
                 f"(whole cores).\n"
                 f"#SBATCH --cpus-per-task={cpt}")
    else:
        note = (f"# Layout ranks-per-node: {req.resolved_ranks_per_node} ranks on every node. Node 0 "
                f"also holds rank 0 (the\n# master, no GPU), so its workers share the node's "
                f"{gpus} GPUs and one may own two.\n"
                f"# For one worker per GPU everywhere use layout worker-per-gpu (nodes x GPUs + 1 ranks).")
        tasks = (f"#SBATCH --ntasks-per-node={req.resolved_ranks_per_node}\n"
                 f"# Hardware threads per rank: {threads} / ranks per node (change both together).\n"
                 f"#SBATCH --cpus-per-task={cpt}")
    return note, tasks


def render(request: SbatchRequest) -> str:
    """The batch script for ``request`` (pure: same request, same text)."""
    note, tasks = ("", "")
    if request.target == "perlmutter-gpu":
        note, tasks = _perlmutter_gpu_header(request)
    values = dict(
        **_role_values(request),
        target=request.target,
        job_name=request.resolved_job_name,
        nodes=request.nodes,
        ranks_per_node=request.resolved_ranks_per_node,
        gpus_per_node=request.resolved_gpus_per_node,
        cpus_per_task=request.cpus_per_task or "",
        constraint=request.resolved_constraint or "",
        time=request.time,
        signal_lead=request.signal_lead,
        output=request.resolved_output,
        directives=_optional_directives(request).rstrip("\n"),
        layout_note=note,
        tasks_directives=tasks,
        environment=Template(_ENVIRONMENT[request.target]).substitute(),
        launcher=request.launcher,
        python=request.python,
        layout=Template(_layout_lines(request)).substitute(),
        launch_comment=_launch_comment(request),
        launch=_shell_line(launch_words(request)),
        elastic=_elastic_lines(request),
        chain=_chain_block(request),
    )
    text = Template(template_text(request.target)).substitute(values)
    # an empty $directives leaves a blank line between the directives and the body
    return text.replace("\n\nset -u\n", "\nset -u\n")


def _role_values(req: SbatchRequest) -> dict[str, str]:
    """The texts that differ between a pilot job and a join job."""
    if req.has_master:
        return dict(
            kind="pilot job",
            role=(f"# One MPI job runs the whole pilot: rank 0 runs the driver ({' '.join(req.app_argv)}) "
                  "and the master,\n# every other rank is a worker that runs tasks."),
            signal_note=("# (Slurm may send it up to 60 s early). The script below hands it to the "
                         "pilot, which\n# stops starting tasks, records what is unfinished, and "
                         "exits 75 = \"incomplete, resume me\"."),
            drain_note=("Rank 0 then stops starting tasks, lets running ones finish within a "
                        "grace,\n# records the rest and ends with exit code 75 (\"incomplete, "
                        "resume me\")."),
            exit_note=("# The job's exit code: what rank 0 wrote (0 done, 1 the driver raised, 3 "
                       "stuck ranks ended,\n# 75 incomplete: resume me, or the driver's own "
                       "sys.exit code), else the launcher's status."))
    return dict(
        kind="join job",
        role=("# This job joins a running pilot through its run directory (on the launch line "
              "below):\n# every rank here is a worker that takes tasks from that pilot's master; "
              "the pilot\n# goes on without them when this job ends."),
        signal_note=("# (Slurm may send it up to 60 s early). The script below hands it to the "
                     "joiner, which\n# leaves the pilot: running tasks get a grace, then go back "
                     "to the pilot's queue."),
        drain_note=("The joiner's rank 0 then has the pilot drain this\n# allocation only: no new "
                    "tasks here, running ones get the grace and are then re-queued on\n# the "
                    "pilot's other ranks; the pilot goes on, and this job ends with 0."),
        exit_note=("# The job's exit code: what the joiner's rank 0 wrote, if anything (0: it left "
                   "the pilot\n# cleanly, also after a walltime warning or a release), else the "
                   "launcher's status."))


def _chain_block(req: SbatchRequest) -> str:
    """A pilot's commented job chain (``templates/_chain.sbatch``); none for a join job,
    which ends with 0 when it leaves (there is nothing of it to resume)."""
    if not req.has_master:
        return ""
    return "\n\n" + Template(_fragment("_chain.sbatch")).substitute().rstrip("\n")


def _elastic_lines(req: SbatchRequest) -> str:
    """Pilot: export its run directory and pool. Join job: keep a submitting pilot's own
    settings (sbatch passes the environment on) away from the joiner's ranks."""
    if not req.has_master:
        return ("# A join job: settings of a pilot in the submitting environment (sbatch passes "
                "it on)\n# are not this job's.\nunset PILOTQ_RUN_DIR PILOTQ_POOL PILOTQ_JOIN\n")
    lines = ""
    if req.run_dir is not None:
        lines += ("# Elastic pilot: how to join it is published in this run directory, on a file "
                  "system\n# the joining jobs see (pilotq-mpi submit --join DIR ...).\n"
                  f"export PILOTQ_RUN_DIR={shlex.quote(req.run_dir)}\n")
    if req.pool is not None:
        lines += ("# The pool of this pilot's own ranks (tasks submitted with pool= run only "
                  f"there).\nexport PILOTQ_POOL={shlex.quote(req.pool)}\n")
    return lines


_CHAIN_START = '#if [ "$pilotq_code" -eq 75 ]'


def enable_chain(script: str) -> str:
    """``script`` with its job-chain block uncommented: when the pilot drains (75), the job
    submits the same script again, to start once it has ended. ValueError if there is none."""
    lines = script.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(_CHAIN_START))
        end = next(i for i in range(start, len(lines)) if lines[i] == "#fi")
    except StopIteration:
        raise ValueError("no job-chain block (#if [ \"$pilotq_code\" -eq 75 ] ... #fi) in the "
                         "script") from None
    lines[start:end + 1] = [line[1:] for line in lines[start:end + 1]]
    return "\n".join(lines)


class SubmitError(RuntimeError):
    """sbatch refused the script (its stderr is in the message)."""


def submit(script: str, sbatch: str = "sbatch", env: Mapping[str, str] | None = None,
           timeout: float = 60.0) -> str:
    """Submit ``script`` (text, given to ``sbatch --parsable`` on stdin); return the job id.

    SubmitError (with sbatch's message) when sbatch is missing, fails, hangs past
    ``timeout`` seconds or prints no job id."""
    try:
        proc = subprocess.run([sbatch, "--parsable"], input=script, capture_output=True,
                              text=True, env=None if env is None else dict(env),
                              timeout=timeout)
    except FileNotFoundError:
        raise SubmitError(f"sbatch={sbatch!r} not found: run on a Slurm login node or pass "
                          "the path to sbatch") from None
    except subprocess.TimeoutExpired:
        raise SubmitError(f"{sbatch} --parsable did not answer within {timeout:g} s (is the "
                          "Slurm controller reachable? the job may be queued anyway: see "
                          "squeue)") from None
    if proc.returncode != 0:
        raise SubmitError(f"{sbatch} --parsable failed with status {proc.returncode}: "
                          f"{proc.stderr.strip()}")
    job_id = job_id_from(proc.stdout)
    if job_id is None:
        raise SubmitError(f"{sbatch} --parsable printed {proc.stdout.strip()!r}, not a job id")
    return job_id


_PARSABLE = re.compile(r"^(\d+)(?:;\S+)?$")
_SUBMITTED = re.compile(r"^Submitted batch job (\d+)\b")


def job_id_from(stdout: str) -> str | None:
    """The job id in what sbatch printed: a ``--parsable`` line (``123`` or ``123;cluster``)
    or ``Submitted batch job 123`` (a site's wrapper may print that, or more lines); the last
    such line counts. None when there is none."""
    found = None
    for line in stdout.splitlines():
        m = _PARSABLE.match(line.strip()) or _SUBMITTED.match(line.strip())
        if m:
            found = m.group(1)
    return found
