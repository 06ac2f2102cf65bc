"""Circuit parameters: binding values, and the exact derivative of a parameterised gate.

A circuit's parameters are ``list(circuit.parameters)`` (Qiskit's order: sorted by name);
gradients have one column per parameter in that order. Values come as a sequence in that
order or as a mapping ``{Parameter or name: value}``.

A gate's matrix depends on each of its own angles ``p`` through one frequency ``w``
(entries ``a + b cos(w p) + c sin(w p)``; ``w = 1/2`` for rotations, ``1`` for phases),
so its derivative is exact from two shifted matrices:
``dU/dp = w * (U(p + s) - U(p - s)) / 2`` with ``s = pi / (2 w)``. The gates and frequencies
this holds for are listed in :data:`FREQUENCIES`; a parameter in any other gate is refused
with a message saying how to rewrite the circuit. A gate angle given by an expression of the
circuit's parameters (``2*a + b``, ``a*b``, ``sin(a)``) is differentiated by the chain rule with
Qiskit's ``ParameterExpression.gradient``; a parameter used in several gates sums their terms.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

_FREQUENCY_NAMES = {
    # class name in qiskit.circuit.library -> frequency of each of its parameters
    "RXGate": (0.5,), "RYGate": (0.5,), "RZGate": (0.5,),
    "RXXGate": (0.5,), "RYYGate": (0.5,), "RZZGate": (0.5,), "RZXGate": (0.5,),
    "CRXGate": (0.5,), "CRYGate": (0.5,), "CRZGate": (0.5,),
    "PhaseGate": (1.0,), "U1Gate": (1.0,), "CPhaseGate": (1.0,), "CU1Gate": (1.0,),
    "GlobalPhaseGate": (1.0,),
    "RGate": (0.5, 1.0), "U2Gate": (1.0, 1.0),
    "UGate": (0.5, 1.0, 1.0), "U3Gate": (0.5, 1.0, 1.0),
    "CUGate": (0.5, 1.0, 1.0, 1.0), "CU3Gate": (0.5, 1.0, 1.0),
    "XXPlusYYGate": (0.5, 1.0), "XXMinusYYGate": (0.5, 1.0),
}
FREQUENCIES = dict(_FREQUENCY_NAMES)
"""Differentiable gates (Qiskit class names, control states included) -> frequency of each angle."""

DIFFERENTIABLE_GATES = sorted({
    "rx", "ry", "rz", "rxx", "ryy", "rzz", "rzx", "crx", "cry", "crz", "p", "u1", "cp", "cu1",
    "global_phase", "r", "u2", "u", "u3", "cu", "cu3", "xx_plus_yy", "xx_minus_yy",
})


def circuit_parameters(circuit) -> list:
    """The circuit's parameters in gradient-column order (``list(circuit.parameters)``)."""
    return list(circuit.parameters)


def bind_values(circuit, parameter_values) -> dict:
    """Return ``{Parameter: float}`` for every parameter of ``circuit``; ``ValueError`` if any is missing.

    ``parameter_values``: ``None`` (the circuit must have no parameters), a sequence of numbers
    in the order of ``circuit.parameters``, or a mapping keyed by ``Parameter`` or parameter name.
    """
    params = circuit_parameters(circuit)
    if parameter_values is None:
        if params:
            names = ", ".join(p.name for p in params)
            raise ValueError(
                f"circuit has unbound parameters ({names}); pass parameter_values=[...] (in this "
                "order) or bind them first with circuit.assign_parameters({...})"
            )
        return {}
    if isinstance(parameter_values, Mapping):
        by_name = {p.name: p for p in params}
        out = {}
        for key, value in parameter_values.items():
            name = key if isinstance(key, str) else getattr(key, "name", None)
            if name not in by_name or not (isinstance(key, str) or key in params):
                raise ValueError(f"parameter_values names {key!r}, which is not a parameter of the circuit "
                                 f"(its parameters: {', '.join(by_name) or 'none'})")
            out[by_name[name]] = _finite(value, name)
        missing = [p.name for p in params if p not in out]
        if missing:
            raise ValueError(f"parameter_values lacks a value for {', '.join(missing)}")
        return out
    try:
        if isinstance(parameter_values, (str, bytes)):
            raise TypeError("a string")
        values = np.asarray(parameter_values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter_values must be real numbers, got {parameter_values!r}") from exc
    if len(values) != len(params):
        raise ValueError(
            f"parameter_values has {len(values)} value(s) but the circuit has {len(params)} parameter(s) "
            f"({', '.join(p.name for p in params) or 'none'}, in this order)"
        )
    return {p: _finite(v, p.name) for p, v in zip(params, values)}


def _finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the value of parameter {name} must be a real number, got {value!r}") from exc
    if not math.isfinite(v):
        raise ValueError(f"the value of parameter {name} must be finite, got {v}")
    return v


def expression_gradient(expr, param, values: dict) -> float:
    """d(expr)/d(param) at ``values`` (a real number)."""
    grad = expr.gradient(param)
    if getattr(grad, "parameters", None):  # still an expression of the parameters: evaluate it
        grad = grad.bind({p: values[p] for p in grad.parameters})
    grad = complex(grad)
    if abs(grad.imag) > 1e-12 * max(1.0, abs(grad)):
        raise ValueError(f"the derivative of {expr} with respect to {param.name} is complex ({grad})")
    return grad.real


def gate_angle_derivative(op, j: int, pos: int) -> np.ndarray:
    """Exact ``dU/dp_j`` of the bound gate ``op`` (its ``j``-th angle), by the two-shift rule.

    ``ValueError`` for a gate not in :data:`FREQUENCIES`.
    """
    cls = getattr(op, "base_class", type(op)).__name__
    freqs = FREQUENCIES.get(cls)
    if freqs is None or j >= len(freqs):
        raise ValueError(
            f"instruction {pos} ({op.name}) depends on a circuit parameter but its derivative is not "
            f"known here; gradients support parameters in {', '.join(DIFFERENTIABLE_GATES)}: "
            "rewrite it with those, e.g. transpile(circuit, basis_gates=['rz', 'ry', 'rx', 'cx'])"
        )
    w = freqs[j]
    s = math.pi / (2 * w)
    plus, minus = op.to_mutable(), op.to_mutable()
    base = list(op.params)
    plus.params = base[:j] + [float(base[j]) + s] + base[j + 1:]
    minus.params = base[:j] + [float(base[j]) - s] + base[j + 1:]
    return w * (np.asarray(plus.to_matrix(), dtype=np.complex128)
                - np.asarray(minus.to_matrix(), dtype=np.complex128)) / 2
