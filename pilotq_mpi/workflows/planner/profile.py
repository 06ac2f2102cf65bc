"""The cost profile: machine constants the cost model needs, measured on the pilot's own ranks.

A :class:`CostProfile` holds, per backend, a few constants (seconds per amplitude and gate,
per shot, per task, bytes per second between ranks, ...). It is saved as JSON, one file per
host (``~/.cache/pilotq-mpi/profile-<host>.json``, or ``$PILOTQ_PROFILE``), with one entry
per backend, and reused by every plan on that host. :func:`calibrate` (``pilotq-mpi
calibrate``) measures them with short microbenchmarks, in well under a minute; until then the
built-in defaults (measured once on a 2-core development machine) are used and every
prediction says so (``profile.calibrated`` is False).

Backends and their constants (all seconds unless said):

Compute constants are CPU seconds of one rank (see :mod:`.calibration`); the model divides
CPU work by the cores the ranks get (see :mod:`.model`).

- ``numpy`` / ``cupy`` (the distributed state vector): ``amp_gate_s`` per amplitude per fused
  gate, by local qubits (``{"14": ..., "20": ...}``, interpolated in log space);
  ``observable_amp_s`` per amplitude per X-group of Pauli terms, ``observable_term_amp_s`` per
  amplitude per Pauli term; ``gate_s`` fixed per gate;
  ``convert_gate_s`` per circuit gate converted to fused gates (numpy only; the default is the
  best of 5 conversions of the planner benchmark's circuits on the idle build machine,
  0.9-1.3e-4 s per gate).
- ``aer`` (one-rank exact estimate): ``amp_gate_s`` by qubits, ``setup_s``, ``observable_amp_s``.
- ``aer-sampler`` / ``aer-sampler-gpu`` (cut subexperiments): ``circuit_s`` per circuit
  (transpile + setup), ``gate_s`` per gate (transpile), ``amp_gate_s`` per amplitude per gate,
  ``shot_s`` per shot of a circuit simulated shot by shot (mid-circuit measurement),
  ``sample_s`` per shot sampled from a final state, ``batch_s`` per sampler task (loading the
  batch, setting the sampler up; the transpiler's pass manager is kept by each worker).
- ``comm``: ``latency_s`` and ``bytes_per_s`` of a ``Sendrecv`` between two worker ranks.
- ``pilot``: ``task_s`` per task (submit to result, no-op), ``sv_task_s`` the wall seconds of a
  tiny distributed state-vector task by ranks (``{"1": ..., "2": ..., "4": ...}``: its fixed cost
  on k ranks; empty until calibrated on a pilot), ``circuit_s`` per circuit sent
  (QPY both ways), ``result_s`` per subexperiment result received, ``import_qiskit_s`` and
  ``import_aer_s`` (a fresh interpreter importing qiskit, then Aer: paid once per worker).
- ``cutting``: ``generate_s`` per subexperiment generated, ``reconstruct_s`` and ``stderr_s``
  per subexperiment and Pauli term.
"""
from __future__ import annotations

import copy
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILE_VERSION = 1
ENV_VAR = "PILOTQ_PROFILE"

DEFAULTS: dict[str, dict[str, Any]] = {
    "numpy": {"amp_gate_s": {"14": 5.8e-8, "18": 5.4e-8, "20": 5.1e-8}, "observable_amp_s": 7.4e-10,
              "observable_term_amp_s": 4.8e-9, "gate_s": 1.3e-4, "init_amp_s": 1.6e-9, "convert_gate_s": 1.0e-4},
    "cupy": {"amp_gate_s": {"10": 2.0e-7, "20": 2.0e-10, "28": 1.0e-11}, "observable_amp_s": 5.0e-11,
             "observable_term_amp_s": 1.0e-11, "gate_s": 2.0e-5, "init_amp_s": 1.0e-11, "setup_s": 0.5},
    "aer": {"amp_gate_s": {"18": 3.5e-8}, "setup_s": 0.19, "observable_amp_s": 1.0e-10},
    "aer-sampler": {"circuit_s": 5.3e-3, "gate_s": 7.1e-5, "amp_gate_s": 6.1e-9, "shot_s": 4.0e-5,
                    "sample_s": 1.2e-5, "batch_s": 1.5e-2},
    "aer-sampler-gpu": {"circuit_s": 2.0e-2, "gate_s": 2.6e-3, "amp_gate_s": 2.0e-11, "shot_s": 3.0e-5,
                        "sample_s": 1.0e-6, "batch_s": 2.0e-2},
    "comm": {"latency_s": 6.4e-5, "bytes_per_s": 1.8e9},
    "pilot": {"task_s": 1.5e-3, "sv_task_s": {}, "circuit_s": 3.0e-4, "result_s": 1.7e-5, "import_qiskit_s": 0.78,
              "import_aer_s": 0.09},
    "cutting": {"generate_s": 2.9e-3, "reconstruct_s": 4.0e-4, "stderr_s": 1.4e-3},
}
"""Built-in constants: one ``pilotq-mpi calibrate -n 4`` (CPU-time probes, model v3) on the shared 2-core
build machine at load average 5-13 (observable constants from a second one at 19-23; the CPU-time
constants of the two agree within 15% except the state vector's at 18 qubits, 1.7x; ``aer-sampler``
from a third at 9-12, after the sampler task began to keep its pass manager); GPU entries are
rough guesses, never measured. Replaced by :func:`calibrate`."""


def default_path(host: str | None = None) -> Path:
    """``$PILOTQ_PROFILE`` if set, else ``~/.cache/pilotq-mpi/profile-<host>.json``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    host = host or socket.gethostname()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)
    return Path.home() / ".cache" / "pilotq-mpi" / f"profile-{safe}.json"


@dataclass
class CostProfile:
    """Machine constants per backend (see the module docstring); ``calibrated`` lists measured backends."""

    host: str = field(default_factory=socket.gethostname)
    backends: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    calibrated: dict[str, float] = field(default_factory=dict)
    """Backend -> unix time it was measured (absent: built-in default)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Conditions of the calibration: cores, load average, ranks, seconds it took."""

    def get(self, backend: str, key: str) -> Any:
        """The constant ``key`` of ``backend`` (the built-in default when not measured)."""
        entry = self.backends.get(backend) or {}
        if key in entry:
            return entry[key]
        return DEFAULTS[backend][key]

    def by_size(self, backend: str, key: str, qubits: int) -> float:
        """A per-qubit-count table entry at ``qubits``, interpolated linearly in log space (clamped)."""
        table = {int(k): float(v) for k, v in self.get(backend, key).items()}
        sizes = sorted(table)
        if qubits <= sizes[0]:
            return table[sizes[0]]
        if qubits >= sizes[-1]:
            return table[sizes[-1]]
        for lo, hi in zip(sizes, sizes[1:]):
            if lo <= qubits <= hi:
                f = (qubits - lo) / (hi - lo)
                return math.exp((1 - f) * math.log(table[lo]) + f * math.log(table[hi]))
        return table[sizes[-1]]  # pragma: no cover

    def is_calibrated(self, backend: str) -> bool:
        return backend in self.calibrated

    def update(self, backend: str, values: dict[str, Any]) -> None:
        """Store measured ``values`` for ``backend`` (and mark it calibrated now)."""
        self.backends.setdefault(backend, {}).update(values)
        self.calibrated[backend] = time.time()

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {"version": PROFILE_VERSION, "host": self.host, "backends": self.backends,
                "calibrated": self.calibrated, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CostProfile":
        if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
            raise ValueError(f"not a version-{PROFILE_VERSION} cost profile: {str(data)[:80]}")
        backends = copy.deepcopy(DEFAULTS)
        for name, values in (data.get("backends") or {}).items():
            backends.setdefault(name, {}).update(values)
        return cls(host=str(data.get("host", "")), backends=backends,
                   calibrated={k: float(v) for k, v in (data.get("calibrated") or {}).items()},
                   meta=dict(data.get("meta") or {}))

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the profile as JSON (default: :func:`default_path` of its host), merging into a file
        that holds other hosts' entries; return the path."""
        path = Path(path) if path is not None else default_path(self.host)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = _read_store(path)
        store[self.host] = self.to_dict()
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"version": PROFILE_VERSION, "hosts": store}, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, host: str | None = None) -> "CostProfile":
        """The profile of ``host`` (default: this host) from ``path``; the built-in defaults if there is none.

        A file holds profiles keyed by host, so one file can serve a cluster's nodes; a
        corrupt file raises ``ValueError`` naming it.
        """
        host = host or socket.gethostname()
        path = Path(path) if path is not None else default_path(host)
        store = _read_store(path)
        if host in store:
            profile = cls.from_dict(store[host])
            profile.meta.setdefault("path", str(path))
            return profile
        return cls(host=host)


def _read_store(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cost profile {path} cannot be read ({exc}); delete it or run `pilotq-mpi calibrate`")\
            from None
    if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION or not isinstance(data.get("hosts"), dict):
        raise ValueError(f"cost profile {path} is not a version-{PROFILE_VERSION} profile file;"
                         " delete it or run `pilotq-mpi calibrate`")
    return data["hosts"]


def calibrate(pilot=None, *args, **kwargs) -> CostProfile:
    """Measure the cost profile on ``pilot``'s own ranks (or in this process); see :mod:`.calibration`."""
    from .calibration import calibrate as _calibrate

    return _calibrate(pilot, *args, **kwargs)
