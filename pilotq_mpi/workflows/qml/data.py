"""Images and their quantum encoding (FRQI) for the QML mini-app.

The images are scikit-learn's 8x8 hand-written digits (1,797 images, shipped inside the
scikit-learn package: nothing is downloaded at run time). Each image becomes a 7-qubit
FRQI state (flexible representation of quantum images): 6 *position* qubits address the
64 pixels and 1 *colour* qubit holds the pixel's intensity ``x`` in [0, 1] as the angle
``cos(pi/2 x)|0> + sin(pi/2 x)|1>``::

    |psi(x)> = 1/8 sum_p (cos(pi/2 x_p)|0> + sin(pi/2 x_p)|1>)_colour |p>_position

Qubit order (qubit 0 is the most significant bit of a state index): the colour qubit
first, then the position bits in *hierarchical* order, row and column bits interleaved
from the coarsest to the finest (y2 x2 y1 x1 y0 x0). Neighbouring qubits then describe
neighbouring length scales, which keeps the entanglement across every cut of the chain
low: a matrix-product state of small bond dimension approximates natural images well,
and so does a shallow nearest-neighbour circuit (see :mod:`.compress`).

FRQI amplitudes are real and non-negative; :func:`frqi_decode` reads an image back from
any real state of this shape (the angle of each position's colour pair), so a compressed
state can be shown as an image.
"""
from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_SIDE", "N_QUBITS", "load_digits_images", "frqi_state", "frqi_states", "frqi_decode",
           "position_order"]

IMAGE_SIDE = 8
"""Side of the digits images (8x8 pixels)."""
N_QUBITS = 7
"""Qubits of one encoded digit: 6 position qubits + 1 colour qubit."""


def load_digits_images(classes: tuple[int, ...] | None = None, limit: int | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(images, labels)``: images ``(N, 8, 8)`` in [0, 1], labels ``(N,)``.

    ``classes`` keeps only those digits (e.g. ``(0, 1, 2, 3)``); ``limit`` keeps the first
    ``limit`` images of a shuffle with ``seed`` (the same subset on every call).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # the qml extra
        raise ImportError("the QML mini-app needs scikit-learn: pip install 'pilotq-mpi[qml]'") from exc
    digits = load_digits()
    images = digits.images.astype(np.float64) / 16.0
    labels = digits.target.astype(np.int64)
    if classes is not None:
        classes = tuple(int(c) for c in classes)
        bad = [c for c in classes if not 0 <= c <= 9]
        if bad or not classes:
            raise ValueError(f"classes={classes!r}: the digits data set has the classes 0..9; pick some of them")
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
    order = np.random.default_rng(seed).permutation(len(labels))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit={limit}: ask for at least 1 image")
        order = order[:limit]
    return images[order], labels[order]


def position_order(side: int = IMAGE_SIDE) -> np.ndarray:
    """``order[row, col]`` = the position index of pixel (row, col) in hierarchical order."""
    bits = _bits(side)
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    index = np.zeros((side, side), dtype=np.int64)
    for level in reversed(range(bits)):  # coarsest bit first: y_b x_b ... y_0 x_0
        index = (index << 2) | (((rows >> level) & 1) << 1) | ((cols >> level) & 1)
    return index


def frqi_state(image: np.ndarray) -> np.ndarray:
    """The FRQI state vector (real, ``2 * side**2`` amplitudes, norm 1) of one square image in [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or image.shape[0] != image.shape[1] or image.shape[0] & (image.shape[0] - 1):
        raise ValueError(f"image of shape {image.shape}: FRQI needs a square image with a power-of-two side")
    if image.min() < -1e-12 or image.max() > 1 + 1e-12:
        raise ValueError(f"image values in [{image.min():g}, {image.max():g}]: scale them to [0, 1] first")
    side = image.shape[0]
    pixels = side * side
    angles = np.zeros(pixels)
    angles[position_order(side).ravel()] = np.clip(image, 0.0, 1.0).ravel() * (np.pi / 2)
    state = np.concatenate([np.cos(angles), np.sin(angles)]) / np.sqrt(pixels)  # colour qubit first
    return state


def frqi_states(images: np.ndarray) -> np.ndarray:
    """:func:`frqi_state` of every image in ``images`` (N, side, side): an ``(N, 2 * side**2)`` array."""
    return np.stack([frqi_state(image) for image in images])


def frqi_decode(state: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """The image a real FRQI-shaped state encodes: intensity ``2/pi * atan2(|a1|, |a0|)`` per pixel."""
    state = np.asarray(state)
    pixels = side * side
    if state.shape != (2 * pixels,):
        raise ValueError(f"state of shape {state.shape}: a {side}x{side} FRQI state has {2 * pixels} amplitudes")
    cos_part, sin_part = np.abs(state[:pixels]), np.abs(state[pixels:])
    intensity = np.arctan2(sin_part, cos_part) * (2 / np.pi)
    return intensity[position_order(side)]


def _bits(side: int) -> int:
    bits = int(side).bit_length() - 1
    if side < 2 or 1 << bits != side:
        raise ValueError(f"side={side}: FRQI needs a power-of-two side of at least 2")
    return bits
