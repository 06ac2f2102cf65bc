"""Messages a user reads (no MPI): remote traceback file names, open files as arguments,
resource refusals, the final status line."""
from __future__ import annotations

import io
import runpy
import sys
import textwrap
import traceback

import pytest

from pilotq_mpi.api import _pickle_arguments
from pilotq_mpi.core.inventory import Inventory, QpuSpec, RankInfo
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.errors import ResourceError
from pilotq_mpi.progress import format_line, render_table
from pilotq_mpi.runtime import serialization

DRIVER = textwrap.dedent('''\
    def boom(comm, x):
        y = x + 1
        raise ValueError(f"bad value {y}")


    def outer(comm):
        inner = lambda: 1 / 0
        return inner()
''')


def driver_functions(tmp_path):
    """Functions of a driver script run as ``__main__`` (as rank 0 runs it): only cloudpickle can send them."""
    script = tmp_path / "my_driver.py"
    script.write_text(DRIVER)
    return script, runpy.run_path(str(script), run_name="__main__")


def last_frame(fn, *args):
    with pytest.raises(Exception) as info:
        fn(None, *args)
    return traceback.extract_tb(info.value.__traceback__)[-1]


def test_function_sent_by_value_keeps_script_file_and_line(tmp_path):
    script, names = driver_functions(tmp_path)
    frame = last_frame(serialization.loads(serialization.dumps(names["boom"])), 1)
    assert (frame.filename, frame.lineno, frame.name) == (str(script), 3, "boom")
    assert frame.line == 'raise ValueError(f"bad value {y}")'


def test_nested_code_keeps_script_file_too(tmp_path):
    script, names = driver_functions(tmp_path)
    frame = last_frame(serialization.loads(serialization.dumps(names["outer"])))
    assert (frame.filename, frame.lineno, frame.name) == (str(script), 7, "<lambda>")


@pytest.mark.parametrize("mode", ["r", "rb", "w", "wb", "a+", "r+b"])
def test_open_file_argument_is_refused_in_every_mode(tmp_path, mode):
    path = tmp_path / "data.txt"
    path.write_text("hello\n")

    def task(comm, f):
        return f.read()

    with open(path, mode) as handle, pytest.raises(TypeError) as info:
        _pickle_arguments(task, ([1, {"file": handle}],), {})
    assert str(info.value) == (
        "cannot send the arguments of task 'test_open_file_argument_is_refused_in_every_mode.<locals>.task' to a"
        f" worker: open file {str(path)!r} (mode {handle.mode!r}): an open file cannot travel to another rank; pass its"
        " path and open it in the task (on a file system the workers see), or pass its contents")


def test_standard_streams_still_travel_as_the_receivers_own(tmp_path, monkeypatch):
    for name in ("stdout", "stderr"):  # real files, as outside pytest's capture
        monkeypatch.setattr(sys, name, open(tmp_path / name, "w"))
    try:
        args, kwargs = serialization.loads(_pickle_arguments(print, (sys.stdout,), {"file": sys.stderr}))
        assert args == (sys.stdout,) and kwargs == {"file": sys.stderr}
    finally:
        sys.stdout.close()
        sys.stderr.close()


def test_other_unpicklable_arguments_keep_the_general_message():
    import threading

    with pytest.raises(TypeError, match="cannot send the arguments of task 'print' to a worker: TypeError: .*"
                                        "pass picklable values"):
        _pickle_arguments(print, (threading.Lock(),), {})


@pytest.mark.parametrize("inventory, spec, message", [
    (Inventory.from_layout(3), TaskSpec(gpus_per_rank=1),
     "task needs 1 rank with 1 GPU; this pilot has no GPUs: start the pilot with `--gpus-per-node N` (or"
     " PILOTQ_GPUS_PER_NODE=N) to declare N GPUs per node (none were found in CUDA_VISIBLE_DEVICES or Slurm's"
     " GPU variables), or submit with gpus_per_rank=0"),
    (Inventory.from_layout(3), TaskSpec(ranks=2, gpus_per_rank=2),
     "task needs 2 ranks with 2 GPUs each; this pilot has no GPUs: start the pilot with `--gpus-per-node N` (or"
     " PILOTQ_GPUS_PER_NODE=N) to declare N GPUs per node (none were found in CUDA_VISIBLE_DEVICES or Slurm's"
     " GPU variables), or submit with gpus_per_rank=0"),
    (Inventory.from_layout(3, gpus_per_rank=1), TaskSpec(gpus_per_rank=2),
     "task needs 1 rank with 2 GPUs; this pilot has 0 such worker ranks (most GPUs on one rank: 1)"),
    (Inventory((RankInfo(1, "a", (0, 1)), RankInfo(2, "a", (2,)))), TaskSpec(ranks=2, gpus_per_rank=2),
     "task needs 2 ranks with 2 GPUs each; this pilot has 1 such worker rank (most GPUs on one rank: 2)"),
    (Inventory.from_layout(1), TaskSpec(ranks=2),
     "task needs 2 ranks; this pilot has 1 worker rank: start the pilot with more ranks or ask for ranks<=1"),
    (Inventory.from_layout(1, memory=2**30), TaskSpec(memory_per_rank=2**31),
     "task needs 2.00 GiB per rank on 1 rank; only 0 worker ranks have that much (largest: 1.00 GiB): use more"
     " ranks or a smaller problem"),
    (Inventory.from_layout(3, ranks_per_node=1), TaskSpec(ranks=2, same_node=True),
     "task needs 2 ranks on one node (same_node=True); the largest node of this pilot has 1 suitable worker rank"),
])
def test_resource_refusals_count_in_words(inventory, spec, message):
    with pytest.raises(ResourceError) as info:
        inventory.check(spec)
    assert str(info.value) == message


def test_qpu_pin_refusals_and_describe_count_in_words():
    inv = Inventory.from_layout(3)
    pinned = inv.with_qpu(QpuSpec("fez", "m:f"))
    with pytest.raises(ResourceError, match=r"^task needs 3 ranks; this pilot has 2 worker ranks \(1 more is pinned"
                                            r" to a QPU\)"):
        pinned.check(TaskSpec(ranks=3))
    with pytest.raises(ResourceError, match="wants 3 pinned ranks but only 3 compute ranks are left"):
        inv.with_qpu(QpuSpec("big", "m:f", ranks=3))
    with pytest.raises(ResourceError, match="wants 1 pinned rank but only 1 compute rank is left"):
        Inventory.from_layout(1).with_qpu(QpuSpec("one", "m:f"))
    assert Inventory.from_layout(1).describe().splitlines()[0] == "1 worker rank on 1 node"
    assert Inventory.from_layout(4, ranks_per_node=2).describe().splitlines()[0] == "4 worker ranks on 2 nodes"


def test_final_status_line_counts_timed_out_tasks():
    snapshot = {"kinds": {"slow": {"done": 2, "failed": 1, "timed_out": 1}}, "ranks_busy": 1, "ranks_total": 1,
                "elapsed": 0.4}
    assert format_line(snapshot, final=True) == (
        "[pilotq 0.4s] final: done 2 running 0 queued 0 failed 1 timed out 1 | ranks busy 1/1")


def test_live_table_shows_timed_out_column_only_when_a_task_timed_out():
    from rich.console import Console

    def text(snapshot):
        console = Console(file=io.StringIO(), width=120)
        console.print(render_table(snapshot))
        return console.file.getvalue()

    assert "timed out" not in text({"kinds": {"k": {"done": 1}}})
    table = text({"kinds": {"k": {"done": 1, "timed_out": 2}, "j": {"done": 3}}})
    assert "timed out" in table
    cells = lambda row: [cell.strip() for cell in row.strip().strip("│┃").split("│" if "│" in row else "┃")]
    rows = [cells(line) for line in table.splitlines() if "│" in line or "┃" in line]
    assert rows[0] == ["kind", "queued", "running", "done", "failed", "cancelled", "timed out"]
    assert rows[-1] == ["total", "0", "0", "4", "0", "0", "2"]
