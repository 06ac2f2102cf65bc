"""The Pilot-Quantum paper's figures, reproduced at this machine's scale.

One module per figure, ``benchmarks/figures/fig<N>_<topic>.py`` (N in 3..7), each defining

- ``FIGURE: int`` and ``TITLE: str``;
- ``PAPER: dict``: the paper's published numbers comparable to ours, and a sentence on what
  is and is not comparable (the table in ``benchmarks/README.md`` is written from it);
- ``run(size, out_dir) -> dict``: measures for real at ``size`` ``"tiny"`` (CI: every code path,
  minimal work) or ``"small"`` (``make figures``: a few minutes on 2 cores) and returns JSON-able
  data, including ``os.getloadavg()``, the command and the size; it writes nothing into
  ``benchmarks/results`` itself;
- ``plot(data, path)``: a PNG of that data (matplotlib, Agg backend).

``python benchmarks/figures/run.py`` (``make figures``) runs them and writes ``fig<N>.json`` and
``fig<N>.png``. This package holds what the runner and the test share: finding the modules
(:func:`discover`) and checking that a figure's data holds numbers to plot (:func:`data_series`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

__all__ = ["FIGURES_DIR", "METADATA_KEYS", "SIZES", "data_series", "discover", "non_finite"]

FIGURES_DIR = Path(__file__).resolve().parent

#: The sizes every figure module accepts.
SIZES = ("tiny", "small")

#: Top-level keys of a figure's data that describe the run rather than hold its series.
METADATA_KEYS = frozenset({"loadavg", "command", "size", "figure", "title", "runner", "machine", "paper"})

_MODULE = re.compile(r"^fig(\d+)_\w+\.py$")


def discover(folder: Path = FIGURES_DIR) -> dict[int, str]:
    """Figure number -> module name (``benchmarks.figures.fig3_backends``) of every
    ``fig<N>_<topic>.py`` in ``folder``.

    Raises:
        ValueError: two modules claim the same figure number.
    """
    found: dict[int, str] = {}
    for path in sorted(folder.glob("fig*.py")):
        match = _MODULE.match(path.name)
        if not match:
            continue
        number = int(match.group(1))
        if number in found:
            raise ValueError(f"two modules for figure {number}: {found[number]} and {path.stem}; "
                             f"rename one of them in {folder}")
        found[number] = f"benchmarks.figures.{path.stem}"
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def data_series(data: Any, path: str = "") -> dict[str, list]:
    """The data series in a figure's data: JSON path -> list.

    A series is a non-empty list of numbers (``[0.1, 0.2]``), or a non-empty list of records
    (dicts) each holding at least one number (``[{"qubits": 2, "seconds": 0.1}, ...]``), found
    anywhere outside the top-level :data:`METADATA_KEYS`. A figure without any has nothing
    to plot.
    """
    found: dict[str, list] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if not path and key in METADATA_KEYS:
                continue
            found.update(data_series(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(data, list) and data:
        if all(_is_number(v) for v in data):
            found[path] = data
        elif all(isinstance(v, dict) and any(_is_number(x) for x in v.values()) for v in data):
            found[path] = data
        for i, value in enumerate(data):
            if isinstance(value, (dict, list)):
                found.update(data_series(value, f"{path}[{i}]"))
    return found


def non_finite(data: Any, path: str = "") -> list[str]:
    """JSON paths of the NaN and infinite numbers in ``data`` (JSON has no such values:
    a figure says "not measured" with ``None``)."""
    bad: list[str] = []
    if isinstance(data, float) and not math.isfinite(data):
        bad.append(path or "<top>")
    elif isinstance(data, dict):
        for key, value in data.items():
            bad.extend(non_finite(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            bad.extend(non_finite(value, f"{path}[{i}]"))
    return bad


def run_facts(size: str, command, loadavg_before: list[float], **extra: Any) -> dict[str, Any]:
    """What every figure's data records about its run: size, command, the load before and
    after (the machine may be shared), cores and Python; ``extra`` adds figure-specific facts."""
    import os
    import sys

    return {"size": size, "command": command, "loadavg": list(os.getloadavg()), "loadavg_before": loadavg_before,
            "cpus": os.cpu_count(), "python": sys.version.split()[0], **extra}
