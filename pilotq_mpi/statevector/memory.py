"""Memory needed per rank by the distributed state vector, and the submit-time check."""
from __future__ import annotations

import numpy as np

_DTYPES = {"complex128": np.complex128, "complex64": np.complex64}


def resolve_dtype(dtype) -> np.dtype:
    """Return ``numpy.dtype`` for ``complex128``/``complex64`` (names or numpy types); else ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be 'complex128' or 'complex64', got {dtype!r}") from exc
    if dt.name not in _DTYPES:
        raise ValueError(f"dtype must be 'complex128' or 'complex64', got {dtype!r}")
    return dt


def check_layout(num_qubits: int, ranks: int) -> int:
    """Validate a qubit/rank split and return the number of global qubits ``g`` (ranks == 2**g).

    Every rank must hold at least one local qubit (``num_qubits - g >= 1``); with that, any
    circuit runs on the layout (gates wider than the local part included). ``ValueError``
    otherwise, saying which rank count to use.
    """
    if not isinstance(num_qubits, (int, np.integer)) or num_qubits < 1:
        raise ValueError(f"num_qubits must be a positive int, got {num_qubits!r}")
    if not isinstance(ranks, (int, np.integer)) or ranks < 1 or ranks & (ranks - 1):
        raise ValueError(
            f"the distributed state vector needs a power-of-two number of ranks (1, 2, 4, ...), "
            f"got {ranks}; submit the task with ranks={1 << max(0, int(ranks).bit_length() - 1)} instead"
        )
    g = int(ranks).bit_length() - 1
    if num_qubits - g < 1:
        raise ValueError(
            f"{num_qubits} qubits on {ranks} ranks leaves no local qubit (each rank must hold at least"
            f" one); use at most {1 << (num_qubits - 1)} ranks"
        )
    return g


def swap_buffer_length(num_local: int) -> int:
    """Amplitudes in the swap buffer of a rank with ``num_local`` local qubits.

    Half the local part (what a swap exchanges), but at least 2: the observables exchange
    the partner's amplitudes in chunks of at least one local axis (2 amplitudes), which is
    the whole local part when ``num_local == 1``.
    """
    return max(2, 1 << (num_local - 1))



GRADIENTS = (None, "adjoint")
"""Values of the ``gradient`` option: ``None`` (expectation values only) or ``"adjoint"``."""


def check_gradient(gradient) -> None:
    """``ValueError`` unless ``gradient`` is one of :data:`GRADIENTS`."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be None or 'adjoint', got {gradient!r}")


def memory_per_rank(num_qubits: int, ranks: int, dtype="complex128", gradient=None) -> int:
    """Bytes each rank allocates: its ``2**(n-g)`` local amplitudes plus one swap buffer of half that.

    ``gradient="adjoint"`` adds a second state vector of ``2**(n-g)`` amplitudes (the adjoint
    sweep's ``<bra|`` state, carried through the same swaps; the derivative terms are read off
    the two states directly, with no third vector: see :mod:`.adjoint`), so 2.5 state vectors
    in all.

    The swap buffer receives the half of the local amplitudes exchanged with the partner
    rank and is the scratch space for gate application, so nothing else of that size is
    allocated (small bounded temporaries and the gathered probabilities on rank 0 aside).
    With one local qubit per rank the buffer holds 2 amplitudes (:func:`swap_buffer_length`).
    Raises ``ValueError`` for a layout :func:`check_layout` refuses, so passing
    ``memory_per_rank=memory_per_rank(n, ranks)`` to ``submit`` refuses it at submit time.
    """
    check_gradient(gradient)
    g = check_layout(num_qubits, ranks)
    m = num_qubits - g
    itemsize = resolve_dtype(dtype).itemsize
    vectors = 2 if gradient == "adjoint" else 1
    return (vectors * (1 << m) + swap_buffer_length(m)) * itemsize


def check_memory(num_qubits: int, ranks: int, budget_bytes: int, dtype="complex128", gradient=None) -> int:
    """Return :func:`memory_per_rank`; raise ``ValueError`` if it exceeds ``budget_bytes`` per rank."""
    need = memory_per_rank(num_qubits, ranks, dtype, gradient)
    if budget_bytes is not None and need > budget_bytes:
        what = " with adjoint gradients" if gradient else ""
        raise ValueError(
            f"{num_qubits} qubits on {ranks} rank(s) as {resolve_dtype(dtype).name}{what} need "
            f"{need / 2**30:.3g} GiB per rank, above the budget of {budget_bytes / 2**30:.3g} GiB; "
            "use more ranks (each doubling halves it), dtype='complex64', or fewer qubits"
        )
    return need
