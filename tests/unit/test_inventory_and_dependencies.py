"""Inventory feasibility checks (ResourceError texts) and the dependency tracker."""
import pytest

from pilotq_mpi.core.dependencies import DependencyTracker
from pilotq_mpi.core.inventory import Inventory, QpuSpec, RankInfo
from pilotq_mpi.core.specs import TaskSpec
from pilotq_mpi.errors import ResourceError


def five_workers(**kwargs):
    return Inventory.from_layout(5, ranks_per_node=4, **kwargs)


def test_layout():
    inv = five_workers(gpus_per_rank=1)
    assert [r.rank for r in inv.ranks] == [1, 2, 3, 4, 5]
    assert [r.node for r in inv.ranks] == ["node0"] * 4 + ["node1"]
    assert [r.gpus for r in inv.ranks] == [(0,), (1,), (2,), (3,), (0,)]


def test_too_wide_says_what_exists():
    with pytest.raises(ResourceError, match="task needs 8 ranks; this pilot has 5 worker ranks"):
        five_workers().check(TaskSpec(ranks=8))


def test_gpu_requests():
    five_workers(gpus_per_rank=1).check(TaskSpec(ranks=5, gpus_per_rank=1))
    with pytest.raises(ResourceError, match="1 rank with 2 GPUs; this pilot has 0 such worker ranks"):
        five_workers(gpus_per_rank=1).check(TaskSpec(ranks=1, gpus_per_rank=2))
    with pytest.raises(ResourceError, match="1 GPU"):
        five_workers().check(TaskSpec(gpus_per_rank=1))


def test_same_node_and_power_of_two():
    five_workers().check(TaskSpec(ranks=4, same_node=True))
    with pytest.raises(ResourceError, match="on one node .*largest node of this pilot has 4"):
        five_workers().check(TaskSpec(ranks=5, same_node=True))
    with pytest.raises(ResourceError, match="power-of-two widths.*ranks=2 or 4"):
        five_workers().check(TaskSpec(ranks=3), power_of_two=True)


def test_memory():
    inv = five_workers(memory=2**30)
    inv.check(TaskSpec(memory_per_rank=2**29))
    with pytest.raises(ResourceError, match="needs 2.00 GiB per rank.*largest: 1.00 GiB"):
        inv.check(TaskSpec(memory_per_rank=2**31))


def test_qpu_pinning():
    inv = Inventory((RankInfo(1, "a", (0,)), RankInfo(2, "a"), RankInfo(3, "a"), RankInfo(4, "a", (1,))))
    with pytest.raises(ResourceError, match="QPU 'fez', which this pilot does not declare \\(declared: none\\)"):
        inv.check(TaskSpec(qpu="fez"))
    pinned = inv.with_qpu(QpuSpec("fez", "pilotq_mpi.workflows.qpu:fake_backend", ranks=1))
    # the highest rank without a GPU is pinned; it leaves the compute pool
    assert [r.rank for r in pinned.qpu_ranks("fez")] == [3]
    assert [r.rank for r in pinned.compute_ranks] == [1, 2, 4]
    pinned.check(TaskSpec(qpu="fez"))
    with pytest.raises(ResourceError, match="needs 4 ranks; this pilot has 3 worker ranks \\(1 more is pinned to a QPU\\)"):
        pinned.check(TaskSpec(ranks=4))
    with pytest.raises(ResourceError, match="at least one must stay"):
        inv.with_qpu(QpuSpec("big", "m:f", ranks=4))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"name": "", "factory": "m:f"}, "non-empty name"),
    ({"name": "q", "factory": "nocolon"}, "'module:callable'"),
    ({"name": "q", "factory": "m:f", "concurrency": 0}, "concurrency must be"),
])
def test_bad_qpu_specs(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        QpuSpec(**kwargs)


def test_dependencies_ready_and_cascade():
    deps = DependencyTracker()
    assert deps.add(1, frozenset()) == (True, None)
    assert deps.add(2, frozenset({1})) == (False, None)
    assert deps.add(3, frozenset({1, 2})) == (False, None)
    assert deps.finished(1, True) == ([2], [])
    assert deps.finished(2, False) == ([], [3])
    assert deps.add(4, frozenset({2})) == (False, 2), "a dependency that already failed dooms the task at once"
    assert deps.add(5, frozenset({1})) == (True, None)
    assert deps.waiting == 0
