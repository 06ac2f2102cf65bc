"""Compress many images as a task ensemble through the pilot, journaled so that a drained run resumes.

Images go in batches (``batch_size`` per task) to single-rank tasks; each task compresses
its images one after the other (:func:`.compress.compress_state`) and returns one
:class:`~.compress.CompressedImage` per image: the gates (the circuit's parameters), the
fidelity after each stage and the time each stage took.

Every batch is submitted with an explicit journal key derived from its content (the
compression settings, the images' positions in the data set and their pixels), so with
``Pilot(journal="qml.sqlite")`` a rerun after a walltime drain (exit code 75) or a kill
takes the batches already done from the journal and computes only the others; changing the
settings or the images gives new keys, never a stale result.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np

from .compress import CompressedImage, CompressionConfig, compress_state
from .data import frqi_state
from .threads import one_thread

__all__ = ["compress_batch", "batch_key", "submit_compression", "collect", "run_compression"]


def compress_batch(comm, images: np.ndarray, indices: Sequence[int],
                   config: CompressionConfig) -> list[CompressedImage]:
    """Pilot task: FRQI-encode and compress each image of the batch (one rank; ``comm`` unused)."""
    results = []
    with one_thread():
        for index, image in zip(indices, images):
            result = compress_state(frqi_state(image), config)
            result.index = int(index)
            results.append(result)
    return results


def batch_key(images: np.ndarray, indices: Sequence[int], config: CompressionConfig) -> str:
    """Journal key of one batch: a digest of the settings, the image positions and the pixels."""
    digest = hashlib.sha256()
    digest.update(repr(config).encode())
    digest.update(np.asarray(indices, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(images, dtype=np.float64).tobytes())
    return f"qml-compress-{digest.hexdigest()[:32]}"


def submit_compression(pilot, images: np.ndarray, config: CompressionConfig = CompressionConfig(),
                       batch_size: int = 8, indices: Sequence[int] | None = None,
                       name: str = "qml-compress") -> list[Future]:
    """Submit the images in batches of ``batch_size`` as single-rank tasks; one future per batch
    (a future's result: the batch's :class:`CompressedImage` list)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images of shape {images.shape}: pass a stack of square images (N, side, side)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use at least 1 image per task")
    indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(indices) != len(images):
        raise ValueError(f"{len(indices)} indices for {len(images)} images: give one index per image")
    futures = []
    for start in range(0, len(images), batch_size):
        chunk, where = images[start:start + batch_size], indices[start:start + batch_size]
        futures.append(pilot.submit(compress_batch, chunk, where.tolist(), config, name=name,
                                    key=batch_key(chunk, where, config)))
    return futures


def collect(futures: Sequence[Future], on_batch: Callable[[list[CompressedImage]], None] | None = None
            ) -> list[CompressedImage]:
    """Wait for the batches (in completion order, calling ``on_batch`` for each); every image's
    result, sorted by index. A failed batch (e.g. ``WalltimeError`` after a drain) raises."""
    from concurrent.futures import as_completed

    results: list[CompressedImage] = []
    for future in as_completed(futures):
        batch = future.result()
        if on_batch is not None:
            on_batch(batch)
        results.extend(batch)
    return sorted(results, key=lambda r: r.index)


def run_compression(pilot, images: np.ndarray, config: CompressionConfig = CompressionConfig(),
                    batch_size: int = 8, indices: Sequence[int] | None = None,
                    on_batch: Callable[[list[CompressedImage]], None] | None = None) -> list[CompressedImage]:
    """:func:`submit_compression` then :func:`collect`: every image compressed, sorted by index."""
    return collect(submit_compression(pilot, images, config, batch_size, indices), on_batch)
