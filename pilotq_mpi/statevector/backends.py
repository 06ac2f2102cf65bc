"""Array backends of the distributed state vector: numpy (CPU) and CuPy (GPU).

A backend owns the per-rank arrays and applies a dense gate to the local amplitudes.
The local amplitudes are a flat array of ``2**m`` entries read as a tensor of ``m``
axes of size 2; ``layout[a]`` is the logical qubit of axis ``a`` (axis 0 is the most
significant index bit). ``apply`` may return a *different* layout: the gemm algorithm
(:class:`ArrayBackend`) leaves the targets as the trailing axes instead of transposing
back, which saves a full sweep per gate. Everything else (swaps, observables) reads the layout.

One gemm implementation serves both array modules: :class:`NumpyBackend` runs it on numpy,
:class:`CupyBackend` on CuPy (``engine="cupy"``), or hands the gate to cuStateVec's
``apply_matrix`` when cuquantum-python is importable (``engine="custatevec"``; the layout
then never changes). ``backend.device`` says whether the arrays live on a GPU, which decides
how MPI exchanges them (:mod:`.staging`).

CuPy and cuquantum are imported only when :func:`get_backend` is asked for them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .circuit import expand_matrix

_MAX_ROWS = 1 << 30
"""Rows per gemm call at most (cuBLAS takes 32-bit sizes; 2**31 rows appear from 33 local qubits)."""

ENGINES = ("auto", "custatevec", "cupy")
"""Values of ``CupyBackend(engine=...)``: ``auto`` is cuStateVec when importable, else plain CuPy."""


class ArrayBackend:
    """Gates by out-of-place gemm through the half-size swap buffer, on the array module ``xp``.

    ``xp`` is numpy or CuPy: only ``copyto``, ``matmul(..., out=)`` and reshape/transpose
    views are used, so one implementation serves both.
    """

    name = "array"
    engine = "gemm"
    device = False
    """True when the arrays live in GPU memory (MPI then needs a CUDA-aware library or host staging)."""
    xp = np

    def empty(self, size: int, dtype):
        """An uninitialised flat array of ``size`` amplitudes in this backend's memory."""
        return self.xp.empty(size, dtype=dtype)

    def to_host(self, array) -> np.ndarray:
        """``array`` as a numpy array (a copy for device arrays, the array itself on CPU)."""
        return np.asarray(array)

    def host_empty(self, size: int, dtype) -> np.ndarray:
        """A host array for staging MPI transfers of this backend's arrays."""
        return np.empty(size, dtype=dtype)

    def copy_to_host(self, src, dst: np.ndarray) -> None:
        """Copy the contiguous backend array ``src`` into the host array ``dst`` (same size)."""
        np.copyto(dst, np.asarray(src).reshape(dst.shape))

    def copy_from_host(self, src: np.ndarray, dst) -> None:
        """Copy the host array ``src`` into the contiguous backend array ``dst`` (same size)."""
        np.copyto(dst, src.reshape(dst.shape))

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on CPU)."""

    def matrix(self, mt: np.ndarray):
        """The (host, contiguous) gate matrix ``mt`` where the backend's gemm reads it."""
        return np.ascontiguousarray(mt)

    def apply(self, state, buf, layout: Sequence[int], matrix: np.ndarray,
              qubits: Sequence[int]) -> list[int]:
        """Apply ``matrix`` (Qiskit order over logical ``qubits``) to ``state``; return the new layout.

        Half ``b`` of the amplitudes (split on the first non-target axis ``a``) is copied,
        targets moved last, into ``buf``, then multiplied back into the same memory it
        came from with one gemm per block of ``2**a`` blocks.
        """
        xp = self.xp
        m = len(layout)
        k = len(qubits)
        pos = {q: i for i, q in enumerate(layout)}
        tax = sorted(pos[q] for q in qubits)
        tq = [layout[i] for i in tax]
        # Trailing axes tq[0..k-1]: the last one is the least significant column bit.
        mt = expand_matrix(matrix, qubits, tq[::-1]).T.astype(state.dtype, copy=False)
        mt = self.matrix(mt)
        nt = [i for i in range(m) if i not in tax]
        tensor = state.reshape((2,) * m)
        if not nt or (m - 1 - nt[0]) < k:
            # Gate spans (nearly) all local qubits: small or rare, use a temporary.
            rows = 1 << (m - k)
            out = tensor.transpose(nt + tax).reshape(rows, 1 << k) @ mt
            state[:] = out.reshape(-1)
            return [layout[i] for i in nt] + tq
        a = nt[0]
        rest = nt[1:]
        # Axis numbers of the half tensor (axis a removed).
        perm = [i - (i > a) for i in rest] + [i - (i > a) for i in tax]
        half = 1 << (m - 1)
        r = 1 << (m - 1 - a)
        hb = buf[:half]
        shape_t = (2,) * (m - 1)
        t3 = state.reshape(1 << a, 2, r)
        rows_per_block = r >> k
        x = hb.reshape(-1, 1 << k)
        for b in (0, 1):
            src = tensor[(slice(None),) * a + (b,)].transpose(perm)
            xp.copyto(hb.reshape(shape_t), src)
            for o in range(1 << a):
                dst = t3[o, b].reshape(rows_per_block, 1 << k)
                for lo in range(0, rows_per_block, _MAX_ROWS):
                    hi = min(lo + _MAX_ROWS, rows_per_block)
                    xp.matmul(x[o * rows_per_block + lo: o * rows_per_block + hi], mt, out=dst[lo:hi])
        order = [layout[i] for i in rest] + tq
        return order[:a] + [layout[a]] + order[a:]


class NumpyBackend(ArrayBackend):
    """CPU backend: numpy arrays, the gemm algorithm of :class:`ArrayBackend`."""

    name = "numpy"
    engine = "numpy"
    device = False
    xp = np


class CupyBackend(ArrayBackend):
    """GPU backend: CuPy arrays on the current device.

    ``engine``: ``"custatevec"`` applies gates in place with cuStateVec (cuquantum-python;
    the layout never changes), ``"cupy"`` runs the gemm algorithm of :class:`ArrayBackend`
    on CuPy, ``"auto"`` (default) takes cuStateVec when it imports and works, else CuPy.
    :attr:`engine` says which one runs; :attr:`engine_note` why ``auto`` fell back.
    """

    name = "cupy"
    device = True
    chunk = 1 << 22
    """Amplitudes per chunk of the observables' walks (fewer, larger kernels than on CPU)."""

    def __init__(self, engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        import cupy

        self.xp = cupy
        self.engine = "cupy"
        self.engine_note = ""
        self._handle = None
        if engine in ("auto", "custatevec"):
            try:
                self._init_custatevec()
                self.engine = "custatevec"
            except Exception as exc:  # noqa: BLE001 - no cuquantum, or its library does not load
                if engine == "custatevec":
                    raise ImportError(
                        "engine='custatevec' needs cuquantum-python (pip install 'pilotq-mpi[gpu]'); "
                        f"it failed with {type(exc).__name__}: {exc}. Use engine='cupy' (plain CuPy) instead"
                    ) from exc
                self.engine_note = f"cuStateVec unavailable ({type(exc).__name__}: {exc}); plain CuPy gemm"

    def _init_custatevec(self) -> None:
        try:  # cuquantum-python >= 24.x
            from cuquantum.bindings import custatevec as cusv
        except ImportError:  # older layout
            from cuquantum import custatevec as cusv
        from cuquantum import ComputeType, cudaDataType

        self._cusv = cusv
        self._types = {
            np.dtype(np.complex128): (cudaDataType.CUDA_C_64F, ComputeType.COMPUTE_64F),
            np.dtype(np.complex64): (cudaDataType.CUDA_C_32F, ComputeType.COMPUTE_32F),
        }
        self._workspace = None
        self._workspace_size = 0
        self._handle = cusv.create()

    def to_host(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)

    def host_empty(self, size: int, dtype) -> np.ndarray:
        """Page-locked host memory (faster transfers) when CuPy can allocate it, else plain numpy."""
        try:
            import cupyx

            return cupyx.empty_pinned(size, dtype=dtype)
        except Exception:  # noqa: BLE001 - pinned memory refused (limits): pageable works too
            return np.empty(size, dtype=dtype)

    def copy_to_host(self, src, dst: np.ndarray) -> None:
        src.reshape(dst.shape).get(out=dst)

    def copy_from_host(self, src: np.ndarray, dst) -> None:
        dst.set(src.reshape(dst.shape))

    def synchronize(self) -> None:
        """Wait for the GPU before MPI reads or writes device buffers."""
        self.xp.cuda.get_current_stream().synchronize()

    def matrix(self, mt: np.ndarray):
        return self.xp.asarray(np.ascontiguousarray(mt))

    def apply(self, state, buf, layout, matrix, qubits) -> list[int]:
        """Apply ``matrix``: cuStateVec in place (layout unchanged), or the CuPy gemm algorithm."""
        if self.engine != "custatevec":
            return super().apply(state, buf, layout, matrix, qubits)
        m = len(layout)
        pos = {q: i for i, q in enumerate(layout)}
        targets = np.asarray([m - 1 - pos[q] for q in qubits], dtype=np.int32)  # bit positions
        dt = np.dtype(state.dtype)
        sv_type, compute = self._types[dt]
        host = np.ascontiguousarray(matrix, dtype=dt)  # row-major, bit j <-> targets[j]
        cusv = self._cusv
        size = cusv.apply_matrix_get_workspace_size(
            self._handle, sv_type, m, host.ctypes.data, sv_type, cusv.MatrixLayout.ROW, 0,
            len(targets), 0, compute)
        if size > self._workspace_size:
            self._workspace = self.xp.cuda.alloc(size)
            self._workspace_size = size
        ws_ptr = self._workspace.ptr if self._workspace_size else 0
        cusv.apply_matrix(
            self._handle, state.data.ptr, sv_type, m, host.ctypes.data, sv_type,
            cusv.MatrixLayout.ROW, 0, targets.ctypes.data, len(targets), 0, 0, 0,
            compute, ws_ptr, self._workspace_size)
        return list(layout)

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._cusv.destroy(handle)


def get_backend(name: str = "numpy"):
    """Return a backend instance: ``"numpy"``, ``"cupy"`` or ``"auto"`` (cupy if a GPU works, else numpy).

    ``"cupy"`` needs only CuPy; it uses cuStateVec when cuquantum-python is importable
    (``backend.engine`` says which).
    """
    if name == "numpy":
        return NumpyBackend()
    if name == "cupy":
        try:
            return CupyBackend()
        except ImportError as exc:
            raise ImportError(
                "backend='cupy' needs CuPy for your CUDA (e.g. pip install cupy-cuda12x); "
                "cuquantum-python is optional (pip install 'pilotq-mpi[gpu]' installs both)"
            ) from exc
    if name == "auto":
        try:
            import cupy

            cupy.zeros(1)
            return CupyBackend()
        except Exception:  # noqa: BLE001 - no cupy or no usable GPU
            return NumpyBackend()
    raise ValueError(f"backend must be 'numpy', 'cupy' or 'auto', got {name!r}")
