"""Array backends of the distributed state vector: numpy (CPU) and CuPy + cuStateVec (GPU).

A backend owns the per-rank arrays and applies a dense gate to the local amplitudes.
The local amplitudes are a flat array of ``2**m`` entries read as a tensor of ``m``
axes of size 2; ``layout[a]`` is the logical qubit of axis ``a`` (axis 0 is the most
significant index bit). ``apply`` may return a *different* layout: the numpy backend
leaves the targets as the trailing axes instead of transposing back, which saves a
full sweep per gate. Everything else (swaps, observables) reads the layout.

The CuPy module is imported only when :func:`get_backend` is asked for it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .circuit import expand_matrix


class NumpyBackend:
    """CPU backend: out-of-place gemm through the half-size swap buffer."""

    name = "numpy"
    xp = np

    def empty(self, size: int, dtype) -> np.ndarray:
        return np.empty(size, dtype=dtype)

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on CPU)."""

    def apply(self, state: np.ndarray, buf: np.ndarray, layout: Sequence[int],
              matrix: np.ndarray, qubits: Sequence[int]) -> list[int]:
        """Apply ``matrix`` (Qiskit order over logical ``qubits``) to ``state``; return the new layout.

        Half ``b`` of the amplitudes (split on the first non-target axis ``a``) is copied,
        targets moved last, into ``buf``, then multiplied back into the same memory it
        came from with one gemm per block of ``2**a`` blocks.
        """
        m = len(layout)
        k = len(qubits)
        pos = {q: i for i, q in enumerate(layout)}
        tax = sorted(pos[q] for q in qubits)
        tq = [layout[i] for i in tax]
        # Trailing axes tq[0..k-1]: the last one is the least significant column bit.
        mt = expand_matrix(matrix, qubits, tq[::-1]).T.astype(state.dtype, copy=False)
        mt = np.ascontiguousarray(mt)
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
            np.copyto(hb.reshape(shape_t), src)
            for o in range(1 << a):
                np.matmul(x[o * rows_per_block:(o + 1) * rows_per_block], mt,
                          out=t3[o, b].reshape(rows_per_block, 1 << k))
        order = [layout[i] for i in rest] + tq
        return order[:a] + [layout[a]] + order[a:]


class CupyBackend:
    """GPU backend: CuPy arrays, gates applied in place by cuStateVec ``apply_matrix``.

    The layout never changes (cuStateVec handles any target bits). With a CUDA-aware MPI,
    mpi4py's uppercase ``Sendrecv`` takes the CuPy buffers directly. UNTESTED here (no GPU).
    """

    name = "cupy"

    def __init__(self):
        import cupy
        try:  # cuquantum-python >= 24.x
            from cuquantum.bindings import custatevec as cusv
        except ImportError:  # older layout
            from cuquantum import custatevec as cusv
        from cuquantum import ComputeType, cudaDataType

        self.xp = cupy
        self._cusv = cusv
        self._handle = cusv.create()
        self._types = {
            np.dtype(np.complex128): (cudaDataType.CUDA_C_64F, ComputeType.COMPUTE_64F),
            np.dtype(np.complex64): (cudaDataType.CUDA_C_32F, ComputeType.COMPUTE_32F),
        }
        self._workspace = None
        self._workspace_size = 0

    def empty(self, size: int, dtype):
        return self.xp.empty(size, dtype=dtype)

    def to_host(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        """Wait for the GPU before MPI reads or writes device buffers."""
        self.xp.cuda.get_current_stream().synchronize()

    def apply(self, state, buf, layout, matrix, qubits) -> list[int]:
        """Apply ``matrix`` in place with cuStateVec; the layout is unchanged."""
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
    """Return a backend instance: ``"numpy"``, ``"cupy"`` or ``"auto"`` (cupy if a GPU works, else numpy)."""
    if name == "numpy":
        return NumpyBackend()
    if name == "cupy":
        try:
            return CupyBackend()
        except ImportError as exc:
            raise ImportError(
                "backend='cupy' needs cupy and cuquantum-python: pip install 'pilotq-mpi[gpu]'"
            ) from exc
    if name == "auto":
        try:
            import cupy

            cupy.zeros(1)
            return CupyBackend()
        except Exception:  # noqa: BLE001 - no cupy, no cuquantum or no usable GPU
            return NumpyBackend()
    raise ValueError(f"backend must be 'numpy', 'cupy' or 'auto', got {name!r}")
