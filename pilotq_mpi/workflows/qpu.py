"""QPU backends for pinned worker ranks, and a ready-made sampling task.

A QPU is declared in the pilot description by a *factory path* (``"module:attr"``) and
keyword arguments. The worker ranks pinned to that QPU call :func:`build_backend` once
at start-up and keep the object for the pilot's life, so a cloud session or a noisy
simulator is built once, not per task. QPU tasks then receive the object as their first
argument: ``fn(backend, *args, **kwargs)``.

Factories provided here:

- :func:`fake_backend`: a ``qiskit_ibm_runtime.fake_provider`` backend (noisy Aer
  simulation of a real device) wrapped in :class:`EmulatedQPU`, which sleeps
  ``latency_s`` before every job to emulate queueing and network time.
- :func:`ibm_runtime_backend`: a real IBM Quantum backend through
  ``QiskitRuntimeService`` (saved account or ``QISKIT_IBM_*`` environment variables).
- :func:`pennylane_device`: a PennyLane device.

Cost note (measured on a 2-core machine): ``fake_fez`` has 156 qubits; building its
noise model takes 10-17 s (on the first job) and every job then costs ~5-7 s in Aer even
for a Bell circuit, because Aer processes the whole device noise model. Small fake
devices (``fake_manila``, 5 qubits) run a job in ~0.25 s.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from qiskit.providers import BackendV2, Options

from ..platform.factories import QpuConfigError, load_factory

__all__ = [
    "EmulatedQPU",
    "QpuConfigError",
    "build_backend",
    "fake_backend",
    "ibm_runtime_backend",
    "load_factory",
    "pennylane_device",
    "sample_on_backend",
]




# --------------------------------------------------------------------------- factories


class EmulatedQPU(BackendV2):
    """A backend that delays every job by ``latency_s`` seconds, then runs it on ``inner``.

    The delay stands for the time a job spends outside the simulator on a real QPU: the
    cloud queue, network round trips and job management (seconds to hours in practice).
    It is a plain ``time.sleep`` in the calling thread, so an I/O-bound QPU worker that
    runs several calls at once overlaps the delays as it would overlap real waiting.

    Everything else (``target``, ``options``, ``name``, device properties) is the inner
    backend's, so transpilation and ``qiskit_ibm_runtime.SamplerV2(mode=...)`` treat it
    like the device it wraps. ``jobs`` counts the jobs run so far.
    """

    def __init__(self, inner: BackendV2, latency_s: float = 0.0):
        if not isinstance(inner, BackendV2):
            raise TypeError(f"EmulatedQPU wraps a qiskit BackendV2, got {type(inner).__name__}")
        _check_latency(latency_s)
        self._inner = inner
        self.latency_s = float(latency_s)
        self._lock = threading.Lock()
        self.jobs = 0
        super().__init__(
            provider=None,
            name=inner.name,
            description=f"{inner.name} with {latency_s} s emulated queue/network latency",
            backend_version=getattr(inner, "backend_version", None),
        )

    @property
    def inner(self) -> BackendV2:
        """The wrapped backend."""
        return self._inner

    @property
    def target(self):
        return self._inner.target

    @property
    def max_circuits(self):
        return self._inner.max_circuits

    @property
    def options(self) -> Options:
        return self._inner.options

    def set_options(self, **fields):
        self._inner.set_options(**fields)

    @classmethod
    def _default_options(cls) -> Options:
        return Options()

    def run(self, run_input, **options):
        """Sleep ``latency_s``, then run ``run_input`` on the inner backend."""
        with self._lock:
            self.jobs += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._inner.run(run_input, **options)

    def __deepcopy__(self, memo):
        # qiskit-ibm-runtime's local mode deep-copies the job options, backend included,
        # and would then run on (and lazily build a noisy simulator for) a fresh copy on
        # every job. The QPU object is long-lived and shared by design: never copy it.
        return self

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not found normally: device details such as
        # configuration() or properties() come from the wrapped backend.
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"EmulatedQPU({self._inner.name!r}, latency_s={self.latency_s})"


def _check_latency(latency_s: float) -> None:
    if not isinstance(latency_s, (int, float)) or isinstance(latency_s, bool) or latency_s < 0:
        raise QpuConfigError(f"latency_s must be a number >= 0 (seconds), got {latency_s!r}")


def fake_backend(name: str = "fake_fez", latency_s: float = 0.0, seed: int | None = None) -> EmulatedQPU:
    """Build a qiskit-ibm-runtime fake backend (noisy local simulation of a real device).

    Args:
        name: backend name as in ``FakeProviderForBackendV2().backends()``, e.g.
            ``"fake_fez"`` (156 qubits, slow to simulate: see the module note) or
            ``"fake_manila"`` (5 qubits, fast).
        latency_s: seconds slept before every job, emulating cloud queue + network time.
        seed: default ``seed_simulator`` for jobs (reproducible counts); ``None`` = random.

    Returns:
        An :class:`EmulatedQPU` wrapping the fake backend.
    """
    _check_latency(latency_s)
    if not isinstance(name, str) or not name:
        raise QpuConfigError(f"fake backend name must be a non-empty string, got {name!r}")
    import warnings

    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():  # building the catalogue warns about one fake device's numbers
        warnings.filterwarnings("ignore", message="Properties of fake_", category=UserWarning)
        provider = FakeProviderForBackendV2()
    try:
        inner = provider.backend(name)
    except Exception:  # QiskitBackendNotFoundError; list the valid names instead
        names = sorted(b.name for b in provider.backends())
        raise QpuConfigError(
            f"no fake backend named {name!r}; choose one of: {', '.join(names)}"
        ) from None
    if seed is not None:
        inner.set_options(seed_simulator=int(seed))
    return EmulatedQPU(inner, latency_s)


_TOKEN_VARS = ("QISKIT_IBM_TOKEN",)


def _scrub(text: str) -> str:
    """Remove credential values (from the environment) from ``text``."""
    for var in _TOKEN_VARS:
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def ibm_runtime_backend(
    name: str | None = None, channel: str | None = None, instance: str | None = None
) -> BackendV2:
    """Connect to IBM Quantum and return a backend (kept open by the pinned worker).

    Credentials come from the account saved with ``QiskitRuntimeService.save_account``
    (``~/.qiskit/qiskit-ibm.json``) or from the environment (``QISKIT_IBM_TOKEN``, and
    optionally ``QISKIT_IBM_CHANNEL``, ``QISKIT_IBM_INSTANCE``, ``QISKIT_IBM_URL``).
    They are deliberately not parameters of this factory, so they never appear in a
    pilot description, a log line or an error message.

    Args:
        name: backend name (e.g. ``"ibm_fez"``); ``None`` picks the least busy
            operational hardware backend of the account.
        channel: ``"ibm_quantum_platform"`` or ``"ibm_cloud"``; ``None`` = account default.
        instance: CRN or instance name; ``None`` = account default.

    Raises:
        QpuConfigError: no account is configured, or the service/backend cannot be reached.
    """
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError

    try:
        service = QiskitRuntimeService(channel=channel, instance=instance)
    except AccountNotFoundError:
        raise QpuConfigError(
            "no IBM Quantum account is configured: save one with "
            "QiskitRuntimeService.save_account(...) (stored in ~/.qiskit/qiskit-ibm.json) "
            "or set the environment variable QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE) "
            "for the pinned worker ranks"
        ) from None
    except Exception as exc:  # invalid account, network, authentication
        raise QpuConfigError(
            f"could not open QiskitRuntimeService(channel={channel!r}, instance={instance!r}): "
            f"{type(exc).__name__}: {_scrub(str(exc))}"
        ) from None
    try:
        if name is None:
            return service.least_busy(operational=True, simulator=False)
        return service.backend(name)
    except Exception as exc:
        raise QpuConfigError(
            f"could not get IBM backend {name or '(least busy)'!r}: "
            f"{type(exc).__name__}: {_scrub(str(exc))}"
        ) from None


def pennylane_device(name: str = "default.qubit", wires: int | Sequence = 1, shots: int | None = None, **kwargs):
    """Build a PennyLane device, e.g. ``pennylane_device("lightning.qubit", wires=20)``.

    ``shots=None`` leaves the device analytic. PennyLane 0.45 deprecates shots on the
    device (prefer ``qml.set_shots`` on the QNode); they are passed only when given.
    Extra keyword arguments go to ``qml.device``.
    """
    import pennylane as qml

    if isinstance(wires, int) and wires < 1:
        raise QpuConfigError(f"wires must be >= 1 (or a sequence of labels), got {wires!r}")
    if shots is not None:
        kwargs["shots"] = shots
    try:
        return qml.device(name, wires=wires, **kwargs)
    except qml.exceptions.DeviceError as exc:
        raise QpuConfigError(f"PennyLane device {name!r} cannot be built: {exc}") from None


# --------------------------------------------------------------------------- factory paths


def build_backend(factory_path: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Load the factory at ``factory_path`` and call it with ``kwargs`` (once per pinned rank)."""
    factory = load_factory(factory_path)
    kwargs = dict(kwargs or {})
    if not all(isinstance(k, str) for k in kwargs):
        raise QpuConfigError(f"QPU factory kwargs must have string keys, got {list(kwargs)!r}")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise QpuConfigError(
            f"QPU factory {factory_path!r} rejected arguments {sorted(kwargs)}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- QPU task


def sample_on_backend(
    backend: BackendV2,
    circuits,
    shots: int = 1024,
    *,
    seed: int | None = None,
    optimization_level: int = 1,
) -> list[dict[str, int]]:
    """QPU task: transpile ``circuits`` for ``backend`` and sample them with SamplerV2.

    Submit as ``pilot.submit(sample_on_backend, circuits, 4000, qpu="fake_fez")``; the
    pilot passes the pinned backend as the first argument. Circuits are transpiled with
    the preset pass manager (``optimization_level``, default 1) and run in one
    ``qiskit_ibm_runtime.SamplerV2(mode=backend)`` job: a real job on IBM hardware, local
    Aer simulation for fake backends (and any other local ``BackendV2``).

    Returns:
        One ``{bitstring: count}`` dict per circuit (all classical registers joined),
        in input order; a list even for a single circuit.
    """
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager

    if isinstance(circuits, QuantumCircuit):
        circuits = [circuits]
    circuits = list(circuits)
    if not circuits or not all(isinstance(c, QuantumCircuit) for c in circuits):
        raise TypeError("sample_on_backend needs a QuantumCircuit or a non-empty list of them")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    for i, c in enumerate(circuits):
        if c.num_clbits == 0:
            raise ValueError(f"circuit {i} ({c.name!r}) has no measurements; add measure_all()")
        if c.parameters:
            raise ValueError(f"circuit {i} ({c.name!r}) has unbound parameters {sorted(p.name for p in c.parameters)}")
    if not isinstance(backend, BackendV2):
        raise TypeError(
            f"sample_on_backend needs a qiskit BackendV2 as its QPU backend, got {type(backend).__name__}"
        )
    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=backend)
    isa = pm.run(circuits)
    if not isinstance(isa, list):
        isa = [isa]
    options: dict[str, Any] = {"default_shots": shots}
    if seed is not None:
        options["simulator"] = {"seed_simulator": int(seed)}
    sampler = _runtime_sampler(backend, options)
    result = sampler.run(isa).result()
    return [pub.join_data().get_counts() for pub in result]


def _runtime_sampler(backend, options):
    import warnings

    from qiskit_ibm_runtime import SamplerV2

    with warnings.catch_warnings():
        # qiskit-ibm-runtime 0.50 deprecates SamplerV2 in favour of a client-side Sampler
        # that is not yet the top-level export; SamplerV2 still runs everywhere.
        warnings.simplefilter("ignore", DeprecationWarning)
        return SamplerV2(mode=backend, options=options)
