"""GPU tests: marked ``gpu``, skipped with the reason where CuPy or a usable NVIDIA GPU is missing.

    python -m pytest -q tests/gpu                          # one process
    mpiexec -n 2 python -m pytest -q tests/gpu/test_gpu_mpi.py   # and -n 4 (ranks share the GPU)
"""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def gpu_missing() -> str | None:
    """Why the GPU tests cannot run here (``None`` when CuPy works on a GPU)."""
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - not installed, or its CUDA libraries do not load
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); install cupy-cuda12x or cupy-cuda13x"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return "CuPy sees no GPU"
        cupy.zeros(1).sum().item()
    except Exception as exc:  # noqa: BLE001 - no driver, no device
        return f"no usable GPU for CuPy ({type(exc).__name__}: {exc})"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and an NVIDIA GPU (skipped, with the reason, otherwise)")


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if item.get_closest_marker("gpu") is None:
            continue
        reason = reason or gpu_missing()
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
