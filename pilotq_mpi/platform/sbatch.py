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
    """

    app_argv: tuple[str, ...]
    target: str = "generic"
    nodes: int = 1
    ranks_per_node: int | None = None
    gpus_per_node: int | None = None
    time: str = "00:30:00"
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    job_name: str = "pilotq"
    output: str = "pilotq-%j.out"
    signal_lead: int = 120
    extra_directives: tuple[str, ...] = ()
    launcher: str = "pilotq-srun"
    python: str = "python"
    layout: str | None = None
    _resolved: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.app_argv, str):
            raise TypeError(f"app_argv={self.app_argv!r}: pass a sequence of words, "
                            f"e.g. ({self.app_argv!r},)")
        object.__setattr__(self, "app_argv", tuple(self.app_argv))
        object.__setattr__(self, "extra_directives", tuple(self.extra_directives))
        if not self.app_argv or not all(isinstance(a, str) and a for a in self.app_argv):
            raise ValueError(f"app_argv={self.app_argv!r}: give the driver script and its "
                             "arguments as non-empty strings, e.g. ('app.py',)")
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
            ranks = gpus  # workers per node; node 0 also holds the master
        elif self.nodes * ranks < 2:
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
                              layout=layout)

    @property
    def resolved_ranks_per_node(self) -> int:
        """Ranks per node after applying the target's default (``worker-per-gpu``: workers
        per node, node 0 holds one rank more)."""
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
        """nodes x ranks per node (``worker-per-gpu``: nodes x GPUs per node + 1)."""
        extra = 1 if self.resolved_layout == "worker-per-gpu" else 0
        return self.nodes * self.resolved_ranks_per_node + extra

    @property
    def cpus_per_task(self) -> int | None:
        """Hardware threads per rank on Perlmutter (an even share of the busiest node, in
        whole cores); None elsewhere."""
        threads = _THREADS_PER_NODE.get(self.target)
        if threads is None:
            return None
        busiest = self.resolved_ranks_per_node + (self.resolved_layout == "worker-per-gpu")
        share = threads // busiest
        return max(1, share - share % 2) if share >= 2 else 1


def default_request(target: str) -> SbatchRequest:
    """The request behind ``slurm/<target>.sbatch``: ``app.py`` on 1 node, 30 minutes."""
    return SbatchRequest(app_argv=("app.py",), target=target)


def template_text(target: str) -> str:
    """The raw template for ``target`` (package data): its header, then the common body."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: choose one of {', '.join(TARGETS)}")
    folder = resources.files(__package__).joinpath("templates")
    return (folder.joinpath(f"{target}.sbatch").read_text()
            + folder.joinpath("_body.sbatch").read_text())


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
    """The pilot's launch command as words; ``$PILOTQ_*`` words stay shell variables.

    No ``-n``/``-N``: srun takes the rank count and nodes from the allocation (the
    ``#SBATCH`` lines), so they are written in one place. ``worker-per-gpu`` counts its
    ranks in the script (``$PILOTQ_RANKS``) from the allocation's nodes and GPUs.
    """
    flags: list[str] = []
    if req.resolved_layout == "worker-per-gpu":
        flags += ["--ntasks=$PILOTQ_RANKS", "--distribution=cyclic"]
    if req.target in _THREADS_PER_NODE:
        flags.append("--cpu-bind=cores")
    if req.resolved_gpus_per_node:
        flags.append("--gpu-bind=none")
    return ["$PILOTQ_SRUN", *flags, "$PILOTQ_PYTHON", "-m", "pilotq_mpi", *req.app_argv]


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
    if req.resolved_layout == "worker-per-gpu":
        lines += """\
# One worker per GPU on every node, plus rank 0 (driver and master, no GPU) on node 0:
# nodes x GPUs + 1 ranks, dealt out cyclically so that node 0 holds ranks 0, N, 2N, ...
# (one more than the others). Both numbers come from the #SBATCH lines above.
pilotq_gpus="$${SLURM_GPUS_PER_NODE:?this layout needs #SBATCH --gpus-per-node}"
PILOTQ_RANKS=$$(( SLURM_JOB_NUM_NODES * $${pilotq_gpus##*:} + 1 ))
"""
    return lines


def _launch_comment(req: SbatchRequest) -> str:
    if req.resolved_layout == "worker-per-gpu":
        text = "# srun runs the $PILOTQ_RANKS ranks counted above, dealt out cyclically over the nodes.\n"
    else:
        text = ("# srun takes the rank count and the nodes from the allocation (the #SBATCH lines "
                "above).\n")
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
    if req.resolved_layout == "worker-per-gpu":
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
        target=request.target,
        app=" ".join(request.app_argv),
        job_name=request.job_name,
        nodes=request.nodes,
        ranks_per_node=request.resolved_ranks_per_node,
        gpus_per_node=request.resolved_gpus_per_node,
        cpus_per_task=request.cpus_per_task or "",
        constraint=request.resolved_constraint or "",
        time=request.time,
        signal_lead=request.signal_lead,
        output=request.output,
        directives=_optional_directives(request).rstrip("\n"),
        layout_note=note,
        tasks_directives=tasks,
        environment=Template(_ENVIRONMENT[request.target]).substitute(),
        launcher=request.launcher,
        python=request.python,
        layout=Template(_layout_lines(request)).substitute(),
        launch_comment=_launch_comment(request),
        launch=_shell_line(launch_words(request)),
    )
    text = Template(template_text(request.target)).substitute(values)
    # an empty $directives leaves a blank line between the directives and the body
    return text.replace("\n\nset -u\n", "\nset -u\n")


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
    """Submit ``script`` (text, given to ``sbatch --parsable`` on stdin); return the job id."""
    try:
        proc = subprocess.run([sbatch, "--parsable"], input=script, capture_output=True,
                              text=True, env=None if env is None else dict(env),
                              timeout=timeout)
    except FileNotFoundError:
        raise SubmitError(f"sbatch={sbatch!r} not found: run on a Slurm login node or pass "
                          "the path to sbatch") from None
    if proc.returncode != 0:
        raise SubmitError(f"{sbatch} --parsable failed with status {proc.returncode}: "
                          f"{proc.stderr.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SubmitError(f"{sbatch} --parsable printed {proc.stdout.strip()!r}, not a job id")
    return job_id
