"""Perlmutter GPU layouts on a real two-node Slurm (two slurmd on this host, 4 fake GPUs each).

The perlmutter-gpu template, rendered as a user gets it, with what this test cluster cannot
have taken out (no ``gpu`` node feature, 8 CPUs per node, PMI2 for the PyPI MPICH):

- ``worker-per-gpu`` (the default): nodes x 4 + 1 ranks dealt out cyclically, so node 0 holds
  rank 0 (the master, no GPU) and 4 workers and node 1 holds 4 workers: every GPU has exactly
  one worker;
- ``ranks-per-node``: 4 ranks per node, so node 0's 3 workers share its 4 GPUs (one owns two).

Skipped (loudly) when the Slurm binaries are missing: install with .ci/install-slurm.sh.
"""
import json
import re

import pytest
from slurm_jobs import PROGRAMS, exit_code, pilot_script, read, submit, tail

pytestmark = [pytest.mark.slurm]


def _for_this_cluster(script: str) -> str:
    script = re.sub(r"(?m)^#SBATCH --constraint=gpu\n", "", script)  # no node features here
    return re.sub(r"(?m)^#SBATCH --cpus-per-task=\d+$", "#SBATCH --cpus-per-task=1", script)  # 8 CPUs


def _run_layout(cluster, work, layout):
    out = work / "job.out"
    script = pilot_script([PROGRAMS / "gpu_report_app.py", 48], out, target="perlmutter-gpu",
                          nodes=2, ranks_per_node=None if layout == "worker-per-gpu" else 4,
                          gpus_per_node=4, layout=layout, job_name=f"pilotq-{layout}",
                          PILOTQ_SRUN_MPI="pmi2")
    job = submit(cluster, _for_this_cluster(script), work)
    state = cluster.wait(job, timeout=200)
    text = read(out)
    assert state == "COMPLETED" and exit_code(cluster, job) == "0:0", f"{state}\n{tail(text)}"
    lines = [line for line in text.splitlines() if line.startswith("GPU_REPORT ")]
    assert len(lines) == 1, tail(text)
    report = json.loads(lines[0].split(" ", 1)[1])
    owned = {r["rank"]: (r["node"], tuple(r["gpus"])) for r in report["inventory"]}
    for task in report["tasks"]:  # what each task saw matches what its worker owns
        node, gpus = owned[task["world_rank"]]
        # both nodes have this host's name: the inventory tells them apart as host#leader
        assert (task["node"], tuple(task["gpus"])) == (node.split("#")[0], gpus), task
        assert task["cvd"] == ",".join(map(str, gpus)), task
    return report, owned, text


@pytest.mark.timeout(300)
def test_worker_per_gpu_gives_every_gpu_exactly_one_worker(slurm_cluster_2nodes, tmp_path):
    report, owned, text = _run_layout(slurm_cluster_2nodes, tmp_path, "worker-per-gpu")
    assert sorted(owned) == list(range(1, 9)), f"9 ranks: master + 8 workers\n{tail(text)}"
    by_node = {}
    for rank, (node, gpus) in owned.items():
        assert len(gpus) == 1, f"rank {rank} owns {gpus}"
        by_node.setdefault(node, []).append(gpus[0])
    assert len(by_node) == 2, by_node
    assert all(sorted(g) == [0, 1, 2, 3] for g in by_node.values()), by_node
    # cyclic: node 0 (the master's) holds the even ranks, node 1 the odd ones
    node_of = {rank: node for rank, (node, _) in owned.items()}
    assert len({node_of[r] for r in (2, 4, 6, 8)}) == 1 and len({node_of[r] for r in (1, 3, 5, 7)}) == 1
    assert report["master"]["SLURM_LOCALID"] == "0"
    assert "pilotq-mpi: 8 worker ranks on 2 nodes" in text, tail(text)


@pytest.mark.timeout(300)
def test_ranks_per_node_leaves_one_worker_of_node_0_with_two_gpus(slurm_cluster_2nodes, tmp_path):
    report, owned, text = _run_layout(slurm_cluster_2nodes, tmp_path, "ranks-per-node")
    assert sorted(owned) == list(range(1, 8)), f"8 ranks: master + 7 workers\n{tail(text)}"
    counts = sorted(len(gpus) for _, gpus in owned.values())
    assert counts == [1, 1, 1, 1, 1, 1, 2], owned  # as documented: one worker of node 0 owns two
