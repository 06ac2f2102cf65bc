"""PILOTQ_PREFETCH_HORIZON: parsed like the other PILOTQ_* options."""
import math

import pytest

from pilotq_mpi.runtime.options import DEFAULT_PREFETCH_HORIZON, PilotOptions, prefetch_horizon_from_env


def test_default_inf_and_numbers():
    assert prefetch_horizon_from_env({}) == DEFAULT_PREFETCH_HORIZON == PilotOptions().prefetch_horizon
    assert math.isinf(prefetch_horizon_from_env({"PILOTQ_PREFETCH_HORIZON": "inf"}))
    assert PilotOptions.from_env({"PILOTQ_PREFETCH_HORIZON": "0.2"}).prefetch_horizon == 0.2


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_bad_values_name_the_variable(value):
    with pytest.raises(ValueError, match="PILOTQ_PREFETCH_HORIZON"):
        prefetch_horizon_from_env({"PILOTQ_PREFETCH_HORIZON": value})


def test_default_prefetch_depth_and_its_variable():
    """The default queue depth feeds a busy worker batches; PILOTQ_PREFETCH still sets it (0: none)."""
    from pilotq_mpi.runtime.options import DEFAULT_PREFETCH

    assert PilotOptions().prefetch == PilotOptions.from_env({}).prefetch == DEFAULT_PREFETCH > 1
    assert PilotOptions.from_env({"PILOTQ_PREFETCH": "0"}).prefetch == 0
    with pytest.raises(ValueError, match="PILOTQ_PREFETCH"):
        PilotOptions.from_env({"PILOTQ_PREFETCH": "-1"})


def test_group_hold_defaults_reads_seconds_and_refuses_what_is_not():
    from pilotq_mpi.runtime.options import DEFAULT_GROUP_HOLD

    assert PilotOptions.from_env({}).group_hold == DEFAULT_GROUP_HOLD > 0
    assert PilotOptions.from_env({"PILOTQ_GROUP_HOLD": "0"}).group_hold == 0.0
    assert PilotOptions.from_env({"PILOTQ_GROUP_HOLD": "0.5"}).group_hold == 0.5
    for bad in ("-1", "inf", "soon"):
        with pytest.raises(ValueError, match=f"PILOTQ_GROUP_HOLD='{bad}': expected seconds >= 0"):
            PilotOptions.from_env({"PILOTQ_GROUP_HOLD": bad})
