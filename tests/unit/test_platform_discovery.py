"""Tests of pilotq_mpi.platform.discovery (pure functions of an environment mapping)."""
import pytest
from hypothesis import given, strategies as st

from pilotq_mpi.platform.discovery import (
    allocation_end_time, expand_hostlist, gpus_for_rank, node_gpus, node_local_rank,
    parse_slurm_duration, pin_env, slurm_job_id, slurm_nodes)


def test_slurm_job_id():
    assert slurm_job_id({"SLURM_JOB_ID": "42"}) == "42"
    assert slurm_job_id({"SLURM_JOBID": "43"}) == "43"
    assert slurm_job_id({}) is None


@pytest.mark.parametrize("text,expected", [
    ("vm", ("vm",)),
    ("nid[001-003,007]", ("nid001", "nid002", "nid003", "nid007")),
    ("a[1-2],b3,c[09-10]", ("a1", "a2", "b3", "c09", "c10")),
    ("r[1-2]n[0-1]", ("r1n0", "r1n1", "r2n0", "r2n1")),
])
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize("bad", ["nid[3-1]", "nid[1-2", "nid]1[", "nid[a-b]"])
def test_expand_hostlist_rejects(bad):
    with pytest.raises(ValueError, match="hostlist"):
        expand_hostlist(bad)


def test_slurm_nodes():
    assert slurm_nodes({"SLURM_JOB_NODELIST": "nid[1-2]", "SLURM_NODELIST": "x"}) == ("nid1", "nid2")
    assert slurm_nodes({"SLURM_NODELIST": "x"}) == ("x",)
    assert slurm_nodes({}) == ()


def test_node_local_rank_order_and_errors():
    assert node_local_rank({"SLURM_LOCALID": "3", "MPI_LOCALRANKID": "1"}) == 3
    assert node_local_rank({"MPI_LOCALRANKID": "1"}) == 1
    assert node_local_rank({"OMPI_COMM_WORLD_LOCAL_RANK": "2"}) == 2
    assert node_local_rank({"PALS_LOCAL_RANKID": "0"}) == 0
    assert node_local_rank({}) is None
    with pytest.raises(ValueError, match="SLURM_LOCALID='x'"):
        node_local_rank({"SLURM_LOCALID": "x"})


def test_node_gpus_sources_in_order():
    assert node_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, declared=4) == (0, 1, 2, 3)
    assert node_gpus({"CUDA_VISIBLE_DEVICES": "2,3", "SLURM_STEP_GPUS": "0"}) == (2, 3)
    assert node_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ()
    assert node_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == ()
    assert node_gpus({"SLURM_STEP_GPUS": "1,3", "SLURM_GPUS_ON_NODE": "4"}) == (1, 3)
    assert node_gpus({"SLURM_JOB_GPUS": "0,1,2,3"}) == (0, 1, 2, 3)
    assert node_gpus({"SLURM_GPUS_ON_NODE": "4"}) == (0, 1, 2, 3)
    assert node_gpus({}) == ()
    assert node_gpus({}, declared=0) == ()


def test_node_gpus_errors_name_value():
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES='GPU-abc'.*declare a GPU count"):
        node_gpus({"CUDA_VISIBLE_DEVICES": "GPU-abc"})
    with pytest.raises(ValueError, match="listed twice"):
        node_gpus({"CUDA_VISIBLE_DEVICES": "1,1"})
    with pytest.raises(ValueError, match="declared GPU count -1"):
        node_gpus({}, declared=-1)


def test_parse_slurm_duration():
    assert parse_slurm_duration("1-02:03:04") == 93784
    assert parse_slurm_duration("02:03:04") == 7384
    assert parse_slurm_duration("3:04") == 184
    with pytest.raises(ValueError, match="'soon'"):
        parse_slurm_duration("soon")


def test_allocation_end_time():
    assert allocation_end_time({"PILOTQ_END_TIME": "100", "SLURM_JOB_END_TIME": "200"}) == 100.0
    assert allocation_end_time({"SLURM_JOB_END_TIME": "200"}) == 200.0
    assert allocation_end_time({}, now=1000.0, time_left="10:00") == 1600.0
    assert allocation_end_time({}, now=1000.0, time_left="UNLIMITED") is None
    assert allocation_end_time({}) is None
    with pytest.raises(ValueError, match="now="):
        allocation_end_time({}, time_left="10:00")
    with pytest.raises(ValueError, match="SLURM_JOB_END_TIME='x'"):
        allocation_end_time({"SLURM_JOB_END_TIME": "x"})


def test_gpus_for_rank_one_each():
    assert [gpus_for_rank(r, 4, (0, 1, 2, 3)) for r in range(4)] == [(0,), (1,), (2,), (3,)]
    assert gpus_for_rank(1, 2, (4, 5)) == (5,)


def test_gpus_for_rank_more_gpus_than_ranks():
    assert [gpus_for_rank(r, 2, (0, 1, 2, 3)) for r in range(2)] == [(0, 1), (2, 3)]
    assert [gpus_for_rank(r, 3, (0, 1, 2, 3)) for r in range(3)] == [(0,), (1,), (2, 3)]


def test_gpus_for_rank_fewer_gpus_than_ranks():
    assert [gpus_for_rank(r, 5, (0, 1, 2, 3)) for r in range(5)] == [(0,), (1,), (2,), (3,), ()]
    assert gpus_for_rank(0, 2, ()) == ()


def test_gpus_for_rank_bad_input():
    with pytest.raises(ValueError, match="local_rank=4: must be in 0..3"):
        gpus_for_rank(4, 4, (0, 1, 2, 3))
    with pytest.raises(ValueError, match="ranks_on_node=0"):
        gpus_for_rank(0, 0, ())


@given(st.integers(1, 16), st.integers(0, 16))
def test_gpus_for_rank_never_shares_and_uses_all(ranks, ngpus):
    gpus = tuple(range(ngpus))
    owned = [g for r in range(ranks) for g in gpus_for_rank(r, ranks, gpus)]
    assert len(owned) == len(set(owned))
    assert sorted(owned) == list(range(ngpus))  # every GPU has an owner
    per = [len(gpus_for_rank(r, ranks, gpus)) for r in range(ranks)]
    assert max(per) - min(per) <= 1


def test_pin_env():
    assert pin_env((2,)) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert pin_env([0, 1]) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert pin_env(()) == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ValueError, match="GPU ids must be >= 0"):
        pin_env((-1,))
