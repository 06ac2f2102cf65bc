"""Failover of fragments: batches that fail for good on one route move to the next, the rest stay.

A *fragment* is a batch of subexperiments (a cut circuit's, or a QPU's measurement circuits);
a *route* is where a fragment can run (a declared QPU, Aer on the GPU ranks, Aer on the CPU
ranks), in order of preference. :func:`run_fragments` submits every fragment to its first
route and, when a fragment's task fails after its retries (a QPU rejects a job, a backend
cannot take a subexperiment), resubmits just that fragment to the next route, keeping every
result that came back. What moved, where and why is returned with the results.

Whole-circuit strategies (the state vector, one-rank Aer) have one fragment, the circuit;
:mod:`.execute` moves it to the next feasible strategy of a fresh plan the same way.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Callable, Sequence

from .problem import PlanningError


class FailoverError(PlanningError):
    """A fragment failed on every route it could take; the message lists the errors per route."""


@dataclass
class Route:
    """Where a fragment can run: ``submit(batch_index, payload) -> Future`` of the batch's result dict."""

    label: str
    submit: Callable[[int, object], Future]


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def run_fragments(payloads: Sequence[object], sizes: Sequence[int], routes: Sequence[Route]
                  ) -> tuple[list[dict], list[dict]]:
    """Run every fragment (``payloads[b]``, ``sizes[b]`` subexperiments) with failover over ``routes``.

    Returns ``(results in fragment order, moved)``; ``moved`` has one record per move:
    ``{"fragment": b, "subexperiments": sizes[b], "from": route, "to": route, "why": error}``.
    Raises :class:`FailoverError` when a fragment failed on the last route too.
    """
    if not routes:
        raise ValueError("run_fragments needs at least one route")
    level: dict[Future, tuple[int, int]] = {}
    for b, payload in enumerate(payloads):
        level[routes[0].submit(b, payload)] = (b, 0)
    results: list[dict | None] = [None] * len(payloads)
    moved: list[dict] = []
    errors: dict[int, list[str]] = {}
    pending = set(level)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            b, r = level.pop(fut)
            exc = fut.exception()
            if exc is None:
                results[b] = fut.result()
                continue
            errors.setdefault(b, []).append(f"{routes[r].label}: {_describe(exc)}")
            if r + 1 >= len(routes):
                for other in pending:
                    other.cancel()
                raise FailoverError(f"fragment {b} ({sizes[b]} subexperiments) failed on every route: "
                                    + "; ".join(errors[b])) from exc
            moved.append({"fragment": b, "subexperiments": int(sizes[b]), "from": routes[r].label,
                          "to": routes[r + 1].label, "why": _describe(exc)})
            new = routes[r + 1].submit(b, payloads[b])
            level[new] = (b, r + 1)
            pending.add(new)
    return results, moved  # type: ignore[return-value]


def summarize_moves(moved: Sequence[dict]) -> list[str]:
    """One line per (from, to, why): how many fragments and subexperiments moved."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for m in moved:
        key = (m["from"], m["to"], m["why"])
        groups.setdefault(key, [0, 0])
        groups[key][0] += 1
        groups[key][1] += int(m.get("subexperiments", 0))
    return [f"{n} fragment(s), {subs} subexperiment(s) moved from {src} to {dst}: {why}"
            for (src, dst, why), (n, subs) in groups.items()]
